"""Roll-ups (issue 9): stats read latency at 10k and 1M events, and rebuild speed.

A county of 20 streets x 15 communities (300 communities, 30 county units) gets a year of
random governance work from the seeded generator of ``bench/world.py`` (domain
aggregates → codec → COPY into ``events`` with positions and hash chains as
``civic_append`` makes them); the stats projection is then built with
``projections.rebuild.rebuild`` (that first build's rate is kept in the group's info).

* ``stats.read_10k`` / ``stats.read_1m``: one connection reading the county's figures the
  way ``GET /v1/nodes/{code}/stats`` does (a request transaction as ``civic_app`` with
  row-level security and the caller's scope, code look-up, then the county's row and its 40
  children's: 20 streets, 20 units), back to back for the run's duration. Figure: reads/s; ``.p50_ms`` and
  ``.p99_ms``: latency; ``.asof_p99_ms``: the same read with ``as_of`` a random day of the
  year; ``.daily_p99_ms``: a 30-day series of the county. The database holds 10k / 1M
  events (100k with ``--quick``).
* ``projection.rebuild``: ``rebuild()`` of the stats projection (scratch tables, replay of
  every event, take-over, atomic swap) over 250k events (50k with ``--quick``): events/s.

Standalone: ``python -m bench.ours.stats`` runs ``bench.run --only`` these three
against ``$DATABASE_URL``.
"""

from __future__ import annotations

import gc
import random
import sys
import time
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg

from bench.registry import Context, benchmark, group_fixture
from bench.timing import percentile
from bench.world import WorldGenerator, WorldShape
from bench.world_writes import write_via_copy
from domain.refs import CHINA_TZ
from infra import directory, migrator
from infra.database import create_pool, scoped_transaction
from projections import stats as rollups
from projections.rebuild import rebuild

SHAPE = WorldShape(streets=20, communities=15, grids=0, units=30)
COUNTY = "330106000000"
START = datetime(2031, 1, 1, 8, tzinfo=CHINA_TZ)
#: generator operations per event (a few commands record two events)
EVENTS_PER_OP = 1.04


async def _world(ctx: Context, events: int, days: int) -> dict[str, Any]:
    """Migrate the scratch database, write ``events`` events of one county, build stats."""
    conn = await ctx.connect()
    try:
        await migrator.apply(conn)
        operations = int(events / EVENTS_PER_OP)
        gen = WorldGenerator(
            seed=9,
            county_code=COUNTY,
            start=START,
            shape=SHAPE,
            ops_per_day=max(1, operations // days),
            move_weight=0.002,  # a reorganisation now and then, not every day
        )
        t0 = time.perf_counter()
        gc.disable()  # a million live objects: cyclic collections would cost more than the work
        try:
            writes = gen.tree() + list(gen.work(operations))
            t1 = time.perf_counter()
            await write_via_copy(conn, writes, gen.nodes)
        finally:
            gc.enable()
        del writes
        gc.collect()
        await conn.execute("VACUUM (ANALYZE)")  # hint bits set, as a live store has them
        t2 = time.perf_counter()
        written = await conn.fetchval("SELECT count(*) FROM events")
    finally:
        await conn.close()
    pool = await create_pool(ctx.database_url, min_size=2, max_size=4)
    try:
        built = await rebuild(pool, rollups.StatsProjection(), batch_size=5000)
    finally:
        await pool.close()
    return {
        "events": written,
        "days": days,
        "generate_s": round(t1 - t0, 1),
        "copy_s": round(t2 - t1, 1),
        "first_build_events": built.events,
        "first_build_s": round(built.seconds, 1),
        "first_build_events_per_s": round(built.events_per_second),
        "last_day": gen.today.isoformat(),
    }


@group_fixture("stats10k")
async def _small(ctx: Context) -> AsyncIterator[None]:
    ctx.state["info"] = await _world(ctx, 10_000, 60)
    yield


@group_fixture("stats1m")
async def _large(ctx: Context) -> AsyncIterator[None]:
    ctx.state["info"] = await _world(ctx, ctx.scaled(1_000_000, 100_000), 365)
    yield


@group_fixture("rebuild")
async def _rebuild_world(ctx: Context) -> AsyncIterator[None]:
    ctx.state["info"] = await _world(ctx, ctx.scaled(250_000, 50_000), 120)
    yield


async def _read(conn: asyncpg.Connection, as_of: date | None) -> int:
    """What GET /v1/nodes/{code}/stats does in the database."""
    async with scoped_transaction(conn, COUNTY) as (_, scope):
        await conn.execute("SET TRANSACTION READ ONLY")
        node = await directory.find_by_code(conn, COUNTY)
        assert node is not None and node.path.startswith(scope.path)
        own, children = await rollups.node_figures(conn, node.root_id, node.id, as_of)
    assert own.figures[rollups.ISSUES_REPORTED] > 0 and len(children) >= SHAPE.streets
    return 1


async def _series(conn: asyncpg.Connection, last: date) -> int:
    async with scoped_transaction(conn, COUNTY) as (_, scope):
        await conn.execute("SET TRANSACTION READ ONLY")
        node = await directory.find_by_code(conn, COUNTY)
        assert node is not None and node.path.startswith(scope.path)
        days = await rollups.daily_figures(
            conn, node.root_id, node.id, last - timedelta(days=29), last
        )
    assert len(days) == 30
    return 1


async def _latency(ctx: Context) -> float:
    info = ctx.state["info"]
    last = date.fromisoformat(info["last_day"])
    rng = random.Random(ctx.run_index)
    conn = await ctx.connect()
    try:
        for _ in range(50):  # warm the plan caches and the buffer cache
            await _read(conn, None)
        samples: list[float] = []
        deadline = time.perf_counter() + ctx.duration
        started = time.perf_counter()
        while time.perf_counter() < deadline and len(samples) < 1_000_000:
            t = time.perf_counter()
            await _read(conn, None)
            samples.append((time.perf_counter() - t) * 1000)
        elapsed = time.perf_counter() - started
        as_of: list[float] = []
        daily: list[float] = []
        for _ in range(200):
            day = last - timedelta(days=rng.randrange(info["days"]))
            t = time.perf_counter()
            await _read(conn, day)
            as_of.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            await _series(conn, day)
            daily.append((time.perf_counter() - t) * 1000)
    finally:
        await conn.close()
    samples.sort()
    as_of.sort()
    daily.sort()
    ctx.report("p50_ms", percentile(samples, 50), "ms")
    ctx.report("p99_ms", percentile(samples, 99), "ms")
    ctx.report("asof_p99_ms", percentile(as_of, 99), "ms")
    ctx.report("daily_p99_ms", percentile(daily, 99), "ms")
    ctx.report("events", float(info["events"]), "count")
    return len(samples) / elapsed


@benchmark(
    "stats.read_10k",
    "stats10k",
    "reads/s",
    description="county stats + its 40 children read, RLS on, 1 connection, 10k events",
)
async def read_10k(ctx: Context) -> float:
    return await _latency(ctx)


@benchmark(
    "stats.read_1m",
    "stats1m",
    "reads/s",
    description="county stats + its 40 children read, RLS on, 1 connection, 1M events",
    compare=("stats.read_10k",),
)
async def read_1m(ctx: Context) -> float:
    return await _latency(ctx)


@benchmark(
    "projection.rebuild",
    "rebuild",
    "events/s",
    description="rebuild of the stats projection: replay into scratch tables, take over, swap",
    timeout=900,
)
async def rebuild_stats(ctx: Context) -> float:
    pool = await create_pool(ctx.database_url, min_size=2, max_size=4)
    try:
        result = await rebuild(pool, rollups.StatsProjection(), batch_size=5000)
    finally:
        await pool.close()
    ctx.report("seconds", result.seconds, "s")
    return result.events_per_second


if __name__ == "__main__":
    from bench.run import main

    sys.exit(main(["--only", "stats.read_10k,stats.read_1m,projection.rebuild", *sys.argv[1:]]))
