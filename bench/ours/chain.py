"""Chain verification of a county (issue #6): events/s.

The county world of ``bench/ours/stats.py`` (20 streets x 15 communities, 30 units; seeded
generator of ``bench/world.py`` → COPY with hash chains as ``civic_append`` makes them)
with 200k events (50k with ``--quick``), about 350 chains.

* ``chain.verify``: what ``GET /v1/audit/verify`` of the county does in the database: a
  read-only request transaction as ``civic_app`` (row-level security on, the county's
  scope), code look-up, then ``verify_subtree`` over every chain of the subtree. Whole
  verifications back to back for the run's duration (at least one); figure: events checked
  per second. ``.seconds``: the mean time of one whole verification.

Standalone: ``python -m bench.ours.chain`` runs ``bench.run --only chain.verify``.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import AsyncIterator

import asyncpg

from bench.ours.stats import COUNTY, EVENTS_PER_OP, SHAPE, START
from bench.registry import Context, benchmark, group_fixture
from bench.world import WorldGenerator
from bench.world_writes import write_via_copy
from infra import directory, migrator
from infra.audit.verify import VerifyReport, verify_subtree
from infra.chain import Sha256Chain
from infra.database import create_pool, scoped_transaction

GROUP = "chain"
DAYS = 120


async def _load(ctx: Context, events: int) -> int:
    conn = await ctx.connect()
    try:
        await migrator.apply(conn)
        operations = int(events / EVENTS_PER_OP)
        gen = WorldGenerator(
            seed=6,
            county_code=COUNTY,
            start=START,
            shape=SHAPE,
            ops_per_day=max(1, operations // DAYS),
            move_weight=0.002,
        )
        gc.disable()  # hundreds of thousands of live objects: cyclic collections cost more
        try:
            writes = gen.tree() + list(gen.work(operations))
            await write_via_copy(conn, writes, gen.nodes)
        finally:
            gc.enable()
        del writes
        gc.collect()
        await conn.execute("VACUUM (ANALYZE)")  # hint bits set, as a live store has them
        return int(await conn.fetchval("SELECT count(*) FROM events"))
    finally:
        await conn.close()


async def _verify(conn: asyncpg.Connection, hasher: Sha256Chain) -> VerifyReport:
    """What GET /v1/audit/verify?node=<county> does in the database."""
    async with scoped_transaction(conn, COUNTY) as (_, scope):
        await conn.execute("SET TRANSACTION READ ONLY")
        node = await directory.find_by_code(conn, COUNTY)
        assert node is not None and node.path.startswith(scope.path)
        return await verify_subtree(conn, node, hasher)


@group_fixture(GROUP)
async def _county(ctx: Context) -> AsyncIterator[None]:
    written = await _load(ctx, ctx.scaled(200_000, 50_000))
    pool = await create_pool(ctx.database_url, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            # The first pass warms the buffer cache and checks the world before any timing.
            report = await _verify(conn, Sha256Chain())
        assert report.ok, report.first_failure
        assert report.events_checked == written, (report.events_checked, written)
        ctx.state.update(pool=pool, events=written, nodes=report.nodes_checked)
        yield
    finally:
        await pool.close()


@benchmark(
    "chain.verify",
    GROUP,
    "events/s",
    description="verify_subtree of a county (~350 chains), request transaction with RLS on",
    timeout=600,
)
async def verify(ctx: Context) -> float:
    pool: asyncpg.Pool = ctx.state["pool"]
    hasher = Sha256Chain()
    events = 0
    passes = 0
    async with pool.acquire() as conn:
        started = time.perf_counter()
        while passes == 0 or time.perf_counter() - started < ctx.duration:
            report = await _verify(conn, hasher)
            assert report.ok, report.first_failure
            assert report.events_checked == ctx.state["events"]
            events += report.events_checked
            passes += 1
        elapsed = time.perf_counter() - started
    ctx.report("seconds", elapsed / passes, "s")
    ctx.report("events", float(ctx.state["events"]), "count")
    return events / elapsed


if __name__ == "__main__":
    from bench.run import main

    sys.exit(main(["--only", "chain.verify", *sys.argv[1:]]))
