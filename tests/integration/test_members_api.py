"""Member registration (双报到) over HTTP: every endpoint's success and error paths,
masking, erasure, transfer attribution, concurrency and unit visibility."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime, timedelta
from typing import Any

from domain.personal_data import ERASED, id_check_digit
from domain.refs import CHINA_TZ
from tests.support import Tree, auth, build_tree, post_ok

PROBLEM = "application/problem+json"
_people = itertools.count(1)


def assert_problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["title"] and body["detail"] and body["type"]
    return body


def id_number(n: int) -> str:
    first17 = f"330106199001{n % 100000:05d}"
    return first17 + id_check_digit(first17)


def person() -> dict[str, str]:
    """A fresh person (unique mobile and ID number within this test run)."""
    n = next(_people) + 1000 * (datetime.now().microsecond % 1000)
    return {"name": "张三丰", "phone": f"138{n % 100_000_000:08d}", "id_number": id_number(n)}


def today() -> str:
    return datetime.now(CHINA_TZ).date().isoformat()


def community(tree: Tree, street: int = 0, index: int = 0) -> str:
    return tree.communities[tree.streets[street]][index]


def register_body(tree: Tree, who: dict[str, str] | None = None, **kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "community_code": community(tree),
        **(who or person()),
        "home_unit_code": tree.units[0],
    }
    body.update(kw)
    return body


async def read(
    client: Any, jwt: Any, scope: str, member_id: str, position: int, *roles: str
) -> Any:
    return await client.get(
        f"/v1/members/{member_id}?min_position={position}",
        headers=auth(jwt, scope, *(roles or ("viewer",))),
    )


async def event_chain(pool: Any, member_id: str) -> list[tuple[str, str]]:
    """(event type, code of the node whose chain it joined), in stream order."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT e.type, n.code FROM events e JOIN nodes n ON n.id = e.node_id"
            " WHERE e.stream_id = $1::uuid ORDER BY e.version",
            member_id,
        )
    return [(r["type"], r["code"]) for r in rows]


async def test_register_read_and_masking(client, jwt, pool):
    tree = await build_tree(client, jwt, streets=1, communities=1, units=1)
    op = auth(jwt, tree.county, "operator")
    who = {"name": "欧阳娜娜", "phone": "13812341234", "id_number": id_number(42)}
    r = await client.post("/v1/members", json=register_body(tree, who), headers=op)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["version"] == 1 and created["status"] == "active" and created["position"] > 0
    # command answers carry no personal data
    for value in who.values():
        assert value not in r.text

    r = await read(client, jwt, tree.county, created["id"], created["position"], "operator")
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == '"1"'
    m = r.json()
    assert m["name"] == "欧***" and m["phone"] == "138****1234"
    assert m["id_number"] == who["id_number"][:6] + "********" + who["id_number"][-4:]
    assert m["personal_data_masked"] is True
    assert (m["community_code"], m["home_unit_code"], m["status"]) == (
        community(tree),
        tree.units[0],
        "active",
    )
    assert m["service_hours"] == 0 and m["points"] == 0 and m["former_community_codes"] == []

    admin = await read(client, jwt, tree.county, created["id"], 0, "admin")
    a = admin.json()
    assert (a["name"], a["phone"], a["id_number"]) == (who["name"], who["phone"], who["id_number"])
    assert a["personal_data_masked"] is False

    listed = await client.get("/v1/members", headers=auth(jwt, tree.county, "viewer"))
    [item] = listed.json()["items"]
    assert item["phone"] == "138****1234" and item["personal_data_masked"] is True
    listed = await client.get(
        f"/v1/members?node={community(tree)}", headers=auth(jwt, tree.county, "admin")
    )
    assert listed.json()["items"][0]["phone"] == who["phone"]

    assert await event_chain(pool, created["id"]) == [("MemberRegistered", community(tree))]
    # the duplicate index holds a keyed hash, never the plaintext
    async with pool.acquire() as conn:
        stored = await conn.fetchval(
            "SELECT identity_hash FROM member_identities WHERE member_id = $1::uuid", created["id"]
        )
    assert len(stored) == 32 and who["id_number"].encode() not in stored


async def test_register_validation_auth_and_scope(client, jwt):
    tree = await build_tree(client, jwt, streets=2, communities=1, units=1)
    op = auth(jwt, tree.county, "operator")
    body = register_body(tree)
    r = await client.post(
        "/v1/members", content=b'{"name": ', headers={**op, "content-type": "application/json"}
    )
    assert_problem(r, 400)
    assert_problem(await client.post("/v1/members", json={**body, "age": 40}, headers=op), 400)
    no_phone = {k: v for k, v in body.items() if k != "phone"}
    assert_problem(await client.post("/v1/members", json=no_phone, headers=op), 400)
    assert_problem(await client.post("/v1/members", json={**body, "name": ""}, headers=op), 400)
    for field, value in (
        ("phone", "12345"),
        ("phone", "23812341234"),
        ("id_number", body["id_number"][:17] + ("0" if body["id_number"][17] != "0" else "1")),
        ("id_number", "33010619900101"),
        ("name", "   "),
    ):
        b = assert_problem(
            await client.post("/v1/members", json={**body, field: value}, headers=op), 422
        )
        assert b["errors"][0]["field"] == field
        # a 422 never echoes the personal data it refused
        assert value.strip() == "" or value not in b["detail"]
    b = assert_problem(
        await client.post(
            "/v1/members", json={**body, "home_unit_code": community(tree)}, headers=op
        ),
        422,
    )
    assert b["errors"][0]["field"] == "home_unit_code"
    b = assert_problem(
        await client.post(
            "/v1/members", json={**body, "community_code": tree.streets[0]}, headers=op
        ),
        422,
    )
    # a grid of another community
    admin = auth(jwt, tree.county, "admin")
    grid = f"G{community(tree, 1)}"
    await post_ok(
        client,
        "/v1/nodes",
        {"code": grid, "name": "一网格", "kind": "grid", "parent_code": community(tree, 1)},
        admin,
    )
    b = assert_problem(
        await client.post("/v1/members", json={**body, "grid_code": grid}, headers=op), 422
    )
    assert b["errors"][0]["field"] == "grid_code"
    # 401, 403, 404
    assert_problem(await client.post("/v1/members", json=body), 401)
    for role in ("viewer", "unit", "inspector", "integrator"):
        assert_problem(
            await client.post("/v1/members", json=body, headers=auth(jwt, tree.county, role)), 403
        )
    street_b = auth(jwt, tree.streets[1], "operator")
    assert_problem(await client.post("/v1/members", json=body, headers=street_b), 404)
    assert_problem(
        await client.post("/v1/members", json={**body, "home_unit_code": "U-NOPE"}, headers=op), 404
    )
    h = auth(jwt, tree.county, "viewer")
    assert_problem(
        await client.get("/v1/members/00000000-0000-0000-0000-000000000000", headers=h), 404
    )
    assert_problem(await client.get("/v1/members?status=gone", headers=h), 400)
    assert_problem(
        await client.get(
            f"/v1/members?node={tree.streets[1]}", headers=auth(jwt, tree.streets[0], "viewer")
        ),
        404,
    )
    # registration with a grid of the member's own community, no ID number
    grid_a = f"G{community(tree)}"
    await post_ok(
        client,
        "/v1/nodes",
        {"code": grid_a, "name": "一网格", "kind": "grid", "parent_code": community(tree)},
        admin,
    )
    no_id = {k: v for k, v in body.items() if k != "id_number"}
    created = await post_ok(client, "/v1/members", {**no_id, "grid_code": grid_a}, op)
    m = (await read(client, jwt, tree.county, created["id"], created["position"])).json()
    assert m["grid_code"] == grid_a and m["id_number"] is None


async def test_the_same_person_once_per_community(client, jwt):
    tree = await build_tree(client, jwt, streets=1, communities=2, units=1)
    op = auth(jwt, tree.county, "operator")
    who = person()
    first = await post_ok(client, "/v1/members", register_body(tree, who), op)
    # same ID number, another phone and spelling: the same person
    again = {**who, "phone": "13900000000", "name": "张三"}
    b = assert_problem(
        await client.post("/v1/members", json=register_body(tree, again), headers=op), 409
    )
    assert who["id_number"] not in b["detail"] and who["phone"] not in b["detail"]
    # another community is fine
    await post_ok(
        client, "/v1/members", register_body(tree, who, community_code=community(tree, 0, 1)), op
    )
    # without an ID number, the mobile identifies the person
    phone_only = {"name": "李四", "phone": "+86 137-1111-2222"}
    await post_ok(client, "/v1/members", register_body(tree, phone_only), op)
    assert_problem(
        await client.post(
            "/v1/members",
            json=register_body(tree, {"name": "李四", "phone": "13711112222"}),
            headers=op,
        ),
        409,
    )
    # deregistration frees the slot
    await post_ok(
        client, f"/v1/members/{first['id']}/deregister", {"reason": "迁出本社区"}, op, 200
    )
    await post_ok(client, "/v1/members", register_body(tree, who), op)


async def test_concurrent_identical_registrations(client, jwt, pool):
    tree = await build_tree(client, jwt, streets=1, communities=1, units=1)
    op = auth(jwt, tree.county, "operator")
    body = register_body(tree)
    results = await asyncio.gather(
        *(client.post("/v1/members", json=body, headers=op) for _ in range(2))
    )
    assert sorted(r.status_code for r in results) == [201, 409], [r.text for r in results]
    async with pool.acquire() as conn:
        n = await conn.fetchval(
            "SELECT count(*) FROM events e JOIN nodes n ON n.id = e.node_id"
            " WHERE n.code = $1 AND e.type = 'MemberRegistered'",
            community(tree),
        )
    assert n == 1


async def test_services_and_points(client, jwt, pool):
    tree = await build_tree(client, jwt, streets=1, communities=1, units=1)
    op = auth(jwt, tree.county, "operator")
    m = await post_ok(client, "/v1/members", register_body(tree), op)
    url = f"/v1/members/{m['id']}"
    service = {"served_on": today(), "hours": 2.5, "kind": "志愿服务"}
    s1 = await post_ok(client, f"{url}/services", service, op, 200)
    assert s1["service_hours"] == 2.5 and s1["version"] == 2
    for bad in ({"hours": 0}, {"hours": 24.5}, {"hours": -1}):
        assert_problem(
            await client.post(f"{url}/services", json={**service, **bad}, headers=op), 422
        )
    tomorrow = (datetime.now(CHINA_TZ).date() + timedelta(days=1)).isoformat()
    b = assert_problem(
        await client.post(f"{url}/services", json={**service, "served_on": tomorrow}, headers=op),
        422,
    )
    assert b["errors"][0]["field"] == "served_on"
    assert_problem(
        await client.post(f"{url}/services", json={**service, "kind": ""}, headers=op), 400
    )
    assert_problem(
        await client.post(f"{url}/services", json={**service, "hours": "two"}, headers=op), 400
    )
    assert_problem(
        await client.post(
            f"{url}/services", json=service, headers=auth(jwt, tree.county, "viewer")
        ),
        403,
    )
    # points: + awards, - deducts, 0 refused, never below zero
    await post_ok(client, f"{url}/points", {"delta": 10, "reason": "参加社区义诊"}, op, 200)
    p = await post_ok(client, f"{url}/points", {"delta": -3, "reason": "活动缺席"}, op, 200)
    assert p["points"] == 7
    b = assert_problem(
        await client.post(f"{url}/points", json={"delta": 0, "reason": "x"}, headers=op), 422
    )
    assert b["errors"][0]["field"] == "delta"
    assert_problem(
        await client.post(f"{url}/points", json={"delta": -8, "reason": "x"}, headers=op), 422
    )
    assert_problem(await client.post(f"{url}/points", json={"delta": 5}, headers=op), 400)
    # If-Match
    r = await client.post(
        f"{url}/points", json={"delta": 1, "reason": "x"}, headers={**op, "If-Match": '"2"'}
    )
    assert assert_problem(r, 412)["current_version"] == 4
    p = await post_ok(
        client, f"{url}/points", {"delta": 1, "reason": "x"}, {**op, "If-Match": '"4"'}, 200
    )
    r = await read(client, jwt, tree.county, m["id"], p["position"])
    v = r.json()
    assert v["service_hours"] == 2.5 and v["service_count"] == 1 and v["points"] == 8
    assert r.headers["etag"] == '"5"'
    assert [t for t, _ in await event_chain(pool, m["id"])] == [
        "MemberRegistered",
        "ServiceRecorded",
        "PointsAwarded",
        "PointsDeducted",
        "PointsAwarded",
    ]
    # unknown member
    assert_problem(
        await client.post(
            "/v1/members/00000000-0000-0000-0000-000000000002/points",
            json={"delta": 1, "reason": "x"},
            headers=op,
        ),
        404,
    )


async def test_transfer_keeps_history_where_it_happened(client, jwt, pool):
    tree = await build_tree(client, jwt, streets=2, communities=1, units=1)
    a, b = community(tree, 0), community(tree, 1)
    street_a = auth(jwt, tree.streets[0], "operator")
    street_b = auth(jwt, tree.streets[1], "operator")
    who = person()
    m = await post_ok(client, "/v1/members", register_body(tree, who, community_code=a), street_a)
    url = f"/v1/members/{m['id']}"
    await post_ok(
        client,
        f"{url}/services",
        {"served_on": today(), "hours": 3, "kind": "扫楼走访"},
        street_a,
        200,
    )
    # validation first: same community, a street, unknown code, unknown field
    assert_problem(
        await client.post(f"{url}/transfer", json={"to_community_code": a}, headers=street_a), 422
    )
    assert_problem(
        await client.post(
            f"{url}/transfer", json={"to_community_code": tree.streets[0]}, headers=street_a
        ),
        422,
    )
    assert_problem(
        await client.post(f"{url}/transfer", json={"to_community_code": "999"}, headers=street_a),
        404,
    )
    assert_problem(
        await client.post(
            f"{url}/transfer", json={"to_community_code": b, "why": "x"}, headers=street_a
        ),
        400,
    )
    assert_problem(
        await client.post(
            f"{url}/transfer",
            json={"to_community_code": b, "grid_code": a},
            headers=auth(jwt, tree.county, "operator"),
        ),
        422,
    )
    # street B cannot act on street A's member
    assert_problem(
        await client.post(f"{url}/transfer", json={"to_community_code": b}, headers=street_b), 404
    )
    # nor may street A move it into street B: b is outside its scope, like an unknown code
    assert_problem(
        await client.post(f"{url}/transfer", json={"to_community_code": b}, headers=street_a), 404
    )
    # between streets, a principal whose scope holds both moves the member
    county = auth(jwt, tree.county, "operator")
    # the person is already registered at b: 409
    dup = await post_ok(client, "/v1/members", register_body(tree, who, community_code=b), street_b)
    assert_problem(
        await client.post(f"{url}/transfer", json={"to_community_code": b}, headers=county), 409
    )
    await post_ok(
        client, f"/v1/members/{dup['id']}/deregister", {"reason": "重复登记"}, street_b, 200
    )

    moved = await post_ok(client, f"{url}/transfer", {"to_community_code": b}, county, 200)
    assert moved["community_code"] == b and moved["version"] == 3
    # street A no longer runs the member; street B does, and its first event joins b's chain
    assert_problem(
        await client.post(f"{url}/points", json={"delta": 1, "reason": "x"}, headers=street_a), 404
    )
    later = await post_ok(
        client,
        f"{url}/services",
        {"served_on": today(), "hours": 1.5, "kind": "文明劝导"},
        street_b,
        200,
    )
    assert later["version"] == 4 and later["service_hours"] == 4.5
    assert await event_chain(pool, m["id"]) == [
        ("MemberRegistered", a),
        ("ServiceRecorded", a),
        ("MemberTransferred", a),
        ("ServiceRecorded", b),
    ]
    r = await read(client, jwt, tree.streets[1], m["id"], later["position"])
    v = r.json()
    assert v["community_code"] == b and v["former_community_codes"] == [a]
    assert v["service_hours"] == 4.5 and v["transferred_at"]
    assert_problem(
        await client.get(f"/v1/members/{m['id']}", headers=auth(jwt, tree.streets[0], "viewer")),
        404,
    )
    listed = await client.get(f"/v1/members?node={a}", headers=auth(jwt, tree.county, "viewer"))
    assert m["id"] not in {i["id"] for i in listed.json()["items"]}
    # the person now occupies b: registering them there again conflicts
    assert_problem(
        await client.post(
            "/v1/members", json=register_body(tree, who, community_code=b), headers=street_b
        ),
        409,
    )


async def test_deregister_and_erase(client, jwt, pool):
    tree = await build_tree(client, jwt, streets=1, communities=1, units=1)
    op = auth(jwt, tree.county, "operator")
    admin = auth(jwt, tree.county, "admin")
    m = await post_ok(client, "/v1/members", register_body(tree), op)
    url = f"/v1/members/{m['id']}"
    assert_problem(await client.post(f"{url}/deregister", json={"reason": ""}, headers=op), 400)
    d = await post_ok(client, f"{url}/deregister", {"reason": "调离本县"}, op, 200)
    assert d["status"] == "deregistered"
    for path, payload in (
        ("services", {"served_on": today(), "hours": 1, "kind": "x"}),
        ("points", {"delta": 1, "reason": "x"}),
        ("transfer", {"to_community_code": community(tree)}),
        ("deregister", {"reason": "again"}),
    ):
        b = assert_problem(await client.post(f"{url}/{path}", json=payload, headers=op), 409)
        assert b["current_state"] == "deregistered"
    # erase: admin only; the body is optional
    assert_problem(await client.post(f"{url}/erase", headers=op), 403)
    assert_problem(
        await client.post(f"{url}/erase", json={"reason": "x", "y": 1}, headers=admin), 400
    )
    r = await client.post(f"{url}/erase", headers=admin)
    assert r.status_code == 200, r.text
    e = r.json()
    assert e["status"] == "erased" and e["version"] == 3
    b = assert_problem(await client.post(f"{url}/erase", headers=admin), 409)
    assert b["current_state"] == "erased"
    for roles in (("admin",), ("operator",)):
        v = (await read(client, jwt, tree.county, m["id"], e["position"], *roles)).json()
        assert (v["name"], v["phone"], v["id_number"]) == (ERASED, ERASED, ERASED)
        assert v["status"] == "erased" and v["erased_at"]
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT identity_hash, active FROM member_identities WHERE member_id = $1::uuid",
            m["id"],
        )
        person_col = await conn.fetchval(
            "SELECT person FROM rm_members WHERE id = $1::uuid", m["id"]
        )
    assert row["identity_hash"] is None and row["active"] is False and person_col is None
    # an active member can be erased too, with a reason
    m2 = await post_ok(client, "/v1/members", register_body(tree), op)
    e2 = await post_ok(
        client, f"/v1/members/{m2['id']}/erase", {"reason": "本人申请删除个人信息"}, admin, 200
    )
    r = await client.get(
        f"/v1/members?status=erased&min_position={e2['position']}",
        headers=auth(jwt, tree.county, "viewer"),
    )
    assert {i["id"] for i in r.json()["items"]} == {m["id"], m2["id"]}
    assert {i["phone"] for i in r.json()["items"]} == {ERASED}


async def test_unit_registrations(client, jwt):
    tree = await build_tree(client, jwt, streets=2, communities=1, units=2)
    unit = auth(jwt, tree.units[0], "unit")
    a, b = community(tree, 0), community(tree, 1)
    first = await post_ok(
        client, f"/v1/units/{tree.units[0]}/registrations", {"community_code": a}, unit
    )
    assert first["unit_code"] == tree.units[0] and first["community_code"] == a
    assert_problem(
        await client.post(
            f"/v1/units/{tree.units[0]}/registrations", json={"community_code": a}, headers=unit
        ),
        409,
    )
    # a unit principal reports only its own unit
    assert_problem(
        await client.post(
            f"/v1/units/{tree.units[1]}/registrations", json={"community_code": a}, headers=unit
        ),
        404,
    )
    # an operator of street B records unit 2 reporting to its community; not to street A's
    street_b = auth(jwt, tree.streets[1], "operator")
    second = await post_ok(
        client, f"/v1/units/{tree.units[1]}/registrations", {"community_code": b}, street_b
    )
    assert_problem(
        await client.post(
            f"/v1/units/{tree.units[1]}/registrations", json={"community_code": a}, headers=street_b
        ),
        404,
    )
    # kinds, roles, body
    assert_problem(
        await client.post(
            f"/v1/units/{tree.units[0]}/registrations",
            json={"community_code": tree.streets[0]},
            headers=unit,
        ),
        422,
    )
    assert_problem(
        await client.post(
            f"/v1/units/{a}/registrations",
            json={"community_code": b},
            headers=auth(jwt, tree.county, "operator"),
        ),
        422,
    )
    assert_problem(
        await client.post(
            f"/v1/units/{tree.units[0]}/registrations",
            json={"community_code": b},
            headers=auth(jwt, tree.county, "viewer"),
        ),
        403,
    )
    assert_problem(
        await client.post(
            f"/v1/units/{tree.units[0]}/registrations",
            json={"community_code": b},
            headers=auth(jwt, tree.streets[1], "unit"),
        ),
        403,
    )
    assert_problem(
        await client.post(f"/v1/units/{tree.units[0]}/registrations", json={}, headers=unit), 400
    )
    # reads: the unit sees its own registrations; street B sees those at its communities
    r = await client.get(
        f"/v1/units/{tree.units[0]}/registrations?min_position={second['position']}", headers=unit
    )
    assert [x["community_code"] for x in r.json()["items"]] == [a]
    assert r.json()["next_cursor"] is None
    # a unit outside street B with nothing there to show answers as an unknown code would
    r = await client.get(
        f"/v1/units/{tree.units[0]}/registrations", headers=auth(jwt, tree.streets[1], "viewer")
    )
    assert_problem(r, 404)
    r = await client.get(
        f"/v1/units/{tree.units[1]}/registrations", headers=auth(jwt, tree.county, "viewer")
    )
    assert [x["community_code"] for x in r.json()["items"]] == [b]
    assert_problem(await client.get(f"/v1/units/{a}/registrations", headers=unit), 404)


async def test_home_unit_sees_its_members_masked(client, jwt):
    tree = await build_tree(client, jwt, streets=1, communities=1, units=2)
    op = auth(jwt, tree.county, "operator")
    mine = await post_ok(client, "/v1/members", register_body(tree), op)
    theirs = await post_ok(
        client, "/v1/members", register_body(tree, home_unit_code=tree.units[1]), op
    )
    unit = auth(jwt, tree.units[0], "unit")
    r = await client.get(
        f"/v1/members/{mine['id']}?min_position={theirs['position']}", headers=unit
    )
    assert r.status_code == 200, r.text
    assert r.json()["personal_data_masked"] is True and "*" in r.json()["phone"]
    assert_problem(await client.get(f"/v1/members/{theirs['id']}", headers=unit), 404)
    r = await client.get("/v1/members", headers=unit)
    assert [i["id"] for i in r.json()["items"]] == [mine["id"]]
    # the unit does not run the community's ledger
    assert_problem(
        await client.post(
            f"/v1/members/{mine['id']}/points",
            json={"delta": 1, "reason": "x"},
            headers=auth(jwt, tree.units[0], "operator"),
        ),
        404,
    )


async def test_idempotency_key(client, jwt):
    tree = await build_tree(client, jwt, streets=1, communities=1, units=1)
    h = {**auth(jwt, tree.county, "operator"), "Idempotency-Key": "register-once"}
    body = register_body(tree)
    first = await client.post("/v1/members", json=body, headers=h)
    again = await client.post("/v1/members", json=body, headers=h)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json() and again.headers.get("idempotent-replayed") == "true"
    assert_problem(await client.post("/v1/members", json={**body, "name": "王五"}, headers=h), 422)


async def test_openapi_describes_members(client):
    paths = (await client.get("/schema/openapi.json")).json()["paths"]
    for p in (
        "/v1/members",
        "/v1/members/{member_id}",
        "/v1/members/{member_id}/services",
        "/v1/members/{member_id}/points",
        "/v1/members/{member_id}/transfer",
        "/v1/members/{member_id}/deregister",
        "/v1/members/{member_id}/erase",
        "/v1/units/{unit_code}/registrations",
    ):
        assert p in paths, sorted(paths)
