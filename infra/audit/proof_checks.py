"""Offline checks of checkpoints and inclusion proofs: pure functions, no database, no server.

A *checkpoint* ``{node, at, root, heads, signature, public_key, algorithm, hash_algorithm}``
commits, with one signature, to the chain head of every node of a subtree at an instant:
``root`` is the Merkle root over ``heads`` (``infra.audit.merkle``), and ``signature`` signs the
canonical encoding of ``{"at": at, "node": node, "root": root}`` (JSON, keys sorted, no
whitespace, UTF-8).

An *inclusion proof* ties one event to a checkpoint:

1. ``event.canonical`` (base64) are the exact bytes its digest covers (``infra.chain``):
   ``digest = sha256(canonical)``;
2. ``event.hash = link(prev_hash, seq, position, digest)`` where
   ``link = sha256(prev || int8_be(seq) || int8_be(position) || digest)``;
3. ``chain`` lists every later event of the node up to the checkpoint's head (seq, position,
   digest): folding them onto ``event.hash`` with ``link`` gives ``head.hash``;
4. ``merkle_path`` leads from ``head``'s leaf to ``checkpoint.root``;
5. the checkpoint's signature verifies under its public key — which a client compares with
   the key it trusts (``GET /v1/audit/public-key``, fetched once and kept).
"""

from __future__ import annotations

import binascii
import hmac
from typing import Any

import msgspec

from infra.audit.merkle import Head, leaf_hash, merkle_root, root_from_path
from infra.audit.signing import unb64, verify_signature
from infra.chain import ChainHasher, Sha256Chain, Sm3Chain

_encoder = msgspec.json.Encoder(order="sorted")

#: chain/Merkle hash profiles a checkpoint may name.
HASHERS: dict[str, ChainHasher] = {"sha256": Sha256Chain(), "sm3": Sm3Chain()}


def checkpoint_message(node: str, at: str, root: str) -> bytes:
    """The bytes a checkpoint's signature covers."""
    return _encoder.encode({"at": at, "node": node, "root": root})


def checkpoint_problems(
    checkpoint: dict[str, Any], *, trusted_public_key: str | None = None
) -> dict[str, str]:
    """What is wrong with a checkpoint on its own: {"signature": why, "root": why}; empty if fine.

    ``trusted_public_key`` (base64 of the raw key): also require the checkpoint to be signed
    by that key, not just by the key it carries.
    """
    problems: dict[str, str] = {}
    try:
        public_key = unb64(checkpoint["public_key"])
        signature = unb64(checkpoint["signature"])
        message = checkpoint_message(checkpoint["node"], checkpoint["at"], checkpoint["root"])
        algorithm = str(checkpoint.get("algorithm", "ed25519"))
    except (KeyError, TypeError, ValueError, binascii.Error, msgspec.EncodeError) as exc:
        problems["signature"] = f"malformed checkpoint: {exc!r}"
    else:
        if trusted_public_key is not None and not hmac.compare_digest(
            public_key, unb64(trusted_public_key)
        ):
            problems["signature"] = "signed by a key other than the trusted one"
        elif not verify_signature(algorithm, public_key, message, signature):
            problems["signature"] = "the signature does not match node, at and root"
    hasher = HASHERS.get(str(checkpoint.get("hash_algorithm", "sha256")))
    try:
        if hasher is None:
            problems["root"] = f"unknown hash algorithm {checkpoint.get('hash_algorithm')!r}"
        elif merkle_root(checkpoint["heads"], hasher.digest).hex() != checkpoint["root"]:
            problems["root"] = "the Merkle root recomputed from the heads differs"
    except (KeyError, TypeError, ValueError, msgspec.EncodeError) as exc:
        problems["root"] = f"malformed heads: {exc!r}"
    return problems


def proof_problems(proof: dict[str, Any], *, trusted_public_key: str | None = None) -> list[str]:
    """Every reason the proof does not hold; an empty list when it does."""
    try:
        return _proof_problems(proof, trusted_public_key)
    except (
        KeyError,
        TypeError,
        ValueError,
        IndexError,
        binascii.Error,
        msgspec.DecodeError,
    ) as exc:
        return [f"malformed proof: {exc!r}"]


def _proof_problems(proof: dict[str, Any], trusted_public_key: str | None) -> list[str]:
    problems: list[str] = []
    checkpoint = proof["checkpoint"]
    hasher = HASHERS.get(str(checkpoint.get("hash_algorithm", "sha256")))
    if hasher is None:
        return [f"unknown hash algorithm {checkpoint.get('hash_algorithm')!r}"]
    event = proof["event"]

    # 1. the content is what the digest covers, and it is the event the proof names
    canonical = unb64(event["canonical"])
    content = msgspec.json.decode(canonical)
    if hasher.digest(canonical).hex() != event["digest"]:
        problems.append("the event's canonical bytes do not hash to its digest")
    if content.get("event_id") != event["event_id"] or content.get("node_id") != event["node_id"]:
        problems.append("the canonical bytes describe another event")

    # 2-3. the event's link, then every later link of its node, up to the head
    seq = int(event["seq"])
    acc = hasher.link(
        bytes.fromhex(event["prev_hash"]),
        seq,
        int(event["position"]),
        bytes.fromhex(event["digest"]),
    )
    if acc.hex() != event["hash"]:
        problems.append(f"the event's hash does not link at seq {seq}")
    for step in proof["chain"]:
        if int(step["seq"]) != seq + 1:
            problems.append(f"the chain jumps from seq {seq} to {step['seq']}")
            break
        seq += 1
        acc = hasher.link(acc, seq, int(step["position"]), bytes.fromhex(step["digest"]))
    head = proof["head"]
    if head["node_id"] != event["node_id"] or int(head["seq"]) != seq or acc.hex() != head["hash"]:
        problems.append(f"the chain does not reach the head {head['seq']} of the event's node")

    # 4. the head is a leaf of the checkpoint's Merkle tree
    index = int(proof["leaf_index"])
    if Head(**checkpoint["heads"][index]) != Head(**head):
        problems.append("the head is not the checkpoint's head at leaf_index")
    if (
        root_from_path(leaf_hash(head, hasher.digest), proof["merkle_path"], hasher.digest).hex()
        != (checkpoint["root"])
    ):
        problems.append("the Merkle path does not lead to the checkpoint's root")

    # 5. the checkpoint itself: signature and root over all heads
    problems.extend(checkpoint_problems(checkpoint, trusted_public_key=trusted_public_key).values())
    return problems


def verify_proof(proof: dict[str, Any], *, trusted_public_key: str | None = None) -> bool:
    """True when the event is included, unaltered, in the signed checkpoint."""
    return not proof_problems(proof, trusted_public_key=trusted_public_key)
