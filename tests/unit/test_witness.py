"""The witness's own checks, without a server: what it refuses before asking for a proof."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from civic_verify.hashing import sha256
from civic_verify.note import CheckpointBody, sign_note, verify_cosignature
from civic_verify.tlog import Frontier, consistency_ranges, leaf_hash, resolve
from civic_verify.witness import (
    Refused,
    WitnessState,
    check_and_cosign,
    load_or_create_key,
    raw_public,
)

LOG = Ed25519PrivateKey.generate()
ORIGIN = "civic-ledger/00000000-0000-0000-0000-000000000001"


def note(size: int, salt: bytes = b"") -> tuple[str, dict[tuple[int, int], bytes]]:
    f, stored = Frontier(sha256), {}
    for i in range(size):
        for level, idx, value in f.push(0, i, leaf_hash(sha256, salt + str(i).encode())):
            stored[(level, idx)] = value
    body = CheckpointBody(ORIGIN, size, f.root()).text()
    return sign_note(body, "civic-ledger", raw_public(LOG), LOG.sign), stored


def cosign(state: WitnessState, text: str, stored: dict, key: Ed25519PrivateKey) -> str:
    async def fetch(first: int, second: int) -> dict[str, object]:
        proof = resolve(sha256, consistency_ranges(first, second), stored.__getitem__)
        return {"proof": [p.hex() for p in proof]}

    return asyncio.run(
        check_and_cosign(
            state,
            text,
            log_name="civic-ledger",
            log_key=raw_public(LOG),
            hash_algorithm="sha256",
            fetch_proof=fetch,
            name="w.example",
            key=key,
            now=1,
        )
    )


def test_cosigns_extensions_refuses_rewrites_shrinking_and_forks(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path / "w.pem")
    assert (tmp_path / "w.pem").stat().st_mode & 0o777 == 0o600
    assert raw_public(load_or_create_key(tmp_path / "w.pem")) == raw_public(key)
    state = WitnessState()
    first, stored = note(10)
    line = cosign(state, first, stored, key)
    assert (
        verify_cosignature(first.split("\n\n")[0] + "\n", line, "w.example", raw_public(key)) == 1
    )
    grown, stored = note(17)
    cosign(state, grown, stored, key)
    state.save(tmp_path / "state.json")
    again = WitnessState.load(tmp_path / "state.json")
    assert again.logs[ORIGIN].size == 17
    smaller, stored = note(12)
    with pytest.raises(Refused, match="shrank"):
        cosign(again, smaller, stored, key)
    fork, stored = note(17, salt=b"x")
    with pytest.raises(Refused, match="same size"):
        cosign(again, fork, stored, key)
    rewritten, stored = note(30, salt=b"x")
    with pytest.raises(Refused, match="rewritten"):
        cosign(again, rewritten, stored, key)
    other = Ed25519PrivateKey.generate()
    body = CheckpointBody(ORIGIN, 40, b"\x00" * 32).text()
    with pytest.raises(Refused, match="not signed"):
        cosign(again, sign_note(body, "civic-ledger", raw_public(other), other.sign), {}, key)
    assert again.logs[ORIGIN].size == 17


def test_the_cli_needs_a_token() -> None:
    from services.cli import main

    result = CliRunner().invoke(
        main,
        [
            "witness",
            "--url",
            "http://127.0.0.1:9",
            "--node",
            "x",
            "--key",
            "k",
            "--name",
            "n",
            "--state",
            "s",
        ],
        env={"CIVIC_WITNESS_TOKEN": ""},
    )
    assert result.exit_code == 2 and "token" in result.output.lower()


def test_a_verifier_key_whose_base64_holds_a_plus_parses() -> None:
    # base64 uses "+" as a digit: only the first two "+" separate name, key id and key
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from civic_verify.note import parse_vkey, vkey

    for _ in range(200):
        raw = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        text = vkey("civic-ledger", raw)
        if "+" in text.split("+", 2)[2]:
            break
    else:
        raise AssertionError("no key with a '+' in its base64 in 200 tries")
    assert parse_vkey(text) == ("civic-ledger", 1, raw)
