"""The deadline clock for rectifications: RectificationOverdue once per due date (China date),
never for a verified finding, again after a 回头看 reopen sets a new due date.

Time moves with the app's ``clock`` fixture; ``tick`` runs ``deadline_clock.tick()`` now. The
background clock may fire first, so the tests assert the recorded events, not tick counts.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from uuid import UUID

from tests.findings_support import (
    advance_days,
    event_types,
    last_position,
    pin_china_noon,
    read_finding,
    record_finding,
    tick,
)
from tests.support import auth, build_tree, post_ok

D = timedelta(days=1)


async def overdue_due_dates(pool: Any, stream_id: str) -> list[str]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT data FROM events WHERE stream_id = $1 AND type = 'RectificationOverdue'"
            " ORDER BY version",
            UUID(stream_id),
        )
    return [json.loads(r["data"])["due_on"] for r in rows]


async def test_a_past_due_import_is_marked_overdue_once(app, client, jwt, pool, clock):
    today = pin_china_noon(clock)
    tree = await build_tree(client, jwt, streets=1, communities=1)
    due = today - 3 * D
    created = await record_finding(client, jwt, tree, due)
    fid = created["id"]
    viewer = auth(jwt, tree.county, "viewer")
    # red at read time, before any tick (the sweep reads the read model: let it catch up)
    f = await read_finding(client, viewer, fid, created["position"])
    assert f["warning"] == "red" and f["overdue_recorded_for"] is None
    await tick(app)
    await tick(app)
    assert await overdue_due_dates(pool, fid) == [due.isoformat()]
    f = await read_finding(client, viewer, fid, await last_position(pool, fid))
    assert f["overdue_recorded_for"] == due.isoformat() and f["warning"] == "red"
    assert f["version"] == 3


async def test_overdue_the_day_after_the_due_date_and_again_after_a_reopen(
    app, client, jwt, pool, clock
):
    today = pin_china_noon(clock)
    tree = await build_tree(client, jwt, streets=1, communities=1)
    due = today + 2 * D
    created = await record_finding(client, jwt, tree, due)
    fid = created["id"]
    admin = auth(jwt, tree.county, "admin")
    await read_finding(client, admin, fid, created["position"])
    await tick(app)
    advance_days(clock, 2)  # the due day itself: not yet overdue
    await tick(app)
    assert await overdue_due_dates(pool, fid) == []
    advance_days(clock, 1)
    await tick(app)
    await tick(app)
    assert await overdue_due_dates(pool, fid) == [due.isoformat()]
    # late completion and verification; then 回头看 finds a relapse, with a new due date
    await post_ok(client, f"/v1/findings/{fid}/complete", {"summary": "逾期完成"}, admin, 200)
    await post_ok(
        client, f"/v1/findings/{fid}/verify", {"accepted": True, "comment": "同意"}, admin, 200
    )
    new_due = today + 3 * D + 5 * D
    r = await post_ok(
        client,
        f"/v1/findings/{fid}/reopen",
        {"reason": "回头看发现问题反弹", "due_on": new_due.isoformat()},
        admin,
        200,
    )
    f = await read_finding(client, admin, fid, r["position"])
    assert f["overdue_recorded_for"] is None and f["due_on"] == new_due.isoformat()
    advance_days(clock, 6)
    await tick(app)
    assert await overdue_due_dates(pool, fid) == [due.isoformat(), new_due.isoformat()]
    f = await read_finding(client, admin, fid, await last_position(pool, fid))
    assert f["overdue_recorded_for"] == new_due.isoformat() and f["overdue_days"] == 1


async def test_verified_findings_are_never_overdue_but_completed_ones_are(
    app, client, jwt, pool, clock
):
    today = pin_china_noon(clock)
    tree = await build_tree(client, jwt, streets=1, communities=1)
    admin = auth(jwt, tree.county, "admin")
    verified = (await record_finding(client, jwt, tree, today + D))["id"]
    completed = (await record_finding(client, jwt, tree, today + D))["id"]
    for fid in (verified, completed):
        await post_ok(client, f"/v1/findings/{fid}/complete", {"summary": "完成"}, admin, 200)
    r = await post_ok(
        client, f"/v1/findings/{verified}/verify", {"accepted": True, "comment": "同意"}, admin, 200
    )
    await read_finding(client, admin, verified, r["position"])
    advance_days(clock, 5)
    await tick(app)
    assert "RectificationOverdue" not in await event_types(pool, verified)
    assert await overdue_due_dates(pool, completed) == [(today + D).isoformat()]
