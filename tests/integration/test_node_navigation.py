"""GET /v1/nodes?parent= (a node's children, paged) and GET /v1/nodes/{code}/tree?depth=."""

from __future__ import annotations

from typing import Any

from tests.support import auth, build_tree, post_ok


async def test_without_parent_the_one_item_is_the_callers_scope_node(client, jwt):
    tree = await build_tree(client, jwt, streets=3, communities=1, units=1)
    r = await client.get("/v1/nodes", headers=auth(jwt, tree.county, "viewer"))
    assert r.status_code == 200, r.text
    assert r.json() == {
        "items": [
            {
                "code": tree.county,
                "name": "测试区",
                "kind": "county",
                "child_count": 4,
                "closed": False,
            }
        ],
        "next_cursor": None,
    }
    street = tree.streets[1]
    r = await client.get("/v1/nodes", headers=auth(jwt, street, "operator"))
    assert [i["code"] for i in r.json()["items"]] == [street]
    assert r.json()["items"][0]["child_count"] == 1


async def test_children_in_code_order_with_counts_kind_filter_and_paging(client, jwt):
    tree = await build_tree(client, jwt, streets=3, communities=2, units=2)
    h = auth(jwt, tree.county, "viewer")
    r = await client.get(f"/v1/nodes?parent={tree.county}", headers=h)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [i["code"] for i in items] == sorted([*tree.streets, *tree.units])
    by_code = {i["code"]: i for i in items}
    assert all(
        by_code[s]["child_count"] == 2 and by_code[s]["kind"] == "street" for s in tree.streets
    )
    assert all(by_code[u]["child_count"] == 0 for u in tree.units)

    r = await client.get(f"/v1/nodes?parent={tree.county}&kind=unit", headers=h)
    assert [i["code"] for i in r.json()["items"]] == tree.units

    seen: list[str] = []
    url = f"/v1/nodes?parent={tree.county}&limit=2"
    for _ in range(5):
        page: dict[str, Any] = (await client.get(url, headers=h)).json()
        assert len(page["items"]) <= 2
        seen += [i["code"] for i in page["items"]]
        if page["next_cursor"] is None:
            break
        url = f"/v1/nodes?parent={tree.county}&limit=2&cursor={page['next_cursor']}"
    assert seen == [i["code"] for i in items]


async def test_closed_children_are_listed_as_closed(client, jwt):
    tree = await build_tree(client, jwt, streets=1, communities=2, units=0)
    admin = auth(jwt, tree.county, "admin")
    street = tree.streets[0]
    closed = tree.communities[street][1]
    await post_ok(client, f"/v1/nodes/{closed}/close", {"reason": "撤并"}, admin, expect=200)
    r = await client.get(f"/v1/nodes?parent={street}", headers=admin)
    flags = {i["code"]: i["closed"] for i in r.json()["items"]}
    assert flags == {tree.communities[street][0]: False, closed: True}


async def test_a_street_cannot_list_or_walk_its_sibling_or_parent(client, jwt):
    tree = await build_tree(client, jwt, streets=2, communities=1, units=0)
    mine, sibling = tree.streets
    h = auth(jwt, mine, "operator")
    for url in (
        f"/v1/nodes?parent={sibling}",
        f"/v1/nodes?parent={tree.county}",
        f"/v1/nodes/{sibling}/tree",
        f"/v1/nodes/{tree.county}/tree",
    ):
        r = await client.get(url, headers=h)
        assert r.status_code == 404, (url, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    other = await build_tree(client, jwt, streets=1, communities=1, units=0)
    r = await client.get(
        f"/v1/nodes?parent={other.county}", headers=auth(jwt, tree.county, "admin")
    )
    assert r.status_code == 404


async def test_tree_nests_to_the_depth_asked(client, jwt):
    tree = await build_tree(client, jwt, streets=2, communities=2, units=1)
    h = auth(jwt, tree.county, "viewer")
    street = tree.streets[0]
    grid = f"{tree.communities[street][0]}G01"
    await post_ok(
        client,
        "/v1/nodes",
        {
            "code": grid,
            "name": "第1网格",
            "kind": "grid",
            "parent_code": tree.communities[street][0],
        },
        auth(jwt, tree.county, "admin"),
    )

    r = await client.get(f"/v1/nodes/{tree.county}/tree?depth=1", headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["code"] == tree.county and body["kind"] == "county"
    assert [c["code"] for c in body["children"]] == sorted([*tree.streets, *tree.units])
    assert all(c["children"] == [] for c in body["children"])

    r = await client.get(f"/v1/nodes/{tree.county}/tree?depth=2", headers=h)
    first = next(c for c in r.json()["children"] if c["code"] == street)
    assert [c["code"] for c in first["children"]] == tree.communities[street]
    assert all(c["children"] == [] for c in first["children"])

    r = await client.get(f"/v1/nodes/{tree.county}/tree?depth=3", headers=h)
    first = next(c for c in r.json()["children"] if c["code"] == street)
    community = first["children"][0]
    assert community["children"] == [
        {"code": grid, "name": "第1网格", "kind": "grid", "closed": False, "children": []}
    ]

    r = await client.get(f"/v1/nodes/{street}/tree?depth=4", headers=auth(jwt, street, "viewer"))
    assert r.status_code == 200
    assert r.json()["children"][0]["children"][0]["code"] == grid


async def test_bad_navigation_input_is_a_4xx_problem(client, jwt):
    tree = await build_tree(client, jwt, streets=1, communities=1, units=0)
    h = auth(jwt, tree.county, "viewer")
    for url, status in (
        (f"/v1/nodes/{tree.county}/tree?depth=0", 400),
        (f"/v1/nodes/{tree.county}/tree?depth=5", 400),
        (f"/v1/nodes/{tree.county}/tree?depth=x", 400),
        (f"/v1/nodes?parent={tree.county}&kind=planet", 400),
        (f"/v1/nodes?parent={tree.county}&cursor=!!!", 400),
        (f"/v1/nodes?parent={tree.county}&limit=501", 400),
        ("/v1/nodes?parent=999999999999", 404),
    ):
        r = await client.get(url, headers=h)
        assert r.status_code == status, (url, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/problem+json"), url
    r = await client.get(f"/v1/nodes?parent={tree.county}")
    assert r.status_code == 401
