"""The answers an integrator notices first: language, unknown input, request ids, list shapes."""

from __future__ import annotations

from typing import Any

import pytest

from infra.settings import Settings
from tests.reliability import extra_app
from tests.support import auth, build_tree, fresh_county_code

PROBLEM = "application/problem+json"


async def test_accept_language_switches_titles_details_and_field_messages(client, jwt):
    county = fresh_county_code()
    admin = auth(jwt, county, "admin")
    body = {"code": county, "name": "区", "kind": "county", "colour": "red"}
    zh = await client.post("/v1/nodes", json=body, headers={**admin, "Accept-Language": "zh-CN"})
    en = await client.post("/v1/nodes", json=body, headers={**admin, "Accept-Language": "en"})
    assert zh.status_code == en.status_code == 400
    assert zh.headers["content-language"] == "zh-CN" and en.headers["content-language"] == "en"
    assert zh.json()["title"] == "请求有误" and en.json()["title"] == "Bad Request"
    # an unknown field is named, not "data", in either language
    assert zh.json()["errors"] == [{"field": "colour", "message": "不支持的字段 colour"}]
    assert en.json()["errors"] == [{"field": "colour", "message": "unknown field colour"}]

    tree = await build_tree(client, jwt, streets=1, communities=1, units=1)
    street = tree.county[:6] + "009000"
    missing = await client.get(
        f"/v1/nodes/{street}", headers={**auth(jwt, tree.county, "admin"), "Accept-Language": "zh"}
    )
    assert missing.status_code == 404
    assert missing.json()["detail"] == f"未找到节点 {street}（或不在您的管辖范围内）"

    viewer = auth(jwt, tree.county, "viewer")
    refused = await client.post(
        "/v1/nodes",
        json={"code": street, "name": "街道", "kind": "street", "parent_code": tree.county},
        headers={**viewer, "Accept-Language": "zh-CN, en;q=0.5"},
    )
    assert refused.status_code == 403
    assert refused.json()["detail"] == "登记节点须具备以下角色之一：admin, operator"


async def test_without_accept_language_the_default_is_zh_cn(ctx, jwt):
    async with extra_app(ctx, default_language=Settings().default_language) as other:
        r = await other.get("/v1/nodes/999999000000", headers=auth(jwt, "999999000000", "admin"))
        assert r.status_code in (401, 404)
        assert r.headers["content-language"] == "zh-CN"
        assert any("\u4e00" <= ch <= "\u9fff" for ch in r.json()["title"])
    async with extra_app(ctx, default_language="en") as english:
        r = await english.get("/v1/nodes/999999000000", headers=auth(jwt, "999999000000", "admin"))
        assert r.headers["content-language"] == "en"


async def test_unknown_query_parameters_are_refused(client, jwt):
    tree = await build_tree(client, jwt, streets=1, communities=1, units=1)
    viewer = auth(jwt, tree.county, "viewer")
    r = await client.get("/v1/issues?format=csv", headers=viewer)
    assert r.status_code == 400 and r.headers["content-type"].startswith(PROBLEM)
    assert r.json()["errors"] == [{"field": "format", "message": "unknown query parameter"}]
    assert (await client.get("/v1/issues?limit=5", headers=viewer)).status_code == 200
    # the ledger has a format parameter: accepted there
    ledger = await client.get("/v1/findings/ledger?format=csv", headers=viewer)
    assert ledger.status_code == 200
    assert ledger.headers["content-type"] == "text/csv; charset=utf-8"


async def test_an_unknown_route_answers_a_problem_with_a_request_id(client):
    r = await client.get("/v1/no-such-thing")
    assert r.status_code == 404 and r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["request_id"] and r.headers["x-request-id"] == body["request_id"]


async def test_unit_registrations_are_a_page(client, jwt):
    tree = await build_tree(client, jwt, streets=1, communities=2, units=1)
    unit = auth(jwt, tree.units[0], "unit")
    communities = tree.communities[tree.streets[0]]
    last: dict[str, Any] = {}
    for code in communities:
        r = await client.post(
            f"/v1/units/{tree.units[0]}/registrations", json={"community_code": code}, headers=unit
        )
        assert r.status_code == 201, r.text
        last = r.json()
    url = f"/v1/units/{tree.units[0]}/registrations"
    first = await client.get(f"{url}?limit=1&min_position={last['position']}", headers=unit)
    page = first.json()
    assert len(page["items"]) == 1 and page["next_cursor"]
    rest = (await client.get(f"{url}?limit=1&cursor={page['next_cursor']}", headers=unit)).json()
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    seen = {page["items"][0]["community_code"], rest["items"][0]["community_code"]}
    assert seen == set(communities)
    assert page["items"][0]["registered_at"].endswith("Z")


async def test_instants_use_z_everywhere(client, jwt):
    tree = await build_tree(client, jwt, streets=1, communities=1, units=1)
    node = await client.get(
        f"/v1/nodes/{tree.streets[0]}?min_position={tree.last_position}",
        headers=auth(jwt, tree.county, "viewer"),
    )
    assert node.json()["registered_at"].endswith("Z") and node.json()["updated_at"].endswith("Z")


@pytest.mark.after_all
def test_no_problem_the_session_answered_was_untranslated():
    """The net under tests/unit/test_messages.py: messages built at run time (msgspec's,
    Litestar's, ones passed through variables) are in the catalog too."""
    from services.messages import untranslated

    missing = sorted(untranslated())
    assert not missing, "untranslated (add with scripts/add-messages.py):\n" + "\n".join(missing)


async def test_a_201_names_the_created_resource_in_location(client, jwt):
    tree = await build_tree(client, jwt, streets=1, communities=1, units=1)
    community = tree.communities[tree.streets[0]][0]
    op = auth(jwt, tree.county, "operator")
    r = await client.post(
        "/v1/issues",
        json={"node_code": community, "title": "路灯不亮", "category": "市政", "source": "grid"},
        headers=op,
    )
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"/v1/issues/{r.json()['id']}"
    grid = community + "G01"
    r = await client.post(
        "/v1/nodes",
        json={"code": grid, "name": "第一网格", "kind": "grid", "parent_code": community},
        headers=op,
    )
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"/v1/nodes/{grid}"
    again = await client.post(
        f"/v1/units/{tree.units[0]}/registrations",
        json={"community_code": community},
        headers=auth(jwt, tree.units[0], "unit"),
    )
    assert again.status_code == 201 and "location" not in again.headers  # no readable item
