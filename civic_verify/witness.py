"""A witness's check and cosignature (C2SP tlog-witness, in its simplest form).

A witness keeps, per log (origin), the last checkpoint it cosigned. Shown a newer one, it
cosigns only if the log's key signed it and a consistency proof shows it extends the last
one; it refuses anything smaller, a different root at the same size, or a proof that does
not hold: a log that rewrote its history cannot get that witness's signature again.

The state is a small JSON file, written atomically (temporary file, then rename).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from civic_verify.hashing import by_name
from civic_verify.note import cosign, split_note, verify_note
from civic_verify.tlog import verify_consistency


class Refused(Exception):
    """The witness will not cosign this checkpoint (the reason is in the message)."""


@dataclass
class LogState:
    size: int
    root: str  # hex
    note: str
    hash_algorithm: str


@dataclass
class WitnessState:
    #: the log's verifier key (name+id+key) the witness trusts, per origin prefix
    log_vkey: str | None = None
    logs: dict[str, LogState] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> WitnessState:
        if not path.exists():
            return cls()
        raw = json.loads(path.read_text())
        return cls(
            log_vkey=raw.get("log_vkey"),
            logs={k: LogState(**v) for k, v in raw.get("logs", {}).items()},
        )

    def save(self, path: Path) -> None:
        data = {"log_vkey": self.log_vkey, "logs": {k: asdict(v) for k, v in self.logs.items()}}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The witness's own Ed25519 key (PKCS#8 PEM), created with mode 0600 on first use."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
        return key
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return key


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


#: (from size, to size) → the log's consistency proof: {"proof": [hex], "to": {"root": hex}}
FetchProof = Callable[[int, int], Awaitable[dict[str, object]]]


async def check_and_cosign(
    state: WitnessState,
    note: str,
    *,
    log_name: str,
    log_key: bytes,
    hash_algorithm: str,
    fetch_proof: FetchProof,
    name: str,
    key: Ed25519PrivateKey,
    now: int,
) -> str:
    """The cosignature line for ``note``, after checking it extends the last one cosigned;
    ``state`` is updated only then. Raises Refused."""
    try:
        checkpoint = verify_note(note, log_name, log_key)
    except ValueError as exc:
        raise Refused(f"the note is not signed by the log's key: {exc}") from None
    body, _ = split_note(note)
    last = state.logs.get(checkpoint.origin)
    if last is not None:
        algorithm = last.hash_algorithm
        old_root = bytes.fromhex(last.root)
        if checkpoint.size < last.size:
            raise Refused(f"the tree shrank from {last.size} to {checkpoint.size} leaves")
        if checkpoint.size == last.size and checkpoint.root != old_root:
            raise Refused(f"another root at the same size {last.size}: history was rewritten")
        if checkpoint.size > last.size:
            answer = await fetch_proof(last.size, checkpoint.size)
            proof = [bytes.fromhex(str(p)) for p in answer.get("proof", [])]  # type: ignore[attr-defined]
            if not verify_consistency(
                by_name(algorithm), last.size, checkpoint.size, old_root, checkpoint.root, proof
            ):
                raise Refused(
                    f"the tree of {checkpoint.size} does not extend the one of {last.size} "
                    "this witness cosigned: history was rewritten"
                )
    else:
        algorithm = hash_algorithm
    line = cosign(body, name, raw_public(key), now, key.sign)
    state.logs[checkpoint.origin] = LogState(
        size=checkpoint.size, root=checkpoint.root.hex(), note=note, hash_algorithm=algorithm
    )
    return line
