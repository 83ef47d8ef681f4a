"""The audit trail's SQL and logic: chain verification, checkpoints, inclusion proofs.

Every function runs inside the caller's transaction, normally a scoped read-only one, so
row-level security limits it to the caller's subtree whatever the query says.

Verification streams every chain of the subtree, node by node in path order and each in
``node_seq`` order, through one server-side cursor (memory stays bounded by the prefetch),
recomputes each event's digest from the stored columns and its link from the previous hash,
and compares both with what is stored and with the node's chain head. The heads are read by
the same statement as the events (one snapshot), so a concurrent append is never mistaken
for an inserted or missing event.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Sequence
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

import asyncpg
import msgspec

from civic_verify.hashing import by_name
from civic_verify.note import CheckpointBody, sign_note
from infra.audit_tree import (
    TreeUnavailable,
    cosignatures_of,
    inclusion_proof,
    leaf_of,
    tree_algorithm,
    tree_state,
)
from infra.chain import GENESIS, CanonicalText, ChainHasher, canonical_event, encode_canonical
from infra.directory import DirectoryNode
from infra.event_codec import decode_json
from infra.merkle import Head, Step, inclusion_path, leaf_hash, merkle_root
from infra.proofs import checkpoint_message
from infra.signing import Signer, b64, key_id, unb64

PREFETCH = 2000
#: the key name of checkpoint notes, and the first part of each root's origin
DEFAULT_LOG_NAME = "civic-ledger"
MAX_LISTED_FAILURES = 100
#: a proof lists every link from the event to the head; beyond this, ask for a nearer checkpoint.
MAX_PROOF_LINKS = 100_000

_decoder = msgspec.json.Decoder()  # as event_codec.decode_json, bound once for the hot loop

Reason = Literal["altered", "missing", "inserted", "broken_link"]

# ---------------------------------------------------------------------------------------
# SQL

SUBTREE_NODES = """
SELECT n.id, n.code FROM nodes n
WHERE n.root_id = $1 AND n.path >= $2 AND n.path < $3
ORDER BY n.path
"""

# The canonical columns of an event, in canonical_event's argument order after node_id.
_CANONICAL_COLUMNS = (
    "e.root_id, e.stream_id, e.stream_type, e.version, e.event_id, e.type, e.schema_version,"
    " e.data, e.occurred_at, e.recorded_at, e.actor, e.correlation_id, e.causation_id,"
    " e.idempotency_key"
)

# The canonical columns as the JSON text canonical_event writes for them, in CanonicalText's
# field order (node_id aside): PostgreSQL renders ids and instants, so no UUID or datetime
# object is built and formatted per event in Python. An infinite instant renders as NULL:
# no Python datetime stores as one, so such a row can only be a tampered one, and its digest
# then fails to match.
_INSTANT = "to_char(e.{} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"
_CANONICAL_TEXT_COLUMNS = (
    "e.actor, e.causation_id::text, e.correlation_id::text, e.data, e.event_id::text,"
    f" e.idempotency_key, {_INSTANT.format('occurred_at')}, {_INSTANT.format('recorded_at')},"
    " e.root_id::text, e.schema_version, e.stream_id::text, e.stream_type, e.type, e.version"
)

# Every chain of a list of nodes, node by node (ord) and oldest first, each node's head on
# every row of it, and one row of NULL events for a node without events. One statement: one
# snapshot for all chains, and row-level security's scope subplans are built once, not once
# per node (which cost as much as verifying ~300 events). The plan is a nested loop over the
# nodes with an index scan per node and an incremental sort on node_seq within each node.
SUBTREE_CHAINS = f"""
SELECT n.ord, h.seq, h.hash, e.node_seq, e.position, e.prev_hash, e.hash,
       {_CANONICAL_TEXT_COLUMNS}
FROM unnest($1::uuid[]) WITH ORDINALITY AS n(id, ord)
LEFT JOIN chain_heads h ON h.node_id = n.id
LEFT JOIN LATERAL (SELECT * FROM events WHERE events.node_id = n.id) e ON true
ORDER BY n.ord, e.node_seq
"""

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
       e.node_seq, e.position, e.prev_hash, e.hash, {_CANONICAL_COLUMNS}
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

EVENT_FOR_PROOF = f"""
SELECT e.node_id, n.code, n.path, e.node_seq, e.position, e.prev_hash, e.hash, {_CANONICAL_COLUMNS}
FROM events e JOIN nodes n ON n.id = e.node_id
WHERE e.root_id = $1 AND e.event_id = $2
"""

CHAIN_SEGMENT = f"""
SELECT e.node_seq, e.position, e.prev_hash, e.hash, {_CANONICAL_COLUMNS}
FROM events e
WHERE e.node_id = $1 AND e.node_seq > $2 AND e.node_seq <= $3
ORDER BY e.node_seq
"""

# ---------------------------------------------------------------------------------------
# Values


class Failure(msgspec.Struct):
    node: str  # the node's current code
    seq: int
    reason: Reason
    detail: str


class VerifyReport(msgspec.Struct):
    ok: bool
    nodes_checked: int
    events_checked: int
    first_failure: Failure | None
    #: the first failure of each failing node, in path order (at most 100).
    failures: list[Failure]
    elapsed_ms: int


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
    #: the root's transparency tree (``infra.audit_tree``) as built when the checkpoint was
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


class HeadCheck(msgspec.Struct):
    node_id: str
    code: str
    seq: int
    extends: bool
    detail: str


class ProofUnavailable(Exception):
    """The proof cannot be built as asked (the reason is for the client)."""


# ---------------------------------------------------------------------------------------
# Helpers


def subtree_range(node: DirectoryNode) -> tuple[str, str]:
    """The path range [lo, hi) of a node's subtree (see migration 0002)."""
    return node.path, node.path[:-1] + "0"


def iso(at: datetime) -> str:
    """How checkpoints write an instant (it is signed, so it must be reproducible)."""
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _canonical(node_id: UUID, r: asyncpg.Record, offset: int) -> bytes:
    """Canonical bytes of an event row whose canonical columns start at ``offset``."""
    return canonical_event(
        root_id=r[offset],
        node_id=node_id,
        stream_id=r[offset + 1],
        stream_type=r[offset + 2],
        version=r[offset + 3],
        event_id=r[offset + 4],
        type=r[offset + 5],
        schema_version=r[offset + 6],
        data=decode_json(r[offset + 7]),
        occurred_at=r[offset + 8],
        recorded_at=r[offset + 9],
        actor=r[offset + 10],
        correlation_id=r[offset + 11],
        causation_id=r[offset + 12],
        idempotency_key=r[offset + 13],
    )


async def _batches(
    conn: asyncpg.Connection, query: str, *args: Any, prefetch: int = PREFETCH
) -> AsyncGenerator[list[asyncpg.Record], None]:
    """The rows of ``query`` through a server-side cursor, ``prefetch`` at a time.

    The next batch is requested before this one is handed out, so PostgreSQL produces it
    while the caller hashes (about 20 % faster than asyncpg's own prefetching). Use inside
    ``aclosing``: on an early exit the request in flight is drained before the connection
    is used again.
    """
    cursor = await conn.cursor(query, *args)
    pending: asyncio.Future[list[asyncpg.Record]] | None = asyncio.ensure_future(
        cursor.fetch(prefetch)
    )
    try:
        while pending is not None:
            rows = await pending
            pending = None
            if len(rows) == prefetch:
                pending = asyncio.ensure_future(cursor.fetch(prefetch))
                await asyncio.sleep(0)  # let it send the request
            yield rows
    finally:
        if pending is not None:
            with contextlib.suppress(Exception):
                await pending


async def _rows(
    conn: asyncpg.Connection, query: str, *args: Any, prefetch: int = PREFETCH
) -> AsyncGenerator[asyncpg.Record, None]:
    """``_batches`` one row at a time (same ``aclosing`` rule)."""
    async with contextlib.aclosing(_batches(conn, query, *args, prefetch=prefetch)) as batches:
        async for rows in batches:
            for r in rows:
                yield r


# ---------------------------------------------------------------------------------------
# Verification


async def verify_subtree(
    conn: asyncpg.Connection, node: DirectoryNode, hasher: ChainHasher, *, prefetch: int = PREFETCH
) -> VerifyReport:
    """Recompute every chain of ``node``'s subtree; report the first failure of each chain."""
    started = time.perf_counter()
    lo, hi = subtree_range(node)
    nodes = await conn.fetch(SUBTREE_NODES, node.root_id, lo, hi)
    failures: list[Failure] = []
    events = 0
    digest, link, decode = hasher.digest, hasher.link, _decoder.decode

    # The chain being checked, in plain locals: the loop below runs once per event of the
    # subtree, so no checker object and no closure (its cell variables are slower to read).
    current = 0  # its ord (1-based index in ``nodes``); 0 before the first row
    code = ""
    node_text = ""
    head: tuple[int, bytes] | None = None
    expected = 1  # the next seq the chain must have
    prev = GENESIS  # the stored hash of the event before
    before_prev: bytes | None = None
    checked = 0
    failure: Failure | None = None

    ids = [n["id"] for n in nodes]
    async with contextlib.aclosing(_batches(conn, SUBTREE_CHAINS, ids, prefetch=prefetch)) as it:
        async for rows in it:
            for (
                ord_,
                head_seq,
                head_hash,
                seq,
                position,
                prev_hash,
                stored,
                actor,
                causation_id,
                correlation_id,
                data,
                event_id,
                idempotency_key,
                occurred_at,
                recorded_at,
                root_id,
                schema_version,
                stream_id,
                stream_type,
                type_,
                version,
            ) in rows:
                if ord_ != current:
                    if current:
                        events += checked
                        _close_chain(failures, failure, code, expected, prev, head)
                    current = ord_
                    code = nodes[ord_ - 1]["code"]
                    node_text = str(nodes[ord_ - 1]["id"])
                    head = None if head_seq is None else (head_seq, head_hash)
                    expected, prev, before_prev, checked, failure = 1, GENESIS, None, 0, None
                    if seq is None:  # a node without events
                        continue
                if failure is not None:  # only the first failure of a chain is reported
                    continue
                checked += 1
                if seq != expected:
                    failure = (
                        Failure(
                            code, expected, "missing", f"seq {expected} is absent; next is {seq}"
                        )
                        if seq > expected
                        else Failure(code, seq, "inserted", f"seq {seq} appears twice")
                    )
                elif head is None:
                    failure = Failure(
                        code, seq, "inserted", "events stored for a node without a chain head"
                    )
                elif seq > head[0]:
                    failure = Failure(
                        code, seq, "inserted", f"beyond the chain head (seq {head[0]})"
                    )
                elif prev_hash != prev:
                    failure = (
                        Failure(
                            code, seq, "inserted", "links to the predecessor of the event before it"
                        )
                        if prev_hash == before_prev
                        else Failure(
                            code,
                            seq,
                            "broken_link",
                            "prev_hash is not the hash of the event before it",
                        )
                    )
                elif (
                    link(
                        prev_hash,
                        seq,
                        position,
                        digest(
                            encode_canonical(
                                CanonicalText(
                                    actor,
                                    causation_id,
                                    correlation_id,
                                    decode(data),
                                    event_id,
                                    idempotency_key,
                                    node_text,
                                    occurred_at,
                                    recorded_at,
                                    root_id,
                                    schema_version,
                                    stream_id,
                                    stream_type,
                                    type_,
                                    version,
                                )
                            )
                        ),
                    )
                    != stored
                ):
                    failure = Failure(
                        code, seq, "altered", "the content no longer matches the stored hash"
                    )
                else:
                    before_prev, prev = prev, stored
                    expected += 1
    if current:
        events += checked
        _close_chain(failures, failure, code, expected, prev, head)
    return VerifyReport(
        ok=not failures,
        nodes_checked=len(nodes),
        events_checked=events,
        first_failure=failures[0] if failures else None,
        failures=failures,
        elapsed_ms=round((time.perf_counter() - started) * 1000),
    )


def _close_chain(
    failures: list[Failure],
    failure: Failure | None,
    code: str,
    expected: int,
    prev: bytes,
    head: tuple[int, bytes] | None,
) -> None:
    """List the chain's first failure, or the failure of its end against its head."""
    found = failure if failure is not None else _end_of_chain(code, expected, prev, head)
    if found is not None and len(failures) < MAX_LISTED_FAILURES:
        failures.append(found)


def _end_of_chain(
    code: str, expected: int, prev: bytes, head: tuple[int, bytes] | None
) -> Failure | None:
    """The check of a chain whose events all verified against its head."""
    last = expected - 1
    if head is None:  # no head and no events (events without a head fail at the first)
        head = (0, GENESIS)
    if last < head[0]:
        return Failure(
            code,
            last + 1,
            "missing",
            f"the chain head is at seq {head[0]}, the events end at {last}",
        )
    if head[1] != prev:
        return Failure(
            code, last, "broken_link", "the chain head's hash is not the last event's hash"
        )
    return None


# ---------------------------------------------------------------------------------------
# Checkpoints


async def subtree_heads(conn: asyncpg.Connection, node: DirectoryNode) -> list[Head]:
    lo, hi = subtree_range(node)
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
    lo, hi = subtree_range(node)
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
            bytes(r["prev_hash"]), h.seq, r["position"], hasher.digest(_canonical(node_id, r, 6))
        ) != bytes(r["hash"]):
            checks.append(check(False, f"the event at seq {h.seq} was altered"))
        else:
            checks.append(check(True, "still on the chain"))
    return checks


# ---------------------------------------------------------------------------------------
# Inclusion proofs


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
    canonical = _canonical(node_id, r, 7)
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
    segment = _rows(conn, CHAIN_SEGMENT, found.node_id, found.seq, head.seq)
    async with contextlib.aclosing(segment) as rows:
        async for r in rows:
            chain.append(
                Link(
                    seq=r[0],
                    position=r[1],
                    digest=hasher.digest(_canonical(found.node_id, r, 4)).hex(),
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


# ---------------------------------------------------------------------------------------
# Tree notes and cosignatures

LATEST_TREE_CHECKPOINT = f"""
SELECT {_CHECKPOINT_COLUMNS} FROM audit_checkpoints
WHERE root_id = $1 AND note IS NOT NULL AND tree_size <= $2
  AND at <= coalesce($3, 'infinity'::timestamptz)
ORDER BY at DESC, id DESC
LIMIT 1
"""


async def latest_tree_checkpoint(
    conn: asyncpg.Connection, root_id: UUID, max_size: int, at: datetime | None = None
) -> Checkpoint | None:
    """The newest stored checkpoint with a tree note, at most ``max_size`` leaves (and taken
    at or before ``at``)."""
    r = await conn.fetchrow(LATEST_TREE_CHECKPOINT, root_id, max_size, at)
    return _checkpoint(r) if r else None


async def with_cosignatures(
    conn: asyncpg.Connection, root_id: UUID, checkpoints: list[Checkpoint]
) -> list[Checkpoint]:
    """The checkpoints with the witness cosignatures of their tree (lines appended to the
    note, as C2SP cosigned checkpoints are distributed)."""
    sizes = sorted({c.tree_size for c in checkpoints if c.tree_size is not None and c.note})
    if not sizes:
        return checkpoints
    found: dict[tuple[int, str], list[Cosignature]] = {}
    for c in await cosignatures_of(conn, root_id, sizes):
        found.setdefault((c.tree_size, c.tree_root.hex()), []).append(
            Cosignature(
                witness=c.witness, public_key=b64(c.public_key), time=c.signed_at, line=c.line
            )
        )
    out: list[Checkpoint] = []
    for cp in checkpoints:
        cos = found.get((cp.tree_size or 0, cp.tree_root or ""), [])
        if cos and cp.note:
            cp = msgspec.structs.replace(
                cp, note=cp.note + "".join(c.line for c in cos), cosignatures=cos
            )
        out.append(cp)
    return out


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
