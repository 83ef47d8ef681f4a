"""The deadline clock on issues: IssueOverdue and EscalationOverdue, recorded once, driven by a
moved clock (no sleeping); ``overdue`` reads true at once, before the clock has even run.

The background clock may fire first, so the tests assert the recorded events, not tick counts.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any
from uuid import UUID

from tests.support import auth, build_tree, post_ok

H = timedelta(hours=1)
M = timedelta(minutes=1)


class Issues:
    def __init__(self, client: Any, jwt: Any, clock: Any, tree: Any) -> None:
        self.client, self.clock, self.tree = client, clock, tree
        self.street = tree.streets[0]
        self.community = tree.communities[self.street][0]
        self.unit = tree.units[0]
        self.op = auth(jwt, self.community, "operator")
        self.unit_h = auth(jwt, self.unit, "unit")
        self.street_h = auth(jwt, self.street, "operator")
        self.position = tree.last_position

    async def post(
        self, url: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        r = await post_ok(
            self.client, url, body, headers or self.op, 201 if url == "/v1/issues" else 200
        )
        self.position = max(self.position, r["position"])
        return r

    async def assigned(self, due: timedelta, *, accept: bool = True) -> str:
        issue_id = (
            await self.post(
                "/v1/issues",
                {
                    "node_code": self.community,
                    "title": "下水道堵塞",
                    "category": "市政设施",
                    "source": "hotline",
                },
            )
        )["id"]
        due_at = (self.clock() + due).isoformat()
        await self.post(
            f"/v1/issues/{issue_id}/assign", {"assignee_code": self.unit, "due_at": due_at}
        )
        if accept:
            await self.post(f"/v1/issues/{issue_id}/accept", {}, self.unit_h)
        return str(issue_id)

    async def read_all(self) -> None:
        r = await self.client.get(
            f"/v1/issues?limit=1&min_position={self.position}", headers=self.op
        )
        assert r.status_code == 200, r.text

    async def read(self, issue_id: str, position: int | None = None) -> dict[str, Any]:
        r = await self.client.get(
            f"/v1/issues/{issue_id}?min_position={position or self.position}", headers=self.op
        )
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body


async def tick(app: Any) -> int:
    """Run the app's deadline clock once, now.

    The test client runs the app (its pool, its clock) in a portal thread's event loop, so the
    tick must run there too: awaiting it on the test's loop would use the pool across loops.
    """
    portal = app.state.client.blocking_portal
    fired: int = await asyncio.wrap_future(portal.start_task_soon(app.state.deadline_clock.tick))
    return fired


async def sweep(app: Any, w: Issues) -> None:
    """Tick until the clock has nothing left to record (a tick takes at most a batch of items
    per sweep, and other tests' issues share the database), then tick once more."""
    await w.read_all()  # the clock reads the read model: let it include our commands
    for _ in range(20):
        if await tick(app) == 0:
            break
    await tick(app)


async def recorded(pool: Any, issue_id: str, event_type: str) -> list[Any]:
    async with pool.acquire() as conn:
        return list(
            await conn.fetch(
                "SELECT position, data FROM events WHERE stream_id = $1 AND type = $2"
                " ORDER BY version",
                UUID(issue_id),
                event_type,
            )
        )


async def test_issue_overdue_is_recorded_once_and_reads_true(app, client, jwt, clock, pool):
    tree = await build_tree(client, jwt, streets=1, communities=1, units=1)
    w = Issues(client, jwt, clock, tree)
    late = await w.assigned(2 * H)
    unaccepted = await w.assigned(2 * H, accept=False)
    in_time = await w.assigned(5 * H)
    assert (await w.read(late))["overdue"] is False
    clock.advance(3 * H)
    # read time: overdue at once, before any clock tick
    view = await w.read(late)
    assert view["overdue"] is True and view["overdue_recorded_at"] is None
    await sweep(app, w)
    await sweep(app, w)  # sweeping again records nothing new
    for issue_id in (late, unaccepted):
        [event] = await recorded(pool, issue_id, "IssueOverdue")
        view = await w.read(issue_id, event["position"])
        assert view["overdue"] is True and view["overdue_recorded_at"]
    assert await recorded(pool, in_time, "IssueOverdue") == []
    assert (await w.read(in_time))["overdue"] is False
    # the late issue is still handled; it stays overdue (late) once resolved and closed
    await w.post(f"/v1/issues/{late}/resolve", {"result": "已疏通"}, w.unit_h)
    await w.post(f"/v1/issues/{late}/evaluate", {"satisfaction": "satisfied", "resolved": True})
    await w.post(f"/v1/issues/{late}/close", {})
    view = await w.read(late)
    assert view["status"] == "closed" and view["overdue"] is True
    assert view["closed_on_time"] is False
    # the list filter agrees with the reads
    r = await client.get(f"/v1/issues?overdue=true&min_position={w.position}", headers=w.op)
    assert {i["id"] for i in r.json()["items"]} == {late, unaccepted}


async def test_a_reopened_issue_gets_a_new_deadline_and_can_be_late_again(
    app, client, jwt, clock, pool
):
    tree = await build_tree(client, jwt, streets=1, communities=1, units=1)
    w = Issues(client, jwt, clock, tree)
    issue_id = await w.assigned(2 * H)
    clock.advance(3 * H)
    await sweep(app, w)
    assert len(await recorded(pool, issue_id, "IssueOverdue")) == 1
    await w.post(f"/v1/issues/{issue_id}/resolve", {"result": "已处理"}, w.unit_h)
    await w.post(
        f"/v1/issues/{issue_id}/evaluate", {"satisfaction": "dissatisfied", "resolved": False}
    )
    await w.post(
        f"/v1/issues/{issue_id}/reopen",
        {"reason": "仍然堵塞", "due_at": (clock() + 4 * H).isoformat()},
    )
    view = await w.read(issue_id)
    assert view["status"] == "assigned" and view["overdue"] is False
    assert view["overdue_recorded_at"] is None
    clock.advance(5 * H)
    await sweep(app, w)
    await sweep(app, w)
    events = await recorded(pool, issue_id, "IssueOverdue")
    assert len(events) == 2
    assert (await w.read(issue_id, events[-1]["position"]))["overdue"] is True


async def test_escalation_overdue_is_recorded_once(app, client, jwt, clock, pool):
    tree = await build_tree(client, jwt, streets=1, communities=1, units=1)
    w = Issues(client, jwt, clock, tree)
    silent = await w.assigned(48 * H)
    answered = await w.assigned(48 * H)
    for issue_id in (silent, answered):
        await w.post(
            f"/v1/issues/{issue_id}/escalate", {"to_code": w.street, "respond_within_minutes": 30}
        )
    await w.post(f"/v1/issues/{answered}/answer", {"note": "街道已派员到场"}, w.street_h)
    clock.advance(31 * M)
    # read time: the unanswered whistle is overdue at once
    assert (await w.read(silent))["escalation"]["overdue"] is True
    await sweep(app, w)
    await sweep(app, w)
    [event] = await recorded(pool, silent, "EscalationOverdue")
    assert await recorded(pool, answered, "EscalationOverdue") == []
    assert await recorded(pool, silent, "IssueOverdue") == []  # the issue itself is not late
    view = await w.read(silent, event["position"])
    assert view["escalation"]["overdue"] is True and view["overdue"] is False
    assert (await w.read(answered))["escalation"]["overdue"] is False
    # a late answer is still recorded; the whistle stays overdue; a new whistle may be blown
    await w.post(f"/v1/issues/{silent}/answer", {"note": "迟到报到"}, w.street_h)
    view = await w.read(silent)
    assert view["escalation"]["answered_at"] and view["escalation"]["overdue"] is True
    await w.post(
        f"/v1/issues/{silent}/escalate",
        {"to_code": tree.county, "respond_within_minutes": 60},
    )
    view = await w.read(silent)
    assert view["escalation"]["level"] == "county" and view["escalation"]["overdue"] is False
