"""A unit sees an issue while it is the current assignee (or a current whistle target), no
longer: once the issue is returned and reassigned, neither the API nor row-level security
alone shows it the issue, its later progress notes or its history."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from infra.database import scoped_transaction
from tests.support import auth, build_tree, post_ok


async def _unit_sees_in_sql(pool: Any, unit: str, issue_id: str) -> dict[str, int]:
    """What row-level security alone lets the unit's scope read (no WHERE on scope)."""
    async with pool.acquire() as conn, scoped_transaction(conn, unit):
        return {
            "events": await conn.fetchval(
                "SELECT count(*) FROM events WHERE stream_id = $1::uuid", issue_id
            ),
            "rm_issues": await conn.fetchval(
                "SELECT count(*) FROM rm_issues WHERE id = $1::uuid", issue_id
            ),
        }


async def test_a_returned_and_reassigned_issue_leaves_the_old_units_view(client, jwt, pool, clock):
    tree = await build_tree(client, jwt, streets=1, communities=1, units=2)
    [community] = tree.communities[tree.streets[0]]
    u1, u2 = tree.units
    op = auth(jwt, community, "operator")
    unit1 = auth(jwt, u1, "unit", "operator", sub="unit-1")
    unit2 = auth(jwt, u2, "unit", "operator", sub="unit-2")
    due = (clock() + timedelta(days=2)).isoformat()
    issue = await post_ok(
        client,
        "/v1/issues",
        {"node_code": community, "title": "消防通道堵塞", "category": "消防", "source": "grid"},
        op,
    )
    iid = issue["id"]
    url = f"/v1/issues/{iid}"
    first = await post_ok(client, f"{url}/assign", {"assignee_code": u1, "due_at": due}, op, 200)
    r = await client.get(f"{url}?min_position={first['position']}", headers=unit1)
    assert r.status_code == 200, r.text
    assert await _unit_sees_in_sql(pool, u1, iid) == {"events": 2, "rm_issues": 1}

    await post_ok(client, f"{url}/return", {"reason": "非本单位职责"}, unit1, 200)
    await post_ok(client, f"{url}/assign", {"assignee_code": u2, "due_at": due}, op, 200)
    noted = await post_ok(client, f"{url}/progress", {"note": "已派员核查住户信息"}, unit2, 200)
    pos = noted["position"]

    # the new assignee sees it all, the former one nothing: not the issue, its list, its history
    assert (await client.get(f"{url}?min_position={pos}", headers=unit2)).status_code == 200
    assert (await client.get(f"{url}?min_position={pos}", headers=unit1)).status_code == 404
    listed = await client.get(f"/v1/issues?min_position={pos}", headers=unit1)
    assert listed.status_code == 200 and iid not in listed.text
    assert (await client.get(f"/v1/streams/{iid}/events", headers=unit1)).status_code == 404
    history = await client.get(f"/v1/streams/{iid}/events", headers=unit2)
    assert history.status_code == 200 and "已派员核查住户信息" in history.text
    # nor may it act on it any more
    r = await client.post(f"{url}/progress", json={"note": "x"}, headers=unit1)
    assert r.status_code == 404, r.text

    # row-level security alone says the same
    assert await _unit_sees_in_sql(pool, u1, iid) == {"events": 0, "rm_issues": 0}
    assert await _unit_sees_in_sql(pool, u2, iid) == {"events": 5, "rm_issues": 1}


async def test_a_unit_stops_seeing_an_issue_it_returned(client, jwt, pool, clock):
    tree = await build_tree(client, jwt, streets=1, communities=1, units=1)
    [community] = tree.communities[tree.streets[0]]
    [u1] = tree.units
    op = auth(jwt, community, "operator")
    unit1 = auth(jwt, u1, "unit", sub="unit-1")
    due = (clock() + timedelta(days=2)).isoformat()
    issue = await post_ok(
        client,
        "/v1/issues",
        {"node_code": community, "title": "噪音扰民", "category": "环境", "source": "hotline"},
        op,
    )
    url = f"/v1/issues/{issue['id']}"
    await post_ok(client, f"{url}/assign", {"assignee_code": u1, "due_at": due}, op, 200)
    back = await post_ok(client, f"{url}/return", {"reason": "非本单位职责"}, unit1, 200)
    r = await client.get(f"{url}?min_position={back['position']}", headers=unit1)
    assert r.status_code == 404, r.text
    assert await _unit_sees_in_sql(pool, u1, issue["id"]) == {"events": 0, "rm_issues": 0}
    # reassigned to it again, it sees the whole stream again
    again = await post_ok(client, f"{url}/assign", {"assignee_code": u1, "due_at": due}, op, 200)
    r = await client.get(f"{url}?min_position={again['position']}", headers=unit1)
    assert r.status_code == 200, r.text
    assert await _unit_sees_in_sql(pool, u1, issue["id"]) == {"events": 4, "rm_issues": 1}
