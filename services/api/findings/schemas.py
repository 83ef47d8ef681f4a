"""A finding as the endpoints answer it (warning and overdue as of the read's China date)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal
from uuid import UUID

import msgspec

from services.fields import FindingCategory, FindingStatus, FindingWarning

#: the list's and the ledger's filters.
Status = Literal["assigned", "in_progress", "completed", "verified"]
Warning = Literal["none", "green", "yellow", "red"]


class FindingView(msgspec.Struct):
    id: UUID
    node_code: str
    node_name: str
    source: str
    round: str | None
    description: str
    category: FindingCategory
    category_label: str
    responsible_unit_code: str | None
    responsible_unit_name: str | None
    measures: list[str]
    due_on: date | None
    status: FindingStatus
    status_label: str
    warning: FindingWarning
    overdue: bool
    overdue_days: int
    overdue_recorded_for: date | None
    recorded_at: datetime
    completed_at: datetime | None
    completion_summary: str | None
    verified_at: datetime | None
    verification_comment: str | None
    rejected_count: int
    last_rejection_reason: str | None
    reopened_count: int
    last_reopen_reason: str | None
    progress_count: int
    last_progress_note: str | None
    last_progress_evidence: str | None
    last_progress_at: datetime | None
    version: int
