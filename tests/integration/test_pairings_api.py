"""Pairings (结对共建) over HTTP: every endpoint's success and error paths."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Any

from domain.refs import CHINA_TZ
from tests.support import Tree, auth, build_tree, post_ok

PROBLEM = "application/problem+json"


def assert_problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["title"] and body["detail"] and body["type"]
    return body


def today() -> date:
    from datetime import datetime

    return datetime.now(CHINA_TZ).date()


def term(start_offset: int = -30, days: int = 365) -> tuple[str, str]:
    start = today() + timedelta(days=start_offset)
    return start.isoformat(), (start + timedelta(days=days)).isoformat()


def sign_body(
    tree: Tree, *, unit: int = 0, street: int = 0, community: int = 0, **kw: Any
) -> dict[str, Any]:
    starts_on, ends_on = term()
    body: dict[str, Any] = {
        "unit_code": tree.units[unit],
        "community_code": tree.communities[tree.streets[street]][community],
        "starts_on": starts_on,
        "ends_on": ends_on,
        "commitments": [
            {"title": "为社区捐建便民服务站", "due_on": (today() + timedelta(days=60)).isoformat()},
            {"title": "每季度开展一次联合主题党日", "due_on": ends_on},
        ],
    }
    body.update(kw)
    return body


async def read(
    client: Any,
    jwt: Any,
    tree: Tree,
    pairing_id: str,
    position: int,
    *roles: str,
    scope: str | None = None,
) -> Any:
    return await client.get(
        f"/v1/pairings/{pairing_id}?min_position={position}",
        headers=auth(jwt, scope or tree.county, *(roles or ("viewer",))),
    )


async def test_sign_read_and_list(client, jwt, pool):
    tree = await build_tree(client, jwt, streets=2, communities=1, units=2)
    op = auth(jwt, tree.county, "operator")
    signed = await post_ok(client, "/v1/pairings", sign_body(tree), op)
    assert signed["version"] == 1 and signed["position"] > 0 and signed["status"] == "active"
    assert signed["commitments_total"] == 2 and signed["commitments_fulfilled"] == 0
    other = await post_ok(client, "/v1/pairings", sign_body(tree, unit=1, street=1), op)

    r = await read(client, jwt, tree, signed["id"], other["position"])
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == '"1"'
    p = r.json()
    community = tree.communities[tree.streets[0]][0]
    assert (p["unit_code"], p["community_code"], p["status"]) == (
        tree.units[0],
        community,
        "active",
    )
    assert p["in_force"] is True
    assert [c["index"] for c in p["commitments"]] == [0, 1]
    assert p["commitments"][0]["title"] == "为社区捐建便民服务站"
    assert p["commitments"][0]["fulfilled"] is False and p["commitments"][0]["overdue"] is False

    # PairingSigned joins the community's hash chain
    async with pool.acquire() as conn:
        node_code = await conn.fetchval(
            "SELECT n.code FROM events e JOIN nodes n ON n.id = e.node_id"
            " WHERE e.stream_id = $1::uuid AND e.type = 'PairingSigned'",
            signed["id"],
        )
    assert node_code == community

    h = auth(jwt, tree.county, "viewer")
    r = await client.get("/v1/pairings", headers=h)
    assert {i["id"] for i in r.json()["items"]} == {signed["id"], other["id"]}
    r = await client.get(f"/v1/pairings?node={tree.streets[0]}", headers=h)
    assert [i["id"] for i in r.json()["items"]] == [signed["id"]]
    r = await client.get(f"/v1/pairings?node={tree.units[1]}", headers=h)
    assert [i["id"] for i in r.json()["items"]] == [other["id"]]
    r = await client.get("/v1/pairings?status=terminated", headers=h)
    assert r.json()["items"] == []
    # paging
    r = await client.get("/v1/pairings?limit=1", headers=h)
    page = r.json()
    assert len(page["items"]) == 1 and page["next_cursor"]
    r = await client.get(f"/v1/pairings?limit=1&cursor={page['next_cursor']}", headers=h)
    rest = r.json()
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    assert rest["items"][0]["id"] != page["items"][0]["id"]
    assert_problem(await client.get("/v1/pairings?cursor=garbage", headers=h), 400)
    assert_problem(await client.get("/v1/pairings?status=paused", headers=h), 400)
    # a street sees its communities' pairings only
    street_b = auth(jwt, tree.streets[1], "viewer")
    assert_problem(await client.get(f"/v1/pairings/{signed['id']}", headers=street_b), 404)
    r = await client.get("/v1/pairings", headers=street_b)
    assert [i["id"] for i in r.json()["items"]] == [other["id"]]
    assert_problem(await client.get(f"/v1/pairings?node={tree.streets[0]}", headers=street_b), 404)


async def test_sign_validation_auth_and_scope(client, jwt):
    tree = await build_tree(client, jwt, streets=2, communities=1, units=1)
    op = auth(jwt, tree.county, "operator")
    body = sign_body(tree)
    # 400: malformed JSON, unknown field, missing field, empty title
    r = await client.post(
        "/v1/pairings",
        content=b'{"unit_code": ',
        headers={**op, "content-type": "application/json"},
    )
    assert_problem(r, 400)
    assert_problem(
        await client.post("/v1/pairings", json={**body, "colour": "red"}, headers=op), 400
    )
    missing = {k: v for k, v in body.items() if k != "starts_on"}
    assert_problem(await client.post("/v1/pairings", json=missing, headers=op), 400)
    bad_title = {**body, "commitments": [{"title": "", "due_on": body["ends_on"]}]}
    assert_problem(await client.post("/v1/pairings", json=bad_title, headers=op), 400)
    assert_problem(
        await client.post("/v1/pairings", json={**body, "starts_on": "2024-02-30"}, headers=op), 400
    )
    # 422: the term ends after it starts; commitments fall within the term; node kinds
    b = assert_problem(
        await client.post("/v1/pairings", json={**body, "ends_on": body["starts_on"]}, headers=op),
        422,
    )
    assert b["errors"][0]["field"] == "ends_on"
    late = {**body, "commitments": [{"title": "x", "due_on": "2099-01-01"}]}
    b = assert_problem(await client.post("/v1/pairings", json=late, headers=op), 422)
    assert b["errors"][0]["field"] == "commitments[0].due_on"
    swapped = {**body, "unit_code": body["community_code"], "community_code": tree.units[0]}
    assert_problem(await client.post("/v1/pairings", json=swapped, headers=op), 422)
    street = {**body, "community_code": tree.streets[0]}
    assert_problem(await client.post("/v1/pairings", json=street, headers=op), 422)
    # 401, 403
    assert_problem(await client.post("/v1/pairings", json=body), 401)
    for role in ("viewer", "unit", "inspector"):
        assert_problem(
            await client.post("/v1/pairings", json=body, headers=auth(jwt, tree.county, role)), 403
        )
    # 404: outside the caller's subtree (the street does not hold the county's unit)
    street_op = auth(jwt, tree.streets[0], "operator")
    assert_problem(await client.post("/v1/pairings", json=body, headers=street_op), 404)
    other = await build_tree(client, jwt, streets=1, communities=1, units=1)
    foreign = {**body, "community_code": other.communities[other.streets[0]][0]}
    assert_problem(await client.post("/v1/pairings", json=foreign, headers=op), 404)
    # reading an unknown or malformed id
    h = auth(jwt, tree.county, "viewer")
    assert_problem(
        await client.get("/v1/pairings/00000000-0000-0000-0000-000000000000", headers=h), 404
    )
    r = await client.get("/v1/pairings/not-a-uuid", headers=h)
    assert r.status_code in (400, 404)


async def test_overlapping_terms_conflict(client, jwt):
    tree = await build_tree(client, jwt, streets=1, communities=2, units=1)
    op = auth(jwt, tree.county, "operator")
    first = await post_ok(client, "/v1/pairings", sign_body(tree), op)
    body = assert_problem(await client.post("/v1/pairings", json=sign_body(tree), headers=op), 409)
    assert "overlapping" in body["detail"]
    # a later, non-overlapping term is fine; so is another community
    start = today() + timedelta(days=400)
    later = {
        **sign_body(tree),
        "starts_on": start.isoformat(),
        "ends_on": (start + timedelta(days=365)).isoformat(),
        "commitments": [],
    }
    await post_ok(client, "/v1/pairings", later, op)
    await post_ok(client, "/v1/pairings", sign_body(tree, community=1), op)
    # once the first is terminated, its term no longer blocks a new pairing
    await post_ok(
        client, f"/v1/pairings/{first['id']}/terminate", {"reason": "单位机构改革"}, op, 200
    )
    await post_ok(client, "/v1/pairings", sign_body(tree), op)


async def test_concurrent_overlapping_signings_one_wins(client, jwt, pool):
    tree = await build_tree(client, jwt, streets=1, communities=1, units=1)
    op = auth(jwt, tree.county, "operator")
    body = sign_body(tree)
    results = await asyncio.gather(
        *(client.post("/v1/pairings", json=body, headers=op) for _ in range(3))
    )
    assert sorted(r.status_code for r in results) == [201, 409, 409], [r.text for r in results]
    async with pool.acquire() as conn:
        n = await conn.fetchval(
            "SELECT count(*) FROM events e JOIN nodes n ON n.id = e.node_id"
            " WHERE n.code = $1 AND e.type = 'PairingSigned'",
            body["community_code"],
        )
    assert n == 1


async def test_fulfil_commitments(client, jwt):
    tree = await build_tree(client, jwt, streets=1, communities=1, units=1)
    op = auth(jwt, tree.county, "operator")
    p = await post_ok(client, "/v1/pairings", sign_body(tree), op)
    url = f"/v1/pairings/{p['id']}/commitments"
    # 412 on a stale If-Match; the right one passes
    r = await client.post(
        f"{url}/0/fulfil", json={"evidence": "服务站已建成"}, headers={**op, "If-Match": '"5"'}
    )
    body = assert_problem(r, 412)
    assert body["current_version"] == 1
    done = await post_ok(
        client,
        f"{url}/0/fulfil",
        {"evidence": "服务站已于本月建成投用"},
        {**op, "If-Match": '"1"'},
        200,
    )
    assert done["version"] == 2 and done["commitments_fulfilled"] == 1
    # fulfilled once
    body = assert_problem(
        await client.post(f"{url}/0/fulfil", json={"evidence": "again"}, headers=op), 409
    )
    assert body["current_state"] == "fulfilled"
    # unknown index, empty or blank evidence, unknown field
    body = assert_problem(
        await client.post(f"{url}/7/fulfil", json={"evidence": "x"}, headers=op), 422
    )
    assert body["errors"][0]["field"] == "index"
    assert_problem(await client.post(f"{url}/-1/fulfil", json={"evidence": "x"}, headers=op), 422)
    assert_problem(await client.post(f"{url}/1/fulfil", json={"evidence": ""}, headers=op), 400)
    assert_problem(await client.post(f"{url}/1/fulfil", json={"evidence": "  "}, headers=op), 422)
    assert_problem(
        await client.post(f"{url}/1/fulfil", json={"evidence": "x", "by": "me"}, headers=op), 400
    )
    # 403 for a role that may not act; 404 for an unknown pairing
    assert_problem(
        await client.post(
            f"{url}/1/fulfil", json={"evidence": "x"}, headers=auth(jwt, tree.county, "viewer")
        ),
        403,
    )
    assert_problem(
        await client.post(
            "/v1/pairings/00000000-0000-0000-0000-000000000001/commitments/0/fulfil",
            json={"evidence": "x"},
            headers=op,
        ),
        404,
    )
    r = await read(client, jwt, tree, p["id"], done["position"])
    c = r.json()["commitments"][0]
    assert (
        c["fulfilled"] is True and c["evidence"] == "服务站已于本月建成投用" and c["fulfilled_at"]
    )
    assert r.json()["commitments_fulfilled"] == 1 and r.headers["etag"] == '"2"'


async def test_activities_and_review(client, jwt):
    tree = await build_tree(client, jwt, streets=1, communities=1, units=1)
    op = auth(jwt, tree.county, "operator")
    p = await post_ok(client, "/v1/pairings", sign_body(tree), op)
    url = f"/v1/pairings/{p['id']}"
    held = (today() - timedelta(days=3)).isoformat()
    activity = {"held_on": held, "title": "联合开展背街小巷环境整治", "participants": 35}
    await post_ok(client, f"{url}/activities", activity, op, 200)
    a2 = await post_ok(
        client,
        f"{url}/activities",
        {**activity, "held_on": today().isoformat(), "participants": 5},
        op,
        200,
    )
    future = {**activity, "held_on": (today() + timedelta(days=2)).isoformat()}
    assert_problem(await client.post(f"{url}/activities", json=future, headers=op), 422)
    before = {**activity, "held_on": (today() - timedelta(days=100)).isoformat()}
    assert_problem(await client.post(f"{url}/activities", json=before, headers=op), 422)
    assert_problem(
        await client.post(f"{url}/activities", json={**activity, "participants": 0}, headers=op),
        400,
    )
    assert_problem(
        await client.post(f"{url}/activities", json={"held_on": held, "title": "x"}, headers=op),
        400,
    )
    # review (an extension): writers only, a known rating
    assert_problem(await client.post(f"{url}/review", json={"rating": "great"}, headers=op), 422)
    assert_problem(
        await client.post(
            f"{url}/review", json={"rating": "good"}, headers=auth(jwt, tree.units[0], "unit")
        ),
        403,
    )
    reviewed = await post_ok(
        client, f"{url}/review", {"rating": "excellent", "comment": "群众满意度高"}, op, 200
    )
    r = await read(client, jwt, tree, p["id"], reviewed["position"])
    v = r.json()
    assert v["activity_count"] == 2 and v["participant_total"] == 40
    assert v["last_activity_on"] == today().isoformat() and v["rating"] == "excellent"
    assert v["version"] == 4 and a2["version"] == 3


async def test_terminate_then_everything_is_refused(client, jwt):
    tree = await build_tree(client, jwt, streets=1, communities=1, units=1)
    op = auth(jwt, tree.county, "operator")
    p = await post_ok(client, "/v1/pairings", sign_body(tree), op)
    url = f"/v1/pairings/{p['id']}"
    assert_problem(await client.post(f"{url}/terminate", json={}, headers=op), 400)
    assert_problem(
        await client.post(
            f"{url}/terminate", json={"reason": "x"}, headers=auth(jwt, tree.units[0], "unit")
        ),
        403,
    )
    # a street operator sees the community but not the county's unit: may not terminate
    assert_problem(
        await client.post(
            f"{url}/terminate", json={"reason": "x"}, headers=auth(jwt, tree.streets[0], "operator")
        ),
        403,
    )
    ended = await post_ok(client, f"{url}/terminate", {"reason": "结对单位撤并"}, op, 200)
    assert ended["status"] == "terminated"
    for path, payload in (
        ("terminate", {"reason": "again"}),
        ("commitments/0/fulfil", {"evidence": "x"}),
        ("activities", {"held_on": today().isoformat(), "title": "x", "participants": 1}),
        ("review", {"rating": "good"}),
    ):
        body = assert_problem(await client.post(f"{url}/{path}", json=payload, headers=op), 409)
        assert body["current_state"] == "terminated"
    r = await read(client, jwt, tree, p["id"], ended["position"])
    v = r.json()
    assert v["status"] == "terminated" and v["in_force"] is False
    assert v["termination_reason"] == "结对单位撤并" and v["terminated_at"]
    r = await client.get(
        f"/v1/pairings?status=terminated&min_position={ended['position']}",
        headers=auth(jwt, tree.county, "viewer"),
    )
    assert [i["id"] for i in r.json()["items"]] == [p["id"]]


async def test_unit_principal_sees_and_acts_on_its_own_pairings_only(client, jwt):
    tree = await build_tree(client, jwt, streets=1, communities=2, units=2)
    op = auth(jwt, tree.county, "operator")
    mine = await post_ok(client, "/v1/pairings", sign_body(tree), op)
    theirs = await post_ok(client, "/v1/pairings", sign_body(tree, unit=1, community=1), op)
    unit = auth(jwt, tree.units[0], "unit")
    r = await client.get(
        f"/v1/pairings/{mine['id']}?min_position={theirs['position']}", headers=unit
    )
    assert r.status_code == 200, r.text
    assert_problem(await client.get(f"/v1/pairings/{theirs['id']}", headers=unit), 404)
    r = await client.get("/v1/pairings", headers=unit)
    assert [i["id"] for i in r.json()["items"]] == [mine["id"]]
    # the unit may not read the community's other data or list by a node outside its scope
    community = tree.communities[tree.streets[0]][0]
    assert_problem(await client.get(f"/v1/pairings?node={community}", headers=unit), 404)
    # the unit side fulfils and records activities; it may not sign
    done = await post_ok(
        client,
        f"/v1/pairings/{mine['id']}/commitments/1/fulfil",
        {"evidence": "已开展四次"},
        unit,
        200,
    )
    await post_ok(
        client,
        f"/v1/pairings/{mine['id']}/activities",
        {"held_on": today().isoformat(), "title": "送医下乡", "participants": 12},
        unit,
        200,
    )
    assert_problem(await client.post("/v1/pairings", json=sign_body(tree), headers=unit), 403)
    # ...and cannot touch another unit's pairing
    assert_problem(
        await client.post(
            f"/v1/pairings/{theirs['id']}/commitments/0/fulfil",
            json={"evidence": "x"},
            headers=unit,
        ),
        404,
    )
    r = await client.get(f"/v1/pairings/{mine['id']}?min_position={done['position']}", headers=unit)
    assert r.json()["commitments"][1]["fulfilled"] is True


async def test_idempotency_key(client, jwt):
    tree = await build_tree(client, jwt, streets=1, communities=1, units=1)
    h = {**auth(jwt, tree.county, "operator"), "Idempotency-Key": "sign-once"}
    body = sign_body(tree)
    first = await client.post("/v1/pairings", json=body, headers=h)
    again = await client.post("/v1/pairings", json=body, headers=h)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json() and again.headers.get("idempotent-replayed") == "true"
    b = assert_problem(
        await client.post("/v1/pairings", json={**body, "commitments": []}, headers=h), 422
    )
    assert "Idempotency-Key" in b["detail"]


async def test_openapi_describes_pairings(client):
    paths = (await client.get("/schema/openapi.json")).json()["paths"]
    for p in (
        "/v1/pairings",
        "/v1/pairings/{pairing_id}",
        "/v1/pairings/{pairing_id}/commitments/{index}/fulfil",
        "/v1/pairings/{pairing_id}/activities",
        "/v1/pairings/{pairing_id}/review",
        "/v1/pairings/{pairing_id}/terminate",
    ):
        assert p in paths, sorted(paths)
