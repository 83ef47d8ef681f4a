"""kill -9 of a projector process in the middle of a batch, then a takeover.

A backlog of governance work is written into a database of its own; ``civic project`` (a
real subprocess against it) starts working through it and is killed with SIGKILL while its
stats connection is inside a batch transaction. A second process takes the projections over
and catches up. The stats tables must then equal a fresh replay of every event (nothing
applied twice, nothing skipped), and the figures a brute-force recount.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import asyncpg
import pytest

from bench.world import WorldGenerator, WorldShape
from bench.world_writes import write_via_copy
from domain.refs import CHINA_TZ
from infra import migrator
from infra.database import create_pool
from infra.dsn import with_database
from projections import stats as rollups
from projections.rebuild import drop_scratch, prepare_scratch, replay, replica
from projections.runner import _LOCK_CLASS, lock_key
from tests.stats_recount import canonical_daily, expected_groups, load_events, recount_by_day

pytestmark = [pytest.mark.fault, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
KEYS = {
    "rm_stats_nodes": "root_id, node_id",
    "rm_stats_node_parents": "root_id, node_id, from_day",
    "rm_stats_daily": "root_id, node_id, day",
    "rm_stats_aggregates": "root_id, id",
}

OWNER_IN_TRANSACTION = """
SELECT a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1::oid AND l.objid = $2::oid
  AND l.objsubid = 2 AND a.datname = current_database() AND a.xact_start IS NOT NULL
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_projector(database_url: str, tmp_path: Path, tag: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CIVIC_DATA_DIR": str(tmp_path / "data"),
        "CIVIC_LOG_LEVEL": "WARNING",
        "CIVIC_CLOCK_INTERVAL": "3600",
        "CIVIC_DB_POOL_MAX": "8",
    }
    log = (tmp_path / f"projector-{tag}.log").open("wb")
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "civic"),
            "project",
            "--host",
            "127.0.0.1",
            "--port",
            str(free_port()),
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
async def own_database(server_url: str):
    name = f"civic_kill_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = with_database(server_url, name)
    try:
        yield url
    finally:
        admin = await asyncpg.connect(server_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def checkpoint(conn: asyncpg.Connection) -> int:
    value = await conn.fetchval("SELECT position FROM projection_checkpoints WHERE name = 'stats'")
    return int(value or 0)


async def test_kill_9_mid_batch_then_takeover_equals_a_fresh_replay(own_database, tmp_path):
    url = own_database
    conn = await asyncpg.connect(url)
    try:
        await migrator.apply(conn)
        gen = WorldGenerator(
            seed=99,
            county_code="330108000000",
            start=datetime(2031, 5, 1, 8, tzinfo=CHINA_TZ),
            shape=WorldShape(streets=5, communities=6, grids=1, units=6),
            ops_per_day=600,
            move_weight=0.2,
        )
        writes = gen.tree() + list(gen.work(40_000))
        last = await write_via_copy(conn, writes, gen.nodes)
    finally:
        await conn.close()

    pool = await create_pool(url, min_size=1, max_size=4)
    first = start_projector(url, tmp_path, "first")
    second: subprocess.Popen[bytes] | None = None
    try:
        # kill -9 the first projector while its stats connection is inside a batch
        async with pool.acquire() as c:
            deadline = time.monotonic() + 180
            killed_at = None
            while time.monotonic() < deadline and first.poll() is None:
                position = await checkpoint(c)
                if position >= last:
                    break
                owner = await c.fetchval(OWNER_IN_TRANSACTION, _LOCK_CLASS, lock_key("stats"))
                if position > 0 and owner is not None:
                    os.kill(first.pid, signal.SIGKILL)
                    killed_at = position
                    break
                await asyncio.sleep(0.005)
            assert killed_at is not None, "never caught the projector inside a batch"
            first.wait(timeout=30)
            assert first.returncode == -signal.SIGKILL
            await asyncio.sleep(0.5)
            assert killed_at <= await checkpoint(c) < last, "the kill was not mid-backlog"

        # a second process takes over and catches up
        second = start_projector(url, tmp_path, "second")
        async with pool.acquire() as c:
            deadline = time.monotonic() + 300
            while await checkpoint(c) < last:
                assert time.monotonic() < deadline, "the takeover did not catch up"
                assert second.poll() is None, (tmp_path / "projector-second.log").read_text()
                await asyncio.sleep(0.2)
        stop(second)

        # equal to a fresh replay of every event, table by table, row by row
        projection = rollups.StatsProjection()
        async with pool.acquire() as c, pool.acquire() as reader:
            schema = await prepare_scratch(c, projection)
            try:
                fresh = replica(projection)
                await replay(c, fresh, schema, batch_size=1000, reader=reader)
                await c.execute(f"SET search_path = {schema}, public")
                async with c.transaction():
                    await getattr(fresh, "finish")(c)  # noqa: B009 - optional hook
                await c.execute("RESET search_path")
                for table, key in KEYS.items():
                    live = await c.fetch(f"SELECT * FROM public.{table} ORDER BY {key}")
                    again = await c.fetch(f"SELECT * FROM {schema}.{table} ORDER BY {key}")
                    if table == "rm_stats_daily":
                        live, again = canonical_daily(live), canonical_daily(again)
                    assert [tuple(r) for r in live] == [tuple(r) for r in again], table
                    assert live, table
            finally:
                await drop_scratch(c, projection)

        # and to the recount
        assert gen.root is not None
        events = await load_events(pool, gen.root.id)
        recount, _ = recount_by_day(events)
        counts = recount.snapshot()
        async with pool.acquire() as c:
            for node_id, expected in counts.items():
                own, _ = await rollups.node_figures(c, gen.root.id, node_id)
                assert own.figures.groups() == expected_groups(expected), recount.code_of(node_id)
    finally:
        for proc in (first, second):
            if proc is not None:
                with contextlib.suppress(Exception):
                    stop(proc)
        await pool.close()
