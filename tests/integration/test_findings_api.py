"""Inspection findings and rectification (巡视整改) over HTTP: 建账 → 更新 → 销号 with double
review and 回头看, warnings, scope and roles, and every status code the contract names."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest

from tests.findings_support import (
    advance_days,
    assert_problem,
    event_types,
    finding_body,
    pin_china_noon,
    read_finding,
    record_finding,
)
from tests.support import auth, build_tree, post_ok

D = timedelta(days=1)


async def test_ledger_story_record_progress_complete_verify(client, jwt, pool, clock):
    today = pin_china_noon(clock)
    tree = await build_tree(client, jwt)
    unit = tree.units[0]
    created = await record_finding(client, jwt, tree, today + 60 * D)
    assert created["version"] == 2 and created["position"] > 0
    assert created["status"] == "assigned" and created["warning"] == "none"
    fid = created["id"]

    viewer = auth(jwt, tree.county, "viewer")
    f = await read_finding(client, viewer, fid, created["position"])
    assert f["status"] == "assigned" and f["status_label"] == "整改中"
    assert f["node_code"] == tree.streets[0] and f["node_name"] == "第1街道"
    assert f["source"] == "省委第三巡视组" and f["round"] == "2024年第一轮"
    assert f["description"] == "低保动态管理不到位，存在应退未退情况"
    assert (f["category"], f["category_label"]) == ("deadline", "限期整改")
    assert (f["responsible_unit_code"], f["responsible_unit_name"]) == (unit, "县第1局")
    assert f["measures"] == ["建立困难群众动态监测台账", "每季度开展一次走访核查"]
    assert f["due_on"] == (today + 60 * D).isoformat()
    assert (f["warning"], f["overdue"], f["overdue_days"]) == ("none", False, 0)
    assert f["version"] == 2

    # 更新: the responsible unit reports progress, with an evidence reference
    unit_h = auth(jwt, unit, "unit")
    p = await post_ok(
        client,
        f"/v1/findings/{fid}/progress",
        {"note": "已完成全县低保对象复核", "evidence": "doc://ledger/2024-031"},
        unit_h,
        200,
    )
    assert p["version"] == 3 and p["status"] == "in_progress"
    f = await read_finding(client, viewer, fid, p["position"])
    assert f["last_progress_note"] == "已完成全县低保对象复核"
    assert f["last_progress_evidence"] == "doc://ledger/2024-031"
    assert f["progress_count"] == 1 and f["last_progress_at"]

    c = await post_ok(
        client,
        f"/v1/findings/{fid}/complete",
        {"summary": "应退未退对象已全部清退，建立长效机制"},
        unit_h,
        200,
    )
    assert c["status"] == "completed"
    f = await read_finding(client, viewer, fid, c["position"])
    assert f["status_label"] == "已完成待验收" and f["completed_at"]
    assert f["completion_summary"] == "应退未退对象已全部清退，建立长效机制"

    # 销号: the inspector of the county verifies
    v = await post_ok(
        client,
        f"/v1/findings/{fid}/verify",
        {"accepted": True, "comment": "材料齐全，同意销号"},
        auth(jwt, tree.county, "inspector"),
        200,
    )
    assert v["status"] == "verified" and v["version"] == 5 and v["warning"] == "none"
    f = await read_finding(client, viewer, fid, v["position"])
    assert f["status"] == "verified" and f["status_label"] == "已销号"
    assert f["verified_at"] and f["verification_comment"] == "材料齐全，同意销号"
    assert await event_types(pool, fid) == [
        "FindingRecorded",
        "RectificationAssigned",
        "RectificationProgressReported",
        "RectificationCompleted",
        "RectificationVerified",
    ]


async def test_rejection_sends_it_back_with_the_reason(client, jwt, clock):
    today = pin_china_noon(clock)
    tree = await build_tree(client, jwt, streets=1, communities=1)
    created = await record_finding(client, jwt, tree, today + 30 * D, category="immediate")
    fid = created["id"]
    op = auth(jwt, tree.county, "operator")
    inspector = auth(jwt, tree.county, "inspector")
    await post_ok(client, f"/v1/findings/{fid}/complete", {"summary": "已整改"}, op, 200)
    r = await post_ok(
        client,
        f"/v1/findings/{fid}/verify",
        {"accepted": False, "comment": "缺少清退对象名单"},
        inspector,
        200,
    )
    assert r["status"] == "in_progress"
    f = await read_finding(client, op, fid, r["position"])
    assert f["status_label"] == "退回重改" and f["category_label"] == "立行立改"
    assert f["rejected_count"] == 1 and f["last_rejection_reason"] == "缺少清退对象名单"
    assert f["completed_at"] is None and f["completion_summary"] is None
    # a rejection without a reason is refused by the domain
    await post_ok(client, f"/v1/findings/{fid}/complete", {"summary": "补充名单"}, op, 200)
    body = assert_problem(
        await client.post(
            f"/v1/findings/{fid}/verify",
            json={"accepted": False, "comment": "   "},
            headers=inspector,
        ),
        422,
    )
    assert body["errors"][0]["field"] == "comment"
    r = await post_ok(
        client, f"/v1/findings/{fid}/verify", {"accepted": True, "comment": "同意"}, inspector, 200
    )
    f = await read_finding(client, op, fid, r["position"])
    assert f["status"] == "verified" and f["rejected_count"] == 1


async def test_reopen_only_after_verification(client, jwt, clock):
    today = pin_china_noon(clock)
    tree = await build_tree(client, jwt, streets=1, communities=1)
    created = await record_finding(client, jwt, tree, today + 30 * D, category="long_term")
    fid = created["id"]
    admin = auth(jwt, tree.county, "admin")
    r = await client.post(f"/v1/findings/{fid}/reopen", json={"reason": "反弹"}, headers=admin)
    assert assert_problem(r, 409)["current_state"] == "assigned"
    await post_ok(client, f"/v1/findings/{fid}/complete", {"summary": "已完成"}, admin, 200)
    r = await client.post(f"/v1/findings/{fid}/reopen", json={"reason": "反弹"}, headers=admin)
    assert assert_problem(r, 409)["current_state"] == "completed"
    await post_ok(
        client, f"/v1/findings/{fid}/verify", {"accepted": True, "comment": "同意销号"}, admin, 200
    )
    # a new due date in the past is refused
    r = await client.post(
        f"/v1/findings/{fid}/reopen",
        json={"reason": "回头看发现问题反弹", "due_on": (today - D).isoformat()},
        headers=admin,
    )
    assert assert_problem(r, 422)["errors"][0]["field"] == "due_on"
    reopened = await post_ok(
        client,
        f"/v1/findings/{fid}/reopen",
        {"reason": "回头看发现部分对象重新纳入"},
        auth(jwt, tree.county, "inspector"),
        200,
    )
    assert reopened["status"] == "in_progress"
    assert reopened["due_on"] == (today + 30 * D).isoformat()  # the default: 30 days
    f = await read_finding(client, admin, fid, reopened["position"])
    assert f["status_label"] == "回头看重新整改" and f["reopened_count"] == 1
    assert f["last_reopen_reason"] == "回头看发现部分对象重新纳入"
    assert f["verified_at"] is None and f["warning"] == "none"
    # the unit works it again, and it is verified again
    unit_h = auth(jwt, tree.units[0], "unit")
    await post_ok(client, f"/v1/findings/{fid}/progress", {"note": "再次清理"}, unit_h, 200)
    await post_ok(client, f"/v1/findings/{fid}/complete", {"summary": "已清理"}, unit_h, 200)
    r = await post_ok(
        client, f"/v1/findings/{fid}/verify", {"accepted": True, "comment": "同意"}, admin, 200
    )
    assert r["status"] == "verified"


async def test_review_roles(client, jwt, clock):
    today = pin_china_noon(clock)
    tree = await build_tree(client, jwt, streets=1, communities=1)
    created = await record_finding(client, jwt, tree, today + 30 * D)
    fid = created["id"]
    op = auth(jwt, tree.county, "operator")
    await post_ok(client, f"/v1/findings/{fid}/complete", {"summary": "已完成"}, op, 200)
    verify = {"accepted": True, "comment": "同意"}
    # verify / reopen: inspector or admin only
    assert_problem(await client.post(f"/v1/findings/{fid}/verify", json=verify, headers=op), 403)
    r = await client.post(f"/v1/findings/{fid}/reopen", json={"reason": "x"}, headers=op)
    assert_problem(r, 403)
    for roles in (("unit",), ("viewer",), ("integrator",)):
        h = auth(jwt, tree.county, *roles)
        assert_problem(await client.post(f"/v1/findings/{fid}/verify", json=verify, headers=h), 403)
    # the responsible unit cannot sign off its own rectification, whatever its roles
    unit_inspector = auth(jwt, tree.units[0], "inspector", "admin")
    body = assert_problem(
        await client.post(f"/v1/findings/{fid}/verify", json=verify, headers=unit_inspector), 403
    )
    assert "responsible unit" in body["detail"]
    # progress / complete: not for viewers or inspectors
    for roles in (("viewer",), ("inspector",)):
        h = auth(jwt, tree.county, *roles)
        r = await client.post(f"/v1/findings/{fid}/progress", json={"note": "x"}, headers=h)
        assert_problem(r, 403)
    # recording: operator/admin only
    body = finding_body(tree, today + 30 * D)
    for roles in (("viewer",), ("inspector",), ("unit",)):
        h = auth(jwt, tree.county, *roles)
        assert_problem(await client.post("/v1/findings", json=body, headers=h), 403)
    # an inspector of the street the finding sits in may verify
    street_inspector = auth(jwt, tree.streets[0], "inspector")
    r = await post_ok(client, f"/v1/findings/{fid}/verify", verify, street_inspector, 200)
    assert r["status"] == "verified"


async def test_a_past_due_import_is_red_at_once(client, jwt, clock):
    today = pin_china_noon(clock)
    tree = await build_tree(client, jwt, streets=1, communities=1)
    created = await record_finding(client, jwt, tree, today - 5 * D, round="2023年第二轮")
    assert created["warning"] == "red"
    f = await read_finding(
        client, auth(jwt, tree.county, "viewer"), created["id"], created["position"]
    )
    assert (f["warning"], f["overdue"], f["overdue_days"]) == ("red", True, 5)
    # due today is not yet overdue (yellow: 0 days left)
    created = await record_finding(client, jwt, tree, today)
    assert created["warning"] == "yellow"


async def test_warnings_at_the_boundaries_and_as_the_clock_moves(client, jwt, clock):
    today = pin_china_noon(clock)
    tree = await build_tree(client, jwt, streets=1, communities=1)
    op = auth(jwt, tree.county, "operator")
    ids = {}
    position = 0
    for days_left in (21, 20, 11, 10, 0, -1):
        r = await record_finding(client, jwt, tree, today + days_left * D)
        ids[days_left] = r["id"]
        position = r["position"]
    expected = {21: "none", 20: "green", 11: "green", 10: "yellow", 0: "yellow", -1: "red"}

    async def check(expect: dict[int, str]) -> None:
        for days_left, fid in ids.items():
            f = await read_finding(client, op, fid, position)
            assert f["warning"] == expect[days_left], (days_left, f["warning"])
        for band in ("none", "green", "yellow", "red"):
            r = await client.get(
                f"/v1/findings?node={tree.county}&warning={band}&min_position={position}",
                headers=op,
            )
            assert r.status_code == 200, r.text
            got = {item["id"] for item in r.json()["items"]}
            assert got == {ids[d] for d, w in expect.items() if w == band}, band
            assert all(item["warning"] == band for item in r.json()["items"])

    await check(expected)
    # one day later: 21 → green, 11 → yellow, 0 → red
    advance_days(clock, 1)
    await check({21: "green", 20: "green", 11: "yellow", 10: "yellow", 0: "red", -1: "red"})
    advance_days(clock, 10)  # 11 days on: 21 → 10 left, 11 → due today, 10 → overdue
    await check({21: "yellow", 20: "yellow", 11: "yellow", 10: "red", 0: "red", -1: "red"})
    f = await read_finding(client, op, ids[-1], position)
    assert f["overdue_days"] == 12


async def test_verified_findings_have_no_warning(client, jwt, clock):
    today = pin_china_noon(clock)
    tree = await build_tree(client, jwt, streets=1, communities=1)
    admin = auth(jwt, tree.county, "admin")
    created = await record_finding(client, jwt, tree, today - 3 * D)
    fid = created["id"]
    await post_ok(client, f"/v1/findings/{fid}/complete", {"summary": "逾期完成"}, admin, 200)
    r = await post_ok(
        client, f"/v1/findings/{fid}/verify", {"accepted": True, "comment": "同意"}, admin, 200
    )
    f = await read_finding(client, admin, fid, r["position"])
    assert (f["warning"], f["overdue"], f["overdue_days"]) == ("none", False, 0)
    r = await client.get(
        f"/v1/findings?warning=none&status=verified&min_position={r['position']}", headers=admin
    )
    assert [i["id"] for i in r.json()["items"]] == [fid]


async def test_create_errors(client, jwt, clock):
    today = pin_china_noon(clock)
    tree = await build_tree(client, jwt)
    op = auth(jwt, tree.county, "operator")
    good = finding_body(tree, today + 30 * D)
    # 401
    assert_problem(await client.post("/v1/findings", json=good), 401)
    assert_problem(
        await client.post("/v1/findings", json=good, headers={"Authorization": "Bearer x"}), 401
    )
    # 400: malformed, unknown field, missing or mistyped fields
    r = await client.post(
        "/v1/findings",
        content=b'{"node_code": ',
        headers={**op, "content-type": "application/json"},
    )
    assert_problem(r, 400)
    for bad in (
        {**good, "colour": "red"},
        {k: v for k, v in good.items() if k != "measures"},
        {**good, "measures": []},
        {**good, "measures": "一条措施"},
        {**good, "due_on": "2024-13-01"},
        {**good, "due_on": "2024-05-01T00:00:00+08:00"},
        {**good, "category": "立行立改"},
        {**good, "description": ""},
    ):
        body = assert_problem(await client.post("/v1/findings", json=bad, headers=op), 400)
        assert body["errors"], body
    # 422: the domain's rules
    for bad, field in (
        ({**good, "responsible_unit_code": tree.streets[1]}, "responsible_unit_code"),
        ({**good, "description": "   "}, "description"),
        ({**good, "measures": ["有效措施", " "]}, "measures[1]"),
    ):
        body = assert_problem(await client.post("/v1/findings", json=bad, headers=op), 422)
        assert body["errors"][0]["field"] == field
    # 404: a node outside the caller's subtree, an unknown unit, another tenant's unit
    street_b = auth(jwt, tree.streets[1], "operator")
    assert_problem(await client.post("/v1/findings", json=good, headers=street_b), 404)
    r = await client.post(
        "/v1/findings", json={**good, "responsible_unit_code": "U-NOPE"}, headers=op
    )
    assert_problem(r, 404)
    other = await build_tree(client, jwt, streets=1, communities=0, units=1)
    r = await client.post(
        "/v1/findings", json={**good, "responsible_unit_code": other.units[0]}, headers=op
    )
    assert_problem(r, 404)
    # 409: a closed responsible unit takes nothing new
    admin = auth(jwt, tree.county, "admin")
    closed_unit = f"U{tree.county[:6]}900"
    await post_ok(
        client,
        "/v1/nodes",
        {"code": closed_unit, "name": "已撤销局", "kind": "unit", "parent_code": tree.county},
        admin,
    )
    await post_ok(client, f"/v1/nodes/{closed_unit}/close", {"reason": "机构改革"}, admin, 200)
    r = await client.post(
        "/v1/findings", json={**good, "responsible_unit_code": closed_unit}, headers=op
    )
    assert "closed" in assert_problem(r, 409)["detail"]
    # a responsible unit outside the street (but in the root) is fine for the street's operator
    street_a = auth(jwt, tree.streets[0], "operator")
    created = await post_ok(client, "/v1/findings", good, street_a)
    assert created["status"] == "assigned"
    # Idempotency-Key: the same body replays, another body is 422
    h = {**op, "Idempotency-Key": "finding-import-1"}
    first = await client.post("/v1/findings", json=good, headers=h)
    again = await client.post("/v1/findings", json=good, headers=h)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json() and again.headers["idempotent-replayed"] == "true"
    other_body = {**good, "description": "另一个问题"}
    assert_problem(await client.post("/v1/findings", json=other_body, headers=h), 422)


async def test_command_errors(client, jwt, clock):
    today = pin_china_noon(clock)
    tree = await build_tree(client, jwt)
    op = auth(jwt, tree.county, "operator")
    created = await record_finding(client, jwt, tree, today + 30 * D)
    fid = created["id"]
    url = f"/v1/findings/{fid}"
    # 401
    assert_problem(await client.post(f"{url}/progress", json={"note": "x"}), 401)
    # 400
    assert_problem(await client.post(f"{url}/progress", json={}, headers=op), 400)
    assert_problem(
        await client.post(f"{url}/progress", json={"note": "x", "extra": 1}, headers=op), 400
    )
    assert_problem(
        await client.post(f"{url}/progress", json={"note": "x", "evidence": "e" * 501}, headers=op),
        400,
    )
    r = await client.post(
        f"{url}/verify",
        json={"accepted": "yes", "comment": "x"},
        headers=auth(jwt, tree.county, "admin"),
    )
    assert_problem(r, 400)
    # 404: unknown id, another street's principal, another tenant
    missing = f"/v1/findings/{uuid4()}/progress"
    assert_problem(await client.post(missing, json={"note": "x"}, headers=op), 404)
    street_b = auth(jwt, tree.streets[1], "operator")
    assert_problem(await client.post(f"{url}/progress", json={"note": "x"}, headers=street_b), 404)
    other = await build_tree(client, jwt, streets=1, communities=0, units=0)
    h = auth(jwt, other.county, "admin")
    assert_problem(await client.post(f"{url}/complete", json={"summary": "x"}, headers=h), 404)
    # 412: a stale If-Match; the current one passes
    r = await client.post(
        f"{url}/progress", json={"note": "推进中"}, headers={**op, "If-Match": '"1"'}
    )
    body = assert_problem(r, 412)
    assert body["current_version"] == 2
    r = await client.post(
        f"{url}/progress", json={"note": "推进中"}, headers={**op, "If-Match": '"2"'}
    )
    assert r.status_code == 200, r.text
    # 409 with the current state
    await post_ok(client, f"{url}/complete", {"summary": "已完成"}, op, 200)
    body = assert_problem(
        await client.post(f"{url}/complete", json={"summary": "x"}, headers=op), 409
    )
    assert body["current_state"] == "completed"
    body = assert_problem(await client.post(f"{url}/progress", json={"note": "x"}, headers=op), 409)
    assert body["current_state"] == "completed"
    # a unit principal of another unit cannot act on it (it cannot even see it)
    await post_ok(
        client,
        "/v1/nodes",
        {
            "code": f"U{tree.county[:6]}777",
            "name": "县另一局",
            "kind": "unit",
            "parent_code": tree.county,
        },
        auth(jwt, tree.county, "admin"),
    )
    other_unit = auth(jwt, f"U{tree.county[:6]}777", "unit")
    assert_problem(
        await client.post(f"{url}/progress", json={"note": "x"}, headers=other_unit), 404
    )


async def test_read_errors(client, jwt, clock):
    today = pin_china_noon(clock)
    tree = await build_tree(client, jwt)
    created = await record_finding(client, jwt, tree, today + 30 * D)
    url = f"/v1/findings/{created['id']}?min_position={created['position']}"
    assert_problem(await client.get(url), 401)
    assert_problem(await client.get(url, headers=auth(jwt, tree.streets[1], "viewer")), 404)
    assert_problem(
        await client.get(f"/v1/findings/{uuid4()}", headers=auth(jwt, tree.county, "viewer")), 404
    )
    # the street it sits in sees it
    r = await client.get(url, headers=auth(jwt, tree.streets[0], "viewer"))
    assert r.status_code == 200 and r.headers["etag"] == '"2"'
    # list filters: bad values are 400, an outside node 404
    h = auth(jwt, tree.streets[0], "viewer")
    assert_problem(await client.get("/v1/findings?status=closed", headers=h), 400)
    assert_problem(await client.get("/v1/findings?warning=orange", headers=h), 400)
    assert_problem(await client.get("/v1/findings?limit=501", headers=h), 400)
    assert_problem(await client.get("/v1/findings?cursor=bm9wZQ", headers=h), 400)
    assert_problem(await client.get(f"/v1/findings?node={tree.streets[1]}", headers=h), 404)
    assert_problem(await client.get("/v1/findings?responsible_unit=U-NOPE", headers=h), 404)
    assert_problem(await client.get("/v1/findings"), 401)


async def test_list_scope_filters_and_paging(client, jwt, clock):
    today = pin_china_noon(clock)
    tree = await build_tree(client, jwt, units=2)
    a, b = tree.streets
    op = auth(jwt, tree.county, "operator")
    in_a = [
        (await record_finding(client, jwt, tree, today + (40 + i) * D, node_code=a))["id"]
        for i in range(3)
    ]
    community = tree.communities[b][0]
    r = await record_finding(
        client, jwt, tree, today + 5 * D, node_code=community, responsible_unit_code=tree.units[1]
    )
    in_b = r["id"]
    pos = r["position"]
    everything = await client.get(f"/v1/findings?min_position={pos}", headers=op)
    assert [i["id"] for i in everything.json()["items"]] == [*in_a, in_b]
    # subtree filter (a street, a community), by the county and by the street itself
    r = await client.get(f"/v1/findings?node={b}", headers=op)
    assert [i["id"] for i in r.json()["items"]] == [in_b]
    r = await client.get(f"/v1/findings?node={community}", headers=auth(jwt, b, "viewer"))
    assert [i["id"] for i in r.json()["items"]] == [in_b]
    r = await client.get("/v1/findings", headers=auth(jwt, a, "viewer"))
    assert [i["id"] for i in r.json()["items"]] == in_a
    # status, warning and responsible-unit filters
    r = await client.get("/v1/findings?warning=yellow", headers=op)
    assert [i["id"] for i in r.json()["items"]] == [in_b]
    r = await client.get(f"/v1/findings?responsible_unit={tree.units[1]}", headers=op)
    assert [i["id"] for i in r.json()["items"]] == [in_b]
    done = await post_ok(client, f"/v1/findings/{in_a[1]}/complete", {"summary": "完成"}, op, 200)
    r = await client.get(
        f"/v1/findings?status=completed&min_position={done['position']}", headers=op
    )
    assert [i["id"] for i in r.json()["items"]] == [in_a[1]]
    # paging
    seen = []
    cursor = None
    while True:
        q = "/v1/findings?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = (await client.get(q, headers=op)).json()
        assert len(page["items"]) <= 2
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [*in_a, in_b]


async def test_unit_principal_sees_and_works_only_its_findings(client, jwt, clock):
    today = pin_china_noon(clock)
    tree = await build_tree(client, jwt, units=2)
    u1, u2 = tree.units
    mine = await record_finding(client, jwt, tree, today + 30 * D, responsible_unit_code=u1)
    theirs = await record_finding(
        client, jwt, tree, today + 30 * D, responsible_unit_code=u2, node_code=tree.streets[1]
    )
    pos = theirs["position"]
    unit1 = auth(jwt, u1, "unit")
    r = await client.get(f"/v1/findings?min_position={pos}", headers=unit1)
    assert r.status_code == 200, r.text
    assert [i["id"] for i in r.json()["items"]] == [mine["id"]]
    r = await client.get(f"/v1/findings?node={u1}", headers=unit1)
    assert [i["id"] for i in r.json()["items"]] == [mine["id"]]
    f = await read_finding(client, unit1, mine["id"], pos)
    assert f["responsible_unit_code"] == u1
    assert_problem(await client.get(f"/v1/findings/{theirs['id']}", headers=unit1), 404)
    r = await client.post(
        f"/v1/findings/{theirs['id']}/progress", json={"note": "x"}, headers=unit1
    )
    assert_problem(r, 404)
    # the street's data is not visible to the unit beyond its findings
    assert_problem(await client.get(f"/v1/findings?node={tree.streets[0]}", headers=unit1), 404)
    # it works its own finding
    await post_ok(client, f"/v1/findings/{mine['id']}/progress", {"note": "推进"}, unit1, 200)
    await post_ok(client, f"/v1/findings/{mine['id']}/complete", {"summary": "完成"}, unit1, 200)
    # a unit-role principal scoped to the street (not the unit) cannot act as the unit
    street_unit_role = auth(jwt, tree.streets[0], "unit")
    r = await client.post(
        f"/v1/findings/{mine['id']}/progress", json={"note": "x"}, headers=street_unit_role
    )
    assert_problem(r, 403)


async def test_openapi_describes_findings(app):
    paths = app.openapi_schema.paths
    for path in (
        "/v1/findings",
        "/v1/findings/{finding_id}",
        "/v1/findings/{finding_id}/progress",
        "/v1/findings/{finding_id}/complete",
        "/v1/findings/{finding_id}/verify",
        "/v1/findings/{finding_id}/reopen",
        "/v1/findings/ledger",
    ):
        assert path in paths, path


COMMANDS: dict[str, tuple[dict[str, Any], tuple[str, ...], str]] = {
    # endpoint: (a valid body, the roles that may send it, the state it needs)
    "progress": ({"note": "推进中", "evidence": "doc://1"}, ("unit",), "assigned"),
    "complete": ({"summary": "已完成"}, ("unit",), "assigned"),
    "verify": ({"accepted": True, "comment": "同意"}, ("inspector",), "completed"),
    "reopen": ({"reason": "回头看发现反弹"}, ("inspector",), "verified"),
}


@pytest.mark.parametrize("endpoint", list(COMMANDS))
async def test_each_command_endpoint_error_paths(client, jwt, clock, endpoint):
    today = pin_china_noon(clock)
    tree = await build_tree(client, jwt)
    body, roles, state = COMMANDS[endpoint]
    created = await record_finding(client, jwt, tree, today + 30 * D)
    fid = created["id"]
    admin = auth(jwt, tree.county, "admin")
    version = 2
    if state in ("completed", "verified"):
        await post_ok(client, f"/v1/findings/{fid}/complete", {"summary": "完成"}, admin, 200)
        version += 1
    if state == "verified":
        await post_ok(
            client, f"/v1/findings/{fid}/verify", {"accepted": True, "comment": "同"}, admin, 200
        )
        version += 1
    url = f"/v1/findings/{fid}/{endpoint}"
    h = auth(jwt, tree.units[0] if roles == ("unit",) else tree.county, *roles)
    assert_problem(await client.post(url, json=body), 401)
    assert_problem(await client.post(url, json={**body, "extra": 1}, headers=h), 400)
    assert_problem(await client.post(url, json={}, headers=h), 400)
    assert_problem(await client.post(url, json=body, headers=auth(jwt, tree.county, "viewer")), 403)
    unknown = f"/v1/findings/{uuid4()}/{endpoint}"
    assert_problem(await client.post(unknown, json=body, headers=h), 404)
    outside = auth(jwt, tree.streets[1], *roles, "admin")
    assert_problem(await client.post(url, json=body, headers=outside), 404)
    stale = {**h, "If-Match": f'"{version - 1}"'}
    body412 = assert_problem(await client.post(url, json=body, headers=stale), 412)
    assert body412["current_version"] == version
    ok = await post_ok(client, url, body, {**h, "If-Match": f'"{version}"'}, 200)
    assert ok["version"] == version + 1 and ok["id"] == fid
    # the same command again is illegal in the new state (409 names it), except progress
    again = await client.post(url, json=body, headers=h)
    if endpoint == "progress":
        assert again.status_code == 200
    else:
        assert assert_problem(again, 409)["current_state"] == ok["status"]
