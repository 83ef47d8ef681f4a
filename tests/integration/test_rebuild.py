"""Rebuilds: replay into scratch tables beside the live ones, take over, swap atomically.

They run against the shared test application, whose runner owns every projection: a
rebuild must make it yield, and it must carry on from the new checkpoint afterwards.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from bench.world import WorldGenerator, Write
from bench.world_writes import write_via_store
from domain.issue import Issue
from domain.refs import CHINA_TZ, NodeRef
from infra.event_store import StoredEvent
from projections.base import LightEvent, Projection
from projections.nodes import NodesProjection
from projections.rebuild import RebuildError, rebuild, scratch_schema
from projections.runner import lag_seconds, projection_status, wait_for_position
from projections.stats import StatsProjection
from tests.stats_recount import canonical_daily, expected_groups, load_events, recount_by_day
from tests.support import auth, fresh_county_code, metrics_auth

REPO = Path(__file__).resolve().parents[2]
STATS_KEYS = {
    "rm_stats_nodes": "node_id",
    "rm_stats_node_parents": "node_id, from_day",
    "rm_stats_daily": "node_id, day",
    "rm_stats_aggregates": "id",
}


async def caught_up(pool: Any, position: int, names: Sequence[str] = ("stats",)) -> None:
    async with pool.acquire() as conn:
        assert await wait_for_position(conn, list(names), position, timeout=60), "lagging"


async def world(pool: Any, seed: int, operations: int) -> tuple[WorldGenerator, int]:
    gen = WorldGenerator(
        seed=seed,
        county_code=fresh_county_code(),
        start=datetime(2031, 4, 1, 9, tzinfo=CHINA_TZ),
    )
    last = await write_via_store(pool, gen.tree() + list(gen.work(operations)), gen.nodes)
    await caught_up(pool, last)
    return gen, last


async def rows_of(pool: Any, root_id: UUID) -> dict[str, list[tuple[Any, ...]]]:
    """The projection's rows of one tenant (the daily rows by what they mean)."""
    async with pool.acquire() as conn:
        rows = {
            t: [
                tuple(r)
                for r in await conn.fetch(
                    f"SELECT * FROM {t} WHERE root_id = $1 ORDER BY {k}", root_id
                )
            ]
            for t, k in STATS_KEYS.items()
        }
    rows["rm_stats_daily"] = canonical_daily(rows["rm_stats_daily"])
    return rows


async def catalogue(pool: Any, tables: Sequence[str]) -> dict[str, Any]:
    """Indexes (names and definitions), policies, grants, RLS, persistence and column
    statistics targets of tables."""
    async with pool.acquire() as conn:
        out: dict[str, Any] = {}
        for t in tables:
            out[t] = {
                "indexes": sorted(
                    tuple(r)
                    for r in await conn.fetch(
                        "SELECT indexname, indexdef FROM pg_indexes"
                        " WHERE schemaname = 'public' AND tablename = $1",
                        t,
                    )
                ),
                "constraints": sorted(
                    tuple(r)
                    for r in await conn.fetch(
                        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
                        " WHERE conrelid = $1::regclass",
                        f"public.{t}",
                    )
                ),
                "policies": sorted(
                    tuple(str(v) for v in r)
                    for r in await conn.fetch(
                        "SELECT policyname, permissive, roles, cmd, qual, with_check"
                        " FROM pg_policies WHERE schemaname = 'public' AND tablename = $1",
                        t,
                    )
                ),
                "grants": sorted(
                    tuple(r)
                    for r in await conn.fetch(
                        "SELECT grantee, privilege_type FROM information_schema.role_table_grants"
                        " WHERE table_schema = 'public' AND table_name = $1",
                        t,
                    )
                ),
                "statistics": [
                    tuple(r)
                    for r in await conn.fetch(
                        "SELECT attname, attstattarget FROM pg_attribute"
                        " WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped"
                        " ORDER BY attnum",
                        f"public.{t}",
                    )
                ],
                "rel": tuple(
                    await conn.fetchrow(
                        "SELECT relrowsecurity, relforcerowsecurity, relpersistence::text,"
                        " pg_get_userbyid(relowner) FROM pg_class WHERE oid = $1::regclass",
                        f"public.{t}",
                    )
                ),
            }
        return out


async def scratch_schemas(pool: Any) -> list[str]:
    async with pool.acquire() as conn:
        return [
            r[0]
            for r in await conn.fetch(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'civic_rebuild%'"
            )
        ]


async def assert_api_equals_recount(client: Any, jwt: Any, pool: Any, gen: WorldGenerator) -> None:
    assert gen.root is not None
    events = await load_events(pool, gen.root.id)
    recount, _ = recount_by_day(events)
    counts = recount.snapshot()
    headers = auth(jwt, gen.county_code, "viewer")
    for node_id, c in counts.items():
        code = recount.code_of(node_id)
        r = await client.get(f"/v1/nodes/{code}/stats", headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        assert {g: body[g] for g in expected_groups(c)} == expected_groups(c), code


async def test_rebuild_beside_the_live_projection_and_swap(client, jwt, pool, app):
    runner = app.state.runner
    # The live owner, which must yield. A runner that has just started takes ownership on
    # its first pass, so when this test runs first it may not own it yet: wait, bounded.
    for _ in range(100):
        if runner.states["stats"].owned:
            break
        await asyncio.sleep(0.1)
    assert runner.states["stats"].owned
    gen, _ = await world(pool, seed=41, operations=700)
    assert gen.root is not None
    before_rows = await rows_of(pool, gen.root.id)
    before_catalogue = await catalogue(pool, StatsProjection.tables)
    assert ("points", 0) in before_catalogue["rm_stats_daily"]["statistics"]  # migration 0050
    seen: list[tuple[int, int]] = []

    result = await rebuild(
        pool,
        StatsProjection(),
        batch_size=300,
        progress=lambda done, total: seen.append((done, total)),
        takeover_timeout=30,
    )

    assert result.events > 0 and result.events_per_second > 0
    assert seen[0][0] == 0 and seen[-1][0] == result.events
    assert all(done <= total for done, total in seen)
    assert await rows_of(pool, gen.root.id) == before_rows
    assert await catalogue(pool, StatsProjection.tables) == before_catalogue
    assert await scratch_schemas(pool) == []
    async with pool.acquire() as conn:
        checkpoint = await conn.fetchval(
            "SELECT position FROM projection_checkpoints WHERE name = 'stats'"
        )
    assert checkpoint >= result.position

    # the live runner takes the projection back and goes on from the new checkpoint
    more = list(gen.work(150))
    last = await write_via_store(pool, more, gen.nodes)
    await caught_up(pool, last)
    assert runner.states["stats"].owned
    await assert_api_equals_recount(client, jwt, pool, gen)


async def test_a_rebuild_writing_as_it_goes_equals_the_live_projection(app, pool):
    """A replay that writes every few dozen events: most nodes' rows come after what is
    stored (sent as new rows), others fall on a day already stored or, with business days
    out of order, before it; moves read stored totals. Every row must equal the live one,
    also when the replay lets go of what it holds in memory."""
    gen, _ = await world(pool, seed=45, operations=500)
    assert gen.root is not None
    ref = NodeRef.of(gen.communities[0])
    base = datetime(2031, 4, 3, 12, tzinfo=CHINA_TZ)
    late: list[Write] = []
    for at in (base + timedelta(days=9), base, base - timedelta(days=1)):
        issue = Issue.report(
            issue_id=gen._uuid(), node=ref, title="井盖缺失", category="市政", source="grid", at=at
        )
        late.append(gen._write(issue))
    last = await write_via_store(pool, late + list(gen.work(100)), gen.nodes)
    await caught_up(pool, last)
    before = await rows_of(pool, gen.root.id)

    await rebuild(pool, StatsProjection(write_every=60), batch_size=40, takeover_timeout=30)
    assert await rows_of(pool, gen.root.id) == before

    # letting go of the aggregates in memory: later batches load them from the scratch tables
    evicting = StatsProjection(write_every=60, cache_limit=100)
    await rebuild(pool, evicting, batch_size=40, takeover_timeout=30)
    assert await rows_of(pool, gen.root.id) == before


async def test_rebuild_is_generic_and_keeps_index_names(app, pool):
    """The nodes projection (custom index names, RLS) rebuilt by the same code. Compared on
    a tenant of this test: other tests tamper with stored events on purpose (audit)."""
    gen, last = await world(pool, seed=42, operations=60)
    assert gen.root is not None
    await caught_up(pool, last, names=("nodes",))
    projection = NodesProjection()
    before = await catalogue(pool, projection.tables)
    query = "SELECT * FROM rm_nodes WHERE root_id = $1 ORDER BY id"
    async with pool.acquire() as conn:
        rows = [tuple(r) for r in await conn.fetch(query, gen.root.id)]
    result = await rebuild(pool, projection, takeover_timeout=30)
    assert result.events >= len(rows) > 20
    assert await catalogue(pool, projection.tables) == before
    async with pool.acquire() as conn:
        assert [tuple(r) for r in await conn.fetch(query, gen.root.id)] == rows


class FailingProjection(StatsProjection):
    """Fails in its third batch."""

    def __init__(self) -> None:
        super().__init__()
        self.batches = 0

    def for_rebuild(self) -> FailingProjection:
        return self

    async def apply(self, conn: Any, events: Sequence[LightEvent]) -> None:
        self.batches += 1
        if self.batches == 3:
            raise RuntimeError("boom")
        await super().apply(conn, events)


async def test_a_failed_rebuild_leaves_the_live_projection_alone(app, pool):
    await world(pool, seed=43, operations=300)  # enough for three batches of 50
    async with pool.acquire() as conn:
        counts = {
            t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in StatsProjection.tables
        }
    with pytest.raises(RuntimeError, match="boom"):
        await rebuild(pool, FailingProjection(), batch_size=50, takeover_timeout=30)
    assert await scratch_schemas(pool) == []
    async with pool.acquire() as conn:
        for t, n in counts.items():
            assert await conn.fetchval(f"SELECT count(*) FROM {t}") >= n


class Unsupported:
    name = "unsupported_demo"
    handles = frozenset({"NodeRegistered"})
    tables: tuple[str, ...] = ("events",)  # has triggers: refused before anything is touched

    async def apply(self, conn: Any, events: Sequence[StoredEvent]) -> None:
        raise AssertionError("never called")


async def test_unsupported_tables_are_refused_up_front(pool):
    projection: Projection = Unsupported()
    with pytest.raises(RebuildError, match="trigger"):
        await rebuild(pool, projection)
    assert scratch_schema("unsupported_demo") not in await scratch_schemas(pool)


async def test_status_and_lag_come_from_the_database(pool, client):
    await world(pool, seed=44, operations=20)
    async with pool.acquire() as conn:
        for _ in range(100):  # after a rebuild the live runner re-acquires within seconds
            rows = {s.name: s for s in await projection_status(conn, [StatsProjection()])}
            if rows["stats"].owner_pid is not None:
                break
            await asyncio.sleep(0.1)
        # a projection that has processed nothing lags by the age of the oldest event
        assert await lag_seconds(conn, StatsProjection(), 0) > 0
        assert await lag_seconds(conn, StatsProjection(), rows["stats"].position + 10**15) == 0
    stats = rows["stats"]
    assert stats.position > 0 and stats.owner_pid is not None and stats.error is None
    assert stats.behind >= 0 and stats.lag_seconds >= 0
    metrics = (await client.get("/metrics", headers=metrics_auth(client))).text
    assert 'civic_projection_lag_seconds{projection="stats"}' in metrics


def civic(*args: str, database_url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CIVIC_DATA_DIR": str(tmp_path / "data"),
        "CIVIC_LOG_LEVEL": "WARNING",
        "COLUMNS": "160",
    }
    return subprocess.run(
        [str(Path(sys.executable).parent / "civic"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.mark.timeout(300)
async def test_cli_rebuild_and_status(app, database_url, tmp_path, pool):
    async with pool.acquire() as conn:
        last = await conn.fetchval("SELECT coalesce(max(position), 0) FROM events")
    await caught_up(pool, last)
    done = civic("projections", "rebuild", "stats", database_url=database_url, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "rebuilt stats:" in done.stdout and "events/s" in done.stdout
    status = civic("projections", "status", database_url=database_url, tmp_path=tmp_path)
    assert status.returncode == 0, status.stderr
    for word in ("stats", "nodes", "position", "events behind", "lag"):
        assert word in status.stdout
    wrong = civic("projections", "rebuild", "nope", database_url=database_url, tmp_path=tmp_path)
    assert wrong.returncode == 2 and "unknown projection" in wrong.stderr
    both = civic(
        "projections", "rebuild", "stats", "--all", database_url=database_url, tmp_path=tmp_path
    )
    assert both.returncode == 2
