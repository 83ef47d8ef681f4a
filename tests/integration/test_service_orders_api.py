"""五单 volunteer service over HTTP: 亮单 → 点单 → 派单 → 接单 → 评单, the member's hours and
points in the same transaction as the order's event, unit visibility, the accept-deadline
clock, roll-ups, and every error path."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

from tests.integration.test_issue_clock import tick
from tests.integration.test_members_api import assert_problem, person
from tests.support import Tree, auth, build_tree, post_ok


class Loop:
    def __init__(self, client: Any, jwt: Any, tree: Tree) -> None:
        self.client, self.jwt, self.tree = client, jwt, tree
        self.street = tree.streets[0]
        self.community = tree.communities[self.street][0]
        self.other_community = tree.communities[tree.streets[1]][0]
        self.unit = tree.units[0]
        self.op = auth(jwt, self.community, "operator")
        self.unit_h = auth(jwt, self.unit, "unit")
        self.position = tree.last_position

    async def post(
        self,
        url: str,
        body: dict[str, Any],
        headers: dict[str, str] | None = None,
        expect: int = 200,
    ) -> dict[str, Any]:
        r = await post_ok(self.client, url, body, headers or self.op, expect)
        self.position = max(self.position, r["position"])
        return r

    async def get(self, url: str, headers: dict[str, str] | None = None) -> Any:
        sep = "&" if "?" in url else "?"
        return await self.client.get(
            f"{url}{sep}min_position={self.position}", headers=headers or self.op
        )

    async def member(self) -> str:
        body = {"community_code": self.community, **person(), "home_unit_code": self.unit}
        return str((await self.post("/v1/members", body, expect=201))["id"])

    async def order(self, **extra: Any) -> str:
        body = {"community_code": self.community, "title": "上门理发", "description": "独居老人"}
        body.update(extra)
        return str((await self.post("/v1/service-orders", body, expect=201))["id"])


async def events_of(pool: Any, stream_id: str) -> list[Any]:
    async with pool.acquire() as conn:
        return list(
            await conn.fetch(
                "SELECT event_id, type, position, causation_id, correlation_id, tx_id::text AS xid FROM events"
                " WHERE stream_id = $1 ORDER BY version",
                UUID(stream_id),
            )
        )


async def test_the_whole_loop_for_a_member(client, jwt, pool):
    tree = await build_tree(client, jwt, streets=2, communities=1, units=1)
    w = Loop(client, jwt, tree)
    member = await w.member()
    offer = await w.post(
        "/v1/service-offers",
        {
            "community_code": w.community,
            "member_id": member,
            "title": "义务理发",
            "category": "生活服务",
        },
        expect=201,
    )
    order = await w.order(offer_id=offer["id"], due_on="2099-01-01")
    r = await w.get(f"/v1/service-offers?node={w.community}")
    assert [o["id"] for o in r.json()["items"]] == [offer["id"]]
    # the member's unit sees its member's offer
    r = await w.get("/v1/service-offers", w.unit_h)
    assert [o["id"] for o in r.json()["items"]] == [offer["id"]]
    await w.post(f"/v1/service-orders/{order}/dispatch", {"member_id": member})
    # the member's home unit acts for the member (接单, completion)
    await w.post(f"/v1/service-orders/{order}/accept", {}, w.unit_h)
    done = await w.post(
        f"/v1/service-orders/{order}/complete", {"summary": "已上门理发", "hours": 1.5}, w.unit_h
    )
    assert done["status"] == "completed" and done["member_service_hours"] == 1.5
    rated = await w.post(f"/v1/service-orders/{order}/evaluate", {"rating": 5, "comment": "很好"})
    assert rated["status"] == "evaluated" and rated["points_awarded"] == 10
    view = (await w.get(f"/v1/service-orders/{order}")).json()
    assert (view["status"], view["rating"], view["hours"], view["points_awarded"]) == (
        "evaluated",
        5,
        1.5,
        10,
    )
    assert view["offer_id"] == offer["id"] and view["member_id"] == member
    # the member read shows the same figures (双报到 hours, 积分 points)
    m = (await w.get(f"/v1/members/{member}")).json()
    assert (m["service_hours"], m["points"], m["service_count"]) == (1.5, 10, 1)
    # one transaction, one causation chain: the member's events are caused by the order's
    order_events = {e["type"]: e for e in await events_of(pool, order)}
    member_events = {e["type"]: e for e in await events_of(pool, member)}
    for cause, effect in (
        ("ServiceCompleted", "ServiceRecorded"),
        ("ServiceEvaluated", "PointsAwarded"),
    ):
        assert member_events[effect]["causation_id"] == order_events[cause]["event_id"]
        assert member_events[effect]["xid"] == order_events[cause]["xid"]
        assert member_events[effect]["position"] == order_events[cause]["position"] + 1
    # roll-ups: the community, its street and the county count the same
    for code in (w.community, w.street, tree.county):
        stats = (await w.get(f"/v1/nodes/{code}/stats", auth(jwt, tree.county, "viewer"))).json()
        assert stats["service_orders"] == {
            "requested": 1,
            "completed": 1,
            "evaluated": 1,
            "average_rating": 5.0,
        }, code
        assert stats["members"]["service_hours"] == 1.5 and stats["members"]["points"] == 10


async def test_a_unit_sees_and_acts_on_what_is_dispatched_to_it(client, jwt):
    tree = await build_tree(client, jwt, streets=2, communities=1, units=2)
    w = Loop(client, jwt, tree)
    other_unit = auth(jwt, tree.units[1], "unit")
    order = await w.order()
    hidden = await w.order()
    # before dispatch: the unit sees nothing and may not act
    assert_problem(await w.get(f"/v1/service-orders/{order}", w.unit_h), 404)
    assert_problem(await client.post(f"/v1/service-orders/{order}/accept", headers=w.unit_h), 404)
    await w.post(f"/v1/service-orders/{order}/dispatch", {"unit_code": w.unit})
    assert (await w.get(f"/v1/service-orders/{order}", w.unit_h)).status_code == 200
    listed = (await w.get("/v1/service-orders", w.unit_h)).json()["items"]
    assert [o["id"] for o in listed] == [order]
    assert hidden not in {o["id"] for o in listed}
    # another unit does not see it
    assert_problem(await w.get(f"/v1/service-orders/{order}", other_unit), 404)
    await w.post(f"/v1/service-orders/{order}/accept", {}, w.unit_h)
    done = await w.post(
        f"/v1/service-orders/{order}/complete", {"summary": "修好了", "hours": 2}, w.unit_h
    )
    assert done["member_service_hours"] is None  # a unit served: no member's hours
    # evaluation and cancel are the community's
    assert_problem(
        await client.post(
            f"/v1/service-orders/{order}/evaluate", json={"rating": 4}, headers=w.unit_h
        ),
        403,
    )
    # a unit publishes its own offers, to any community of the root
    offered = await w.post(
        "/v1/service-offers",
        {
            "community_code": w.other_community,
            "provider_code": w.unit,
            "title": "法律咨询",
            "category": "法律",
        },
        w.unit_h,
        expect=201,
    )
    mine = (await w.get("/v1/service-offers", w.unit_h)).json()["items"]
    assert [o["id"] for o in mine] == [offered["id"]]
    r = await client.post(
        "/v1/service-offers",
        json={
            "community_code": w.community,
            "provider_code": tree.units[1],
            "title": "x",
            "category": "y",
        },
        headers=w.unit_h,
    )
    assert_problem(r, 404)


async def test_errors(client, jwt):
    tree = await build_tree(client, jwt, streets=2, communities=1, units=1)
    w = Loop(client, jwt, tree)
    order = await w.order()
    url = f"/v1/service-orders/{order}"
    # 409 with the current state
    body = assert_problem(await client.post(f"{url}/accept", headers=w.op), 409)
    assert body["current_state"] == "requested"
    assert_problem(await client.post(f"{url}/evaluate", json={"rating": 5}, headers=w.op), 409)
    # 422: neither or both assignees, bad rating, hours out of range
    assert_problem(await client.post(f"{url}/dispatch", json={}, headers=w.op), 422)
    member = await w.member()
    both = {"member_id": member, "unit_code": w.unit}
    assert_problem(await client.post(f"{url}/dispatch", json=both, headers=w.op), 422)
    # 404: unknown member, unit, order, community outside the scope
    assert_problem(
        await client.post(f"{url}/dispatch", json={"member_id": order}, headers=w.op), 404
    )
    assert_problem(
        await client.post(f"{url}/dispatch", json={"unit_code": "U999999999"}, headers=w.op), 404
    )
    assert_problem(await client.post(f"/v1/service-orders/{member}/accept", headers=w.op), 404)
    outside = {"community_code": w.other_community, "title": "t", "description": "d"}
    assert_problem(await client.post("/v1/service-orders", json=outside, headers=w.op), 404)
    # 403: a viewer; 401: no token; 400: unknown field / malformed
    viewer = auth(jwt, w.community, "viewer")
    assert_problem(await client.post(f"{url}/cancel", json={"reason": "x"}, headers=viewer), 403)
    assert_problem(await client.post(f"{url}/cancel", json={"reason": "x"}), 401)
    assert_problem(
        await client.post(f"{url}/cancel", json={"reason": "x", "extra": 1}, headers=w.op), 400
    )
    assert_problem(
        await client.post(
            f"{url}/dispatch", content=b"{", headers={**w.op, "Content-Type": "application/json"}
        ),
        400,
    )
    # If-Match: stale → 412; current → applies
    await w.post(f"{url}/dispatch", {"unit_code": w.unit})
    etag = (await w.get(url)).headers["etag"]
    stale = {**w.op, "If-Match": '"1"'}
    assert_problem(await client.post(f"{url}/accept", headers=stale), 412)
    r = await client.post(f"{url}/accept", headers={**w.op, "If-Match": etag})
    assert r.status_code == 200, r.text
    w.position = r.json()["position"]
    # Idempotency-Key: a repeat replays, another body is 422
    keyed = {**w.op, "Idempotency-Key": f"complete-{order}"}
    first = await client.post(
        f"{url}/complete", json={"summary": "好了", "hours": 1}, headers=keyed
    )
    again = await client.post(
        f"{url}/complete", json={"summary": "好了", "hours": 1}, headers=keyed
    )
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    assert again.headers.get("idempotent-replayed") == "true"
    other = await client.post(
        f"{url}/complete", json={"summary": "别的", "hours": 1}, headers=keyed
    )
    assert_problem(other, 422)
    # cancel after completion → 409
    body = assert_problem(
        await client.post(f"{url}/cancel", json={"reason": "x"}, headers=w.op), 409
    )
    assert body["current_state"] == "completed"
    assert_problem(await client.post(f"{url}/evaluate", json={"rating": 6}, headers=w.op), 422)
    # list filter validation
    assert_problem(await client.get("/v1/service-orders?status=lost", headers=w.op), 400)


async def test_cancel_and_list_by_status(client, jwt):
    tree = await build_tree(client, jwt, streets=2, communities=1, units=1)
    w = Loop(client, jwt, tree)
    kept, dropped = await w.order(), await w.order()
    await w.post(f"/v1/service-orders/{dropped}/cancel", {"reason": "居民取消"})
    r = await w.get(f"/v1/service-orders?node={w.community}&status=cancelled")
    assert [o["id"] for o in r.json()["items"]] == [dropped]
    r = await w.get(
        f"/v1/service-orders?node={w.street}&status=requested", auth(jwt, tree.county, "viewer")
    )
    assert [o["id"] for o in r.json()["items"]] == [kept]


async def test_an_unaccepted_dispatch_is_flagged_overdue_once(app, client, jwt, clock, pool):
    tree = await build_tree(client, jwt, streets=2, communities=1, units=1)
    w = Loop(client, jwt, tree)
    late, taken = await w.order(), await w.order()
    for order in (late, taken):
        await w.post(f"/v1/service-orders/{order}/dispatch", {"unit_code": w.unit})
    await w.post(f"/v1/service-orders/{taken}/accept", {}, w.unit_h)
    await w.get("/v1/service-orders")  # the clock reads the read model: let it catch up
    clock.advance(timedelta(minutes=ctx_minutes(app) + 1))
    for _ in range(20):
        if await tick(app) == 0:
            break
    await tick(app)
    overdue = [e for e in await events_of(pool, late) if e["type"] == "ServiceOverdue"]
    assert len(overdue) == 1
    assert [e for e in await events_of(pool, taken) if e["type"] == "ServiceOverdue"] == []
    w.position = max(w.position, overdue[0]["position"])
    view = (await w.get(f"/v1/service-orders/{late}")).json()
    assert view["overdue"] is True and view["status"] == "dispatched"
    flagged = (await w.get("/v1/service-orders?overdue=true")).json()["items"]
    assert [o["id"] for o in flagged] == [late]
    # dispatching again clears the flag (a new deadline)
    await w.post(f"/v1/service-orders/{late}/dispatch", {"unit_code": w.unit})
    view = (await w.get(f"/v1/service-orders/{late}")).json()
    assert view["overdue"] is False and view["dispatch_count"] == 2


async def test_the_accept_clock_skips_closed_subtrees(app, client, jwt, clock, pool):
    """An order of a closed community is never due: its append would be refused at COMMIT,
    and re-selecting it every tick would crowd other tenants' orders out of the sweep's
    LIMIT."""
    from services.commands.service_orders import ServiceOverdueSweep

    tree = await build_tree(client, jwt, streets=2, communities=1, units=1)
    w = Loop(client, jwt, tree)
    admin = auth(jwt, tree.county, "admin")
    closing = await w.order()
    body = {"community_code": w.other_community, "title": "上门理发", "description": "独居老人"}
    other = str((await w.post("/v1/service-orders", body, admin, expect=201))["id"])
    for order, headers in ((closing, w.op), (other, admin)):
        await w.post(f"/v1/service-orders/{order}/dispatch", {"unit_code": w.unit}, headers)
    await w.get("/v1/service-orders", admin)  # the sweep reads the read model
    await w.post(f"/v1/nodes/{w.street}/close", {"reason": "撤并"}, admin)
    async with pool.acquire() as conn:
        due = await ServiceOverdueSweep().due(conn, clock() + timedelta(days=400), 100_000)
    due_ids = {str(item.stream_id) for item in due}
    # the open street's order is due (the control), the closed street's is left alone
    assert other in due_ids and closing not in due_ids


def ctx_minutes(app: Any) -> int:
    minutes: int = app.state.ctx.settings.service_accept_minutes
    return minutes


async def test_the_feed_carries_the_loop(client, jwt, pool):
    from tests.integration.test_feed import read_feed, settled

    tree = await build_tree(client, jwt, streets=2, communities=1, units=1)
    w = Loop(client, jwt, tree)
    order = await w.order()
    await w.post(f"/v1/service-orders/{order}/dispatch", {"unit_code": w.unit})
    await w.post(f"/v1/service-orders/{order}/cancel", {"reason": "居民取消"})
    await settled(pool, w.position)
    items, _ = await read_feed(client, auth(jwt, tree.county, "integrator"))
    mine = [i["type"] for i in items if i["subject"] == order]
    assert mine == [
        "cn.civic-ledger.service.requested.v1",
        "cn.civic-ledger.service.dispatched.v1",
        "cn.civic-ledger.service.cancelled.v1",
    ]


async def test_after_a_redispatch_only_the_new_assignee_sees_and_acts(client, jwt):
    tree = await build_tree(client, jwt, streets=2, communities=1, units=2)
    w = Loop(client, jwt, tree)
    second = auth(jwt, tree.units[1], "unit")
    order = await w.order()
    await w.post(f"/v1/service-orders/{order}/dispatch", {"unit_code": w.unit})
    await w.post(f"/v1/service-orders/{order}/dispatch", {"unit_code": tree.units[1]})
    r = await client.post(f"/v1/service-orders/{order}/accept", headers=w.unit_h)
    assert_problem(r, 404)  # the former unit no longer sees the order
    assert_problem(await w.get(f"/v1/service-orders/{order}", w.unit_h), 404)
    accepted = await w.post(f"/v1/service-orders/{order}/accept", {}, second)
    assert accepted["status"] == "accepted"
    view = (await w.get(f"/v1/service-orders/{order}", second)).json()
    assert view["unit_code"] == tree.units[1] and view["dispatch_count"] == 2
