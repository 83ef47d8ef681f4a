"""The Finding aggregate (巡视整改): an inspection finding and its rectification — the
ledger 建账 → 更新 → 销号 with double review (the responsible unit completes, an inspector
verifies) and 回头看 follow-up (a verified finding found to have relapsed is reopened).

Statuses: (recorded →) assigned → in_progress → completed → verified; a rejected
verification goes back to in_progress, a reopen from verified to in_progress. Due dates
are calendar days in China (``domain.refs.business_date``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

from domain.base import CivicAggregate
from domain.clock import require_aware
from domain.errors import IllegalTransition, InvalidValue
from domain.hierarchy import NodeKind
from domain.refs import (
    MAX_TITLE,
    NodeRef,
    business_date,
    clean_optional_text,
    clean_text,
    require_date,
    require_node,
    require_open,
)

RECORDED = "recorded"  # only between the two creation events
ASSIGNED = "assigned"
IN_PROGRESS = "in_progress"
COMPLETED = "completed"
VERIFIED = "verified"
STATUSES = (RECORDED, ASSIGNED, IN_PROGRESS, COMPLETED, VERIFIED)

#: 立行立改 / 限期整改 / 长期坚持
CATEGORIES = ("immediate", "deadline", "long_term")
DEFAULT_CATEGORY = "deadline"

MAX_MEASURES = 50
MAX_EVIDENCE = 500
#: days a relapse found by 回头看 gets when the reopen names no new due date.
REOPEN_DEFAULT_DAYS = 30

#: days left at which the warning turns green / yellow (API.md: 20 and 10 days left).
GREEN_DAYS = 20
YELLOW_DAYS = 10

#: command → statuses it is allowed in (the transition table; tests walk all of it).
TRANSITIONS: dict[str, frozenset[str]] = {
    "report_progress": frozenset({ASSIGNED, IN_PROGRESS}),
    "complete": frozenset({ASSIGNED, IN_PROGRESS}),
    "verify": frozenset({COMPLETED}),
    "reopen": frozenset({VERIFIED}),
    "mark_overdue": frozenset({ASSIGNED, IN_PROGRESS, COMPLETED}),
}


def warning(due_on: date, today: date, status: str) -> str:
    """'none' | 'green' | 'yellow' | 'red': red once overdue and not verified, yellow at
    ≤ 10 days left, green at ≤ 20 days left; none otherwise and once verified."""
    if status == VERIFIED:
        return "none"
    days_left = (due_on - today).days
    if days_left < 0:
        return "red"
    if days_left <= YELLOW_DAYS:
        return "yellow"
    if days_left <= GREEN_DAYS:
        return "green"
    return "none"


class Finding(CivicAggregate):
    STREAM_TYPE = "finding"

    class Recorded(CivicAggregate.Created):
        TOPIC = "FindingRecorded.v1"
        scope_id: UUID
        scope_code: str
        root_id: UUID
        source: str
        round: str | None
        description: str
        category: str

        def apply(self, finding: Any) -> None:
            pass

    class Assigned(CivicAggregate.Event):
        TOPIC = "RectificationAssigned.v1"
        responsible_unit_id: UUID
        responsible_unit_code: str
        measures: tuple[str, ...]
        due_on: date

        def apply(self, finding: Any) -> None:
            finding.status = ASSIGNED
            finding.responsible_unit_id = self.responsible_unit_id
            finding.responsible_unit_code = self.responsible_unit_code
            finding.measures = self.measures
            finding.due_on = self.due_on

    class ProgressReported(CivicAggregate.Event):
        TOPIC = "RectificationProgressReported.v1"
        note: str
        evidence: str | None

        def apply(self, finding: Any) -> None:
            finding.status = IN_PROGRESS
            finding.progress_count += 1

    class Completed(CivicAggregate.Event):
        TOPIC = "RectificationCompleted.v1"
        summary: str

        def apply(self, finding: Any) -> None:
            finding.status = COMPLETED
            finding.completed_at = self.timestamp
            finding.summary = self.summary

    class Verified(CivicAggregate.Event):
        TOPIC = "RectificationVerified.v1"
        comment: str | None

        def apply(self, finding: Any) -> None:
            finding.status = VERIFIED
            finding.verified_at = self.timestamp

    class Rejected(CivicAggregate.Event):
        TOPIC = "RectificationRejected.v1"
        reason: str

        def apply(self, finding: Any) -> None:
            finding.status = IN_PROGRESS
            finding.completed_at = None
            finding.summary = None
            finding.rejection_count += 1
            finding.last_rejection_reason = self.reason

    class Reopened(CivicAggregate.Event):
        TOPIC = "FindingReopened.v1"
        reason: str
        due_on: date

        def apply(self, finding: Any) -> None:
            finding.status = IN_PROGRESS
            finding.due_on = self.due_on
            finding.completed_at = None
            finding.summary = None
            finding.verified_at = None
            finding.overdue_for = None
            finding.reopen_count += 1

    class Overdue(CivicAggregate.Event):
        TOPIC = "RectificationOverdue.v1"
        due_on: date

        def apply(self, finding: Any) -> None:
            finding.overdue_for = self.due_on

    def __init__(
        self,
        scope_id: UUID,
        scope_code: str,
        root_id: UUID,
        source: str,
        round: str | None,  # the inspection round (轮次)
        description: str,
        category: str,
    ) -> None:
        self.scope_id = scope_id
        self.scope_code = scope_code
        self.root_id = root_id
        self.source = source
        self.round = round
        self.description = description
        self.category = category
        self.status = RECORDED
        self.responsible_unit_id: UUID | None = None
        self.responsible_unit_code: str | None = None
        self.measures: tuple[str, ...] = ()
        self.due_on: date | None = None
        self.progress_count = 0
        self.completed_at: datetime | None = None
        self.summary: str | None = None
        self.verified_at: datetime | None = None
        self.rejection_count = 0
        self.last_rejection_reason: str | None = None
        self.reopen_count = 0
        #: the due date a RectificationOverdue was recorded for.
        self.overdue_for: date | None = None

    @property
    def owner_node_id(self) -> UUID:
        return self.scope_id

    @property
    def overdue(self) -> bool:
        """RectificationOverdue was recorded for the due date in force (stays true after a
        late completion or verification; a reopen sets a new due date)."""
        return self.overdue_for is not None

    def warning_on(self, today: date) -> str:
        assert self.due_on is not None
        return warning(self.due_on, today, self.status)

    def overdue_days(self, today: date) -> int:
        """Days past due as of ``today`` (0 when not past due or verified): the ledger column."""
        if self.due_on is None or self.status == VERIFIED:
            return 0
        return max((today - self.due_on).days, 0)

    def is_past_due(self, at: datetime) -> bool:
        """Would ``mark_overdue(at)`` record a RectificationOverdue? (for the clock process)"""
        return (
            self.status in TRANSITIONS["mark_overdue"]
            and self.due_on is not None
            and business_date(at) > self.due_on
            and self.overdue_for != self.due_on
        )

    # -- commands -------------------------------------------------------------------------

    @classmethod
    def record(
        cls,
        *,
        finding_id: UUID,
        scope: NodeRef,
        source: str,
        description: str,
        responsible_unit: NodeRef,
        due_on: date,
        measures: Sequence[str],
        category: str | None = None,
        round: str | None = None,
        at: datetime,
    ) -> Finding:
        """建账: FindingRecorded, then RectificationAssigned, in one go.

        A due date in the past is accepted (existing ledgers are imported); the finding is
        then overdue at once (``warning`` is red; the clock records RectificationOverdue).
        """
        require_open(scope)
        category = DEFAULT_CATEGORY if category is None else category
        if category not in CATEGORIES:
            raise InvalidValue("category", f"must be one of {', '.join(CATEGORIES)}")
        require_node(
            "responsible_unit_code", responsible_unit, kinds={NodeKind.UNIT}, root_id=scope.root_id
        )
        due_on = require_date("due_on", due_on)
        cleaned_measures = _clean_measures(measures)
        finding = cls._create(
            cls.Recorded,
            id=finding_id,
            timestamp=require_aware(at),
            scope_id=scope.id,
            scope_code=scope.code,
            root_id=scope.root_id,
            source=clean_text("source", source, max_len=MAX_TITLE),
            round=clean_optional_text("round", round, max_len=MAX_TITLE),
            description=clean_text("description", description),
            category=category,
        )
        finding._record(
            cls.Assigned,
            at,
            responsible_unit_id=responsible_unit.id,
            responsible_unit_code=responsible_unit.code,
            measures=cleaned_measures,
            due_on=due_on,
        )
        return finding

    def report_progress(self, *, note: str, evidence: str | None = None, at: datetime) -> None:
        """RectificationProgressReported (更新), with an optional evidence reference."""
        self._check("report_progress")
        self._record(
            self.ProgressReported,
            at,
            note=clean_text("note", note),
            evidence=clean_optional_text("evidence", evidence, max_len=MAX_EVIDENCE),
        )

    def complete(self, summary: str, at: datetime) -> None:
        """RectificationCompleted: the responsible unit reports the rectification done."""
        self._check("complete")
        self._record(self.Completed, at, summary=clean_text("summary", summary))

    def verify(self, *, accepted: bool, comment: str | None = None, at: datetime) -> None:
        """The inspector's review: RectificationVerified (销号) when ``accepted``, else
        RectificationRejected back to in_progress (the comment is the reason, required)."""
        self._check("verify")
        if not isinstance(accepted, bool):
            raise InvalidValue("accepted", "must be true or false")
        if accepted:
            self._record(self.Verified, at, comment=clean_optional_text("comment", comment))
        else:
            self._record(self.Rejected, at, reason=clean_text("comment", comment))

    def reopen(self, reason: str, at: datetime, *, due_on: date | None = None) -> None:
        """FindingReopened (回头看 found a relapse after 销号): back to in_progress with a new
        due date (default: ``REOPEN_DEFAULT_DAYS`` from today)."""
        self._check("reopen")
        today = business_date(require_aware(at))
        if due_on is None:
            due_on = today + timedelta(days=REOPEN_DEFAULT_DAYS)
        else:
            due_on = require_date("due_on", due_on)
            if due_on < today:
                raise InvalidValue("due_on", "a reopened rectification cannot be due in the past")
        self._record(self.Reopened, at, reason=clean_text("reason", reason), due_on=due_on)

    def mark_overdue(self, at: datetime) -> None:
        """RectificationOverdue (clock): past the due date, not verified, not yet marked."""
        self._check("mark_overdue")
        if not self.is_past_due(require_aware(at)):
            raise IllegalTransition(
                "the due date has not passed or is already marked", current_state=self.status
            )
        assert self.due_on is not None
        self._record(self.Overdue, at, due_on=self.due_on)

    def _check(self, command: str) -> None:
        if self.status not in TRANSITIONS[command]:
            verb = command.replace("_", " ")
            raise IllegalTransition(
                f"cannot {verb} a finding that is {self.status}", current_state=self.status
            )


def _clean_measures(measures: Sequence[str]) -> tuple[str, ...]:
    if isinstance(measures, str):
        raise InvalidValue("measures", "must be a list of measures")
    if not measures:
        raise InvalidValue("measures", "name at least one rectification measure")
    if len(measures) > MAX_MEASURES:
        raise InvalidValue("measures", f"at most {MAX_MEASURES} measures")
    return tuple(clean_text(f"measures[{i}]", m) for i, m in enumerate(measures))
