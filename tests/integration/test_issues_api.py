"""Issues (工单) over HTTP: 受理→派单→签收→办理→办结→回访→归档, 退单, 延期, 重办, 吹哨报到, and every
error status the contract names."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from tests.support import Tree, auth, build_tree, post_ok

PROBLEM = "application/problem+json"
H = timedelta(hours=1)


def assert_problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["title"] and body["detail"] and body["type"]
    return body


def at(clock: Any, delta: timedelta) -> str:
    return (clock() + delta).isoformat()


class World:
    """A fresh tenant: county → 2 streets → 2 communities each, 2 units under the county."""

    def __init__(self, client: Any, jwt: Any, tree: Tree, clock: Any) -> None:
        self.client, self.jwt, self.tree, self.clock = client, jwt, tree, clock
        self.street = tree.streets[0]
        self.other_street = tree.streets[1]
        self.community = tree.communities[self.street][0]
        self.unit, self.unit2 = tree.units
        self.op = auth(jwt, self.community, "operator")  # the community's dispatcher
        self.county_admin = auth(jwt, tree.county, "admin")
        self.unit_h = auth(jwt, self.unit, "unit", sub="unit-1")
        self.unit2_h = auth(jwt, self.unit2, "unit", sub="unit-2")
        self.position = tree.last_position

    async def report(self, *, expect: int = 201, **overrides: Any) -> dict[str, Any]:
        body = {
            "node_code": self.community,
            "title": "3号楼楼道堆放杂物",
            "category": "消防安全",
            "source": "grid",
            **overrides,
        }
        created = await post_ok(self.client, "/v1/issues", body, self.op, expect)
        self.position = max(self.position, created.get("position", 0))
        return created

    async def act(
        self,
        issue_id: Any,
        verb: str,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        expect: int = 200,
    ) -> dict[str, Any]:
        r = await self.client.post(
            f"/v1/issues/{issue_id}/{verb}", json=body or {}, headers=headers or self.op
        )
        assert r.status_code == expect, (verb, r.status_code, r.text)
        data: dict[str, Any] = r.json()
        if expect < 300:
            assert data["id"] == str(issue_id) and data["version"] > 0 and data["position"] > 0
            self.position = max(self.position, data["position"])
        return data

    async def assign(self, issue_id: Any, unit: str | None = None, due: timedelta = 24 * H) -> Any:
        return await self.act(
            issue_id,
            "assign",
            {"assignee_code": unit or self.unit, "due_at": at(self.clock, due)},
        )

    async def get(self, issue_id: Any, headers: dict[str, str] | None = None) -> Any:
        return await self.client.get(
            f"/v1/issues/{issue_id}?min_position={self.position}", headers=headers or self.op
        )

    async def read(self, issue_id: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
        r = await self.get(issue_id, headers)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        assert r.headers["etag"] == f'"{body["version"]}"'
        return body

    async def list(self, query: str = "", headers: dict[str, str] | None = None) -> Any:
        sep = "&" if query else ""
        r = await self.client.get(
            f"/v1/issues?{query}{sep}min_position={self.position}", headers=headers or self.op
        )
        return r


async def world(client: Any, jwt: Any, clock: Any) -> World:
    tree = await build_tree(client, jwt, streets=2, communities=2, units=2)
    return World(client, jwt, tree, clock)


async def event_types(pool: Any, issue_id: Any) -> list[str]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT type FROM events WHERE stream_id = $1 ORDER BY version", issue_id
        )
    return [r["type"] for r in rows]


# -- the whole loop ------------------------------------------------------------------------------


async def test_happy_path_hotline_loop(client, jwt, clock, pool):
    """受理 → 派单 → 签收 → 办理 → 办结 → 回访 → 销号, a hotline work order."""
    w = await world(client, jwt, clock)
    created = await w.report(
        source="hotline",
        title="小区路灯不亮",
        category="市政设施",
        description="居民来电：5号楼前路灯连续三晚不亮",
        due_at=at(clock, 72 * H),
    )
    assert created["status"] == "reported" and created["version"] == 1
    issue_id = created["id"]
    view = await w.read(issue_id)
    assert view["status"] == "reported" and view["overdue"] is False
    assert view["title"] == "小区路灯不亮" and view["node_code"] == w.community
    assert view["description"] == "居民来电：5号楼前路灯连续三晚不亮"
    assert view["assignee"] is None and view["escalation"] is None and view["evaluation"] is None

    assigned = await w.assign(issue_id, due=48 * H)
    assert assigned["status"] == "assigned" and assigned["version"] == 2
    # the unit (outside the community's subtree) now sees the issue and signs for it
    view = await w.read(issue_id, w.unit_h)
    assert view["assignee"]["code"] == w.unit and view["assigned_at"]
    await w.act(issue_id, "accept", headers=w.unit_h)
    await w.act(issue_id, "progress", {"note": "已联系路灯所，明日更换灯泡"}, w.unit_h)
    resolved = await w.act(issue_id, "resolve", {"result": "已更换灯泡，路灯恢复"}, w.unit_h)
    assert resolved["status"] == "resolved"
    await w.act(
        issue_id, "evaluate", {"satisfaction": "satisfied", "resolved": True, "comment": "很快"}
    )
    closed = await w.act(issue_id, "close")
    assert closed == {**closed, "status": "closed", "version": 7}

    view = await w.read(issue_id)
    assert view["status"] == "closed" and view["closed_on_time"] is True
    assert view["overdue"] is False and view["version"] == 7
    for stamp in ("reported_at", "assigned_at", "accepted_at", "resolved_at", "closed_at"):
        assert view[stamp], stamp
    assert view["result"] == "已更换灯泡，路灯恢复"
    assert view["last_note"] == "已联系路灯所，明日更换灯泡"
    assert view["evaluation"]["satisfaction"] == "satisfied"
    assert view["evaluation"]["resolved"] is True and view["evaluation"]["comment"] == "很快"
    assert view["counts"]["progress_notes"] == 1
    assert await event_types(pool, created_id(created)) == [
        "IssueReported",
        "IssueAssigned",
        "IssueAccepted",
        "IssueProgressNoted",
        "IssueResolved",
        "IssueEvaluated",
        "IssueClosed",
    ]
    # a closed issue takes no more commands
    body = assert_problem(
        await client.post(f"/v1/issues/{issue_id}/reopen", json={"reason": "x"}, headers=w.op),
        409,
    )
    assert body["current_state"] == "closed"


def created_id(created: dict[str, Any]) -> Any:
    from uuid import UUID

    return UUID(created["id"])


async def test_return_goes_back_to_reported(client, jwt, clock):
    w = await world(client, jwt, clock)
    issue_id = (await w.report(due_at=at(clock, 96 * H)))["id"]
    await w.assign(issue_id)
    returned = await w.act(issue_id, "return", {"reason": "不属于本单位职责"}, w.unit_h)
    assert returned["status"] == "reported"
    view = await w.read(issue_id)
    assert view["status"] == "reported" and view["assignee"] is None
    assert view["counts"]["returns"] == 1
    assert view["due_at"] == view["requested_due_at"]
    # reassigned to the right unit: the first unit no longer sees it, nor may it act on it
    await w.assign(issue_id, w.unit2)
    assert (await w.read(issue_id, w.unit2_h))["assignee"]["code"] == w.unit2
    assert_problem(await w.get(issue_id, w.unit_h), 404)
    assert_problem(await client.post(f"/v1/issues/{issue_id}/accept", headers=w.unit_h), 404)
    await w.act(issue_id, "accept", headers=w.unit2_h)
    # once accepted, it cannot be returned
    body = assert_problem(
        await client.post(f"/v1/issues/{issue_id}/return", json={"reason": "x"}, headers=w.unit2_h),
        409,
    )
    assert body["current_state"] == "accepted"


async def test_extension_before_and_after_the_deadline(client, jwt, clock):
    w = await world(client, jwt, clock)
    issue_id = (await w.report())["id"]
    await w.assign(issue_id, due=2 * H)
    await w.act(issue_id, "accept", headers=w.unit_h)
    new_due = clock() + 5 * H
    extended = await w.act(
        issue_id, "extend", {"due_at": new_due.isoformat(), "reason": "需协调供电部门"}, w.unit_h
    )
    assert extended["status"] == "accepted"
    view = await w.read(issue_id)
    assert datetime.fromisoformat(view["due_at"]) == new_due.astimezone(UTC)
    assert view["counts"]["extensions"] == 1
    # an earlier date is no extension
    assert_problem(
        await client.post(
            f"/v1/issues/{issue_id}/extend",
            json={"due_at": at(clock, 3 * H), "reason": "x"},
            headers=w.unit_h,
        ),
        422,
    )
    clock.advance(6 * H)  # the (extended) deadline passes
    body = assert_problem(
        await client.post(
            f"/v1/issues/{issue_id}/extend",
            json={"due_at": at(clock, 10 * H), "reason": "来不及"},
            headers=w.unit_h,
        ),
        409,
    )
    assert body["current_state"] == "accepted"
    assert (await w.read(issue_id))["overdue"] is True


async def test_dissatisfied_callback_needs_reopen_or_admin_override(client, jwt, clock, pool):
    w = await world(client, jwt, clock)
    issue_id = (await w.report(source="resident"))["id"]
    await w.assign(issue_id, due=24 * H)
    await w.act(issue_id, "accept", headers=w.unit_h)
    await w.act(issue_id, "resolve", {"result": "已清理"}, w.unit_h)
    await w.act(issue_id, "evaluate", {"satisfaction": "dissatisfied", "resolved": False})
    # a second callback for the same resolution is refused
    body = assert_problem(
        await client.post(
            f"/v1/issues/{issue_id}/evaluate",
            json={"satisfaction": "satisfied", "resolved": True},
            headers=w.op,
        ),
        409,
    )
    assert body["current_state"] == "resolved"
    body = assert_problem(await client.post(f"/v1/issues/{issue_id}/close", headers=w.op), 409)
    assert body["current_state"] == "resolved"
    # an override is the admin's alone
    assert_problem(
        await client.post(
            f"/v1/issues/{issue_id}/close", json={"override_reason": "居民联系不上"}, headers=w.op
        ),
        403,
    )
    # 重办: back to the same unit, callback cleared
    reopened = await w.act(issue_id, "reopen", {"reason": "居民反映仍未清理"})
    assert reopened["status"] == "assigned"
    view = await w.read(issue_id)
    assert view["evaluation"] is None and view["counts"]["reopens"] == 1
    assert view["assignee"]["code"] == w.unit and view["accepted_at"] is None
    await w.act(issue_id, "accept", headers=w.unit_h)
    await w.act(issue_id, "resolve", {"result": "已彻底清理"}, w.unit_h)
    await w.act(issue_id, "evaluate", {"satisfaction": "basically_satisfied", "resolved": True})
    await w.act(issue_id, "close")
    assert (await event_types(pool, created_id({"id": issue_id}))).count("IssueClosed") == 1

    # the admin override, recorded with its reason
    other = (await w.report(source="hotline"))["id"]
    await w.assign(other)
    await w.act(other, "accept", headers=w.unit_h)
    await w.act(other, "resolve", {"result": "已答复"}, w.unit_h)
    await w.act(other, "evaluate", {"satisfaction": "satisfied", "resolved": False})
    admin = auth(jwt, w.community, "admin")
    assert_problem(  # an admin still has to give the reason
        await client.post(f"/v1/issues/{other}/close", json={}, headers=admin), 422
    )
    await w.act(other, "close", {"override_reason": "诉求超出政策范围，已解释"}, admin)
    view = await w.read(other)
    assert view["status"] == "closed" and view["override_reason"] == "诉求超出政策范围，已解释"


async def test_close_needs_the_callback_for_resident_and_hotline(client, jwt, clock):
    w = await world(client, jwt, clock)
    for source, needs_callback in (("hotline", True), ("resident", True), ("grid", False)):
        issue_id = (await w.report(source=source))["id"]
        await w.assign(issue_id)
        await w.act(issue_id, "accept", headers=w.unit_h)
        await w.act(issue_id, "resolve", {"result": "已处理"}, w.unit_h)
        r = await client.post(f"/v1/issues/{issue_id}/close", headers=w.op)
        if needs_callback:
            body = assert_problem(r, 409)
            assert body["current_state"] == "resolved" and "回访" in body["detail"]
        else:
            assert r.status_code == 200, r.text


async def test_whistle_and_answer(client, jwt, clock, pool):
    """吹哨报到: the community whistles to its street, which reports in within the limit."""
    w = await world(client, jwt, clock)
    issue_id = (await w.report(title="违建占用消防通道"))["id"]
    await w.assign(issue_id)
    # only the street or county above the issue's node
    for target in (w.other_street, w.tree.communities[w.street][1], w.unit, w.community):
        body = assert_problem(
            await client.post(
                f"/v1/issues/{issue_id}/escalate",
                json={"to_code": target, "respond_within_minutes": 30},
                headers=w.op,
            ),
            422,
        )
        assert body["errors"][0]["field"] == "to_code"
    assert_problem(
        await client.post(
            f"/v1/issues/{issue_id}/escalate",
            json={"to_code": "999999999999", "respond_within_minutes": 30},
            headers=w.op,
        ),
        404,
    )
    assert_problem(
        await client.post(
            f"/v1/issues/{issue_id}/escalate",
            json={"to_code": w.street, "respond_within_minutes": 0},
            headers=w.op,
        ),
        422,
    )
    escalated = await w.act(
        issue_id, "escalate", {"to_code": w.street, "respond_within_minutes": 30}
    )
    assert escalated["status"] == "assigned"  # the status stays
    view = await w.read(issue_id)
    esc = view["escalation"]
    assert esc["level"] == "street" and esc["to"] == w.street
    respond_by = datetime.fromisoformat(esc["respond_by"])
    escalated_at = datetime.fromisoformat(esc["escalated_at"])
    assert respond_by - escalated_at == timedelta(minutes=30)
    assert esc["answered_at"] is None and esc["overdue"] is False
    # a second whistle waits for the first
    body = assert_problem(
        await client.post(
            f"/v1/issues/{issue_id}/escalate",
            json={"to_code": w.tree.county, "respond_within_minutes": 60},
            headers=w.op,
        ),
        409,
    )
    assert body["current_state"] == "assigned"
    # the whistling community cannot answer its own whistle; the street (or above) can
    assert_problem(
        await client.post(f"/v1/issues/{issue_id}/answer", json={"note": "收到"}, headers=w.op),
        403,
    )
    street_op = auth(jwt, w.street, "operator")
    await w.act(issue_id, "answer", {"note": "街道城管科已到场处置"}, street_op)
    # the assigned unit reports in too (部门报到)
    await w.act(issue_id, "answer", {"note": "执法队已到场"}, w.unit_h)
    esc = (await w.read(issue_id))["escalation"]
    assert esc["answered_at"] and esc["responders"] == [w.street, w.unit]
    assert esc["overdue"] is False
    # answered: a new whistle may go to the county
    await w.act(issue_id, "escalate", {"to_code": w.tree.county, "respond_within_minutes": 60})
    esc = (await w.read(issue_id))["escalation"]
    assert esc["level"] == "county" and esc["count"] == 2 and esc["answered_at"] is None
    types = await event_types(pool, created_id({"id": issue_id}))
    assert types.count("IssueEscalated") == 2 and types.count("IssueEscalationAnswered") == 2
    # no whistle, no answer
    quiet = (await w.report())["id"]
    body = assert_problem(
        await client.post(f"/v1/issues/{quiet}/answer", json={"note": "x"}, headers=street_op),
        409,
    )
    assert body["current_state"] == "reported"


# -- who may do what -----------------------------------------------------------------------------


async def test_unit_principal_sees_and_handles_only_its_issues(client, jwt, clock):
    w = await world(client, jwt, clock)
    mine = (await w.report(title="井盖缺失"))["id"]
    theirs = (await w.report(title="树木倒伏"))["id"]
    unassigned = (await w.report(title="噪音扰民"))["id"]
    await w.assign(mine, w.unit)
    await w.assign(theirs, w.unit2)
    assert (await w.read(mine, w.unit_h))["status"] == "assigned"
    for other in (theirs, unassigned):
        assert_problem(await w.get(other, w.unit_h), 404)
        assert_problem(await client.post(f"/v1/issues/{other}/accept", headers=w.unit_h), 404)
    r = await w.list(headers=w.unit_h)
    assert r.status_code == 200, r.text
    assert [i["id"] for i in r.json()["items"]] == [mine]
    r = await w.list(f"node={w.unit}", headers=w.unit_h)
    assert [i["id"] for i in r.json()["items"]] == [mine]
    # the unit accepts and resolves its own issue, but dispatching is not its part
    await w.act(mine, "accept", headers=w.unit_h)
    await w.act(mine, "resolve", {"result": "已补装井盖"}, w.unit_h)
    assert_problem(
        await client.post(
            f"/v1/issues/{mine}/evaluate",
            json={"satisfaction": "satisfied", "resolved": True},
            headers=w.unit_h,
        ),
        403,
    )
    assert_problem(await client.post(f"/v1/issues/{mine}/close", headers=w.unit_h), 403)
    # an operator token scoped to the unit is still not the issue's dispatcher
    unit_op = auth(jwt, w.unit, "operator")
    assert_problem(await client.post(f"/v1/issues/{mine}/close", headers=unit_op), 403)
    # other communities' operators do not see the issue at all
    elsewhere = auth(jwt, w.tree.communities[w.street][1], "operator")
    assert_problem(await w.get(mine, elsewhere), 404)
    # a viewer of the county reads everything but changes nothing
    viewer = auth(jwt, w.tree.county, "viewer")
    assert (await w.read(mine, viewer))["status"] == "resolved"
    assert_problem(await client.post(f"/v1/issues/{theirs}/accept", headers=viewer), 403)


async def test_error_paths(client, jwt, clock):
    w = await world(client, jwt, clock)
    issue_id = (await w.report())["id"]
    url = f"/v1/issues/{issue_id}"
    # 400: malformed JSON, unknown field, missing field, wrong type
    r = await client.post(
        "/v1/issues",
        content=b'{"node_code": ',
        headers={**w.op, "content-type": "application/json"},
    )
    assert_problem(r, 400)
    base = {"node_code": w.community, "title": "t", "category": "c", "source": "grid"}
    assert_problem(await client.post("/v1/issues", json={**base, "colour": 1}, headers=w.op), 400)
    assert_problem(await client.post("/v1/issues", json={"title": "t"}, headers=w.op), 400)
    assert_problem(
        await client.post(f"{url}/assign", json={"assignee_code": w.unit}, headers=w.op), 400
    )
    assert_problem(
        await client.post(
            f"{url}/assign",
            json={"assignee_code": w.unit, "due_at": "tomorrow"},
            headers=w.op,
        ),
        400,
    )
    assert_problem(
        await client.post(
            f"{url}/evaluate", json={"satisfaction": "satisfied", "resolved": "yes"}, headers=w.op
        ),
        400,
    )
    # 401
    assert_problem(await client.post("/v1/issues", json=base), 401)
    assert_problem(await client.get(url), 401)
    assert_problem(await client.post(f"{url}/accept", headers={"Authorization": "Bearer x"}), 401)
    # 403: roles
    viewer = auth(jwt, w.tree.county, "viewer", "inspector")
    assert_problem(await client.post("/v1/issues", json=base, headers=viewer), 403)
    assert_problem(
        await client.post(
            f"{url}/assign", json={"assignee_code": w.unit, "due_at": at(clock, H)}, headers=viewer
        ),
        403,
    )
    # 404: outside the scope, unknown, not an id
    other_street = auth(jwt, w.other_street, "admin")
    assert_problem(await client.get(url, headers=other_street), 404)
    assert_problem(
        await client.post(
            f"{url}/assign",
            json={"assignee_code": w.unit, "due_at": at(clock, H)},
            headers=other_street,
        ),
        404,
    )
    assert_problem(await client.get(f"/v1/issues/{uuid4()}", headers=w.op), 404)
    assert_problem(await client.post(f"/v1/issues/{uuid4()}/accept", headers=w.op), 404)
    assert_problem(await client.get("/v1/issues/not-an-id", headers=w.op), 404)
    assert_problem(
        await client.post(
            "/v1/issues",
            json={**base, "node_code": w.tree.communities[w.other_street][0]},
            headers=w.op,
        ),
        404,
    )
    assert_problem(
        await client.post(
            f"{url}/assign", json={"assignee_code": "U-NOPE", "due_at": at(clock, H)}, headers=w.op
        ),
        404,
    )
    # 409 with the current state
    body = assert_problem(await client.post(f"{url}/accept", headers=w.op), 409)
    assert body["current_state"] == "reported"
    body = assert_problem(
        await client.post(f"{url}/resolve", json={"result": "x"}, headers=w.op), 409
    )
    assert body["current_state"] == "reported"
    # 422: values the domain refuses
    for bad in ({"source": "wechat"}, {"title": "   "}, {"due_at": at(clock, -H)}):
        body = assert_problem(
            await client.post("/v1/issues", json={**base, **bad}, headers=w.op), 422
        )
        assert body["errors"][0]["field"] == next(iter(bad))
    assert_problem(
        await client.post(
            f"{url}/assign",
            json={"assignee_code": w.street, "due_at": at(clock, H)},
            headers=w.op,
        ),
        422,
    )
    assert_problem(
        await client.post(
            f"{url}/assign",
            json={"assignee_code": w.unit, "due_at": at(clock, -H)},
            headers=w.op,
        ),
        422,
    )
    # 412: a stale If-Match; the current one goes through
    stale = await client.post(
        f"{url}/assign",
        json={"assignee_code": w.unit, "due_at": at(clock, 24 * H)},
        headers={**w.op, "If-Match": '"7"'},
    )
    assert assert_problem(stale, 412)["current_version"] == 1
    etag = (await w.get(issue_id)).headers["etag"]
    assigned = await w.act(
        issue_id,
        "assign",
        {"assignee_code": w.unit, "due_at": at(clock, 24 * H)},
        {**w.op, "If-Match": etag},
    )
    assert assigned["version"] == 2
    assert_problem(await client.post(f"{url}/accept", headers={**w.unit_h, "If-Match": "1"}), 412)
    assert_problem(await client.post(f"{url}/accept", headers={**w.unit_h, "If-Match": "abc"}), 400)


async def test_idempotency_key_replays_and_refuses_other_bodies(client, jwt, clock, pool):
    w = await world(client, jwt, clock)
    h = {**w.op, "Idempotency-Key": f"report-{uuid4()}"}
    body = {"node_code": w.community, "title": "占道经营", "category": "市容", "source": "grid"}
    first = await client.post("/v1/issues", json=body, headers=h)
    again = await client.post("/v1/issues", json=body, headers=h)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json() and again.headers["idempotent-replayed"] == "true"
    assert_problem(await client.post("/v1/issues", json={**body, "title": "别的"}, headers=h), 422)
    issue_id = first.json()["id"]
    assert await event_types(pool, created_id(first.json())) == ["IssueReported"]
    # a command too: the retried assignment is not a second IssueAssigned
    h = {**w.op, "Idempotency-Key": f"assign-{uuid4()}"}
    assign = {"assignee_code": w.unit, "due_at": at(clock, 24 * H)}
    one = await client.post(f"/v1/issues/{issue_id}/assign", json=assign, headers=h)
    two = await client.post(f"/v1/issues/{issue_id}/assign", json=assign, headers=h)
    assert one.status_code == two.status_code == 200 and one.json() == two.json()
    assert await event_types(pool, created_id(first.json())) == ["IssueReported", "IssueAssigned"]


async def test_a_retry_replays_whether_the_new_decision_would_fail_or_succeed(
    client, jwt, clock, pool
):
    """The first attempt does not look the key up (run_command): a retry is still a replay,
    both when deciding again fails (closing a closed issue) and when it would succeed
    (a second progress note), and nothing is recorded twice."""
    w = await world(client, jwt, clock)
    issue_id = (await w.report(source="grid"))["id"]
    await w.assign(issue_id)
    await w.act(issue_id, "accept", headers=w.unit_h)
    h = {**w.unit_h, "Idempotency-Key": f"note-{uuid4()}"}
    url = f"/v1/issues/{issue_id}/progress"
    first = await client.post(url, json={"note": "已联系物业"}, headers=h)
    again = await client.post(url, json={"note": "已联系物业"}, headers=h)
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    assert again.headers["idempotent-replayed"] == "true"
    await w.act(issue_id, "resolve", {"result": "已处理"}, w.unit_h)
    h = {**w.op, "Idempotency-Key": f"close-{uuid4()}"}
    first = await client.post(f"/v1/issues/{issue_id}/close", headers=h)
    again = await client.post(f"/v1/issues/{issue_id}/close", headers=h)
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    assert again.headers["idempotent-replayed"] == "true"
    # the same key with another request is still refused, also when deciding would fail
    other = await client.post(f"/v1/issues/{issue_id}/reopen", json={"reason": "反弹"}, headers=h)
    assert_problem(other, 422)
    types = await event_types(pool, created_id({"id": issue_id}))
    assert types.count("IssueProgressNoted") == 1 and types.count("IssueClosed") == 1


async def test_concurrent_closes_record_one_issue_closed(client, jwt, clock, pool):
    w = await world(client, jwt, clock)
    issue_id = (await w.report(source="grid"))["id"]
    await w.assign(issue_id)
    await w.act(issue_id, "accept", headers=w.unit_h)
    await w.act(issue_id, "resolve", {"result": "已处理"}, w.unit_h)
    for _ in range(3):  # a few rounds: the race is real, whichever wins
        r1, r2 = await asyncio.gather(
            client.post(f"/v1/issues/{issue_id}/close", headers=w.op),
            client.post(f"/v1/issues/{issue_id}/close", headers=auth(jwt, w.street, "operator")),
        )
        statuses = sorted([r1.status_code, r2.status_code])
        if statuses != [409, 409]:
            assert statuses == [200, 409], (r1.text, r2.text)
            loser = r1 if r1.status_code == 409 else r2
            assert loser.json()["current_state"] == "closed"
        assert (await event_types(pool, created_id({"id": issue_id}))).count("IssueClosed") == 1


async def test_concurrent_commands_lose_no_event(client, jwt, clock, pool):
    w = await world(client, jwt, clock)
    issue_id = (await w.report())["id"]
    await w.assign(issue_id)
    await w.act(issue_id, "accept", headers=w.unit_h)
    notes = [f"第{i}次走访" for i in range(8)]
    results = await asyncio.gather(
        *(
            client.post(f"/v1/issues/{issue_id}/progress", json={"note": n}, headers=w.unit_h)
            for n in notes
        )
    )
    assert [r.status_code for r in results] == [200] * len(notes)
    assert sorted(r.json()["version"] for r in results) == list(range(4, 4 + len(notes)))
    types = await event_types(pool, created_id({"id": issue_id}))
    assert types.count("IssueProgressNoted") == len(notes)
    w.position = max(r.json()["position"] for r in results)
    assert (await w.read(issue_id))["counts"]["progress_notes"] == len(notes)


# -- lists ---------------------------------------------------------------------------------------


async def test_list_filters_and_paging(client, jwt, clock):
    w = await world(client, jwt, clock)
    a = (await w.report(title="A", source="hotline"))["id"]
    b = (await w.report(title="B"))["id"]
    c = (await w.report(title="C", external_id="12345-0003"))["id"]
    elsewhere = (
        await post_ok(
            client,
            "/v1/issues",
            {
                "node_code": w.tree.communities[w.other_street][0],
                "title": "D",
                "category": "c",
                "source": "grid",
            },
            w.county_admin,
        )
    )["id"]
    w.position = max(w.position, 0)
    await w.assign(a, due=2 * H)
    await w.assign(b, w.unit2, due=10 * H)
    await w.act(b, "accept", headers=w.unit2_h)
    county = w.county_admin

    async def ids(query: str, headers: dict[str, str] = county) -> list[str]:
        r = await w.list(query, headers)
        assert r.status_code == 200, r.text
        return [i["id"] for i in r.json()["items"]]

    assert await ids("") == [elsewhere, c, b, a]  # newest first
    assert await ids(f"node={w.street}") == [c, b, a]
    assert await ids(f"node={w.other_street}") == [elsewhere]
    assert await ids("", w.op) == [c, b, a]
    assert await ids("status=assigned") == [a]
    assert await ids("status=assigned,accepted") == [b, a]
    assert await ids("status=reported") == [elsewhere, c]
    assert await ids(f"assignee={w.unit2}") == [b]
    assert await ids("source=hotline") == [a]
    assert await ids("external_id=12345-0003") == [c]
    assert await ids("overdue=true") == []
    clock.advance(3 * H)  # a's deadline passes; b's does not
    assert await ids("overdue=true") == [a]
    assert await ids("overdue=false&status=assigned,accepted") == [b]
    view = (await w.list("overdue=true", county)).json()["items"][0]
    assert view["overdue"] is True and view["status"] == "assigned"
    # paging
    r = await w.list("limit=3", county)
    page = r.json()
    assert [i["id"] for i in page["items"]] == [elsewhere, c, b] and page["next_cursor"]
    r = await w.list(f"limit=3&cursor={page['next_cursor']}", county)
    assert [i["id"] for i in r.json()["items"]] == [a] and r.json()["next_cursor"] is None
    # bad filters
    assert_problem(await w.list("status=open", county), 400)
    assert_problem(await w.list("cursor=bm9wZQ", county), 400)
    assert_problem(await w.list("limit=501", county), 400)
    assert_problem(await w.list("overdue=maybe", county), 400)
    assert_problem(await w.list(f"node={w.other_street}", w.op), 404)
    assert_problem(await w.list("assignee=U-NOPE", county), 404)


async def test_openapi_describes_the_issue_endpoints(app):
    paths = app.openapi_schema.to_schema()["paths"]
    for path in (
        "/v1/issues",
        "/v1/issues/{issue_id}",
        "/v1/issues/{issue_id}/assign",
        "/v1/issues/{issue_id}/escalate",
        "/v1/issues/{issue_id}/answer",
        "/v1/issues/{issue_id}/close",
        "/v1/issues/{issue_id}/reopen",
        "/v1/issues:batch",
    ):
        assert path in paths, path
    batch = paths["/v1/issues:batch"]["post"]["requestBody"]["content"]["application/json"]
    item = batch["schema"]["properties"]["items"]
    assert item["maxItems"] == 500
    assert "idempotency_key" in item["items"]["required"]


#: every command endpoint with a well-formed body (``None``: no body).
COMMANDS: dict[str, Any] = {
    "assign": lambda w: {"assignee_code": w.unit, "due_at": at(w.clock, 24 * H)},
    "accept": lambda w: None,
    "return": lambda w: {"reason": "不属于本单位"},
    "extend": lambda w: {"due_at": at(w.clock, 48 * H), "reason": "需协调"},
    "progress": lambda w: {"note": "已到场"},
    "escalate": lambda w: {"to_code": w.street, "respond_within_minutes": 30},
    "answer": lambda w: {"note": "已报到"},
    "resolve": lambda w: {"result": "已处理"},
    "evaluate": lambda w: {"satisfaction": "satisfied", "resolved": True},
    "close": lambda w: None,
    "reopen": lambda w: {"reason": "重办"},
}
#: the commands a reported issue refuses (409 with current_state "reported").
ILLEGAL_WHEN_REPORTED = set(COMMANDS) - {"assign", "escalate"}


async def test_every_command_endpoint_guards_the_same_way(client, jwt, clock):
    w = await world(client, jwt, clock)
    issue_id = (await w.report())["id"]
    viewer = auth(jwt, w.tree.county, "viewer")
    stranger = auth(jwt, w.other_street, "admin")
    for verb, make in COMMANDS.items():
        body = make(w)
        url = f"/v1/issues/{issue_id}/{verb}"

        async def post(headers: dict[str, str], json: Any = body, target: str = url) -> Any:
            return await client.post(target, json=json, headers=headers)

        assert_problem(await post({}), 401)
        assert_problem(await post(viewer), 403)
        assert_problem(await post(stranger), 404)
        assert_problem(await post(w.op, target=f"/v1/issues/{uuid4()}/{verb}"), 404)
        if body is not None:
            assert_problem(await post(w.op, {**body, "unexpected": 1}), 400)
            assert_problem(await post(w.op, {}), 400)
        assert_problem(await post({**w.op, "If-Match": '"99"'}), 412)
        if verb in ILLEGAL_WHEN_REPORTED:
            problem = assert_problem(await post(w.op), 409)
            assert problem["current_state"] == "reported", verb
    assert_problem(
        await client.post(f"/v1/issues/{issue_id}/close", json={"unexpected": 1}, headers=w.op),
        400,
    )
    # nothing of the above was recorded
    assert (await w.read(issue_id))["version"] == 1
