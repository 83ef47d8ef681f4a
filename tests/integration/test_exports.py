"""Exports of issues, pairings and members (XLSX and CSV): rows, Chinese headers, real dates,
layout, masking and the reveal audit, scoping, and formula-looking text kept literal."""

from __future__ import annotations

import io
from typing import Any

from openpyxl import load_workbook

from tests.findings_support import assert_problem
from tests.spreadsheet_checks import HOSTILE, assert_csv_literal, csv_rows, xlsx_cells
from tests.support import Tree, auth, build_tree, post_ok


async def _work(client: Any, jwt: Any) -> tuple[Tree, dict[str, Any]]:
    tree = await build_tree(client, jwt, streets=2, communities=1, units=2)
    a, b = tree.streets
    ca, cb = tree.communities[a][0], tree.communities[b][0]
    admin = auth(jwt, tree.county, "admin")
    made: dict[str, Any] = {}
    made["issue_a"] = await post_ok(
        client,
        "/v1/issues",
        {"node_code": ca, "title": HOSTILE[0], "category": "市政", "source": "hotline"},
        admin,
    )
    made["issue_b"] = await post_ok(
        client,
        "/v1/issues",
        {"node_code": cb, "title": "楼道堆物", "category": HOSTILE[3], "source": "grid"},
        admin,
    )
    await post_ok(
        client,
        f"/v1/issues/{made['issue_b']['id']}/assign",
        {"assignee_code": tree.units[0], "due_at": "2031-01-01T12:00:00+08:00"},
        admin,
        200,
    )
    made["pairing"] = await post_ok(
        client,
        "/v1/pairings",
        {
            "unit_code": tree.units[1],
            "community_code": ca,
            "starts_on": "2026-01-01",
            "ends_on": "2027-12-31",
            "commitments": [{"title": "捐建图书角", "due_on": "2026-06-01"}],
        },
        admin,
    )
    made["member"] = await post_ok(
        client,
        "/v1/members",
        {
            "community_code": ca,
            "name": "张三",
            "phone": "13812341234",
            "id_number": "11010519491231002X",
            "home_unit_code": tree.units[0],
        },
        admin,
    )
    made["pos"] = made["member"]["position"]
    return tree, made


async def test_issue_export_xlsx_and_csv(client, jwt):
    tree, made = await _work(client, jwt)
    viewer = auth(jwt, tree.county, "viewer")
    url = f"/v1/issues/export?node={tree.county}&min_position={made['pos']}"
    r = await client.get(f"{url}&format=xlsx", headers=viewer)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/vnd.openxmlformats")
    assert "filename*=UTF-8''" in r.headers["content-disposition"]
    rows = xlsx_cells(r.content, "工单台账")
    assert rows[0][0] == "测试区工单台账" and tree.county in rows[1][0]
    header = rows[2]
    assert header[:4] == ["序号", "工单编号", "外部编号", "标题"]
    body = rows[3:]
    assert [row[1] for row in body] == [made["issue_a"]["id"], made["issue_b"]["id"]]
    first, second = body
    assert first[0] == 1 and first[3] == HOSTILE[0] and first[5] == "12345热线"
    assert first[7] == "已受理" and first[10] is None
    assert second[4] == HOSTILE[3] and second[7] == "已派单" and second[10] == tree.units[0]
    ws = load_workbook(io.BytesIO(r.content))["工单台账"]
    assert ws.freeze_panes == "A4"
    assert ws.page_setup.orientation == "landscape" and ws.page_setup.paperSize == 9
    reported = ws.cell(row=4, column=header.index("上报时间") + 1)
    assert reported.is_date and reported.number_format == "yyyy-mm-dd hh:mm"

    r = await client.get(f"{url}&format=csv", headers=viewer)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    lines = csv_rows(r.content)
    assert lines[0] == header
    assert [line[1] for line in lines[1:]] == [made["issue_a"]["id"], made["issue_b"]["id"]]
    assert_csv_literal(lines[1], HOSTILE[0])
    assert_csv_literal(lines[2], HOSTILE[3])
    assert len(lines[1][9]) == 19 and lines[1][9][4] == "-"  # YYYY-MM-DD HH:MM:SS

    # scoping: a street sees its own; a unit the issue assigned to it; others 404
    street_a = auth(jwt, tree.streets[0], "viewer")
    r = await client.get("/v1/issues/export?format=csv", headers=street_a)
    assert [line[1] for line in csv_rows(r.content)[1:]] == [made["issue_a"]["id"]]
    unit = auth(jwt, tree.units[0], "unit")
    r = await client.get("/v1/issues/export?format=csv", headers=unit)
    assert [line[1] for line in csv_rows(r.content)[1:]] == [made["issue_b"]["id"]]
    r = await client.get(f"/v1/issues/export?node={tree.streets[1]}", headers=street_a)
    assert_problem(r, 404)
    assert_problem(await client.get("/v1/issues/export?format=pdf", headers=viewer), 400)
    assert_problem(await client.get("/v1/issues/export"), 401)


async def test_pairing_export(client, jwt):
    tree, made = await _work(client, jwt)
    viewer = auth(jwt, tree.county, "viewer")
    url = f"/v1/pairings/export?min_position={made['pos']}"
    r = await client.get(f"{url}&format=xlsx", headers=viewer)
    assert r.status_code == 200, r.text
    rows = xlsx_cells(r.content, "结对共建台账")
    [row] = rows[3:]
    assert row[1] == made["pairing"]["id"] and row[2] == tree.units[1]
    assert row[3] == tree.communities[tree.streets[0]][0] and row[6] == "履行中"
    assert "捐建图书角" in row[7] and row[8] == 1 and row[9] == 0
    assert row[4].year == 2026 and row[4].month == 1  # a real date
    r = await client.get(f"{url}&format=csv", headers=viewer)
    lines = csv_rows(r.content)
    assert lines[0][:4] == ["序号", "结对编号", "共建单位", "结对社区"]
    assert lines[1][4] == "2026-01-01" and lines[1][5] == "2027-12-31"
    # the unit's pairings from the unit's own scope
    r = await client.get("/v1/pairings/export?format=csv", headers=auth(jwt, tree.units[1], "unit"))
    assert [line[1] for line in csv_rows(r.content)[1:]] == [made["pairing"]["id"]]


async def test_member_export_masks_unless_admin_and_records_admin_reveals(client, jwt):
    tree, made = await _work(client, jwt)
    url = f"/v1/members/export?min_position={made['pos']}"
    viewer = auth(jwt, tree.county, "viewer")
    r = await client.get(f"{url}&format=xlsx", headers=viewer)
    assert r.status_code == 200, r.text
    [row] = xlsx_cells(r.content, "双报到党员名册")[3:]
    assert row[1] == made["member"]["id"]
    assert (row[2], row[3], row[4]) == ("张*", "138****1234", "110105********002X")
    assert row[5] == tree.communities[tree.streets[0]][0] and row[6] == tree.units[0]
    r = await client.get(f"{url}&format=csv", headers=viewer)
    [_, line] = csv_rows(r.content)
    assert line[2:5] == ["张*", "138****1234", "110105********002X"]

    inspector = auth(jwt, tree.county, "inspector")

    async def reveals() -> list[dict[str, Any]]:
        r = await client.get(f"/v1/audit/reveals?member={made['member']['id']}", headers=inspector)
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return [i for i in items if i["endpoint"] == "GET /v1/members/export"]

    # a unit's admin sees its in-service members, masked (clear text stays with admins of
    # the member's community or above)
    unit_admin = auth(jwt, tree.units[0], "admin")
    r = await client.get(f"{url}&format=csv", headers=unit_admin)
    [_, line] = csv_rows(r.content)
    assert line[1] == made["member"]["id"] and line[2:5] == [
        "张*",
        "138****1234",
        "110105********002X",
    ]
    assert await reveals() == []  # masked exports reveal nothing
    admin = {**auth(jwt, tree.county, "admin"), "X-Reveal-Reason": "annual review"}
    for fmt, n in (("xlsx", 1), ("csv", 2)):
        r = await client.get(f"{url}&format={fmt}", headers=admin)
        assert r.status_code == 200, r.text
        if fmt == "xlsx":
            [row] = xlsx_cells(r.content, "双报到党员名册")[3:]
            assert (row[2], row[3], row[4]) == ("张三", "13812341234", "11010519491231002X")
        else:
            [_, line] = csv_rows(r.content)
            assert line[2:5] == ["张三", "13812341234", "11010519491231002X"]
        found = await reveals()
        assert len(found) == n and all(f["reason"] == "annual review" for f in found)


async def test_exports_beyond_the_budget_answer_429_at_once(client, jwt, app):
    """Each export holds a pool connection while it reads: at most MAX_CONCURRENT at a time
    per process, the next one is told to come back (it never waits for a connection)."""
    from services.api.exports import MAX_CONCURRENT, _budget

    tree, made = await _work(client, jwt)
    viewer = auth(jwt, tree.county, "viewer")
    budget = _budget(app.state.ctx)
    for _ in range(MAX_CONCURRENT):
        await budget.acquire()
    try:
        for fmt in ("xlsx", "csv"):
            r = await client.get(f"/v1/issues/export?format={fmt}", headers=viewer)
            body = assert_problem(r, 429)
            assert r.headers["retry-after"] and "exports" in body["detail"]
    finally:
        for _ in range(MAX_CONCURRENT):
            budget.release()
    r = await client.get(f"/v1/issues/export?format=csv&min_position={made['pos']}", headers=viewer)
    assert r.status_code == 200 and len(csv_rows(r.content)) == 3
