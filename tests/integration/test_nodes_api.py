"""The hierarchy over HTTP: every status code the contract names for nodes."""

from __future__ import annotations

import time

import jwt as pyjwt

from tests.support import auth, build_tree, fresh_county_code, metrics_auth, post_ok, token

PROBLEM = "application/problem+json"


def assert_problem(r, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"] and body["type"]
    return body


async def test_root_bootstrap_and_duplicate(client, jwt):
    county = fresh_county_code()
    admin = auth(jwt, county, "admin")
    body = {"code": county, "name": "西湖区", "kind": "county", "parent_code": None}
    created = await post_ok(client, "/v1/nodes", body, admin)
    assert created["code"] == county and created["version"] == 1 and created["position"] > 0
    assert_problem(await client.post("/v1/nodes", json=body, headers=admin), 409)


async def test_root_needs_admin_scoped_to_it(client, jwt):
    county = fresh_county_code()
    body = {"code": county, "name": "区", "kind": "county", "parent_code": None}
    assert_problem(
        await client.post("/v1/nodes", json=body, headers=auth(jwt, county, "operator")), 403
    )
    other = fresh_county_code()
    assert_problem(
        await client.post("/v1/nodes", json=body, headers=auth(jwt, other, "admin")), 403
    )
    street = {"code": county, "name": "街道", "kind": "street", "parent_code": None}
    assert_problem(
        await client.post("/v1/nodes", json=street, headers=auth(jwt, county, "admin")), 422
    )


async def test_read_node_with_path_children_and_etag(client, jwt):
    tree = await build_tree(client, jwt)
    street = tree.streets[0]
    r = await client.get(
        f"/v1/nodes/{street}?min_position={tree.last_position}",
        headers=auth(jwt, tree.county, "viewer"),
    )
    assert r.status_code == 200, r.text
    node = r.json()
    assert node["path"] == [tree.county, street]
    assert node["children"] == tree.communities[street]
    assert node["kind"] == "street" and node["name"] == "第1街道"
    assert r.headers["etag"] == '"1"'


async def test_outside_subtree_is_404_and_bad_placement_is_422(client, jwt):
    tree = await build_tree(client, jwt)
    a, b = tree.streets
    street_a = auth(jwt, a, "operator")
    r = await client.get(f"/v1/nodes/{b}?min_position={tree.last_position}", headers=street_a)
    assert_problem(r, 404)
    r = await client.get(f"/v1/nodes/{tree.communities[b][0]}", headers=street_a)
    assert_problem(r, 404)
    # another tenant entirely
    other = await build_tree(client, jwt, streets=1, communities=1, units=0)
    assert_problem(
        await client.get(f"/v1/nodes/{other.county}", headers=auth(jwt, tree.county, "admin")), 404
    )
    # a grid can't sit under a street; a community needs a 12-digit code
    assert_problem(
        await client.post(
            "/v1/nodes",
            json={"code": "G1", "name": "网格", "kind": "grid", "parent_code": a},
            headers=street_a,
        ),
        422,
    )
    body = assert_problem(
        await client.post(
            "/v1/nodes",
            json={"code": "C-1", "name": "社区", "kind": "community", "parent_code": a},
            headers=street_a,
        ),
        422,
    )
    assert body["errors"][0]["field"] == "code"
    # creating under a parent outside the caller's subtree does not reveal it
    assert_problem(
        await client.post(
            "/v1/nodes",
            json={"code": f"{b[:9]}099", "name": "社区", "kind": "community", "parent_code": b},
            headers=street_a,
        ),
        404,
    )


async def test_authentication_failures_are_401(client, jwt):
    tree = await build_tree(client, jwt, streets=1, communities=1, units=0)
    url = f"/v1/nodes/{tree.county}"
    assert_problem(await client.get(url), 401)
    assert_problem(await client.get(url, headers={"Authorization": "Bearer nope"}), 401)
    assert_problem(await client.get(url, headers={"Authorization": "Basic abc"}), 401)
    expired = token(jwt, tree.county, "admin", ttl_seconds=-120)
    assert_problem(await client.get(url, headers={"Authorization": f"Bearer {expired}"}), 401)
    now = int(time.time())
    early = pyjwt.encode(
        {"sub": "x", "scope": tree.county, "roles": ["admin"], "exp": now + 600, "nbf": now + 300},
        jwt.signing_key,
        algorithm="HS256",
    )
    assert_problem(await client.get(url, headers={"Authorization": f"Bearer {early}"}), 401)
    unsigned = pyjwt.encode(
        {"sub": "x", "scope": tree.county, "roles": ["admin"], "exp": now + 600},
        "",  # alg "none" signs with no key
        algorithm="none",
    )
    assert_problem(await client.get(url, headers={"Authorization": f"Bearer {unsigned}"}), 401)
    forged = pyjwt.encode(
        {"sub": "x", "scope": tree.county, "roles": ["admin"], "exp": now + 600},
        "another-secret-that-is-long-enough-000000",
        algorithm="HS256",
    )
    assert_problem(await client.get(url, headers={"Authorization": f"Bearer {forged}"}), 401)
    bad_role = pyjwt.encode(
        {"sub": "x", "scope": tree.county, "roles": ["root"], "exp": now + 600},
        jwt.signing_key,
        algorithm="HS256",
    )
    assert_problem(await client.get(url, headers={"Authorization": f"Bearer {bad_role}"}), 401)
    # a scope that does not exist (deleted, or never was)
    assert_problem(await client.get(url, headers=auth(jwt, "999999999999", "admin")), 401)


async def test_role_not_allowed_is_403(client, jwt):
    tree = await build_tree(client, jwt, streets=1, communities=1, units=0)
    r = await client.post(
        "/v1/nodes",
        json={
            "code": f"{tree.county[:6]}002000",
            "name": "街道",
            "kind": "street",
            "parent_code": tree.county,
        },
        headers=auth(jwt, tree.county, "viewer", "inspector"),
    )
    assert_problem(r, 403)


async def test_malformed_and_invalid_bodies_are_400(client, jwt):
    tree = await build_tree(client, jwt, streets=1, communities=1, units=0)
    h = auth(jwt, tree.county, "admin")
    r = await client.post(
        "/v1/nodes", content=b'{"code": ', headers={**h, "content-type": "application/json"}
    )
    assert_problem(r, 400)
    r = await client.post("/v1/nodes", json={"name": "x", "kind": "street"}, headers=h)
    body = assert_problem(r, 400)
    assert body["errors"], body
    r = await client.post(
        "/v1/nodes",
        json={
            "code": "1",
            "name": "x",
            "kind": "street",
            "parent_code": tree.county,
            "colour": "red",
        },
        headers=h,
    )
    assert_problem(r, 400)
    r = await client.post(
        "/v1/nodes",
        json={"code": "1", "name": "", "kind": "street", "parent_code": tree.county},
        headers=h,
    )
    assert_problem(r, 400)
    r = await client.post(
        "/v1/nodes",
        json={"code": "1" * 12, "name": "x", "kind": "planet", "parent_code": tree.county},
        headers=h,
    )
    assert_problem(r, 422)


async def test_move_reissues_code_and_old_code_resolves(client, jwt):
    tree = await build_tree(client, jwt)
    a, b = tree.streets
    community = tree.communities[a][0]
    new_code = f"{b[:9]}050"
    h = auth(jwt, tree.county, "operator")
    moved = await post_ok(
        client,
        f"/v1/nodes/{community}/move",
        {"new_parent_code": b, "new_code": new_code, "reason": "区划调整"},
        h,
        200,
    )
    assert moved["code"] == new_code and moved["version"] == 2
    r = await client.get(f"/v1/nodes/{community}?min_position={moved['position']}", headers=h)
    assert r.status_code == 200, r.text
    node = r.json()
    assert node["code"] == new_code and node["requested_code"] == community
    assert node["former_codes"] == [community]
    assert node["path"] == [tree.county, b, new_code]
    r = await client.get(f"/v1/nodes/{a}", headers=h)
    assert community not in r.json()["children"]
    # street b's operator now sees it; street a's does not
    assert (
        await client.get(f"/v1/nodes/{new_code}", headers=auth(jwt, b, "viewer"))
    ).status_code == 200
    assert_problem(await client.get(f"/v1/nodes/{new_code}", headers=auth(jwt, a, "viewer")), 404)


async def test_move_rules(client, jwt):
    tree = await build_tree(client, jwt)
    a, b = tree.streets
    h = auth(jwt, tree.county, "admin")
    # under its own subtree
    assert_problem(
        await client.post(
            f"/v1/nodes/{a}/move",
            json={"new_parent_code": tree.communities[a][0], "reason": "x"},
            headers=h,
        ),
        422,
    )
    # a root cannot move
    assert_problem(
        await client.post(
            f"/v1/nodes/{tree.county}/move", json={"new_parent_code": a, "reason": "x"}, headers=h
        ),
        409,
    )
    # a stale If-Match
    r = await client.post(
        f"/v1/nodes/{tree.communities[a][1]}/move",
        json={"new_parent_code": b, "reason": "调整"},
        headers={**h, "If-Match": '"7"'},
    )
    assert_problem(r, 412)
    r = await client.post(
        f"/v1/nodes/{tree.communities[a][1]}/move",
        json={"new_parent_code": b, "reason": "调整"},
        headers={**h, "If-Match": '"1"'},
    )
    assert r.status_code == 200, r.text
    # a street operator cannot move its community to the other street (outside its scope)
    assert_problem(
        await client.post(
            f"/v1/nodes/{tree.communities[a][0]}/move",
            json={"new_parent_code": b, "reason": "x"},
            headers=auth(jwt, a, "operator"),
        ),
        404,
    )


async def test_idempotency_key_replays_and_refuses_other_bodies(client, jwt):
    tree = await build_tree(client, jwt, streets=1, communities=0, units=0)
    h = {**auth(jwt, tree.county, "admin"), "Idempotency-Key": "create-street-2"}
    body = {
        "code": f"{tree.county[:6]}002000",
        "name": "二街道",
        "kind": "street",
        "parent_code": tree.county,
    }
    first = await client.post("/v1/nodes", json=body, headers=h)
    again = await client.post("/v1/nodes", json=body, headers=h)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert again.headers.get("idempotent-replayed") == "true"
    other = await client.post("/v1/nodes", json={**body, "name": "三街道"}, headers=h)
    assert_problem(other, 422)


async def test_operations_endpoints(client):
    r = await client.get("/health/live")
    assert r.status_code == 200
    r = await client.get("/health/ready")
    assert r.status_code == 200 and r.json()["checks"]["migrations"] == "ok"
    assert (await client.get("/metrics")).status_code == 401
    r = await client.get("/metrics", headers=metrics_auth(client))
    assert r.status_code == 200
    assert "civic_http_requests_total" in r.text and "civic_projection_position" in r.text
    r = await client.get("/schema/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    assert "/v1/nodes" in paths and "/v1/nodes/{code}/move" in paths
