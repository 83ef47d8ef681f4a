"""Reads that wait for a position hold no pool connection; caps on waits and heavy audit work.

The attack this pins (issue #13, item 1): twelve ``GET /v1/issues?min_position=…`` from one
viewer each held one of ten pool connections for five seconds, and every other tenant's
commands and reads queued behind them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest

from services.auth import Principal
from services.roles import Role
from tests.parallel import send
from tests.reliability import assert_problem, extra_app
from tests.support import auth, build_tree

pytestmark = pytest.mark.load


@asynccontextmanager
async def horizon_held(database_url: str) -> AsyncIterator[None]:
    """An open transaction with an id: every position committed after it lies above the
    horizon, so no read model can reach it until the transaction ends."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("BEGIN")
        await conn.fetchval("SELECT pg_current_xact_id()")
        yield
    finally:
        await conn.execute("ROLLBACK")
        await conn.close()


async def new_community(client: Any, headers: dict[str, str], street: str, n: int) -> int:
    r = await client.post(
        "/v1/nodes",
        json={
            "code": f"{street[:9]}{n:03d}",
            "name": f"新社区{n}",
            "kind": "community",
            "parent_code": street,
        },
        headers=headers,
    )
    assert r.status_code == 201, r.text
    position: int = r.json()["position"]
    return position


async def until(predicate: Any, seconds: float = 3.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def in_use(pool: asyncpg.Pool) -> int:
    return pool.get_size() - pool.get_idle_size()


async def test_waiting_reads_hold_no_connection_and_others_still_answer(
    client: Any, jwt: Any, ctx: Any, database_url: str
) -> None:
    a = await build_tree(client, jwt, streets=1, communities=1, units=0)
    b = await build_tree(client, jwt, streets=1, communities=1, units=0)
    viewer_a = auth(jwt, a.communities[a.streets[0]][0], "viewer")
    admin_a = auth(jwt, a.county, "admin")
    admin_b = auth(jwt, b.county, "admin")
    async with extra_app(ctx, pool_max=10, max_waits_per_principal=16) as api:
        small = api.app.state.ctx
        async with horizon_held(database_url):
            position = await new_community(api, admin_a, a.streets[0], 7)
            waits = [
                send(api, "GET", f"/v1/issues?min_position={position}", headers=viewer_a)
                for _ in range(12)
            ]
            await asyncio.sleep(0.5)  # all twelve are in the app and waiting
            # Twelve waits outstanding on a pool of ten: they hold (almost) nothing ...
            assert in_use(small.db) <= 2, in_use(small.db)
            # ... so another tenant's command and read answer while they still wait.
            await new_community(api, admin_b, b.streets[0], 7)
            r = await api.get(f"/v1/nodes/{b.county}", headers=admin_b)
            assert r.status_code == 200, r.text
            assert not any(t.done() for t in waits), "the waits ended before the others ran"
            assert small.waits is not None and small.waits.waiting == 12
        answers = await asyncio.gather(*waits)
    assert [r.status_code for r in answers] == [200] * 12, [r.text for r in answers]


async def test_min_position_beyond_the_log_is_422_at_once(
    client: Any, jwt: Any, database_url: str
) -> None:
    tree = await build_tree(client, jwt, streets=1, communities=1, units=0)
    viewer = auth(jwt, tree.county, "viewer")
    conn = await asyncpg.connect(database_url)
    try:
        newest = await conn.fetchval("SELECT max(position) FROM events")
    finally:
        await conn.close()
    for beyond in (newest + 1, 2**63 - 1):
        started = time.monotonic()
        r = await client.get(f"/v1/issues?min_position={beyond}", headers=viewer)
        assert time.monotonic() - started < 2.0
        assert_problem(r, 422)
        assert r.json()["errors"][0]["field"] == "min_position"
    # not a position at all: 400, as any out-of-range parameter
    r = await client.get(f"/v1/issues?min_position={2**63}", headers=viewer)
    assert_problem(r, 400)
    # a position this API handed out still answers
    r = await client.get(f"/v1/issues?min_position={tree.last_position}", headers=viewer)
    assert r.status_code == 200, r.text


async def test_a_principal_has_a_bounded_number_of_waits(
    client: Any, jwt: Any, ctx: Any, database_url: str
) -> None:
    tree = await build_tree(client, jwt, streets=1, communities=1, units=0)
    community = tree.communities[tree.streets[0]][0]
    viewer = auth(jwt, community, "viewer", sub="waiter")
    other = auth(jwt, community, "viewer", sub="someone-else")
    admin = auth(jwt, tree.county, "admin")
    async with extra_app(ctx, max_waits_per_principal=2) as api:
        small = api.app.state.ctx
        async with horizon_held(database_url):
            position = await new_community(api, admin, tree.streets[0], 8)
            url = f"/v1/issues?min_position={position}"
            waits = [send(api, "GET", url, headers=viewer) for _ in range(2)]
            await until(lambda: small.waits.waiting == 2)
            r = await api.get(url, headers=viewer)
            assert_problem(r, 429)
            assert r.headers["retry-after"].isdigit()
            # the cap is the principal's: someone else may still wait
            third = send(api, "GET", url, headers=other)
            await until(lambda: small.waits.waiting == 3)
        answers = await asyncio.gather(*waits, third)
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert small.wait_slots.held(Principal("waiter", community, frozenset({Role.VIEWER}))) == 0


async def test_heavy_audit_work_has_its_own_small_budget(client: Any, jwt: Any, ctx: Any) -> None:
    tree = await build_tree(client, jwt, streets=1, communities=1, units=0)
    inspector = auth(jwt, tree.county, "inspector", sub="auditor")
    url = f"/v1/audit/verify?node={tree.county}"
    assert ctx.heavy.limit == 2
    busy = [Principal(f"busy-{i}", tree.county, frozenset({Role.INSPECTOR})) for i in range(2)]
    with ctx.heavy.slot(busy[0]), ctx.heavy.slot(busy[1]):
        # the server's budget is spent: 503 at once, before any connection is taken
        for path in (url, f"/v1/audit/checkpoint?node={tree.county}"):
            r = await client.get(path, headers=inspector)
            assert_problem(r, 503)
            assert r.headers["retry-after"].isdigit()
        # ordinary reads and commands are not part of that budget
        r = await client.get(f"/v1/nodes/{tree.county}", headers=inspector)
        assert r.status_code == 200
    me = Principal("auditor", tree.county, frozenset({Role.INSPECTOR}))
    with ctx.heavy.slot(me):
        r = await client.get(url, headers=inspector)  # one at a time per principal
        assert_problem(r, 429)
    r = await client.get(url, headers=inspector)
    assert r.status_code == 200, r.text
    assert ctx.heavy.in_use == 0
