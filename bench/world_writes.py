"""Two writers of a ``bench.world`` generator's ``Write`` records, without the HTTP API:
``write_via_store`` (the event store's ``append`` in system transactions, for tests) and
``write_via_copy`` (COPY with positions and hash chains computed here, for the
million-event benchmark)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import UUID

import asyncpg

from bench.world import ACTOR, Write
from domain.node import Node
from infra import directory
from infra.chain import Sha256Chain, canonical_event
from infra.event_codec import decode_json
from infra.event_store import AppendContext, EventStore, TxAppender


async def _directory(conn: asyncpg.Connection, w: Write, nodes: dict[UUID, Node]) -> None:
    assert w.directory is not None
    op = w.directory[0]
    node = nodes[w.stream_id]
    version = w.expected_version + len(w.events)
    if op == "insert":
        parent_id = w.directory[2]
        parent = await directory.find_by_id(conn, parent_id) if parent_id else None
        await directory.insert(
            conn,
            node_id=node.id,
            root_id=w.root_id,
            code=node.code,
            name=node.name,
            kind=node.kind.value,
            parent=parent,
        )
    elif op == "rename":
        event = decode_json(w.events[-1].data)
        await directory.rename(conn, node.id, event["name"], version)
    elif op == "move":
        event = decode_json(w.events[-1].data)
        found = await directory.find_by_id(conn, node.id)
        new_parent = await directory.find_by_id(conn, w.directory[3])
        assert found is not None and new_parent is not None
        await directory.move(
            conn, found, new_parent, event["new_code"], version, w.events[-1].occurred_at
        )


async def write_via_store(
    pool: asyncpg.Pool, writes: Sequence[Write], nodes: dict[UUID, Node], *, per_tx: int = 100
) -> int:
    """Append through ``EventStore.append`` in system transactions; returns the last position."""
    store = EventStore()
    context = AppendContext(actor=ACTOR)
    last = 0
    async with pool.acquire() as conn:
        for start in range(0, len(writes), per_tx):
            async with conn.transaction():
                tx = TxAppender(conn)
                for w in writes[start : start + per_tx]:
                    if w.directory is not None:
                        await _directory(conn, w, nodes)
                    result = await store.append(
                        tx,
                        root_id=w.root_id,
                        node_id=w.node_id,
                        stream_id=w.stream_id,
                        stream_type=w.stream_type,
                        expected_version=w.expected_version,
                        events=w.events,
                        context=context,
                    )
                    last = result.position
    return last


COPY_COLUMNS = (
    "position",
    "root_id",
    "node_id",
    "node_seq",
    "prev_hash",
    "hash",
    "stream_id",
    "stream_type",
    "version",
    "event_id",
    "type",
    "schema_version",
    "data",
    "occurred_at",
    "recorded_at",
    "actor",
    "correlation_id",
    "causation_id",
    "idempotency_key",
    "canonical",
)


async def write_via_copy(
    conn: asyncpg.Connection,
    writes: Sequence[Write],
    nodes: dict[UUID, Node],
    *,
    per_tx: int = 50_000,
) -> int:
    """Bulk load: COPY into ``events`` with positions from each transaction's id and the
    per-node hash chains computed here exactly as ``civic_append`` would, so the chains
    verify, and each event's canonical bytes stored as the store stores them. ``conn`` must
    be a plain asyncpg connection (jsonb with its default codec). Returns the last position."""
    chain = Sha256Chain()
    heads: dict[UUID, tuple[int, bytes]] = {}
    last = 0
    i = 0
    while i < len(writes):
        async with conn.transaction():
            xid = int(await conn.fetchval("SELECT pg_current_xact_id()::text::bigint"))
            recorded_at = datetime.now(UTC)
            records = []
            index = 0
            touched: set[UUID] = set()
            while i < len(writes) and index + len(writes[i].events) <= min(per_tx, 65535):
                w = writes[i]
                i += 1
                if w.directory is not None:
                    await _directory(conn, w, nodes)
                head = heads.get(w.node_id)
                if head is None:
                    row = await conn.fetchrow(
                        "SELECT seq, hash FROM chain_heads WHERE node_id = $1", w.node_id
                    )
                    head = (row["seq"], bytes(row["hash"])) if row else (0, bytes(32))
                seq, prev = head
                for offset, e in enumerate(w.events, start=1):
                    position = (xid << 16) + index
                    index += 1
                    version = w.expected_version + offset
                    canonical = canonical_event(
                        root_id=w.root_id,
                        node_id=w.node_id,
                        stream_id=w.stream_id,
                        stream_type=w.stream_type,
                        version=version,
                        event_id=e.event_id,
                        type=e.type,
                        schema_version=e.schema_version,
                        data=decode_json(e.data),
                        occurred_at=e.occurred_at,
                        recorded_at=recorded_at,
                        actor=ACTOR,
                        correlation_id=None,
                        causation_id=None,
                        idempotency_key=None,
                    )
                    digest = chain.digest(canonical)
                    seq += 1
                    link = hashlib.sha256(
                        prev
                        + seq.to_bytes(8, "big", signed=True)
                        + position.to_bytes(8, "big", signed=True)
                        + digest
                    ).digest()
                    records.append(
                        (
                            position,
                            w.root_id,
                            w.node_id,
                            seq,
                            prev,
                            link,
                            w.stream_id,
                            w.stream_type,
                            version,
                            e.event_id,
                            e.type,
                            e.schema_version,
                            e.data.decode(),
                            e.occurred_at,
                            recorded_at,
                            ACTOR,
                            None,
                            None,
                            None,
                            canonical,
                        )
                    )
                    prev = link
                    last = position
                heads[w.node_id] = (seq, prev)
                touched.add(w.node_id)
            await conn.copy_records_to_table("events", records=records, columns=COPY_COLUMNS)
            root = writes[0].root_id
            await conn.executemany(
                "INSERT INTO chain_heads (node_id, root_id, seq, hash) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (node_id) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash",
                [(n, root, heads[n][0], heads[n][1]) for n in touched],
            )
    return last
