"""Formula injection (#13 item 3): text a spreadsheet would run as a formula is written as
literal text in every XLSX and CSV the server writes — here the rectification ledger; the
other exports are checked in test_exports.py."""

from __future__ import annotations

from datetime import timedelta

from services import spreadsheets
from tests.findings_support import pin_china_noon, record_finding
from tests.spreadsheet_checks import HOSTILE, assert_csv_literal, csv_rows, xlsx_cells
from tests.support import auth, build_tree


async def test_the_ledger_writes_formula_looking_text_as_literal_text(client, jwt, clock):
    today = pin_china_noon(clock)
    tree = await build_tree(client, jwt, streets=1, communities=1)
    made = await record_finding(
        client,
        jwt,
        tree,
        today + timedelta(days=30),
        source=HOSTILE[0],
        round=HOSTILE[3],
        description=HOSTILE[1],
        measures=[HOSTILE[2]],
    )
    viewer = auth(jwt, tree.county, "viewer")
    url = f"/v1/findings/ledger?min_position={made['position']}"

    r = await client.get(f"{url}&format=xlsx", headers=viewer)
    assert r.status_code == 200, r.text
    rows = xlsx_cells(r.content, "整改台账")
    [row] = rows[3:]
    assert row[1] == HOSTILE[0] and row[2] == HOSTILE[3] and row[3] == HOSTILE[1]
    assert row[5] == HOSTILE[2]
    assert row[0] == 1 and row[11] == 0  # numbers stay numbers

    r = await client.get(f"{url}&format=csv", headers=viewer)
    assert r.status_code == 200, r.text
    [_, line] = csv_rows(r.content)
    for text in (HOSTILE[0], HOSTILE[3], HOSTILE[1], HOSTILE[2]):
        assert_csv_literal(line, text)


def test_every_dangerous_start_is_literal_and_numbers_are_not_touched():
    columns = [spreadsheets.Column("文本", 10), spreadsheets.Column("数", 10, "number")]
    sheet = spreadsheets.XlsxSheet(sheet="表", columns=columns)
    for text in HOSTILE:
        sheet.append([text, -5])
    sheet.append(["普通文本 = 1", -1.5])
    rows = xlsx_cells(sheet.save(), "表")
    # (XML reads a carriage return back as a line feed: still the same text cell)
    expected = [t.replace("\r", "\n") for t in HOSTILE]
    assert [r[0] for r in rows[1:]] == [*expected, "普通文本 = 1"]
    assert [r[1] for r in rows[1:]] == [-5] * len(HOSTILE) + [-1.5]

    data = spreadsheets.csv_chunk(
        [[t, -5] for t in HOSTILE] + [["普通文本 = 1", -1.5]], header=["文本", "数"]
    )
    lines = csv_rows(data)
    assert lines[0] == ["文本", "数"]
    assert [line[0] for line in lines[1:]] == ["'" + t for t in HOSTILE] + ["普通文本 = 1"]
    assert [line[1] for line in lines[1:]] == ["-5"] * len(HOSTILE) + ["-1.5"]


def test_characters_xml_forbids_do_not_break_the_workbook():
    """A C0 control character in stored text (a node name is only stripped, not checked)
    would make openpyxl refuse the whole export: it becomes U+FFFD instead."""
    sheet = spreadsheets.XlsxSheet(
        sheet="表", columns=[spreadsheets.Column("文本", 10)], title="区\x01", info="x\x1b"
    )
    sheet.append(["单位\x00名称\x08"])
    rows = xlsx_cells(sheet.save(), "表")
    assert rows == [["区\ufffd"], ["x\ufffd"], ["文本"], ["单位\ufffd名称\ufffd"]]
