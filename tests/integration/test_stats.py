"""Roll-ups (GET /v1/nodes/{code}/stats and /stats/daily) against a brute-force recount.

A seeded world of random work — pairings, members, issues through the 12345 loop,
rectifications, communities and grids moved between parents — is written straight into the
event store (domain aggregates → codec → ``EventStore.append``), so these tests need none of
the workflow endpoints. Its business time lies in 2031, after anything the deadline clock of
the shared test application could act on. Every node's figures, now and at the end of
every day, must equal a recount of the raw events through the domain aggregates.
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from bench.world import CODEC, WorldGenerator, Write, china_day
from bench.world_writes import write_via_store
from domain.issue import Issue
from domain.refs import CHINA_TZ, NodeRef
from infra.database import scoped_transaction
from projections.runner import wait_for_position
from tests.stats_recount import (
    COUNT_NAMES,
    Recount,
    expected_groups,
    load_events,
    recount_by_day,
)
from tests.support import auth, build_tree, fresh_county_code

GROUPS = ("pairings", "members", "issues", "rectifications", "service_orders", "surveys")


async def caught_up(pool: Any, position: int) -> None:
    async with pool.acquire() as conn:
        if not await wait_for_position(conn, ["stats"], position, timeout=60):
            row = await conn.fetchrow("SELECT * FROM projection_checkpoints WHERE name = 'stats'")
            raise AssertionError(f"stats lagging: {dict(row) if row else None}")


async def make_world(
    pool: Any, seed: int, operations: int, **kw: Any
) -> tuple[WorldGenerator, int]:
    gen = WorldGenerator(
        seed=seed,
        county_code=fresh_county_code(),
        start=datetime(2031, 3, 1, 7, 30, tzinfo=CHINA_TZ),
        **kw,
    )
    writes = gen.tree() + list(gen.work(operations))
    last = await write_via_store(pool, writes, gen.nodes)
    await caught_up(pool, last)
    return gen, last


def groups_of(body: dict[str, Any]) -> dict[str, Any]:
    return {g: body[g] for g in GROUPS}


async def check_node(
    client: Any,
    headers: dict[str, str],
    recount: Recount,
    counts: dict[UUID, dict[str, int]],
    children: dict[UUID, set[UUID]],
    node_id: UUID,
    as_of: date | None = None,
) -> None:
    code = recount.code_of(node_id)
    url = f"/v1/nodes/{code}/stats" + (f"?as_of={as_of.isoformat()}" if as_of else "")
    r = await client.get(url, headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["code"] == code
    assert body["as_of"] == (as_of.isoformat() if as_of else None)
    assert groups_of(body) == expected_groups(counts[node_id]), (code, as_of)
    kids = {c["code"]: c for c in body["children"]}
    expected_kids = {recount.code_of(k) for k in children.get(node_id, set())}
    assert set(kids) == expected_kids, (code, as_of)
    for k in children.get(node_id, set()):
        if kids[recount.code_of(k)]["kind"] == "unit":
            continue  # a unit's entry is its own record (考核): test_unit_stats.py
        assert groups_of(kids[recount.code_of(k)]) == expected_groups(counts[k]), (code, as_of)


async def test_every_node_now_and_as_of_every_day_equals_a_recount(client, jwt, pool):
    gen, _ = await make_world(pool, seed=20310301, operations=1500)
    assert gen.root is not None
    events = await load_events(pool, gen.root.id)
    types = {e.type for e in events}
    assert {"NodeMoved", "IssueOverdue", "RectificationOverdue", "MemberTransferred"} <= types
    days = sorted({china_day(e.occurred_at) for e in events})
    first, last = days[0] - timedelta(days=1), days[-1] + timedelta(days=3)
    wanted = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    recount, snapshots = recount_by_day(events, wanted)
    headers = auth(jwt, gen.county_code, "viewer")

    # now: every node, with its children
    now_counts = recount.snapshot()
    now_children = {n: recount.children(n) for n in now_counts}
    for node_id in now_counts:
        await check_node(client, headers, recount, now_counts, now_children, node_id)

    # as of a sample of days (before the first event, during, after): every node
    rng = random.Random(1)
    for day in [wanted[0], *rng.sample(days, 5), wanted[-1]]:
        counts, children = snapshots[day]
        for node_id in counts:
            await check_node(client, headers, recount, counts, children, node_id, day)

    # the daily series of every node over the whole range: one row per day
    for node_id in now_counts:
        code = recount.code_of(node_id)
        r = await client.get(
            f"/v1/nodes/{code}/stats/daily?from={wanted[0]}&to={wanted[-1]}", headers=headers
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["code"] == code and body["from"] == wanted[0].isoformat()
        items = body["items"]
        assert len(items) == (wanted[-1] - wanted[0]).days + 1
        assert [date.fromisoformat(i["date"]) for i in items] == wanted
        for item, day in zip(items, wanted, strict=True):
            counts, _ = snapshots[day]  # a node not registered yet counts nothing
            expected = expected_groups(counts.get(node_id, dict.fromkeys(COUNT_NAMES, 0)))
            assert groups_of(item) == expected, (code, day)
        assert groups_of(items[-1]) == expected_groups(now_counts[node_id])


async def test_moves_keep_history_under_the_old_tree(client, jwt, pool):
    """A community with work moves to another street: afterwards the old street no longer
    counts it and the new one does; as of the day before the move, the old tree stands."""
    gen, _ = await make_world(pool, seed=7, operations=400, moves=False)
    assert gen.root is not None
    headers = auth(jwt, gen.county_code, "viewer")
    community = max(gen.communities, key=lambda c: sum(i.node_id == c.id for i in gen.issues))
    old_street = gen.nodes[community.parent_id]  # type: ignore[index]
    new_street = next(s for s in gen.streets if s.id != old_street.id)
    before_move = gen.today
    gen.now += timedelta(days=2)
    community.move(
        new_parent=new_street,
        new_code=None,
        reason="区划调整",
        is_ancestor_of_new_parent=False,
        at=gen.now,
    )
    move = gen._write(community, ("move", community.id, old_street.id, new_street.id))
    await caught_up(pool, await write_via_store(pool, [move], gen.nodes))

    async def stats(code: str, as_of: date | None = None) -> dict[str, Any]:
        url = f"/v1/nodes/{code}/stats" + (f"?as_of={as_of}" if as_of else "")
        r = await client.get(url, headers=headers)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    moved = (await stats(community.code))["issues"]["reported"]
    assert moved > 0
    old_then, old_now = await stats(old_street.code, before_move), await stats(old_street.code)
    new_then, new_now = await stats(new_street.code, before_move), await stats(new_street.code)
    assert old_then["issues"]["reported"] - old_now["issues"]["reported"] == moved
    assert new_now["issues"]["reported"] - new_then["issues"]["reported"] == moved
    assert community.code in {c["code"] for c in old_then["children"]}
    assert community.code not in {c["code"] for c in old_now["children"]}
    assert community.code in {c["code"] for c in new_now["children"]}
    county_then, county_now = (
        await stats(gen.county_code, before_move),
        await stats(gen.county_code),
    )
    assert groups_of(county_then) == groups_of(county_now)  # within the county: no change


async def test_move_through_the_nodes_api(client, jwt, pool):
    """The move command of the nodes API (real clock) re-parents the roll-ups too."""
    tree = await build_tree(client, jwt, streets=2, communities=1)
    admin = auth(jwt, tree.county, "admin")
    a, b = tree.streets
    community = tree.communities[a][0]
    wait = f"?min_position={tree.last_position}"
    node_id = UUID((await client.get(f"/v1/nodes/{community}{wait}", headers=admin)).json()["id"])
    root_id = UUID((await client.get(f"/v1/nodes/{tree.county}{wait}", headers=admin)).json()["id"])
    ref = NodeRef(id=node_id, code=community, kind="community", root_id=root_id)
    writes = []
    for n in range(2):  # two issues at the community, written straight into the store
        issue = Issue.report(
            issue_id=uuid4(),
            node=ref,
            title=f"问题{n}",
            category="环境",
            source="grid",
            at=datetime.now(CHINA_TZ),
        )
        events = [CODEC.encode(e) for e in issue.collect_events()]
        writes.append(Write(root_id, node_id, issue.id, "issue", 0, events))
    await caught_up(pool, await write_via_store(pool, writes, {}))
    r = await client.post(
        f"/v1/nodes/{community}/move",
        json={"new_parent_code": b, "reason": "区划调整"},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    position = r.json()["position"]
    moved_in = sorted([*tree.communities[b], community])
    for street, reported, children in ((a, 0, []), (b, 2, moved_in)):
        r = await client.get(f"/v1/nodes/{street}/stats?min_position={position}", headers=admin)
        assert r.status_code == 200, r.text
        assert r.json()["issues"]["reported"] == reported
        assert [c["code"] for c in r.json()["children"]] == children
    r = await client.get(f"/v1/nodes/{tree.county}/stats", headers=admin)
    assert r.json()["issues"]["reported"] == 2


async def test_business_days_out_of_order(client, jwt, pool):
    """An event whose business day precedes rows already stored still lands in every later
    day's cumulative figures (the rare carry-forward path)."""
    gen, _ = await make_world(pool, seed=3, operations=0)
    assert gen.root is not None
    community = gen.communities[0]
    ref = NodeRef.of(community)
    base = datetime(2031, 6, 10, 12, tzinfo=CHINA_TZ)

    def report(at: datetime) -> Write:
        issue = Issue.report(
            issue_id=gen._uuid(), node=ref, title="井盖缺失", category="市政", source="grid", at=at
        )
        return gen._write(issue)

    # day 10 and day 14 first, then (later positions, separate batches) day 12 and day 8
    for at in (base, base + timedelta(days=4), base + timedelta(days=2), base - timedelta(days=2)):
        await caught_up(pool, await write_via_store(pool, [report(at)], gen.nodes))
    headers = auth(jwt, gen.county_code, "viewer")
    expected = {7: 0, 8: 1, 9: 1, 10: 2, 11: 2, 12: 3, 13: 3, 14: 4, 15: 4}
    for code in (community.code, gen.county_code):
        r = await client.get(
            f"/v1/nodes/{code}/stats/daily?from=2031-06-07&to=2031-06-15", headers=headers
        )
        assert r.status_code == 200, r.text
        got = {
            date.fromisoformat(i["date"]).day: i["issues"]["reported"] for i in r.json()["items"]
        }
        assert got == expected, code


async def test_rates_are_null_without_a_denominator(client, jwt):
    tree = await build_tree(client, jwt, streets=1, communities=1)
    r = await client.get(
        f"/v1/nodes/{tree.county}/stats?min_position={tree.last_position}",
        headers=auth(jwt, tree.county, "viewer"),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["pairings"] == {"active": 0, "commitments": 0, "fulfilled": 0, "fulfil_rate": None}
    assert body["issues"]["on_time_rate"] is None
    assert body["issues"]["satisfaction_rate"] is None
    assert body["issues"]["resolution_rate"] is None
    assert body["rectifications"]["completion_rate"] is None
    assert [c["code"] for c in body["children"]] == sorted(tree.streets + tree.units)


async def test_scope_roles_and_validation(client, jwt):
    tree = await build_tree(client, jwt, streets=2, communities=1)
    a, b = tree.streets
    street_a = auth(jwt, a, "viewer")
    for role in ("viewer", "operator", "unit", "inspector", "admin", "integrator"):
        r = await client.get(f"/v1/nodes/{a}/stats", headers=auth(jwt, tree.county, role))
        assert r.status_code == 200, (role, r.text)
    assert (await client.get(f"/v1/nodes/{a}/stats", headers=street_a)).status_code == 200
    for url in (
        f"/v1/nodes/{b}/stats",
        f"/v1/nodes/{tree.county}/stats/daily",
        "/v1/nodes/999999999999/stats",
    ):
        r = await client.get(url, headers=street_a)
        assert r.status_code == 404, url
        assert r.headers["content-type"].startswith("application/problem+json")
    assert (await client.get(f"/v1/nodes/{a}/stats")).status_code == 401
    r = await client.get(f"/v1/nodes/{a}/stats?as_of=2024-13-01", headers=street_a)
    assert r.status_code == 400
    daily = f"/v1/nodes/{a}/stats/daily"
    r = await client.get(f"{daily}?from=2025-01-01&to=2026-01-01", headers=street_a)
    assert r.status_code == 200 and len(r.json()["items"]) == 366
    r = await client.get(f"{daily}?from=2025-01-01&to=2026-01-02", headers=street_a)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "to"
    r = await client.get(f"{daily}?from=2024-02-01&to=2024-01-01", headers=street_a)
    assert r.status_code == 422
    r = await client.get(daily, headers=street_a)
    assert r.status_code == 200 and len(r.json()["items"]) == 30


@pytest.mark.timeout(60)
async def test_min_position_not_reached_answers_503(client, jwt, database_url):
    from tests.integration.test_waits_and_budgets import horizon_held, new_community

    tree = await build_tree(client, jwt, streets=1, communities=1)
    viewer = auth(jwt, tree.county, "viewer")
    # beyond the newest committed position: no wait at all
    r = await client.get(
        f"/v1/nodes/{tree.county}/stats?min_position={tree.last_position + (1 << 60)}",
        headers=viewer,
    )
    assert r.status_code == 422
    # committed but held above the horizon by an open transaction: the wait runs out
    async with horizon_held(database_url):
        position = await new_community(client, auth(jwt, tree.county, "admin"), tree.streets[0], 9)
        r = await client.get(
            f"/v1/nodes/{tree.county}/stats?min_position={position}", headers=viewer
        )
    assert r.status_code == 503
    assert r.headers["retry-after"]


async def test_openapi_describes_the_stats_endpoints(client):
    r = await client.get("/schema/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    assert "/v1/nodes/{code}/stats" in paths and "/v1/nodes/{code}/stats/daily" in paths


async def test_row_level_security_on_the_rollup_tables(app, pool):
    """Raw SQL as the runtime role in a street's scope: the figures of another street, and
    anything of another tenant, stay invisible whatever the query says."""
    gen, _ = await make_world(pool, seed=5, operations=200, moves=False)
    other, _ = await make_world(pool, seed=6, operations=50, moves=False)
    assert gen.root is not None and other.root is not None
    a, b = gen.streets[0], gen.streets[1]
    async with pool.acquire() as conn, scoped_transaction(conn, a.code) as (_, scope):
        assert scope.node_id == a.id

        async def count(table: str, root_id: UUID, node_id: UUID) -> int:
            n: int = await conn.fetchval(
                f"SELECT count(*) FROM {table} WHERE root_id = $1 AND node_id = $2",
                root_id,
                node_id,
            )
            return n

        assert await count("rm_stats_daily", gen.root.id, a.id) > 0
        assert await count("rm_stats_daily", gen.root.id, b.id) == 0
        assert await count("rm_stats_daily", gen.root.id, gen.root.id) == 0
        # the tree tables mirror the directory: readable within the root tenant only
        assert await count("rm_stats_nodes", gen.root.id, b.id) == 1
        for table in ("rm_stats_daily", "rm_stats_nodes", "rm_stats_node_parents"):
            assert await count(table, other.root.id, other.root.id) == 0
        hidden = await conn.fetchval(
            "SELECT count(*) FROM rm_stats_aggregates WHERE root_id = $1", other.root.id
        )
        assert hidden == 0
