"""Inclusion proofs: the links from one event to its node's head in a checkpoint, the Merkle
path from that head to the checkpoint's root, and the event's leaf in the root's tree.

``infra.audit.proof_checks`` checks what this builds, offline.
"""

from __future__ import annotations

import contextlib
from uuid import UUID

import asyncpg
import msgspec

from civic_verify.hashing import by_name
from infra.audit.checkpoints import Checkpoint
from infra.audit.event_rows import CANONICAL_COLUMNS, canonical_of_row, rows
from infra.audit.merkle import Head, Step, inclusion_path, leaf_hash
from infra.audit.signing import b64
from infra.audit.tree import TreeUnavailable, inclusion_proof, leaf_of, tree_algorithm
from infra.chain import ChainHasher

#: a proof lists every link from the event to the head; beyond this, ask for a nearer checkpoint.
MAX_PROOF_LINKS = 100_000

EVENT_FOR_PROOF = f"""
SELECT e.node_id, n.code, n.path, e.node_seq, e.position, e.prev_hash, e.hash, {CANONICAL_COLUMNS}
FROM events e JOIN nodes n ON n.id = e.node_id
WHERE e.root_id = $1 AND e.event_id = $2
"""

CHAIN_SEGMENT = f"""
SELECT e.node_seq, e.position, e.prev_hash, e.hash, {CANONICAL_COLUMNS}
FROM events e
WHERE e.node_id = $1 AND e.node_seq > $2 AND e.node_seq <= $3
ORDER BY e.node_seq
"""


class Link(msgspec.Struct):
    seq: int
    position: int
    digest: str
    hash: str


class ProofEvent(msgspec.Struct):
    event_id: str
    node_id: str
    code: str
    seq: int
    position: int
    prev_hash: str
    digest: str
    hash: str
    canonical: str  # base64 of the exact bytes the digest covers


class TreeInclusion(msgspec.Struct):
    """The event's leaf in the root's transparency tree, proven against the checkpoint's
    note (RFC 9162 inclusion proof; leaf = H(0x00 || event hash))."""

    origin: str
    hash_algorithm: str
    leaf_index: int
    tree_size: int
    leaf_hash: str
    path: list[str]
    note: str


class Proof(msgspec.Struct):
    event: ProofEvent
    chain: list[Link]
    head: Head
    leaf_index: int
    merkle_path: list[Step]
    checkpoint: Checkpoint
    #: null when the checkpoint's tree does not reach the event yet (the tree is built
    #: just after commit) or predates the tree
    tree: TreeInclusion | None = None


class ProofUnavailable(Exception):
    """The proof cannot be built as asked (the reason is for the client)."""


class EventForProof(msgspec.Struct):
    node_id: UUID
    code: str
    path: str
    seq: int
    event: ProofEvent


async def find_event(
    conn: asyncpg.Connection, root_id: UUID, event_id: UUID, hasher: ChainHasher
) -> EventForProof | None:
    r = await conn.fetchrow(EVENT_FOR_PROOF, root_id, event_id)
    if r is None:
        return None
    node_id: UUID = r["node_id"]
    canonical = canonical_of_row(node_id, r, 7)
    return EventForProof(
        node_id=node_id,
        code=r["code"],
        path=r["path"],
        seq=r["node_seq"],
        event=ProofEvent(
            event_id=str(event_id),
            node_id=str(node_id),
            code=r["code"],
            seq=r["node_seq"],
            position=r["position"],
            prev_hash=bytes(r["prev_hash"]).hex(),
            digest=hasher.digest(canonical).hex(),
            hash=bytes(r["hash"]).hex(),
            canonical=b64(canonical),
        ),
    )


async def build_proof(
    conn: asyncpg.Connection, found: EventForProof, checkpoint: Checkpoint, hasher: ChainHasher
) -> Proof:
    """The links from the event to its node's head in ``checkpoint``, and the Merkle path."""
    node_key = str(found.node_id)
    index = next((i for i, h in enumerate(checkpoint.heads) if h.node_id == node_key), None)
    if index is None:
        raise ProofUnavailable("the checkpoint does not cover the event's node")
    head = checkpoint.heads[index]
    if head.seq < found.seq:
        raise ProofUnavailable(
            f"the checkpoint's head of the event's node is seq {head.seq}, before the event"
        )
    if head.seq - found.seq > MAX_PROOF_LINKS:
        raise ProofUnavailable(
            f"{head.seq - found.seq} events follow this one before the checkpoint's head; "
            f"choose an earlier checkpoint (at most {MAX_PROOF_LINKS} links)"
        )
    chain: list[Link] = []
    segment = rows(conn, CHAIN_SEGMENT, found.node_id, found.seq, head.seq)
    async with contextlib.aclosing(segment) as links:
        async for r in links:
            chain.append(
                Link(
                    seq=r[0],
                    position=r[1],
                    digest=hasher.digest(canonical_of_row(found.node_id, r, 4)).hex(),
                    hash=bytes(r[3]).hex(),
                )
            )
    leaves = [leaf_hash(h, hasher.digest) for h in checkpoint.heads]
    return Proof(
        event=found.event,
        chain=chain,
        head=head,
        leaf_index=index,
        merkle_path=inclusion_path(leaves, index, hasher.digest),
        checkpoint=checkpoint,
    )


async def tree_inclusion(
    conn: asyncpg.Connection, root_id: UUID, found: EventForProof, checkpoint: Checkpoint
) -> TreeInclusion | None:
    """The event's inclusion in the checkpoint's tree, when the tree holds it."""
    size, note = checkpoint.tree_size, checkpoint.note
    if size is None or note is None or checkpoint.origin is None:
        return None
    leaf = await leaf_of(conn, root_id, found.event.position)
    if leaf is None or leaf[0] >= size:
        return None
    algorithm = await tree_algorithm(conn, root_id)
    if algorithm is None:
        return None
    try:
        path = await inclusion_proof(conn, root_id, by_name(algorithm), leaf[0], size)
    except TreeUnavailable:
        return None
    return TreeInclusion(
        origin=checkpoint.origin,
        hash_algorithm=algorithm,
        leaf_index=leaf[0],
        tree_size=size,
        leaf_hash=leaf[1].hex(),
        path=[p.hex() for p in path],
        note=note,
    )
