"""The ledger's pure formatting: Chinese status labels, overdue days, file names, CSV bytes."""

from __future__ import annotations

import csv
import io
from datetime import date
from urllib.parse import unquote

import pytest

from services.api.findings.ledger_format import (
    HEADERS,
    LedgerRow,
    content_disposition,
    csv_chunk,
    overdue_days,
    status_label,
)


@pytest.mark.parametrize(
    ("status", "rework", "label"),
    [
        ("assigned", None, "整改中"),
        ("in_progress", None, "整改中"),
        ("in_progress", "rejected", "退回重改"),
        ("in_progress", "reopened", "回头看重新整改"),
        ("completed", "rejected", "已完成待验收"),
        ("verified", None, "已销号"),
    ],
)
def test_status_labels(status: str, rework: str | None, label: str) -> None:
    assert status_label(status, rework) == label


def test_overdue_days_match_the_aggregate() -> None:
    due = date(2024, 5, 31)
    assert overdue_days(due, "in_progress", date(2024, 5, 31)) == 0
    assert overdue_days(due, "in_progress", date(2024, 6, 3)) == 3
    assert overdue_days(due, "completed", date(2024, 6, 3)) == 3
    assert overdue_days(due, "verified", date(2024, 6, 3)) == 0
    assert overdue_days(None, "recorded", date(2024, 6, 3)) == 0


def test_content_disposition_has_an_ascii_name_and_the_chinese_one() -> None:
    value = content_disposition("330106000000", date(2024, 3, 1), "xlsx")
    assert value.startswith(
        'attachment; filename="rectification-ledger-330106000000-20240301.xlsx"'
    )
    encoded = value.split("filename*=UTF-8''")[1]
    assert encoded.isascii() and unquote(encoded) == "整改台账-330106000000-20240301.xlsx"


def test_csv_has_a_bom_header_and_crlf_rows() -> None:
    row = LedgerRow(
        1, "省委巡视组", "", "描述，含逗号", "限期整改", "1. 甲\n2. 乙", "区民政局（U1）",
        date(2024, 5, 31), "整改中", None, None, 2, "进展",
    )  # fmt: skip
    raw = csv_chunk([row], header=True)
    assert raw.startswith("\ufeff".encode()) and raw.endswith(b"\r\n")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert rows[0] == list(HEADERS)
    assert rows[1][3] == "描述，含逗号" and rows[1][5] == "1. 甲\n2. 乙"
    assert rows[1][7] == "2024-05-31" and rows[1][9] == "" and rows[1][11] == "2"
    assert not csv_chunk([row]).startswith("\ufeff".encode())
