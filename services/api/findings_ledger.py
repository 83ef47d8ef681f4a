"""The rectification ledger (整改台账) as a county inspection office files it: XLSX or CSV.

One row per finding: 序号, 问题来源, 巡视轮次, 问题描述, 整改类别, 整改措施, 责任单位, 整改时限,
整改状态, 完成时间, 销号时间, 逾期天数, 最新进展.

* XLSX (openpyxl, write-only mode: rows go to a temporary file as they come, so memory stays
  bounded): sheet "整改台账", a title row and a row naming the scope and export date, the
  header frozen below them and repeated on every printed page, an auto-filter, fixed column
  widths, wrapped text, dates as real Excel dates, landscape A4 fitted to the page width.
* CSV: UTF-8 with a byte-order mark (Excel in China opens it as UTF-8 only then), CRLF line
  ends, measures joined by line breaks inside one quoted cell, dates as YYYY-MM-DD.

Status and category are written in Chinese; dates are China calendar dates.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from urllib.parse import quote

import msgspec
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet
from openpyxl.worksheet.worksheet import Worksheet

from domain.finding import COMPLETED, RECORDED, VERIFIED
from domain.refs import business_date

SHEET_TITLE = "整改台账"

#: (header, column width in Excel characters)
COLUMNS: tuple[tuple[str, float], ...] = (
    ("序号", 6),
    ("问题来源", 16),
    ("巡视轮次", 14),
    ("问题描述", 40),
    ("整改类别", 10),
    ("整改措施", 42),
    ("责任单位", 20),
    ("整改时限", 12),
    ("整改状态", 14),
    ("完成时间", 12),
    ("销号时间", 12),
    ("逾期天数", 9),
    ("最新进展", 36),
)
HEADERS = tuple(h for h, _ in COLUMNS)

CATEGORY_LABELS: Mapping[str, str] = {
    "immediate": "立行立改",
    "deadline": "限期整改",
    "long_term": "长期坚持",
}

CSV_BOM = "\ufeff"
#: Litestar appends "; charset=utf-8" to every text/* media type itself (once).
CSV_MEDIA_TYPE = "text/csv"
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def status_label(status: str, rework: str | None) -> str:
    """The ledger's status column: 已销号, 已完成待验收, 退回重改, 回头看重新整改 or 整改中."""
    if status == VERIFIED:
        return "已销号"
    if status == COMPLETED:
        return "已完成待验收"
    if status == RECORDED:
        return "已建账"
    if rework == "rejected":
        return "退回重改"
    if rework == "reopened":
        return "回头看重新整改"
    return "整改中"


def overdue_days(due_on: date | None, status: str, today: date) -> int:
    """Days past due as of ``today``; 0 when not past due or verified (as ``Finding``)."""
    if due_on is None or status == VERIFIED:
        return 0
    return max((today - due_on).days, 0)


def unit_label(name: str | None, code: str | None) -> str:
    if code is None:
        return ""
    return f"{name}（{code}）" if name else code


@dataclass(frozen=True)
class LedgerRow:
    serial: int
    source: str
    round: str
    description: str
    category: str
    measures: str
    responsible_unit: str
    due_on: date | None
    status: str
    completed_on: date | None
    verified_on: date | None
    overdue_days: int
    last_progress: str

    def values(self) -> tuple[Any, ...]:
        return (
            self.serial,
            self.source,
            self.round,
            self.description,
            self.category,
            self.measures,
            self.responsible_unit,
            self.due_on,
            self.status,
            self.completed_on,
            self.verified_on,
            self.overdue_days,
            self.last_progress,
        )


def _day(at: datetime | None) -> date | None:
    return business_date(at) if at is not None else None


def ledger_row(serial: int, r: Mapping[str, Any], today: date) -> LedgerRow:
    """A read-model row (see ``services.api.findings.SELECT_FINDINGS``) as a ledger row."""
    measures = msgspec.json.decode(r["measures"], type=list[str]) if r["measures"] else []
    return LedgerRow(
        serial=serial,
        source=r["source"],
        round=r["round"] or "",
        description=r["description"],
        category=CATEGORY_LABELS.get(r["category"], r["category"]),
        measures="\n".join(
            f"{i}. {m}" if len(measures) > 1 else m for i, m in enumerate(measures, 1)
        ),
        responsible_unit=unit_label(r["unit_name"], r["unit_code"]),
        due_on=r["due_on"],
        status=status_label(r["status"], r["rework"]),
        completed_on=_day(r["completed_at"]),
        verified_on=_day(r["verified_at"]),
        overdue_days=overdue_days(r["due_on"], r["status"], today),
        last_progress=r["last_progress_note"] or "",
    )


def filename(node_code: str, today: date, extension: str) -> str:
    return f"{SHEET_TITLE}-{node_code}-{today:%Y%m%d}.{extension}"


def content_disposition(node_code: str, today: date, extension: str) -> str:
    """An ASCII fallback name and the Chinese one as RFC 5987 ``filename*``."""
    ascii_name = f"rectification-ledger-{node_code}-{today:%Y%m%d}.{extension}"
    ascii_name = "".join(c if c.isalnum() or c in "-._" else "_" for c in ascii_name)
    utf8_name = quote(filename(node_code, today, extension), safe="")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{utf8_name}"


# -- CSV ---------------------------------------------------------------------------------


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def csv_chunk(rows: Iterable[LedgerRow], *, header: bool = False) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    if header:
        buf.write(CSV_BOM)
        writer.writerow(HEADERS)
    for row in rows:
        writer.writerow([_csv_value(v) for v in row.values()])
    return buf.getvalue().encode("utf-8")


# -- XLSX --------------------------------------------------------------------------------

_THIN = Side(style="thin", color="808080")
_BORDER = Border(left=_THIN, right=_THIN, top=_THIN, bottom=_THIN)
_WRAP_TOP = Alignment(wrap_text=True, vertical="top")
_CENTER_TOP = Alignment(horizontal="center", vertical="top", wrap_text=True)
_DATE_FORMAT = "yyyy-mm-dd"
#: columns (0-based) centred: 序号, 整改类别, 整改时限, 整改状态, 完成时间, 销号时间, 逾期天数
_CENTERED = frozenset({0, 4, 7, 8, 9, 10, 11})
_DATE_COLUMNS = frozenset({7, 9, 10})
_OVERDUE_COLUMN = 11
_FONT = Font(name="宋体", size=10)
_RED_FONT = Font(name="宋体", size=10, color="C00000", bold=True)

TITLE_ROWS = 2  # the title and the scope/date line; the header is the row after them
HEADER_ROW = TITLE_ROWS + 1


class XlsxLedger:
    """Builds the workbook row by row (write-only: rows are flushed to a temporary file)."""

    def __init__(self, *, scope_name: str, scope_code: str, today: date) -> None:
        self.workbook = Workbook(write_only=True)
        ws: WriteOnlyWorksheet = self.workbook.create_sheet(SHEET_TITLE)
        self.ws = ws
        self.rows = 0
        last = get_column_letter(len(COLUMNS))
        for i, (_, width) in enumerate(COLUMNS, 1):
            ws.column_dimensions[get_column_letter(i)].width = width
        ws.freeze_panes = f"A{HEADER_ROW + 1}"
        ws.print_title_rows = f"{HEADER_ROW}:{HEADER_ROW}"
        ws.page_setup.orientation = "landscape"
        ws.page_setup.paperSize = Worksheet.PAPERSIZE_A4
        ws.page_setup.fitToWidth = 1
        ws.page_setup.fitToHeight = 0
        ws.sheet_properties.pageSetUpPr.fitToPage = True

        title = WriteOnlyCell(ws, value=f"{scope_name}巡视整改台账")
        title.font = Font(name="黑体", size=16, bold=True)
        title.alignment = Alignment(horizontal="center", vertical="center")
        ws.row_dimensions[1].height = 30
        ws.append([title])
        ws.merged_cells.add(f"A1:{last}1")

        info = WriteOnlyCell(
            ws, value=f"统计范围：{scope_name}（{scope_code}）    导出日期：{today:%Y年%m月%d日}"
        )
        info.font = Font(name="宋体", size=10)
        info.alignment = Alignment(horizontal="right", vertical="center")
        ws.append([info])
        ws.merged_cells.add(f"A2:{last}2")

        header = []
        for name, _ in COLUMNS:
            cell = WriteOnlyCell(ws, value=name)
            cell.font = Font(name="黑体", size=11, bold=True)
            cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
            cell.fill = PatternFill("solid", fgColor="D9E1F2")
            cell.border = _BORDER
            header.append(cell)
        ws.row_dimensions[HEADER_ROW].height = 24
        ws.append(header)

    def append(self, row: LedgerRow) -> None:
        cells = []
        for i, value in enumerate(row.values()):
            cell = WriteOnlyCell(self.ws, value=value)
            cell.border = _BORDER
            cell.alignment = _CENTER_TOP if i in _CENTERED else _WRAP_TOP
            cell.font = _RED_FONT if i == _OVERDUE_COLUMN and value else _FONT
            if i in _DATE_COLUMNS:
                cell.number_format = _DATE_FORMAT
            cells.append(cell)
        self.ws.append(cells)
        self.rows += 1

    def extend(self, rows: Iterable[LedgerRow]) -> None:
        for row in rows:
            self.append(row)

    def save(self) -> bytes:
        last_row = HEADER_ROW + self.rows
        self.ws.auto_filter.ref = f"A{HEADER_ROW}:{get_column_letter(len(COLUMNS))}{last_row}"
        buf = io.BytesIO()
        self.workbook.save(buf)
        return buf.getvalue()
