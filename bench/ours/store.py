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

``store.append_single_32w``: the same with 32 writers. ``store.append_unit_party_8w``: the
principal is a unit of the county, each stream chained at its community (outside the unit's
subtree) and the unit a party of it, as for an assigned issue; the unit takes part in 20,000
other streams too, so the events insert policy's party branch is what is measured.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg

from bench.cpu import CpuWindow, backend_pids
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
#: streams the unit of ``store.append_unit_party_8w`` takes part in besides its writers' own
UNIT_PARTY_STREAMS = 20_000


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


async def _party_unit(ctx: Context) -> tuple[str, dict[str, uuid.UUID]]:
    """A unit under the county that takes part in UNIT_PARTY_STREAMS streams (made once),
    and the community nodes' ids by code."""
    if "unit" not in ctx.state:
        conn = await ctx.connect()
        try:
            county = await conn.fetchrow("SELECT id, code FROM nodes WHERE kind = 'county'")
            unit_id, code = uuid.uuid4(), "U" + county["code"][:6] + "001"
            await conn.execute(
                "INSERT INTO nodes (id, root_id, code, name, kind, parent_id, path, depth,"
                " version) VALUES ($1, $2, $3, '县第1局', 'unit', $2, $4, 2, 1)",
                unit_id,
                county["id"],
                code,
                f"/{county['id']}/{unit_id}/",
            )
            await conn.execute(
                "INSERT INTO stream_parties (root_id, node_id, stream_id, role)"
                " SELECT $1, $2, gen_random_uuid(), 'assignee' FROM generate_series(1, $3)",
                county["id"],
                unit_id,
                UNIT_PARTY_STREAMS,
            )
            await conn.execute("ANALYZE nodes, stream_parties")
            ids = {r["code"]: r["id"] for r in await conn.fetch("SELECT code, id FROM nodes")}
        finally:
            await conn.close()
        ctx.state["unit"] = (code, ids)
    unit: tuple[str, dict[str, uuid.UUID]] = ctx.state["unit"]
    return unit


async def _appends(
    ctx: Context,
    batch: int,
    writers: int = WRITERS,
    *,
    as_unit: bool = False,
    cpu: bool = True,
) -> float:
    """Appends of ``batch`` events per command by ``writers`` writers (one connection each);
    ``as_unit``: by the unit of ``_party_unit`` to streams it takes part in. ``cpu``: report
    the client's and the backends' CPU per event (``bench.cpu.CpuWindow``)."""
    store = EventStore()
    communities: list[str] = ctx.state["communities"]
    unit, node_ids = await _party_unit(ctx) if as_unit else (None, {})
    pool = await create_pool(
        ctx.database_url, min_size=writers, max_size=writers, session_state=False
    )
    scopes = ScopeCache()  # as the API's: 2 s
    try:
        # each writer owns streams, each stream lives at one community node
        streams = [
            [
                (uuid.uuid4(), communities[(w * STREAMS_PER_WRITER + k) % len(communities)])
                for k in range(STREAMS_PER_WRITER)
            ]
            for w in range(writers)
        ]
        if unit is not None:
            async with pool.acquire() as conn:
                await conn.executemany(
                    "INSERT INTO stream_parties (root_id, node_id, stream_id, role)"
                    " SELECT root_id, id, $2, 'assignee' FROM nodes WHERE code = $1",
                    [(unit, stream) for per_writer in streams for stream, _ in per_writer],
                )
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
            principal = code if unit is None else unit
            scope = scopes.get(principal)
            if scope is None:
                async with (
                    pool.acquire() as conn,
                    scoped_transaction(conn, principal, cache=scopes) as (_, scope),
                ):
                    pass
            # a unit's write joins the chain of the stream's community
            chain = scope.node_id if unit is None else node_ids[code]
            placeholder = provisional_base()
            async with pool.acquire() as conn:
                # as run_command does: scope, closed-subtree check, append and the key's
                # record in one autocommit statement
                result = await store.append_statement(
                    conn,
                    scope,
                    root_id=scope.root_id,
                    node_id=chain,
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

        # the pool's backends: min_size is max_size, so they are all open now
        window = CpuWindow(await backend_pids(ctx)) if cpu else None
        rate = await async_rate(
            writers, op, duration=ctx.duration, warmup=ctx.warmup, window=window
        )
        if window is not None:
            window.report(ctx, rate.events)
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
    "store.append_single_32w",
    GROUP,
    "events/s",
    description="our one-statement append as store.append_single_8w, 32 writers",
    compare=("store.append_single_8w",),
)
async def append_single_32(ctx: Context) -> float:
    return await _appends(ctx, 1, writers=32)


@benchmark(
    "store.append_batch100_8w",
    GROUP,
    "events/s",
    description="our append, 100 events/tx per stream, 8 writers, everything on",
    compare=("raw.unnest100_8c",),
)
async def append_batch(ctx: Context) -> float:
    return await _appends(ctx, 100)


@benchmark(
    "store.append_unit_party_8w",
    GROUP,
    "events/s",
    description=(
        "our append by a unit principal to streams it takes part in (chained at their"
        " communities), 20,000 party streams, 8 writers"
    ),
    compare=("store.append_single_8w",),
)
async def append_unit_party(ctx: Context) -> float:
    return await _appends(ctx, 1, as_unit=True)
