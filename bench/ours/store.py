"""Our appends, measured the way a command writes: everything on.

Each operation is one command's write exactly as ``run_command`` sends it when the command
decided on cached state, on a pool made the way the API makes its request pool
(``create_pool(..., session_state=False)``) and with the API's scope cache: one autocommit
call of ``civic_command_append`` (``EventStore.append_statement``, migration 0036) that
switches to the runtime role and enters the community's scope (row-level security on),
checks the closed subtree, appends (optimistic concurrency on the expected version, the
node's hash-chain link, idempotency on the event id) and stores the request's
Idempotency-Key with its response. Eight writers on distinct streams spread over 300
community nodes of one county. (A scope not yet cached is entered once by a scoped
transaction, as the API's first request in a scope does.)
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg

from bench.payload import EVENT_TYPE, event_json
from bench.registry import Context, benchmark, group_fixture
from bench.timing import async_rate
from infra import migrator
from infra.database import ScopeCache, create_pool, scoped_transaction
from infra.event_codec import NewEvent
from infra.event_store import AppendContext, EventStore, IdempotencyRecord, provisional_base

GROUP = "store"
WRITERS = 8
STREETS, COMMUNITIES_PER_STREET = 20, 15
STREAMS_PER_WRITER = 50


async def _tree(conn: asyncpg.Connection) -> list[str]:
    """A county with 20 streets x 15 communities, written straight into the directory."""
    county_id = uuid.uuid4()
    county_code = f"{uuid.uuid4().int % 900000 + 100000:06d}000000"
    rows: list[tuple[uuid.UUID, uuid.UUID, str, str, str, uuid.UUID | None, str, int]] = [
        (county_id, county_id, county_code, "县", "county", None, f"/{county_id}/", 1)
    ]
    codes: list[str] = []
    for s in range(1, STREETS + 1):
        sid = uuid.uuid4()
        scode = f"{county_code[:6]}{s:03d}000"
        spath = f"/{county_id}/{sid}/"
        rows.append((sid, county_id, scode, f"街道{s}", "street", county_id, spath, 2))
        for c in range(1, COMMUNITIES_PER_STREET + 1):
            cid = uuid.uuid4()
            ccode = f"{scode[:9]}{c:03d}"
            rows.append((cid, county_id, ccode, f"社区{c}", "community", sid, f"{spath}{cid}/", 3))
            codes.append(ccode)
    await conn.executemany(
        "INSERT INTO nodes (id, root_id, code, name, kind, parent_id, path, depth, version)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1)",
        rows,
    )
    return codes


@group_fixture(GROUP)
async def _schema(ctx: Context) -> AsyncIterator[None]:
    conn = await ctx.connect()
    try:
        await migrator.apply(conn)
        ctx.state["communities"] = await _tree(conn)
    finally:
        await conn.close()
    yield


async def _appends(ctx: Context, batch: int) -> float:
    store = EventStore()
    communities: list[str] = ctx.state["communities"]
    pool = await create_pool(
        ctx.database_url, min_size=WRITERS, max_size=WRITERS, session_state=False
    )
    scopes = ScopeCache()  # as the API's: 2 s
    try:
        # each writer owns streams, each stream lives at one community node
        streams = [
            [
                (uuid.uuid4(), communities[(w * STREAMS_PER_WRITER + k) % len(communities)])
                for k in range(STREAMS_PER_WRITER)
            ]
            for w in range(WRITERS)
        ]
        versions: dict[uuid.UUID, int] = {}
        payload = event_json(7).encode()

        async def op(w: int, i: int) -> int:
            stream, code = streams[w][i % STREAMS_PER_WRITER]
            expected = versions.get(stream, 0)
            events = [
                NewEvent(uuid.uuid4(), EVENT_TYPE, 1, payload, datetime.now(UTC))
                for _ in range(batch)
            ]
            key = f"bench-{uuid.uuid4()}"
            scope = scopes.get(code)
            if scope is None:
                async with (
                    pool.acquire() as conn,
                    scoped_transaction(conn, code, cache=scopes) as (_, scope),
                ):
                    pass
            placeholder = provisional_base()
            async with pool.acquire() as conn:
                # as run_command does: scope, closed-subtree check, append and the key's
                # record in one autocommit statement
                result = await store.append_statement(
                    conn,
                    scope,
                    root_id=scope.root_id,
                    node_id=scope.node_id,
                    stream_id=stream,
                    stream_type="issue",
                    expected_version=expected,
                    events=events,
                    context=AppendContext(actor="bench@" + code, idempotency_key=key),
                    check_nodes=(scope.node_id,),
                    record=IdempotencyRecord(
                        "bench", b"h" * 32, 201, b'{"position":%d}' % placeholder, placeholder
                    ),
                )
            versions[stream] = result.version
            return batch

        rate = await async_rate(WRITERS, op, duration=ctx.duration, warmup=ctx.warmup)
        return rate.per_second
    finally:
        await pool.close()


@benchmark(
    "store.append_single_8w",
    GROUP,
    "events/s",
    description="our append, 1 event/tx, 8 writers, 300 community nodes, RLS + chain + idempotency",
    compare=("raw.insert_1row_8c",),
)
async def append_single(ctx: Context) -> float:
    return await _appends(ctx, 1)


@benchmark(
    "store.append_batch100_8w",
    GROUP,
    "events/s",
    description="our append, 100 events/tx per stream, 8 writers, everything on",
    compare=("raw.unnest100_8c",),
)
async def append_batch(ctx: Context) -> float:
    return await _appends(ctx, 100)
