"""POST /v1/issues:batch — work orders pushed in bulk (12345 hotline sync): one transaction and
one idempotency key per item, per-item results, a retried batch re-creates nothing."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

from tests.support import auth, build_tree

URL = "/v1/issues:batch"
PROBLEM = "application/problem+json"


def assert_problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["detail"]
    return body


def order(key: str, node: str, **extra: Any) -> dict[str, Any]:
    return {
        "idempotency_key": key,
        "node_code": node,
        "title": "噪音扰民",
        "category": "环境噪声",
        "source": "hotline",
        **extra,
    }


async def reported(pool: Any, ids: list[str]) -> int:
    async with pool.acquire() as conn:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM events WHERE type = 'IssueReported' AND stream_id = ANY($1)",
            [UUID(i) for i in ids],
        )
    return count


async def test_batch_creates_per_item_and_a_retry_recreates_nothing(client, jwt, clock, pool):
    tree = await build_tree(client, jwt, streets=2, communities=1, units=0)
    street = tree.streets[0]
    mine = tree.communities[street][0]
    foreign = tree.communities[tree.streets[1]][0]
    h = auth(jwt, street, "integrator", sub="12345-platform")
    run = uuid4().hex[:8]
    due = (clock().replace(microsecond=0)).isoformat()
    items = [
        order(f"{run}-1", mine, external_id="12345-0001", description="夜间施工"),
        order(f"{run}-2", mine, external_id="12345-0002"),
        order(f"{run}-3", street, source="grid"),
        order(f"{run}-4", foreign),  # outside the caller's scope: 404
        order(f"{run}-5", mine, source="wechat"),  # the domain refuses: 422
        {**order(f"{run}-6", mine), "colour": "red"},  # malformed: 400
        order(f"{run}-7", mine, due_at=due),  # a deadline already past: 422
        {"node_code": mine},  # no key, no title: 400
    ]
    r = await client.post(URL, json={"items": items}, headers=h)
    assert r.status_code == 200, r.text
    first = r.json()
    results = first["items"]
    assert [x["index"] for x in results] == list(range(len(items)))
    assert [x["status"] for x in results] == [201, 201, 201, 404, 422, 400, 422, 400]
    assert first["summary"] == {"created": 3, "replayed": 0, "failed": 5}
    created = results[:3]
    assert all(x["id"] and x["version"] == 1 and x["position"] > 0 for x in created)
    assert first["position"] == max(x["position"] for x in created)
    assert r.headers["x-civic-position"] == str(first["position"])
    assert [x["idempotency_key"] for x in created] == [f"{run}-1", f"{run}-2", f"{run}-3"]
    for failed in results[3:]:
        problem = failed["error"]
        assert problem["status"] == failed["status"] and problem["title"] and problem["detail"]
        assert problem["instance"] == f"{URL}#/items/{failed['index']}"
        assert "id" not in failed
    assert results[4]["error"]["errors"][0]["field"] == "source"
    assert (
        results[5]["error"]["errors"][0]["field"] == "colour"
        or "colour" in (results[5]["error"]["detail"])
    )
    ids = [x["id"] for x in created]
    assert await reported(pool, ids) == 3

    # the platform retries the whole batch: nothing new, the same ids
    r = await client.post(URL, json={"items": items}, headers=h)
    again = r.json()
    assert [x["status"] for x in again["items"]] == [200, 200, 200, 404, 422, 400, 422, 400]
    assert [x.get("id") for x in again["items"][:3]] == ids
    assert again["summary"] == {"created": 0, "replayed": 3, "failed": 5}
    assert await reported(pool, ids) == 3

    # imported issues read like any other, with the platform's number
    viewer = auth(jwt, tree.county, "viewer")
    r = await client.get(f"/v1/issues/{ids[0]}?min_position={first['position']}", headers=viewer)
    assert r.status_code == 200, r.text
    view = r.json()
    assert view["external_id"] == "12345-0001" and view["description"] == "夜间施工"
    assert view["source"] == "hotline" and view["status"] == "reported"
    r = await client.get(
        f"/v1/issues?external_id=12345-0002&min_position={first['position']}", headers=viewer
    )
    assert [x["id"] for x in r.json()["items"]] == [ids[1]]


async def test_item_keys(client, jwt, pool):
    tree = await build_tree(client, jwt, streets=1, communities=1, units=0)
    community = tree.communities[tree.streets[0]][0]
    h = auth(jwt, tree.county, "operator")
    key = f"dup-{uuid4().hex[:8]}"
    # the same key twice in one batch: the first creates, the second replays it
    r = await client.post(
        URL, json={"items": [order(key, community), order(key, community)]}, headers=h
    )
    [one, two] = r.json()["items"]
    assert (one["status"], two["status"]) == (201, 200) and one["id"] == two["id"]
    # the same key with another work order is refused for that item only
    r = await client.post(
        URL,
        json={
            "items": [
                order(key, community, title="另一件事"),
                order(f"{key}-new", community),
            ]
        },
        headers=h,
    )
    [reused, fresh] = r.json()["items"]
    assert reused["status"] == 422 and reused["error"]["type"].endswith("idempotency-key-reused")
    assert fresh["status"] == 201
    assert await reported(pool, [one["id"], fresh["id"]]) == 2
    # item keys live apart from request keys: a single POST with the same key is a new request
    r = await client.post(
        "/v1/issues",
        json={k: v for k, v in order(key, community).items() if k != "idempotency_key"},
        headers={**h, "Idempotency-Key": key},
    )
    assert r.status_code == 201 and r.json()["id"] != one["id"]


async def test_the_batch_request_key_replays_the_whole_answer(client, jwt):
    tree = await build_tree(client, jwt, streets=1, communities=1, units=0)
    community = tree.communities[tree.streets[0]][0]
    h = {**auth(jwt, tree.county, "admin"), "Idempotency-Key": f"sync-{uuid4()}"}
    body = {"items": [order(f"k-{uuid4()}", community), order(f"k-{uuid4()}", community)]}
    first = await client.post(URL, json=body, headers=h)
    again = await client.post(URL, json=body, headers=h)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()  # 201s, not replays: the first answer itself
    assert [x["status"] for x in again.json()["items"]] == [201, 201]
    assert again.headers["idempotent-replayed"] == "true"
    other = {"items": [order(f"k-{uuid4()}", community)]}
    assert_problem(await client.post(URL, json=other, headers=h), 422)


async def test_batch_limits_and_errors(client, jwt):
    tree = await build_tree(client, jwt, streets=1, communities=1, units=0)
    community = tree.communities[tree.streets[0]][0]
    h = auth(jwt, tree.county, "operator")
    too_many = [order(f"many-{i}", community) for i in range(501)]
    body = assert_problem(await client.post(URL, json={"items": too_many}, headers=h), 413)
    assert "500" in body["detail"]
    assert_problem(await client.post(URL, json={"items": []}, headers=h), 400)
    assert_problem(await client.post(URL, json={}, headers=h), 400)
    assert_problem(await client.post(URL, json={"items": [], "x": 1}, headers=h), 400)
    assert_problem(await client.post(URL, json={"items": "all"}, headers=h), 400)
    assert_problem(
        await client.post(
            URL, content=b'{"items": [', headers={**h, "content-type": "application/json"}
        ),
        400,
    )
    assert_problem(await client.post(URL, json={"items": [order("a", community)]}), 401)
    nowhere = auth(jwt, "999999999999", "admin")  # a scope that does not exist
    assert_problem(
        await client.post(URL, json={"items": [order("a", community)]}, headers=nowhere), 401
    )
    for role in ("viewer", "unit", "inspector"):
        assert_problem(
            await client.post(
                URL, json={"items": [order("a", community)]}, headers=auth(jwt, tree.county, role)
            ),
            403,
        )


async def test_a_full_batch_of_500(client, jwt, pool):
    tree = await build_tree(client, jwt, streets=1, communities=2, units=0)
    street = tree.streets[0]
    h = auth(jwt, tree.county, "integrator")
    run = uuid4().hex[:8]
    items = [
        order(
            f"{run}-{i}",
            tree.communities[street][i % 2],
            external_id=f"12345-{i:05d}",
            description="居民来电反映：" + "楼上装修噪音" * 50,
        )
        for i in range(500)
    ]
    r = await client.post(URL, json={"items": items}, headers=h)
    assert r.status_code == 200, r.text[:500]
    result = r.json()
    assert result["summary"] == {"created": 500, "replayed": 0, "failed": 0}
    assert len({x["id"] for x in result["items"]}) == 500
    assert await reported(pool, [x["id"] for x in result["items"]]) == 500


async def test_one_batch_key_sent_16_times_at_once_creates_one_batch(client, jwt, pool):
    """Really concurrent (each request from its own thread; see tests/parallel.py): with
    different bodies exactly one batch runs and the rest answer 422; with one body every
    item is created once and the twins replay it."""
    import asyncio

    from tests.parallel import send

    tree = await build_tree(client, jwt, streets=1, communities=1, units=0)
    mine = tree.communities[tree.streets[0]][0]
    h = {**auth(jwt, tree.county, "admin", sub="racer"), "Idempotency-Key": f"race-{uuid4()}"}
    run = uuid4().hex[:8]
    bodies = [{"items": [order(f"{run}-{n}", mine)]} for n in range(16)]
    answers = await asyncio.gather(*(send(client, "POST", URL, json=b, headers=h) for b in bodies))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] + [422] * 15, [r.text for r in answers]
    for r in answers:
        if r.status_code == 422:
            assert_problem(r, 422)
    [winner] = [r.json() for r in answers if r.status_code == 200]
    assert winner["summary"] == {"created": 1, "replayed": 0, "failed": 0}
    async with pool.acquire() as conn:
        made = await conn.fetchval(
            "SELECT count(*) FROM events WHERE type = 'IssueReported' AND idempotency_key LIKE $1",
            f"issues:batch:{run}-%",
        )
    assert made == 1

    same = {"items": [order(f"{run}-same-{n}", mine) for n in range(3)]}
    h = {**h, "Idempotency-Key": f"race-{uuid4()}"}
    answers = await asyncio.gather(
        *(send(client, "POST", URL, json=same, headers=h) for _ in range(16))
    )
    assert [r.status_code for r in answers] == [200] * 16, [r.text for r in answers]
    ids = {x["id"] for r in answers for x in r.json()["items"]}
    assert len(ids) == 3
    assert await reported(pool, list(ids)) == 3
