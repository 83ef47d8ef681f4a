"""Anchor 1: what PostgreSQL itself takes through asyncpg on an event-shaped table.

No event-store logic at all: no version check beyond the unique constraint, no hashing, no
outbox. Each run starts from an empty table; writers use distinct streams (no conflicts), each
appending the next versions of its own 50 streams.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg

from bench.cpu import CpuWindow
from bench.payload import EVENT_TYPE, PAYLOAD_JSON
from bench.registry import Context, benchmark, group_fixture
from bench.timing import async_rate

GROUP = "raw"
STREAMS_PER_WORKER = 50

DDL = """
CREATE TABLE IF NOT EXISTS events (
    position  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id uuid   NOT NULL,
    version   int    NOT NULL,
    type      text   NOT NULL,
    data      jsonb  NOT NULL,
    UNIQUE (stream_id, version)
)
"""
INSERT_ONE = (
    "INSERT INTO events (stream_id, version, type, data) VALUES ($1, $2, $3, $4) RETURNING position"
)
INSERT_UNNEST = (
    "INSERT INTO events (stream_id, version, type, data) "
    "SELECT * FROM unnest($1::uuid[], $2::int[], $3::text[], $4::jsonb[])"
)


@group_fixture(GROUP)
async def _schema(ctx: Context) -> AsyncIterator[None]:
    conn = await ctx.connect()
    try:
        await conn.execute(DDL)
    finally:
        await conn.close()
    yield


async def _fresh_table(conn: asyncpg.Connection) -> None:
    await conn.execute("TRUNCATE events RESTART IDENTITY")


def _streams(workers: int) -> list[list[uuid.UUID]]:
    return [[uuid.uuid4() for _ in range(STREAMS_PER_WORKER)] for _ in range(workers)]


async def _one_row_per_tx(ctx: Context, connections: int) -> float:
    conns = [await ctx.connect() for _ in range(connections)]
    try:
        await _fresh_table(conns[0])
        streams = _streams(connections)

        async def op(w: int, i: int) -> int:
            stream = streams[w][i % STREAMS_PER_WORKER]
            await conns[w].fetchval(
                INSERT_ONE, stream, i // STREAMS_PER_WORKER, EVENT_TYPE, PAYLOAD_JSON
            )
            return 1

        window = CpuWindow({c.get_server_pid() for c in conns})
        rate = await async_rate(
            connections, op, duration=ctx.duration, warmup=ctx.warmup, window=window
        )
        window.report(ctx, rate.events)
        return rate.per_second
    finally:
        for c in conns:
            await c.close()


@benchmark("raw.insert_1row_1c", GROUP, "events/s")
async def insert_one_row_one_connection(ctx: Context) -> float:
    """One INSERT ... RETURNING position per transaction, 1 connection."""
    return await _one_row_per_tx(ctx, 1)


@benchmark("raw.insert_1row_8c", GROUP, "events/s")
async def insert_one_row_eight_connections(ctx: Context) -> float:
    """One INSERT ... RETURNING position per transaction, 8 concurrent connections."""
    return await _one_row_per_tx(ctx, 8)


async def _unnest(ctx: Context, connections: int, batch: int = 100) -> float:
    conns = [await ctx.connect() for _ in range(connections)]
    try:
        await _fresh_table(conns[0])
        streams = _streams(connections)
        types = [EVENT_TYPE] * batch
        datas = [PAYLOAD_JSON] * batch

        async def op(w: int, i: int) -> int:
            stream = streams[w][i % STREAMS_PER_WORKER]
            v0 = (i // STREAMS_PER_WORKER) * batch
            await conns[w].execute(
                INSERT_UNNEST, [stream] * batch, list(range(v0, v0 + batch)), types, datas
            )
            return batch

        window = CpuWindow({c.get_server_pid() for c in conns})
        rate = await async_rate(
            connections, op, duration=ctx.duration, warmup=ctx.warmup, window=window
        )
        window.report(ctx, rate.events)
        return rate.per_second
    finally:
        for c in conns:
            await c.close()


@benchmark("raw.unnest100_1c", GROUP, "events/s")
async def unnest_batches_one_connection(ctx: Context) -> float:
    """100 events of one stream per transaction via INSERT ... SELECT unnest(...), 1 connection."""
    return await _unnest(ctx, 1)


@benchmark("raw.unnest100_8c", GROUP, "events/s")
async def unnest_batches_eight_connections(ctx: Context) -> float:
    """100 events of one stream per transaction via unnest, 8 concurrent connections."""
    return await _unnest(ctx, 8)


@benchmark("raw.copy1000_1c", GROUP, "events/s")
async def copy_batches(ctx: Context, batch: int = 1000) -> float:
    """COPY (asyncpg copy_records_to_table) of 1,000 events (10 streams x 100) per call."""
    conn = await ctx.connect()
    try:
        await _fresh_table(conn)
        columns = ["stream_id", "version", "type", "data"]

        async def op(_w: int, _i: int) -> int:
            records = [
                (stream, v, EVENT_TYPE, PAYLOAD_JSON)
                for stream in (uuid.uuid4() for _ in range(batch // 100))
                for v in range(100)
            ]
            await conn.copy_records_to_table("events", records=records, columns=columns)
            return len(records)

        rate = await async_rate(1, op, duration=ctx.duration, warmup=ctx.warmup)
        return rate.per_second
    finally:
        await conn.close()
