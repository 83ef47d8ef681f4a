"""examples/feed_consumer.py follows the feed into SQLite, stops, and resumes exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import uvicorn

from tests.support import auth, build_tree, post_ok, token

REPO = Path(__file__).resolve().parents[2]
CONSUMER = REPO / "examples" / "feed_consumer.py"


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """The session app over real HTTP (uvicorn in the test client's portal loop)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            app, lifespan="off", log_level="warning", access_log=False, timeout_graceful_shutdown=2
        )
    )
    running = app.state.client.blocking_portal.start_task_soon(server.serve, [sock])
    try:
        for _ in range(500):
            if server.started or running.done():
                break
            await asyncio.sleep(0.01)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.wrap_future(running), 10)
        sock.close()


async def run_consumer(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CONSUMER),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode()
    return err.decode()


async def settle(pool: Any, position: int) -> None:
    deadline = time.monotonic() + 30
    while await pool.fetchval("SELECT civic_horizon()") <= position:
        assert time.monotonic() < deadline, "not settled"
        await asyncio.sleep(0.02)


async def root_events(pool: Any, county: str) -> list[tuple[int, str]]:
    rows = await pool.fetch(
        "SELECT e.position, e.event_id::text AS id FROM events e"
        " JOIN nodes r ON r.id = e.root_id WHERE r.code = $1 ORDER BY e.position",
        county,
    )
    return [(r["position"], r["id"]) for r in rows]


def stored(db: Path) -> list[tuple[int, str]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return [tuple(r) for r in conn.execute("SELECT position, id FROM events ORDER BY position")]


async def test_consumer_resumes_after_restart_exactly_once(app, client, jwt, pool, tmp_path):
    tree = await build_tree(client, jwt, streets=2, communities=2, units=1)
    await settle(pool, tree.last_position)
    db = tmp_path / "feed.sqlite"
    integrator = token(jwt, tree.county, "integrator")
    admin = auth(jwt, tree.county, "admin")
    async with serve(app) as api:
        common = ("--api", api, "--token", integrator, "--db", str(db), "--limit", "3")
        # round 1: stopped after two pages (as if killed), then restarted until caught up
        await run_consumer(*common, "--max-pages", "2")
        assert stored(db) == (await root_events(pool, tree.county))[:6]
        await run_consumer(*common)
        assert stored(db) == await root_events(pool, tree.county)

        # more events while the consumer is down
        street = tree.streets[0]
        last = 0
        for n in range(40, 45):
            body = {
                "code": f"{street[:9]}{n:03d}",
                "name": f"新{n}",
                "kind": "community",
                "parent_code": street,
            }
            last = (await post_ok(client, "/v1/nodes", body, admin))["position"]
        r = await post_ok(
            client, f"/v1/nodes/{street[:9]}040/rename", {"name": "改"}, admin, expect=200
        )
        last = r["position"]
        await settle(pool, last)

        # round 2: a restart picks up exactly the new events
        await run_consumer(*common)
        everything = await root_events(pool, tree.county)
        assert stored(db) == everything
        assert everything[-1][0] == last
    with contextlib.closing(sqlite3.connect(db)) as conn:
        cursor = conn.execute("SELECT position FROM feed_cursor").fetchone()[0]
        types = [r[0] for r in conn.execute("SELECT type FROM events ORDER BY position")]
    assert cursor >= last
    assert types[-1] == "cn.civic-ledger.node.renamed.v1"
