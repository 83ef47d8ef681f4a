"""The rectification ledger (整改台账) as a county inspection office files it: XLSX or CSV.

One row per finding: 序号, 问题来源, 巡视轮次, 问题描述, 整改类别, 整改措施, 责任单位, 整改时限,
整改状态, 完成时间, 销号时间, 逾期天数, 最新进展.

* XLSX: sheet "整改台账", a title row and a row naming the scope and export date above the
  header; the rest (frozen header, real dates, A4 landscape, bounded memory) is
  ``services.spreadsheets``, as is the literal-text rule for formula-looking cells.
* CSV: as ``services.spreadsheets`` writes it; measures joined by line breaks in one cell.

Status and category are written in Chinese; dates are China calendar dates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import msgspec

from domain.finding import COMPLETED, RECORDED, VERIFIED
from domain.refs import business_date
from services import spreadsheets
from services.spreadsheets import Column

SHEET_TITLE = "整改台账"

COLUMNS: tuple[Column, ...] = (
    Column("序号", 6, "number", centered=True),
    Column("问题来源", 16),
    Column("巡视轮次", 14),
    Column("问题描述", 40),
    Column("整改类别", 10, centered=True),
    Column("整改措施", 42),
    Column("责任单位", 20),
    Column("整改时限", 12, "date", centered=True),
    Column("整改状态", 14, centered=True),
    Column("完成时间", 12, "date", centered=True),
    Column("销号时间", 12, "date", centered=True),
    Column("逾期天数", 9, "number", centered=True, alarm=True),
    Column("最新进展", 36),
)
HEADERS = tuple(c.header for c in COLUMNS)

CATEGORY_LABELS: Mapping[str, str] = {
    "immediate": "立行立改",
    "deadline": "限期整改",
    "long_term": "长期坚持",
}

CSV_MEDIA_TYPE = spreadsheets.CSV_MEDIA_TYPE
XLSX_MEDIA_TYPE = spreadsheets.XLSX_MEDIA_TYPE


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
    """A read-model row (see ``services.api.findings.queries.SELECT_FINDINGS``) as a ledger row."""
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
    return spreadsheets.content_disposition(
        f"rectification-ledger-{node_code}-{today:%Y%m%d}.{extension}",
        filename(node_code, today, extension),
    )


# -- files -----------------------------------------------------------------------------


def csv_chunk(rows: Iterable[LedgerRow], *, header: bool = False) -> bytes:
    return spreadsheets.csv_chunk(
        (row.values() for row in rows), header=HEADERS if header else None
    )


def xlsx_ledger(*, scope_name: str, scope_code: str, today: date) -> spreadsheets.XlsxSheet:
    return spreadsheets.XlsxSheet(
        sheet=SHEET_TITLE,
        columns=COLUMNS,
        title=f"{scope_name}巡视整改台账",
        info=f"统计范围：{scope_name}（{scope_code}）    导出日期：{today:%Y年%m月%d日}",
    )
