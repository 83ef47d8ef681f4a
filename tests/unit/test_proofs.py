"""Offline checks of checkpoints and inclusion proofs (no database): what clients re-run."""

from __future__ import annotations

import base64
import copy
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from infra.audit.checkpoints import sign_checkpoint
from infra.audit.inclusion import Link, Proof, ProofEvent
from infra.audit.merkle import Head, inclusion_path, leaf_hash
from infra.audit.proof_checks import checkpoint_problems, proof_problems, verify_proof
from infra.audit.signing import Ed25519Signer, SigningKeyError, load_signer
from infra.chain import GENESIS, Sha256Chain, canonical_event

ROOT = Path(__file__).resolve().parents[2]
hasher = Sha256Chain()
signer = Ed25519Signer.from_pem(Ed25519Signer.generate_pem())


def chain(node_id: uuid.UUID, n: int) -> list[dict[str, Any]]:
    """``n`` chained events of one node, as the store would link them."""
    prev, out = GENESIS, []
    for seq in range(1, n + 1):
        canonical = canonical_event(
            root_id=node_id,
            node_id=node_id,
            stream_id=uuid.uuid4(),
            stream_type="issue",
            version=1,
            event_id=uuid.uuid4(),
            type="IssueReported",
            schema_version=1,
            data={"title": f"楼道堆物 {seq}", "hours": 1.5, "tags": ["网格", None]},
            occurred_at=datetime(2025, 3, 1, 8, 0, seq, tzinfo=UTC),
            recorded_at=datetime.now(UTC),
            actor="tester@330106000000",
            correlation_id=None,
            causation_id=None,
            idempotency_key=None,
        )
        position = (1000 + seq) << 16
        digest = hasher.digest(canonical)
        h = hasher.link(prev, seq, position, digest)
        out.append(
            {
                "seq": seq,
                "position": position,
                "prev": prev,
                "digest": digest,
                "hash": h,
                "canonical": canonical,
            }
        )
        prev = h
    return out


def make_proof(
    n_nodes: int = 5, n_events: int = 6, target: int = 2, pick: int = 3
) -> dict[str, Any]:
    node_ids = [uuid.uuid4() for _ in range(n_nodes)]
    chains = {nid: chain(nid, n_events) for nid in node_ids}
    heads = [
        Head(
            node_id=str(nid),
            code=f"33010600{i:04d}",
            seq=n_events,
            hash=chains[nid][-1]["hash"].hex(),
        )
        for i, nid in enumerate(node_ids)
    ]
    cp = sign_checkpoint("330106000000", datetime.now(UTC).isoformat(), heads, signer, hasher)
    nid = node_ids[target]
    e = chains[nid][pick - 1]
    content = msgspec.json.decode(e["canonical"])
    proof = Proof(
        event=ProofEvent(
            event_id=content["event_id"],
            node_id=str(nid),
            code=heads[target].code,
            seq=e["seq"],
            position=e["position"],
            prev_hash=e["prev"].hex(),
            digest=e["digest"].hex(),
            hash=e["hash"].hex(),
            canonical=base64.b64encode(e["canonical"]).decode(),
        ),
        chain=[
            Link(
                seq=x["seq"], position=x["position"], digest=x["digest"].hex(), hash=x["hash"].hex()
            )
            for x in chains[nid][pick:]
        ],
        head=heads[target],
        leaf_index=target,
        merkle_path=inclusion_path([leaf_hash(h) for h in heads], target),
        checkpoint=cp,
    )
    # what a client holds: the JSON the API answered
    result: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(proof))
    return result


def public_key_b64() -> str:
    return base64.b64encode(signer.public_key_raw()).decode()


def test_a_good_proof_verifies_with_and_without_a_pinned_key():
    for n_nodes, target, pick in [(1, 0, 6), (5, 2, 3), (8, 7, 1), (3, 2, 6)]:
        proof = make_proof(n_nodes=n_nodes, target=target, pick=pick)
        assert proof_problems(proof) == []
        assert verify_proof(proof)
        assert verify_proof(proof, trusted_public_key=public_key_b64())
    other = Ed25519Signer.from_pem(Ed25519Signer.generate_pem())
    assert not verify_proof(
        make_proof(), trusted_public_key=base64.b64encode(other.public_key_raw()).decode()
    )


def _tampered(mutate) -> dict[str, Any]:
    proof = make_proof()
    forged = copy.deepcopy(proof)
    mutate(forged)
    return forged


def _flip(hexstr: str) -> str:
    return ("0" if hexstr[0] != "0" else "1") + hexstr[1:]


def _recanonical(p: dict[str, Any]) -> None:
    content = msgspec.json.decode(base64.b64decode(p["event"]["canonical"]))
    content["data"]["title"] = "已篡改"
    p["event"]["canonical"] = base64.b64encode(
        msgspec.json.encode(content, order="sorted")
    ).decode()


@pytest.mark.parametrize(
    "mutate",
    [
        _recanonical,
        lambda p: p["event"].update(digest=_flip(p["event"]["digest"])),
        lambda p: p["event"].update(prev_hash=_flip(p["event"]["prev_hash"])),
        lambda p: p["event"].update(position=p["event"]["position"] + 1),
        lambda p: p["event"].update(event_id=str(uuid.uuid4())),
        lambda p: p["chain"].pop(0),
        lambda p: p["chain"][1].update(digest=_flip(p["chain"][1]["digest"])),
        lambda p: p["chain"].append(dict(p["chain"][-1], seq=p["chain"][-1]["seq"] + 1)),
        lambda p: p["head"].update(hash=_flip(p["head"]["hash"])),
        lambda p: p.update(leaf_index=p["leaf_index"] + 1),
        lambda p: p["merkle_path"][0].update(hash=_flip(p["merkle_path"][0]["hash"])),
        lambda p: p["merkle_path"][0].update(
            side="left" if p["merkle_path"][0]["side"] == "right" else "right"
        ),
        lambda p: p["checkpoint"].update(root=_flip(p["checkpoint"]["root"])),
        lambda p: p["checkpoint"].update(at="2020-01-01T00:00:00.000000+00:00"),
        lambda p: p["checkpoint"].update(node="330106999000"),
        lambda p: p["checkpoint"]["heads"][0].update(seq=1),
        lambda p: p["checkpoint"].update(hash_algorithm="sm3"),
        lambda p: p["checkpoint"].update(signature=base64.b64encode(b"\0" * 64).decode()),
        lambda p: p.pop("head"),
        lambda p: p["event"].update(canonical="%%%"),
    ],
)
def test_any_change_breaks_the_proof(mutate):
    forged = _tampered(mutate)
    assert not verify_proof(forged), forged
    assert proof_problems(forged)


def test_checkpoint_checks_name_what_failed():
    proof = make_proof()
    cp = proof["checkpoint"]
    assert checkpoint_problems(cp) == {}
    assert set(checkpoint_problems(dict(cp, root=_flip(cp["root"])))) == {"signature", "root"}
    heads = copy.deepcopy(cp["heads"])
    heads[1]["hash"] = _flip(heads[1]["hash"])
    assert set(checkpoint_problems(dict(cp, heads=heads))) == {"root"}
    # re-signed by another key: valid on its own, not under the trusted key
    other = Ed25519Signer.from_pem(Ed25519Signer.generate_pem())
    resigned = msgspec.to_builtins(
        sign_checkpoint(cp["node"], cp["at"], [Head(**h) for h in cp["heads"]], other, hasher)
    )
    assert checkpoint_problems(resigned) == {}
    assert set(checkpoint_problems(resigned, trusted_public_key=public_key_b64())) == {"signature"}


def test_signing_key_configuration(tmp_path):
    pem = Ed25519Signer.generate_pem()
    configured = load_signer(configured_pem=pem, production=True, data_dir=tmp_path)
    assert configured.public_key_raw() == Ed25519Signer.from_pem(pem).public_key_raw()
    # a PEM passed with literal "\n" (one-line environment variables) works too
    one_line = load_signer(
        configured_pem=pem.replace("\n", "\\n"), production=True, data_dir=tmp_path
    )
    assert one_line.public_key_raw() == configured.public_key_raw()
    with pytest.raises(SigningKeyError):
        load_signer(configured_pem=None, production=True, data_dir=tmp_path)
    with pytest.raises(SigningKeyError):
        load_signer(configured_pem="not a key", production=False, data_dir=tmp_path)
    first = load_signer(configured_pem=None, production=False, data_dir=tmp_path)
    again = load_signer(configured_pem=None, production=False, data_dir=tmp_path)
    assert first.public_key_raw() == again.public_key_raw()  # kept under the data dir
    key_file = tmp_path / "secrets" / "checkpoint-signing-key.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert "BEGIN PUBLIC KEY" in first.public_key_pem()


def _docs_verifier() -> dict[str, Any]:
    text = (ROOT / "docs" / "audit.md").read_text(encoding="utf-8")
    section = text.split("## Verifying offline", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code, "docs/audit.md shows the offline verifier in a python block"
    namespace: dict[str, Any] = {}
    exec(compile(code.group(1), "docs/audit.md", "exec"), namespace)
    return namespace


def test_the_verifier_shown_in_the_docs_agrees():
    standalone = _docs_verifier()["verify_proof"]
    proof = make_proof()
    assert standalone(proof, public_key_b64())
    for mutate in (
        _recanonical,
        lambda p: p["chain"][0].update(digest=_flip(p["chain"][0]["digest"])),
        lambda p: p["checkpoint"].update(root=_flip(p["checkpoint"]["root"])),
        lambda p: p["merkle_path"][0].update(hash=_flip(p["merkle_path"][0]["hash"])),
    ):
        forged = _tampered(mutate)
        assert not standalone(forged, public_key_b64())
