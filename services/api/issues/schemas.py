"""What the issue endpoints answer: the issue as read, and the bulk import's results."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from services.fields import IssueSource, IssueStatus, Satisfaction


class AssigneeView(msgspec.Struct):
    id: UUID
    code: str


class EscalationView(msgspec.Struct):
    level: str
    #: the code of the street or county the whistle was blown to.
    to: str
    escalated_at: datetime
    respond_by: datetime
    answered_at: datetime | None
    responders: list[str]
    overdue: bool
    count: int


class EvaluationView(msgspec.Struct):
    satisfaction: Satisfaction
    resolved: bool
    comment: str | None
    evaluated_at: datetime


class IssueCounts(msgspec.Struct):
    returns: int
    extensions: int
    progress_notes: int
    reopens: int
    escalations: int


class IssueView(msgspec.Struct):
    id: UUID
    node_code: str
    title: str
    description: str | None
    category: str
    source: IssueSource
    external_id: str | None
    #: the household survey (扫楼) the issue was raised from (source survey)
    survey_id: UUID | None
    status: IssueStatus
    overdue: bool
    due_at: datetime | None
    requested_due_at: datetime | None
    overdue_recorded_at: datetime | None
    reported_at: datetime
    assigned_at: datetime | None
    accepted_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    closed_on_time: bool | None
    assignee: AssigneeView | None
    escalation: EscalationView | None
    evaluation: EvaluationView | None
    result: str | None
    last_note: str | None
    override_reason: str | None
    counts: IssueCounts
    version: int
    updated_at: datetime


class BatchItemResult(msgspec.Struct, omit_defaults=True):
    index: int
    status: int
    idempotency_key: str | None = None
    external_id: str | None = None
    id: UUID | None = None
    version: int | None = None
    position: int | None = None
    error: dict[str, Any] | None = None


class BatchSummary(msgspec.Struct):
    created: int
    replayed: int
    failed: int


class BatchResult(msgspec.Struct):
    items: list[BatchItemResult]
    summary: BatchSummary
    position: int | None
