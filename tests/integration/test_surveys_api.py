"""扫楼 household surveys over HTTP: a visit, the issue it raises in the same transaction, the
sealed and masked note, erasure, coverage per grid, roll-ups, and every error path."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from tests.integration.test_members_api import assert_problem, today
from tests.support import auth, build_tree, post_ok


async def grid_of(client: Any, jwt: Any, community: str) -> str:
    code = f"{community}G01"
    body = {"code": code, "name": "第一网格", "kind": "grid", "parent_code": community}
    await post_ok(client, "/v1/nodes", body, auth(jwt, community, "admin"))
    return code


def visit(node: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "node_code": node,
        "building": "3幢",
        "room": "2单元301",
        "visited_on": today(),
        "flags": ["group_rental"],
        "residents": 9,
        "note": "隔断出租, 住9人, 房东王某",
    }
    body.update(extra)
    return body


async def test_a_flagged_visit_raises_an_issue_in_the_same_transaction(client, jwt, pool):
    tree = await build_tree(client, jwt, streets=1, communities=1, units=1)
    community = tree.communities[tree.streets[0]][0]
    grid = await grid_of(client, jwt, community)
    op = auth(jwt, community, "operator")
    r = await post_ok(client, "/v1/surveys", visit(grid, raise_issue=True), op)
    survey_id, issue_id = r["id"], r["issue_id"]
    assert issue_id
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT stream_id, type, data, position, tx_id::text AS tx, causation_id, event_id"
            " FROM events WHERE stream_id = ANY($1::uuid[]) ORDER BY position",
            [UUID(survey_id), UUID(issue_id)],
        )
    assert [x["type"] for x in rows] == ["HouseholdVisited", "IssueReported"]
    assert rows[0]["tx"] == rows[1]["tx"]
    assert rows[1]["causation_id"] == rows[0]["event_id"]
    assert r["position"] == rows[1]["position"]  # the answer's position covers the issue
    reported = json.loads(rows[1]["data"])
    assert (reported["survey_id"], reported["source"]) == (survey_id, "survey")
    # the note is sealed in the event; the raised issue carries none of it
    assert "隔断" not in rows[0]["data"] and '"kid"' in rows[0]["data"]
    assert "隔断" not in rows[1]["data"]
    position = r["position"]
    issue = await client.get(f"/v1/issues/{issue_id}?min_position={position}", headers=op)
    assert issue.status_code == 200 and issue.json()["source"] == "survey"
    assert issue.json()["category"] == "群租房" and issue.json()["survey_id"] == survey_id
    # masked for non-admins, clear for an admin (and the reveal is recorded)
    view = await client.get(f"/v1/surveys/{survey_id}?min_position={position}", headers=op)
    assert view.status_code == 200, view.text
    body = view.json()
    assert body["note"] == "[masked]" and body["note_masked"] is True
    assert (body["flags"], body["issue_id"], body["residents"]) == (["group_rental"], issue_id, 9)
    admin = {**auth(jwt, tree.county, "admin"), "X-Reveal-Reason": "group-rental check"}
    clear = (await client.get(f"/v1/surveys/{survey_id}", headers=admin)).json()
    assert clear["note"] == "隔断出租, 住9人, 房东王某" and clear["note_masked"] is False
    async with pool.acquire() as conn:
        reason = await conn.fetchval(
            "SELECT reason FROM pii_reveals WHERE member_id = $1", UUID(survey_id)
        )
    assert reason == "group-rental check"
    # erasure shreds the survey's key: the note reads [erased] for everyone
    erased = await post_ok(client, f"/v1/surveys/{survey_id}/erase", {}, admin, 200)
    after = await client.get(
        f"/v1/surveys/{survey_id}?min_position={erased['position']}", headers=admin
    )
    assert after.json()["note"] == "[erased]" and after.json()["status"] == "erased"
    again = await client.post(f"/v1/surveys/{survey_id}/erase", headers=admin)
    assert assert_problem(again, 409)["current_state"] == "erased"
    assert_problem(await client.post(f"/v1/surveys/{survey_id}/erase", headers=op), 403)


async def test_list_coverage_and_rollups(client, jwt):
    tree = await build_tree(client, jwt, streets=1, communities=2, units=1)
    street = tree.streets[0]
    community, other = tree.communities[street]
    grid = await grid_of(client, jwt, community)
    empty_grid = await grid_of(client, jwt, other)
    op = auth(jwt, community, "operator")
    position = 0
    for body in (
        visit(grid, raise_issue=True),
        visit(grid, room="2单元302", flags=["needs_help"], note=None),
        visit(grid, flags=[], note=None),  # the same household again, nothing found
        visit(community, building="5幢", room="101", flags=["safety_hazard", "group_rental"]),
    ):
        position = max(position, (await post_ok(client, "/v1/surveys", body, op))["position"])
    viewer = auth(jwt, tree.county, "viewer")
    listed = await client.get(f"/v1/surveys?flag=group_rental&min_position={position}", headers=op)
    assert len(listed.json()["items"]) == 2
    assert all(i["note"] in ("[masked]", None) for i in listed.json()["items"])
    cov = await client.get(f"/v1/surveys/coverage?node={street}", headers=viewer)
    assert cov.status_code == 200, cov.text
    items = {i["code"]: i for i in cov.json()["items"]}
    assert items[grid]["households"] == 2 and items[grid]["visits"] == 3
    assert (items[grid]["flagged"], items[grid]["group_rentals"], items[grid]["issues_raised"]) == (
        2,
        1,
        1,
    )
    assert items[empty_grid]["visits"] == 0 and items[empty_grid]["last_visited_on"] is None
    assert items[empty_grid]["households"] == 0
    assert items[community]["households"] == 1
    for code in (community, street, tree.county):
        stats = (await client.get(f"/v1/nodes/{code}/stats", headers=viewer)).json()
        assert stats["surveys"] == {
            "households_visited": 4,
            "flagged": 3,
            "group_rentals": 2,
            "issues_raised": 1,
        }, code
    street_stats = (await client.get(f"/v1/nodes/{street}/stats", headers=viewer)).json()
    kids = {c["code"]: c["surveys"]["households_visited"] for c in street_stats["children"]}
    assert kids == {community: 4, other: 0}
    daily = await client.get(f"/v1/nodes/{street}/stats/daily?from={today()}", headers=viewer)
    assert daily.json()["items"][-1]["surveys"]["households_visited"] == 4


async def test_errors(client, jwt):
    tree = await build_tree(client, jwt, streets=2, communities=1, units=1)
    community = tree.communities[tree.streets[0]][0]
    other = tree.communities[tree.streets[1]][0]
    op = auth(jwt, community, "operator")
    assert_problem(await client.post("/v1/surveys", json=visit(other), headers=op), 404)
    assert_problem(await client.post("/v1/surveys", json=visit(tree.streets[0]), headers=op), 404)
    street_op = auth(jwt, tree.streets[0], "operator")
    assert_problem(
        await client.post("/v1/surveys", json=visit(tree.streets[0]), headers=street_op), 422
    )
    assert_problem(
        await client.post("/v1/surveys", json=visit(community, flags=["haunted"]), headers=op), 400
    )
    future = visit(community, visited_on="2999-01-01")
    assert_problem(await client.post("/v1/surveys", json=future, headers=op), 422)
    no_flag = visit(community, flags=[], raise_issue=True)
    assert_problem(await client.post("/v1/surveys", json=no_flag, headers=op), 422)
    assert_problem(
        await client.post("/v1/surveys", json=visit(community, residents=-1), headers=op), 400
    )
    viewer = auth(jwt, community, "viewer")
    assert_problem(await client.post("/v1/surveys", json=visit(community), headers=viewer), 403)
    assert_problem(await client.post("/v1/surveys", json=visit(community)), 401)
    assert_problem(
        await client.get("/v1/surveys/00000000-0000-0000-0000-000000000001", headers=op), 404
    )
    assert_problem(await client.get(f"/v1/surveys?node={other}", headers=op), 404)
    assert_problem(await client.get("/v1/surveys?flag=haunted", headers=op), 400)
    assert_problem(
        await client.get("/v1/surveys/coverage?from=2025-02-01&to=2025-01-01", headers=op), 422
    )
    # Idempotency-Key: a repeat replays, another body is 422
    keyed = {**op, "Idempotency-Key": f"visit-{community}"}
    first = await client.post("/v1/surveys", json=visit(community), headers=keyed)
    again = await client.post("/v1/surveys", json=visit(community), headers=keyed)
    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    other_body = await client.post("/v1/surveys", json=visit(community, room="9"), headers=keyed)
    assert_problem(other_body, 422)


async def test_the_feed_carries_the_visit_and_its_issue_without_the_note(client, jwt, pool):
    from tests.integration.test_feed import read_feed, settled

    tree = await build_tree(client, jwt, streets=1, communities=1, units=1)
    community = tree.communities[tree.streets[0]][0]
    r = await post_ok(
        client, "/v1/surveys", visit(community, raise_issue=True), auth(jwt, community, "operator")
    )
    await settled(pool, r["position"])
    items, _ = await read_feed(client, auth(jwt, tree.county, "integrator"))
    by_type = {i["type"]: i for i in items}
    visited = by_type["cn.civic-ledger.household.visited.v1"]
    reported = by_type["cn.civic-ledger.issue.reported.v1"]
    assert visited["subject"] == r["id"] and visited["data"]["flags"] == ["group_rental"]
    assert set(visited["data"]["note"]) >= {"alg", "kid", "nonce", "ct"}  # sealed
    assert "隔断" not in json.dumps(visited, ensure_ascii=False)
    assert reported["data"]["survey_id"] == r["id"] and reported["subject"] == r["issue_id"]


async def test_a_note_that_does_not_open_reads_unavailable_not_500(client, jwt, pool):
    tree = await build_tree(client, jwt, streets=1, communities=1, units=1)
    community = tree.communities[tree.streets[0]][0]
    r = await post_ok(client, "/v1/surveys", visit(community), auth(jwt, community, "operator"))
    admin = auth(jwt, tree.county, "admin")
    ok = await client.get(f"/v1/surveys/{r['id']}?min_position={r['position']}", headers=admin)
    assert ok.json()["note"] == "隔断出租, 住9人, 房东王某"
    async with pool.acquire() as conn:  # the read model's copy altered (not the ledger)
        await conn.execute(
            "UPDATE rm_surveys SET note = jsonb_set(note, '{ct}', '\"AAAA\"') WHERE id = $1",
            UUID(r["id"]),
        )
    bad = await client.get(f"/v1/surveys/{r['id']}", headers=admin)
    assert bad.status_code == 200 and bad.json()["note"] == "[unavailable]"
