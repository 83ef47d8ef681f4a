"""The rectification ledger export (整改台账): XLSX and CSV, Chinese round-trips, scoping."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import unquote

from openpyxl import load_workbook

from tests.findings_support import assert_problem, pin_china_noon, record_finding
from tests.support import Tree, auth, build_tree, post_ok

D = timedelta(days=1)
HEADERS = [
    "序号",
    "问题来源",
    "巡视轮次",
    "问题描述",
    "整改类别",
    "整改措施",
    "责任单位",
    "整改时限",
    "整改状态",
    "完成时间",
    "销号时间",
    "逾期天数",
    "最新进展",
]


async def _ledger_tree(client: Any, jwt: Any, clock: Any) -> tuple[Tree, date, dict[str, Any]]:
    """Street 1: a verified finding, one in progress and overdue; street 2: one rejected."""
    today = pin_china_noon(clock)
    tree = await build_tree(client, jwt, units=2)
    a, b = tree.streets
    admin = auth(jwt, tree.county, "admin")
    unit = auth(jwt, tree.units[0], "unit")
    first = await record_finding(
        client,
        jwt,
        tree,
        today + 30 * D,
        node_code=a,
        source="省委第三巡视组",
        description="低保动态管理不到位，存在“应退未退”情况",
        measures=["建立困难群众动态监测台账", "每季度开展一次走访核查"],
    )
    await post_ok(client, f"/v1/findings/{first['id']}/progress", {"note": "已完成复核"}, unit, 200)
    await post_ok(client, f"/v1/findings/{first['id']}/complete", {"summary": "已清退"}, unit, 200)
    await post_ok(
        client,
        f"/v1/findings/{first['id']}/verify",
        {"accepted": True, "comment": "同意销号"},
        admin,
        200,
    )
    second = await record_finding(
        client,
        jwt,
        tree,
        today - 7 * D,
        node_code=tree.communities[a][0],
        source="县委第二巡察组",
        round="2023年第二轮",
        category="immediate",
        description="社区议事协商流于形式",
        measures=["完善议事规则"],
    )
    await post_ok(
        client,
        f"/v1/findings/{second['id']}/progress",
        {"note": "已召开居民议事会，修订议事规则（初稿）"},
        admin,
        200,
    )
    third = await record_finding(
        client,
        jwt,
        tree,
        today + 90 * D,
        node_code=b,
        category="long_term",
        round=None,
        responsible_unit_code=tree.units[1],
        description="党员双报到服务时长统计不准",
        measures=["按月核对服务记录"],
    )
    await post_ok(client, f"/v1/findings/{third['id']}/complete", {"summary": "已核对"}, admin, 200)
    last = await post_ok(
        client,
        f"/v1/findings/{third['id']}/verify",
        {"accepted": False, "comment": "缺少核对记录"},
        admin,
        200,
    )
    return tree, today, {"first": first, "second": second, "third": third, "pos": last["position"]}


async def test_xlsx_ledger(client, jwt, clock):
    tree, today, made = await _ledger_tree(client, jwt, clock)
    r = await client.get(
        f"/v1/findings/ledger?node={tree.county}&format=xlsx&min_position={made['pos']}",
        headers=auth(jwt, tree.county, "viewer"),
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    disposition = r.headers["content-disposition"]
    assert disposition.startswith("attachment; filename=")
    assert f'filename="rectification-ledger-{tree.county}-{today:%Y%m%d}.xlsx"' in disposition
    encoded = disposition.split("filename*=UTF-8''")[1]
    assert unquote(encoded) == f"整改台账-{tree.county}-{today:%Y%m%d}.xlsx"

    wb = load_workbook(io.BytesIO(r.content))
    assert wb.sheetnames == ["整改台账"]
    ws = wb["整改台账"]
    assert ws["A1"].value == "测试区巡视整改台账"
    assert "A1:M1" in {str(m) for m in ws.merged_cells.ranges}
    assert tree.county in ws["A2"].value and f"{today:%Y年%m月%d日}" in ws["A2"].value
    assert [c.value for c in ws[3]] == HEADERS
    assert ws.freeze_panes == "A4"
    assert ws.column_dimensions["D"].width >= 30 and ws.column_dimensions["A"].width <= 8
    assert ws.auto_filter.ref == "A3:M6"
    rows = [[c.value for c in row] for row in ws.iter_rows(min_row=4)]
    assert len(rows) == 3
    first, second, third = rows
    assert first[:5] == [
        1,
        "省委第三巡视组",
        "2024年第一轮",
        "低保动态管理不到位，存在“应退未退”情况",
        "限期整改",
    ]
    assert first[5] == "1. 建立困难群众动态监测台账\n2. 每季度开展一次走访核查"
    assert first[6] == f"县第1局（{tree.units[0]}）"
    assert first[7] == datetime.combine(today + 30 * D, datetime.min.time())
    assert (
        ws.cell(row=4, column=8).is_date and ws.cell(row=4, column=8).number_format == "yyyy-mm-dd"
    )
    assert first[8] == "已销号"
    assert first[9] == first[10] == datetime.combine(today, datetime.min.time())
    assert first[11] == 0 and first[12] == "已完成复核"
    assert ws.cell(row=4, column=4).alignment.wrap_text

    assert second[:6] == [
        2,
        "县委第二巡察组",
        "2023年第二轮",
        "社区议事协商流于形式",
        "立行立改",
        "完善议事规则",
    ]
    assert second[8] == "整改中" and second[9] is None and second[10] is None
    assert second[11] == 7 and second[12] == "已召开居民议事会，修订议事规则（初稿）"

    assert third[2] is None and third[4] == "长期坚持" and third[8] == "退回重改"
    assert third[6] == f"县第2局（{tree.units[1]}）" and third[9] is None and third[11] == 0


async def test_csv_ledger_is_utf8_with_bom(client, jwt, clock):
    tree, today, made = await _ledger_tree(client, jwt, clock)
    r = await client.get(
        f"/v1/findings/ledger?format=csv&min_position={made['pos']}",
        headers=auth(jwt, tree.county, "inspector"),
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-type"] == "text/csv; charset=utf-8"  # once, not twice
    assert (
        f"filename*=UTF-8''{'%E6%95%B4%E6%94%B9%E5%8F%B0%E8%B4%A6'}"
        in r.headers["content-disposition"]
    )
    assert r.headers["content-disposition"].endswith(".csv")
    raw = r.content
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw[3:].decode("utf-8"), newline="")))
    assert rows[0] == HEADERS
    assert len(rows) == 4
    first, second, third = rows[1:]
    assert first[0] == "1" and first[3] == "低保动态管理不到位，存在“应退未退”情况"
    assert first[5] == "1. 建立困难群众动态监测台账\n2. 每季度开展一次走访核查"
    assert first[7] == (today + 30 * D).isoformat() and first[8] == "已销号"
    assert first[9] == first[10] == today.isoformat()
    assert second[8] == "整改中" and second[11] == "7" and second[9] == ""
    assert third[8] == "退回重改" and third[2] == ""


async def test_ledger_is_scoped_to_the_subtree(client, jwt, clock):
    tree, _, made = await _ledger_tree(client, jwt, clock)
    a, b = tree.streets
    pos = made["pos"]

    async def descriptions(node: str | None, headers: dict[str, str]) -> list[str]:
        q = f"/v1/findings/ledger?format=csv&min_position={pos}" + (f"&node={node}" if node else "")
        r = await client.get(q, headers=headers)
        assert r.status_code == 200, r.text
        return [row[3] for row in list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))[1:]]

    county = auth(jwt, tree.county, "viewer")
    street_a = auth(jwt, a, "viewer")
    assert await descriptions(a, county) == [
        "低保动态管理不到位，存在“应退未退”情况",
        "社区议事协商流于形式",
    ]
    assert await descriptions(None, street_a) == await descriptions(a, county)
    assert await descriptions(tree.communities[a][0], street_a) == ["社区议事协商流于形式"]
    assert await descriptions(b, county) == ["党员双报到服务时长统计不准"]
    # the unit's ledger holds the findings it is responsible for, wherever they were recorded
    unit2 = auth(jwt, tree.units[1], "unit")
    assert await descriptions(None, unit2) == ["党员双报到服务时长统计不准"]
    # outside the scope: 404 (nothing revealed); xlsx of an empty subtree still opens
    assert_problem(await client.get(f"/v1/findings/ledger?node={b}", headers=street_a), 404)
    r = await client.get(f"/v1/findings/ledger?node={tree.communities[a][1]}", headers=street_a)
    assert r.status_code == 200
    ws = load_workbook(io.BytesIO(r.content))["整改台账"]
    assert [c.value for c in ws[3]] == HEADERS and ws.max_row == 3


async def test_ledger_errors(client, jwt):
    tree = await build_tree(client, jwt, streets=1, communities=0, units=0)
    url = f"/v1/findings/ledger?node={tree.county}"
    assert_problem(await client.get(url), 401)
    h = auth(jwt, tree.county, "viewer")
    assert_problem(await client.get(f"{url}&format=pdf", headers=h), 400)
    assert_problem(await client.get(f"{url}&status=closed", headers=h), 400)
    assert_problem(await client.get("/v1/findings/ledger?node=999999999999", headers=h), 404)
    other = await build_tree(client, jwt, streets=1, communities=0, units=0)
    r = await client.get(f"/v1/findings/ledger?node={other.county}", headers=h)
    assert_problem(r, 404)
