"""A closed node closes its subtree for commands (409 ``…/node-closed``), in every workflow;
reads and history stay available."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.findings_support import finding_body, pin_china_noon
from tests.integration.test_members_api import person, register_body
from tests.integration.test_pairings_api import sign_body
from tests.support import auth, build_tree, post_ok

PROBLEM = "application/problem+json"


def assert_node_closed(r: Any, what: str) -> None:
    assert r.status_code == 409, (what, r.status_code, r.text)
    assert r.headers["content-type"].startswith(PROBLEM), what
    assert r.json()["type"].endswith("/node-closed"), (what, r.text)


async def test_commands_under_a_closed_street_answer_node_closed(client, jwt, clock):
    today = pin_china_noon(clock)
    tree = await build_tree(client, jwt, streets=2, communities=1, units=2)
    street_a, street_b = tree.streets
    [community_a] = tree.communities[street_a]
    [community_b] = tree.communities[street_b]
    admin = auth(jwt, tree.county, "admin")
    op_a = auth(jwt, community_a, "operator")
    unit_h = auth(jwt, tree.units[0], "unit")
    due = (clock() + timedelta(days=1)).isoformat()

    # Before the close: one of everything under street A (and a unit placed under it).
    street_unit = f"U{tree.county[:6]}S01"
    await post_ok(
        client,
        "/v1/nodes",
        {"code": street_unit, "name": "街道综治中心", "kind": "unit", "parent_code": street_a},
        admin,
    )
    issue = await post_ok(
        client,
        "/v1/issues",
        {"node_code": community_a, "title": "路灯不亮", "category": "市政", "source": "grid"},
        op_a,
    )
    await post_ok(
        client,
        f"/v1/issues/{issue['id']}/assign",
        {"assignee_code": tree.units[0], "due_at": due},
        op_a,
        200,
    )
    pairing = await post_ok(client, "/v1/pairings", sign_body(tree), admin)
    member = await post_ok(
        client, "/v1/members", register_body(tree, person(), community_code=community_a), admin
    )
    other_member = await post_ok(
        client, "/v1/members", register_body(tree, person(), community_code=community_b), admin
    )
    finding = await post_ok(client, "/v1/findings", finding_body(tree, today), admin)
    issue_b = await post_ok(
        client,
        "/v1/issues",
        {"node_code": community_b, "title": "井盖缺失", "category": "市政", "source": "grid"},
        admin,
    )
    # an open street's issue, assigned to the unit under street A before the close
    issue_c = await post_ok(
        client,
        "/v1/issues",
        {"node_code": community_b, "title": "楼道灯坏", "category": "市政", "source": "grid"},
        admin,
    )
    await post_ok(
        client,
        f"/v1/issues/{issue_c['id']}/assign",
        {"assignee_code": street_unit, "due_at": due},
        admin,
        200,
    )
    street_unit_h = auth(jwt, street_unit, "unit")

    closed = await post_ok(
        client, f"/v1/nodes/{street_a}/close", {"reason": "行政区划调整"}, admin, 200
    )
    assert closed["code"] == street_a

    attempts: list[tuple[str, str, dict[str, Any], dict[str, str]]] = [
        # nodes on it and under it
        (
            "/v1/nodes",
            "grid",
            {
                "code": f"{community_a}G01",
                "name": "一网格",
                "kind": "grid",
                "parent_code": community_a,
            },
            admin,
        ),
        (f"/v1/nodes/{community_a}/rename", "rename", {"name": "新名"}, admin),
        (
            f"/v1/nodes/{community_a}/move",
            "move",
            {"new_parent_code": street_b, "reason": "调整"},
            admin,
        ),
        (f"/v1/nodes/{street_a}/close", "close again", {"reason": "再次"}, admin),
        # issues
        (
            "/v1/issues",
            "report",
            {"node_code": community_a, "title": "x", "category": "市政", "source": "grid"},
            op_a,
        ),
        (f"/v1/issues/{issue['id']}/progress", "progress", {"note": "已联系"}, unit_h),
        (f"/v1/issues/{issue['id']}/accept", "accept", {}, unit_h),
        (
            f"/v1/issues/{issue_b['id']}/assign",
            "assign to a closed unit",
            {"assignee_code": street_unit, "due_at": due},
            admin,
        ),
        # a principal inside the closed subtree, acting on an open node's issue
        (
            f"/v1/issues/{issue_c['id']}/progress",
            "closed unit's progress",
            {"note": "x"},
            street_unit_h,
        ),
        # pairings
        ("/v1/pairings", "sign", sign_body(tree, unit=1), admin),
        (
            f"/v1/pairings/{pairing['id']}/activities",
            "activity",
            {"held_on": today.isoformat(), "title": "主题党日", "participants": 5},
            admin,
        ),
        # members
        (
            "/v1/members",
            "register",
            register_body(tree, person(), community_code=community_a),
            admin,
        ),
        (f"/v1/members/{member['id']}/points", "points", {"delta": 1, "reason": "x"}, admin),
        (
            f"/v1/members/{other_member['id']}/transfer",
            "transfer in",
            {"to_community_code": community_a},
            admin,
        ),
        # findings
        ("/v1/findings", "record", finding_body(tree, today), admin),
        (f"/v1/findings/{finding['id']}/progress", "finding progress", {"note": "推进中"}, unit_h),
    ]
    for url, what, body, headers in attempts:
        assert_node_closed(await client.post(url, json=body, headers=headers), what)

    # a batch refuses the closed subtree's item only
    batch = await client.post(
        "/v1/issues:batch",
        json={
            "items": [
                {
                    "idempotency_key": f"closed-{street_a}",
                    "node_code": community_a,
                    "title": "x",
                    "category": "市政",
                    "source": "hotline",
                },
                {
                    "idempotency_key": f"open-{street_b}",
                    "node_code": community_b,
                    "title": "y",
                    "category": "市政",
                    "source": "hotline",
                },
            ]
        },
        headers=auth(jwt, tree.county, "integrator"),
    )
    assert batch.status_code == 200, batch.text
    refused, created = batch.json()["items"]
    assert refused["status"] == 409 and refused["error"]["type"].endswith("/node-closed")
    assert created["status"] == 201

    # The rest of the tenant is unaffected.
    await post_ok(
        client,
        "/v1/issues",
        {"node_code": community_b, "title": "垃圾清运", "category": "环境", "source": "grid"},
        admin,
    )
    # Reads and history stay (for principals inside the closed subtree too).
    r = await client.get(
        f"/v1/issues/{issue_c['id']}?min_position={created['position']}", headers=street_unit_h
    )
    assert r.status_code == 200, r.text
    r = await client.get(f"/v1/issues/{issue['id']}", headers=op_a)
    assert r.status_code == 200 and r.json()["status"] == "assigned"
    r = await client.get(f"/v1/streams/{issue['id']}/events", headers=op_a)
    assert r.status_code == 200 and len(r.json()["items"]) == 2
    r = await client.get(f"/v1/nodes/{street_a}", headers=admin)
    assert r.status_code == 200 and r.json()["closed"] is True


async def test_the_deadline_clock_skips_closed_subtrees(client, jwt, clock, pool):
    from services.commands.issues import IssueOverdueSweep

    tree = await build_tree(client, jwt, streets=2, communities=1, units=1)
    admin = auth(jwt, tree.county, "admin")
    ids = {}
    for street in tree.streets:
        [community] = tree.communities[street]
        issue = await post_ok(
            client,
            "/v1/issues",
            {"node_code": community, "title": "占道经营", "category": "城管", "source": "grid"},
            admin,
        )
        done = await post_ok(
            client,
            f"/v1/issues/{issue['id']}/assign",
            {"assignee_code": tree.units[0], "due_at": (clock() + timedelta(hours=1)).isoformat()},
            admin,
            200,
        )
        ids[street] = issue["id"]
    await client.get(f"/v1/issues?limit=1&min_position={done['position']}", headers=admin)
    await post_ok(client, f"/v1/nodes/{tree.streets[0]}/close", {"reason": "撤并"}, admin, 200)
    async with pool.acquire() as conn:
        due = await IssueOverdueSweep().due(conn, clock() + timedelta(days=400), 100_000)
    due_ids = {str(item.stream_id) for item in due}
    # the open street's issue is due (the control), the closed street's is left alone
    assert ids[tree.streets[1]] in due_ids and ids[tree.streets[0]] not in due_ids
