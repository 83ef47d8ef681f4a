"""Each unit's record (考核): /v1/units/{code}/stats, its daily series, the ranking
/v1/nodes/{code}/units and a unit's entry among a node's children — against a brute-force
recount of the seeded world of ``bench.world`` (see test_stats.py)."""

from __future__ import annotations

import io
import random
from datetime import date, timedelta
from typing import Any

from openpyxl import load_workbook

from bench.world import china_day
from projections.runner import wait_for_position
from services.api.unit_stats import rank_key
from tests.integration import test_stats
from tests.spreadsheet_checks import csv_rows, xlsx_cells
from tests.stats_recount import load_events
from tests.support import auth, build_tree
from tests.unit_recount import (
    UnitRecount,
    expected_child_groups,
    expected_unit_groups,
    unit_recount_by_day,
)

GROUPS = ("pairings", "issues", "rectifications", "members")
SORTS = ("fulfil_rate", "on_time_rate", "satisfaction_rate", "completion_rate", "service_hours")


async def make_world(pool: Any, seed: int, operations: int, **kw: Any) -> Any:
    """The world of test_stats.py, with the units' records caught up too."""
    gen, last = await test_stats.make_world(pool, seed, operations, **kw)
    async with pool.acquire() as conn:
        assert await wait_for_position(conn, ["unit_stats"], last, timeout=60)
    return gen, last


def groups_of(body: dict[str, Any]) -> dict[str, Any]:
    return {g: body[g] for g in GROUPS}


def sort_value(groups: dict[str, Any], sort: str) -> float | None:
    if sort == "service_hours":
        value: float | None = groups["members"]["service_hours"]
        return value
    group = {"fulfil_rate": "pairings", "completion_rate": "rectifications"}.get(sort, "issues")
    found: float | None = groups[group][sort]
    return found


async def test_every_unit_now_as_of_and_daily_equals_a_recount(client, jwt, pool):
    gen, _ = await make_world(pool, seed=20310302, operations=1500)
    assert gen.root is not None
    events = await load_events(pool, gen.root.id)
    types = {e.type for e in events}
    assert {"IssueReturned", "IssueOverdue", "RectificationOverdue", "IssueEvaluated"} <= types
    units = [u.id for u in gen.units]
    days = sorted({china_day(e.occurred_at) for e in events})
    first, last = days[0] - timedelta(days=1), days[-1] + timedelta(days=2)
    wanted = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    recount, snapshots = unit_recount_by_day(events, units, wanted)
    now = recount.unit_snapshot(units)
    assert all(any(now[u].values()) for u in units)  # every unit has a record to check
    headers = auth(jwt, gen.county_code, "viewer")
    code = {u.id: u.code for u in gen.units}

    for u in units:
        r = await client.get(f"/v1/units/{code[u]}/stats", headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["code"] == code[u] and body["as_of"] is None
        assert groups_of(body) == expected_unit_groups(now[u]), code[u]

    rng = random.Random(2)
    for day in [wanted[0], *rng.sample(days, 4), wanted[-1]]:
        for u in units:
            r = await client.get(f"/v1/units/{code[u]}/stats?as_of={day}", headers=headers)
            assert r.status_code == 200, r.text
            assert r.json()["as_of"] == day.isoformat()
            assert groups_of(r.json()) == expected_unit_groups(snapshots[day][u]), (code[u], day)

    for u in units:
        r = await client.get(
            f"/v1/units/{code[u]}/stats/daily?from={wanted[0]}&to={wanted[-1]}", headers=headers
        )
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        assert [date.fromisoformat(i["date"]) for i in items] == wanted
        for item, day in zip(items, wanted, strict=True):
            assert groups_of(item) == expected_unit_groups(snapshots[day][u]), (code[u], day)

    # the ranking of the county's units, by every figure, both orders, two per page
    for sort in SORTS:
        for order in ("desc", "asc"):
            expected = sorted(
                units,
                key=lambda u: rank_key(
                    sort_value(expected_unit_groups(now[u]), sort), code[u], order
                ),
            )
            got: list[str] = []
            cursor = None
            for _ in range(10):
                q = f"/v1/nodes/{gen.county_code}/units?sort={sort}&order={order}&limit=2"
                r = await client.get(q + (f"&cursor={cursor}" if cursor else ""), headers=headers)
                assert r.status_code == 200, r.text
                page = r.json()
                for item in page["items"]:
                    unit = next(u for u in units if code[u] == item["code"])
                    assert groups_of(item) == expected_unit_groups(now[unit])
                got += [i["code"] for i in page["items"]]
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            assert got == [code[u] for u in expected], (sort, order)

    # a unit's entry among its parent's children is its record, now and as of a day
    day = rng.choice(days)
    parents = {u.parent_id for u in gen.units}
    assert gen.root.id in parents and len(parents) == 2  # under the county and a street
    for parent_id in parents:
        parent = gen.nodes[parent_id]
        for as_of, counts in ((None, now), (day, snapshots[day])):
            q = f"/v1/nodes/{parent.code}/stats" + (f"?as_of={as_of}" if as_of else "")
            r = await client.get(q, headers=headers)
            assert r.status_code == 200, r.text
            kids = {c["code"]: c for c in r.json()["children"]}
            for unit in [u for u in gen.units if u.parent_id == parent_id]:
                entry = kids[unit.code]
                assert entry["kind"] == "unit"
                entry_groups = expected_child_groups(counts[unit.id])
                assert groups_of(entry) == entry_groups, (unit.code, as_of)
            others = [c for c in kids.values() if c["kind"] != "unit"]
            assert others and all(c["kind"] in ("street", "community") for c in others)


async def test_ranking_export_opens_with_the_ranking_rows(client, jwt, pool):
    gen, _ = await make_world(pool, seed=11, operations=300, moves=False)
    assert gen.root is not None
    events = await load_events(pool, gen.root.id)
    recount = UnitRecount()
    for e in events:
        recount.apply(e)
    units = [u.id for u in gen.units]
    now = recount.unit_snapshot(units)
    code = {u.id: u.code for u in gen.units}
    name = {u.id: u.name for u in gen.units}
    headers = auth(jwt, gen.county_code, "viewer")
    order = sorted(
        units,
        key=lambda u: rank_key(
            sort_value(expected_unit_groups(now[u]), "on_time_rate"), code[u], "desc"
        ),
    )
    url = f"/v1/nodes/{gen.county_code}/units/export?sort=on_time_rate"
    r = await client.get(f"{url}&format=xlsx", headers=headers)
    assert r.status_code == 200, r.text
    assert "attachment" in r.headers["content-disposition"]
    rows = xlsx_cells(r.content, "单位考核排名")
    assert rows[2][:3] == ["排名", "单位代码", "单位名称"]
    body = rows[3:]
    assert [row[1] for row in body] == [code[u] for u in order]
    assert [row[0] for row in body] == list(range(1, len(units) + 1))
    for row, u in zip(body, order, strict=True):
        g = expected_unit_groups(now[u])
        assert row[2] == name[u]
        assert row[7] == g["issues"]["assigned"] and row[12] == g["issues"]["on_time_rate"]
        assert row[19] == g["members"]["service_hours"]
    ws = load_workbook(io.BytesIO(r.content))["单位考核排名"]
    assert ws.freeze_panes == "A4" and ws.page_setup.orientation == "landscape"

    r = await client.get(f"{url}&format=csv", headers=headers)
    assert r.status_code == 200, r.text
    lines = csv_rows(r.content)
    assert lines[0][:3] == ["排名", "单位代码", "单位名称"]
    assert [line[1] for line in lines[1:]] == [code[u] for u in order]


async def test_scope_roles_and_validation(client, jwt):
    tree = await build_tree(client, jwt, streets=2, communities=1, units=2)
    u1, u2 = tree.units
    wait = f"min_position={tree.last_position}"
    county = auth(jwt, tree.county, "viewer")
    for role in ("viewer", "operator", "unit", "inspector", "admin", "integrator"):
        r = await client.get(f"/v1/units/{u1}/stats?{wait}", headers=auth(jwt, tree.county, role))
        assert r.status_code == 200, (role, r.text)
    body = r.json()
    assert body["issues"] == {
        "assigned": 0,
        "open": 0,
        "closed": 0,
        "overdue": 0,
        "returned": 0,
        "on_time_rate": None,
        "satisfaction_rate": None,
        "resolution_rate": None,
    }
    own = auth(jwt, u1, "unit")
    assert (await client.get(f"/v1/units/{u1}/stats", headers=own)).status_code == 200
    street = auth(jwt, tree.streets[0], "viewer")
    for url, headers in (
        (f"/v1/units/{u2}/stats", own),  # another unit
        (f"/v1/units/{u1}/stats", street),  # a unit outside the street
        (f"/v1/units/{tree.streets[0]}/stats", county),  # not a unit
        ("/v1/units/U999999999/stats", county),
        (f"/v1/nodes/{tree.county}/units", street),
    ):
        r = await client.get(url, headers=headers)
        assert r.status_code == 404, (url, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    assert (await client.get(f"/v1/units/{u1}/stats")).status_code == 401
    ranking = f"/v1/nodes/{tree.county}/units"
    for bad in ("?sort=points", "?order=up", "?limit=0", "?cursor=xyz", "?as_of=2024-02-30"):
        r = await client.get(ranking + bad, headers=county)
        assert r.status_code == 400, (bad, r.text)
    r = await client.get(f"{ranking}?{wait}", headers=county)
    assert r.status_code == 200
    assert [i["code"] for i in r.json()["items"]] == [u1, u2]  # no rates: by code
    # a street has no units of its own: an empty ranking
    r = await client.get(f"/v1/nodes/{tree.streets[0]}/units", headers=street)
    assert r.status_code == 200 and r.json() == {"items": [], "next_cursor": None}
    daily = f"/v1/units/{u1}/stats/daily"
    r = await client.get(f"{daily}?from=2025-01-01&to=2026-01-02", headers=county)
    assert r.status_code == 422


async def test_work_through_the_api_counts_for_the_unit(client, jwt):
    """Pairing, issue (assign → return → reassign elsewhere) and member through the HTTP
    API: each counts for the unit it names."""
    tree = await build_tree(client, jwt, streets=1, communities=1, units=2)
    u1, u2 = tree.units
    community = tree.communities[tree.streets[0]][0]
    admin = auth(jwt, tree.county, "admin")
    r = await client.post(
        "/v1/pairings",
        json={
            "unit_code": u1,
            "community_code": community,
            "starts_on": "2026-01-01",
            "ends_on": "2027-12-31",
            "commitments": [{"title": "捐建图书角", "due_on": "2026-06-01"}],
        },
        headers=admin,
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        "/v1/issues",
        json={"node_code": community, "title": "路灯不亮", "category": "市政", "source": "grid"},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    issue = r.json()["id"]
    due = "2031-01-01T12:00:00+08:00"
    for path, body in (
        ("assign", {"assignee_code": u1, "due_at": due}),
        ("return", {"reason": "不属于本单位职责"}),
        ("assign", {"assignee_code": u2, "due_at": due}),
    ):
        r = await client.post(f"/v1/issues/{issue}/{path}", json=body, headers=admin)
        assert r.status_code == 200, r.text
    r = await client.post(
        "/v1/members",
        json={
            "community_code": community,
            "name": "张三",
            "phone": "13812341234",
            "home_unit_code": u2,
        },
        headers=admin,
    )
    assert r.status_code == 201, r.text
    position = r.json()["position"]

    async def record(unit: str) -> dict[str, Any]:
        r = await client.get(f"/v1/units/{unit}/stats?min_position={position}", headers=admin)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    one, two = await record(u1), await record(u2)
    assert one["pairings"]["active"] == 1 and one["pairings"]["commitments"] == 1
    assert (one["issues"]["assigned"], one["issues"]["returned"], one["issues"]["open"]) == (
        1,
        1,
        0,
    )
    assert (two["issues"]["assigned"], two["issues"]["returned"], two["issues"]["open"]) == (
        1,
        0,
        1,
    )
    assert two["members"]["registered"] == 1 and one["members"]["registered"] == 0
    assert two["pairings"]["active"] == 0
