"""Signed checkpoints: the subtree's heads and their Merkle root (the *spine*) signed, with the
root's transparency tree in a C2SP signed note; stored, listed, and checked against the
chains as they stand now."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import UUID

import asyncpg
import msgspec

from civic_verify.note import CheckpointBody, sign_note
from infra.audit.event_rows import CANONICAL_COLUMNS, canonical_of_row
from infra.audit.merkle import Head, merkle_root
from infra.audit.proof_checks import checkpoint_message
from infra.audit.signing import Signer, b64, key_id, unb64
from infra.audit.tree import tree_state
from infra.chain import GENESIS, ChainHasher
from infra.directory import DirectoryNode

#: the key name of checkpoint notes, and the first part of each root's origin
DEFAULT_LOG_NAME = "civic-ledger"

# Heads of a subtree in path order, in one statement: one instant for the whole subtree.
SUBTREE_HEADS = """
SELECT n.id, n.code, coalesce(h.seq, 0) AS seq, coalesce(h.hash, $4::bytea) AS hash
FROM nodes n LEFT JOIN chain_heads h ON h.node_id = n.id
WHERE n.root_id = $1 AND n.path >= $2 AND n.path < $3
ORDER BY n.path
"""

# For each (node, seq) of a checkpoint: the stored event there now, and whether it is ours.
HEADS_NOW = f"""
SELECT c.ord, c.node_id IN (SELECT civic_scope_nodes()) AS in_scope,
       e.node_seq, e.position, e.prev_hash, e.hash, {CANONICAL_COLUMNS}
FROM unnest($1::uuid[], $2::bigint[]) WITH ORDINALITY AS c(node_id, seq, ord)
LEFT JOIN events e ON e.node_id = c.node_id AND e.node_seq = c.seq
ORDER BY c.ord
"""

_CHECKPOINT_COLUMNS = (
    "id, node_id, code, at, root, heads, signature, algorithm, hash_algorithm, public_key,"
    " tree_size, tree_root, note"
)

INSERT_CHECKPOINT = f"""
INSERT INTO audit_checkpoints (root_id, node_id, code, at, root, heads, signature, algorithm,
                               hash_algorithm, public_key, tree_size, tree_root, note)
VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $11, $12, $13)
RETURNING {_CHECKPOINT_COLUMNS}
"""

LIST_CHECKPOINTS = f"""
SELECT {_CHECKPOINT_COLUMNS} FROM audit_checkpoints c
WHERE c.root_id = $1
  AND c.node_id IN (SELECT id FROM nodes WHERE root_id = $1 AND path >= $2 AND path < $3)
  AND c.at >= coalesce($4, '-infinity'::timestamptz)
  AND c.at <  coalesce($5, 'infinity'::timestamptz)
  AND (c.at, c.id) < (coalesce($6, 'infinity'::timestamptz), coalesce($7, 9223372036854775807))
ORDER BY c.at DESC, c.id DESC
LIMIT $8
"""

CHECKPOINT_BY_ID = (
    f"SELECT {_CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE root_id = $1 AND id = $2"
)

LATEST_CHECKPOINT_OF = f"""
SELECT {_CHECKPOINT_COLUMNS} FROM audit_checkpoints
WHERE root_id = $1 AND node_id = ANY($2::uuid[])
ORDER BY at DESC, id DESC
LIMIT 1
"""

LATEST_TREE_CHECKPOINT = f"""
SELECT {_CHECKPOINT_COLUMNS} FROM audit_checkpoints
WHERE root_id = $1 AND note IS NOT NULL AND tree_size <= $2
  AND at <= coalesce($3, 'infinity'::timestamptz)
ORDER BY at DESC, id DESC
LIMIT 1
"""


class Checkpoint(msgspec.Struct, kw_only=True):
    """A signed checkpoint: the *spine* (``heads``, their Merkle root, one signature over
    {node, at, root}) and the root's transparency tree in a C2SP signed note."""

    node: str
    at: str
    root: str
    heads: list[Head]
    signature: str
    public_key: str
    algorithm: str
    hash_algorithm: str = "sha256"
    key_id: str = ""
    #: set when the checkpoint is stored (periodic checkpoints), null for a fresh one.
    id: int | None = None
    #: the root's transparency tree (``infra.audit.tree``) as built when the checkpoint was
    #: taken, and its C2SP signed note (tlog-checkpoint; witness cosignature lines follow
    #: the server's when served). Null on checkpoints stored before the tree existed.
    origin: str | None = None
    tree_size: int | None = None
    tree_root: str | None = None  # lowercase hex
    note: str | None = None
    cosignatures: list[Cosignature] = msgspec.field(default_factory=list)


class Cosignature(msgspec.Struct):
    """A witness's cosignature of a root's tree at a size (C2SP tlog-cosignature v1)."""

    witness: str
    public_key: str  # base64, raw Ed25519
    time: int  # unix seconds, as signed
    line: str  # the signature line appended to the note


class HeadCheck(msgspec.Struct):
    node_id: str
    code: str
    seq: int
    extends: bool
    detail: str


def iso(at: datetime) -> str:
    """How checkpoints write an instant (it is signed, so it must be reproducible)."""
    return at.astimezone(UTC).isoformat(timespec="microseconds")


async def subtree_heads(conn: asyncpg.Connection, node: DirectoryNode) -> list[Head]:
    lo, hi = node.bounds
    rows = await conn.fetch(SUBTREE_HEADS, node.root_id, lo, hi, GENESIS)
    return [
        Head(node_id=str(r["id"]), code=r["code"], seq=r["seq"], hash=bytes(r["hash"]).hex())
        for r in rows
    ]


async def take_checkpoint(
    conn: asyncpg.Connection,
    node: DirectoryNode,
    at: datetime,
    signer: Signer,
    hasher: ChainHasher,
    *,
    log_name: str = DEFAULT_LOG_NAME,
) -> Checkpoint:
    """Read the root's tree, then the subtree's heads (one snapshot each, the heads never
    behind the tree), build the spine's Merkle root, sign both."""
    tree = await tree_state(conn, node.root_id, hasher.name)
    heads = await subtree_heads(conn, node)
    checkpoint = sign_checkpoint(node.code, iso(at), heads, signer, hasher)
    return with_note(checkpoint, signer, log_name, node.root_id, tree.size, tree.root)


def origin_of(log_name: str, root_id: UUID) -> str:
    """A root's log identity in notes: stable for ever (a root's code may be re-issued)."""
    return f"{log_name}/{root_id}"


def with_note(
    checkpoint: Checkpoint,
    signer: Signer,
    log_name: str,
    root_id: UUID,
    size: int,
    root: bytes,
) -> Checkpoint:
    """``checkpoint`` with the tree's C2SP signed note (Ed25519 signers only: the note
    format has no other algorithm that existing tooling reads)."""
    origin = origin_of(log_name, root_id)
    note = None
    if signer.algorithm == "ed25519":
        body = CheckpointBody(origin, size, root).text()
        note = sign_note(body, log_name, signer.public_key_raw(), signer.sign)
    return msgspec.structs.replace(
        checkpoint, origin=origin, tree_size=size, tree_root=root.hex(), note=note
    )


def sign_checkpoint(
    code: str, at: str, heads: list[Head], signer: Signer, hasher: ChainHasher
) -> Checkpoint:
    root = merkle_root(heads, hasher.digest).hex()
    public = signer.public_key_raw()
    return Checkpoint(
        node=code,
        at=at,
        root=root,
        heads=heads,
        signature=b64(signer.sign(checkpoint_message(code, at, root))),
        public_key=b64(public),
        algorithm=signer.algorithm,
        hash_algorithm=hasher.name,
        key_id=key_id(public),
    )


def _checkpoint(r: asyncpg.Record) -> Checkpoint:
    public = bytes(r["public_key"])
    return Checkpoint(
        id=r["id"],
        node=r["code"],
        at=iso(r["at"]),
        root=bytes(r["root"]).hex(),
        heads=msgspec.json.decode(r["heads"], type=list[Head]),
        signature=b64(bytes(r["signature"])),
        public_key=b64(public),
        algorithm=r["algorithm"],
        hash_algorithm=r["hash_algorithm"],
        key_id=key_id(public),
        origin=_origin_of_note(r["note"]),
        tree_size=r["tree_size"],
        tree_root=None if r["tree_root"] is None else bytes(r["tree_root"]).hex(),
        note=r["note"],
    )


def _origin_of_note(note: str | None) -> str | None:
    return None if note is None else note.split("\n", 1)[0]


async def store_checkpoint(
    conn: asyncpg.Connection, root_id: UUID, node_id: UUID, checkpoint: Checkpoint
) -> Checkpoint:
    row = await conn.fetchrow(
        INSERT_CHECKPOINT,
        root_id,
        node_id,
        checkpoint.node,
        datetime.fromisoformat(checkpoint.at),
        bytes.fromhex(checkpoint.root),
        msgspec.json.encode(checkpoint.heads).decode(),
        unb64(checkpoint.signature),
        checkpoint.algorithm,
        checkpoint.hash_algorithm,
        unb64(checkpoint.public_key),
        checkpoint.tree_size,
        None if checkpoint.tree_root is None else bytes.fromhex(checkpoint.tree_root),
        checkpoint.note,
    )
    return _checkpoint(row)


async def list_checkpoints(
    conn: asyncpg.Connection,
    node: DirectoryNode,
    *,
    since: datetime | None,
    until: datetime | None,
    before: tuple[datetime, int] | None,
    limit: int,
) -> list[Checkpoint]:
    """Stored checkpoints of nodes in ``node``'s subtree, newest first."""
    lo, hi = node.bounds
    rows = await conn.fetch(
        LIST_CHECKPOINTS,
        node.root_id,
        lo,
        hi,
        since,
        until,
        before[0] if before else None,
        before[1] if before else None,
        limit,
    )
    return [_checkpoint(r) for r in rows]


async def heads_extend(
    conn: asyncpg.Connection, heads: Sequence[Head], hasher: ChainHasher
) -> list[HeadCheck]:
    """For each head: is the stored event at (node, seq) still the one with that hash?

    The event's own link is recomputed from its stored content too, so a rewrite that kept
    the old hash column is caught here as well; ``/audit/verify`` checks the links before it.
    """
    ids: list[UUID | None] = []
    for h in heads:
        try:
            ids.append(UUID(h.node_id))
        except ValueError:
            ids.append(None)
    rows = await conn.fetch(HEADS_NOW, ids, [h.seq for h in heads])
    checks: list[HeadCheck] = []
    for h, node_id, r in zip(heads, ids, rows, strict=True):

        def check(ok: bool, detail: str, h: Head = h) -> HeadCheck:
            return HeadCheck(node_id=h.node_id, code=h.code, seq=h.seq, extends=ok, detail=detail)

        if node_id is None:
            checks.append(check(False, "not a node id"))
        elif not r["in_scope"]:
            checks.append(check(False, "the node is not in your scope"))
        elif h.seq == 0:
            checks.append(check(h.hash == GENESIS.hex(), "an empty chain"))
        elif r["node_seq"] is None:
            checks.append(check(False, f"no event at seq {h.seq} any more"))
        elif bytes(r["hash"]).hex() != h.hash:
            checks.append(check(False, f"the event at seq {h.seq} now has another hash"))
        elif hasher.link(
            bytes(r["prev_hash"]),
            h.seq,
            r["position"],
            hasher.digest(canonical_of_row(node_id, r, 6)),
        ) != bytes(r["hash"]):
            checks.append(check(False, f"the event at seq {h.seq} was altered"))
        else:
            checks.append(check(True, "still on the chain"))
    return checks


async def stored_checkpoint(
    conn: asyncpg.Connection, root_id: UUID, checkpoint_id: int
) -> Checkpoint | None:
    r = await conn.fetchrow(CHECKPOINT_BY_ID, root_id, checkpoint_id)
    return _checkpoint(r) if r else None


async def latest_checkpoint_covering(
    conn: asyncpg.Connection, root_id: UUID, path: str
) -> Checkpoint | None:
    """The newest stored checkpoint taken at the node of ``path`` or one of its ancestors."""
    ancestors = [UUID(p) for p in path.strip("/").split("/")]
    r = await conn.fetchrow(LATEST_CHECKPOINT_OF, root_id, ancestors)
    return _checkpoint(r) if r else None


async def latest_tree_checkpoint(
    conn: asyncpg.Connection, root_id: UUID, max_size: int, at: datetime | None = None
) -> Checkpoint | None:
    """The newest stored checkpoint with a tree note, at most ``max_size`` leaves (and taken
    at or before ``at``)."""
    r = await conn.fetchrow(LATEST_TREE_CHECKPOINT, root_id, max_size, at)
    return _checkpoint(r) if r else None
