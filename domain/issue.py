"""The Issue aggregate (问题 / 工单): the 12345 hotline loop
受理 → 派单 → 签收 → 办理 → 办结 → 回访 → 归档, with 退单, 延期, 重办 and 吹哨报到.

Statuses: reported → assigned → accepted → resolved → closed. ``return_`` goes back to
reported, ``reopen`` back to assigned. An escalation (吹哨) keeps the status and records
which level must respond by when. Deadlines are compared with the command's ``at``; the
clock process calls ``mark_overdue`` / ``mark_escalation_overdue``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from domain.base import CivicAggregate
from domain.clock import require_aware
from domain.errors import IllegalTransition, InvalidValue
from domain.hierarchy import NodeKind
from domain.refs import (
    MAX_TITLE,
    NodeRef,
    clean_optional_text,
    clean_text,
    require_int,
    require_moment,
    require_node,
    require_open,
)

REPORTED = "reported"
ASSIGNED = "assigned"
ACCEPTED = "accepted"
RESOLVED = "resolved"
CLOSED = "closed"
STATUSES = (REPORTED, ASSIGNED, ACCEPTED, RESOLVED, CLOSED)

SOURCES = ("grid", "hotline", "survey", "inspection", "resident")
#: sources whose issues need the resident callback (回访) before they are closed.
CALLBACK_SOURCES = frozenset({"hotline", "resident"})
SATISFACTIONS = ("satisfied", "basically_satisfied", "dissatisfied")
#: the levels a whistle (吹哨) may be blown to.
ESCALATION_KINDS = frozenset({NodeKind.STREET, NodeKind.COUNTY})
MAX_RESPOND_MINUTES = 7 * 24 * 60

#: command → statuses it is allowed in (the transition table; tests walk all of it).
TRANSITIONS: dict[str, frozenset[str]] = {
    "assign": frozenset({REPORTED}),
    "return_": frozenset({ASSIGNED}),
    "accept": frozenset({ASSIGNED}),
    "extend": frozenset({ASSIGNED, ACCEPTED}),
    "note_progress": frozenset({ASSIGNED, ACCEPTED}),
    "escalate": frozenset({REPORTED, ASSIGNED, ACCEPTED}),
    "answer_escalation": frozenset({REPORTED, ASSIGNED, ACCEPTED, RESOLVED}),
    "resolve": frozenset({ACCEPTED}),
    "evaluate": frozenset({RESOLVED}),
    "close": frozenset({RESOLVED}),
    "reopen": frozenset({RESOLVED}),
    "mark_overdue": frozenset({ASSIGNED, ACCEPTED}),
    "mark_escalation_overdue": frozenset({REPORTED, ASSIGNED, ACCEPTED}),
}


@dataclass(frozen=True)
class Evaluation:
    """The resident callback (回访) on the current resolution."""

    satisfaction: str
    resolved: bool
    comment: str | None
    evaluated_at: datetime

    @property
    def positive(self) -> bool:
        return self.resolved and self.satisfaction != "dissatisfied"


@dataclass(frozen=True)
class Escalation:
    """The current whistle (吹哨): who must respond by when, and who did."""

    to_id: UUID
    to_code: str
    level: str
    escalated_at: datetime
    respond_by: datetime
    answered_at: datetime | None = None
    responders: tuple[str, ...] = ()
    overdue: bool = False

    @property
    def answered(self) -> bool:
        return self.answered_at is not None


class Issue(CivicAggregate):
    STREAM_TYPE = "issue"

    class Reported(CivicAggregate.Created):
        TOPIC = "IssueReported.v1"
        node_id: UUID
        node_code: str
        root_id: UUID
        title: str
        description: str | None
        category: str
        source: str
        due_at: datetime | None
        #: the reporting platform's own work-order number (e.g. the 12345 hotline's 工单编号).
        external_id: str | None = None
        #: the household survey (扫楼) this issue was raised from (source ``survey``).
        survey_id: UUID | None = None

        def apply(self, issue: Any) -> None:
            pass

    class Assigned(CivicAggregate.Event):
        TOPIC = "IssueAssigned.v1"
        assignee_id: UUID
        assignee_code: str
        due_at: datetime

        def apply(self, issue: Any) -> None:
            issue.status = ASSIGNED
            issue.assignee_id = self.assignee_id
            issue.assignee_code = self.assignee_code
            issue.assigned_at = self.timestamp
            issue.assigned_due_at = self.due_at
            issue.due_at = self.due_at
            issue.overdue_for = None

    class Returned(CivicAggregate.Event):
        TOPIC = "IssueReturned.v1"
        assignee_id: UUID
        assignee_code: str
        reason: str

        def apply(self, issue: Any) -> None:
            issue.status = REPORTED
            issue.assignee_id = None
            issue.assignee_code = None
            issue.assigned_at = None
            issue.assigned_due_at = None
            issue.accepted_at = None
            issue.due_at = issue.requested_due_at
            issue.overdue_for = None
            issue.return_count += 1

    class Accepted(CivicAggregate.Event):
        TOPIC = "IssueAccepted.v1"
        assignee_id: UUID

        def apply(self, issue: Any) -> None:
            issue.status = ACCEPTED
            issue.accepted_at = self.timestamp

    class Extended(CivicAggregate.Event):
        TOPIC = "IssueExtended.v1"
        old_due_at: datetime
        due_at: datetime
        reason: str

        def apply(self, issue: Any) -> None:
            issue.due_at = self.due_at
            issue.extension_count += 1

    class ProgressNoted(CivicAggregate.Event):
        TOPIC = "IssueProgressNoted.v1"
        note: str

        def apply(self, issue: Any) -> None:
            issue.progress_count += 1

    class Escalated(CivicAggregate.Event):
        TOPIC = "IssueEscalated.v1"
        to_id: UUID
        to_code: str
        level: str
        respond_within_minutes: int
        respond_by: datetime

        def apply(self, issue: Any) -> None:
            issue.escalation = Escalation(
                to_id=self.to_id,
                to_code=self.to_code,
                level=self.level,
                escalated_at=self.timestamp,
                respond_by=self.respond_by,
            )
            issue.escalation_count += 1

    class EscalationAnswered(CivicAggregate.Event):
        TOPIC = "IssueEscalationAnswered.v1"
        responder_id: UUID
        responder_code: str
        note: str

        def apply(self, issue: Any) -> None:
            esc = issue.escalation
            issue.escalation = replace(
                esc,
                answered_at=esc.answered_at or self.timestamp,
                responders=(
                    esc.responders
                    if self.responder_code in esc.responders
                    else (*esc.responders, self.responder_code)
                ),
            )

    class Resolved(CivicAggregate.Event):
        TOPIC = "IssueResolved.v1"
        result: str

        def apply(self, issue: Any) -> None:
            issue.status = RESOLVED
            issue.resolved_at = self.timestamp
            issue.result = self.result

    class Evaluated(CivicAggregate.Event):
        TOPIC = "IssueEvaluated.v1"
        satisfaction: str
        resolved: bool
        comment: str | None

        def apply(self, issue: Any) -> None:
            issue.evaluation = Evaluation(
                satisfaction=self.satisfaction,
                resolved=self.resolved,
                comment=self.comment,
                evaluated_at=self.timestamp,
            )

    class Closed(CivicAggregate.Event):
        TOPIC = "IssueClosed.v1"
        override_reason: str | None

        def apply(self, issue: Any) -> None:
            issue.status = CLOSED
            issue.closed_at = self.timestamp
            issue.override_reason = self.override_reason

    class Reopened(CivicAggregate.Event):
        TOPIC = "IssueReopened.v1"
        reason: str
        due_at: datetime

        def apply(self, issue: Any) -> None:
            issue.status = ASSIGNED
            issue.assigned_at = self.timestamp
            issue.assigned_due_at = self.due_at
            issue.due_at = self.due_at
            issue.accepted_at = None
            issue.resolved_at = None
            issue.result = None
            issue.evaluation = None
            issue.overdue_for = None
            issue.reopen_count += 1

    class Overdue(CivicAggregate.Event):
        TOPIC = "IssueOverdue.v1"
        due_at: datetime

        def apply(self, issue: Any) -> None:
            issue.overdue_for = self.due_at

    class EscalationOverdue(CivicAggregate.Event):
        TOPIC = "EscalationOverdue.v1"
        to_id: UUID
        respond_by: datetime

        def apply(self, issue: Any) -> None:
            issue.escalation = replace(issue.escalation, overdue=True)

    def __init__(
        self,
        node_id: UUID,
        node_code: str,
        root_id: UUID,
        title: str,
        description: str | None,
        category: str,
        source: str,
        due_at: datetime | None,
        external_id: str | None = None,
        survey_id: UUID | None = None,
    ) -> None:
        self.node_id = node_id
        self.node_code = node_code
        self.root_id = root_id
        self.title = title
        self.description = description
        self.category = category
        self.source = source
        self.external_id = external_id
        self.survey_id = survey_id
        self.status = REPORTED
        #: the deadline asked for when reported (restored when the issue is returned).
        self.requested_due_at = due_at
        #: the deadline in force.
        self.due_at = due_at
        self.assignee_id: UUID | None = None
        self.assignee_code: str | None = None
        self.assigned_at: datetime | None = None
        #: the deadline set by the latest assignment or reopen (before extensions).
        self.assigned_due_at: datetime | None = None
        self.accepted_at: datetime | None = None
        self.resolved_at: datetime | None = None
        self.result: str | None = None
        self.evaluation: Evaluation | None = None
        self.closed_at: datetime | None = None
        self.override_reason: str | None = None
        #: the deadline an IssueOverdue was recorded for (None: the current one is not missed).
        self.overdue_for: datetime | None = None
        self.escalation: Escalation | None = None
        self.escalation_count = 0
        self.return_count = 0
        self.extension_count = 0
        self.progress_count = 0
        self.reopen_count = 0

    @property
    def owner_node_id(self) -> UUID:
        return self.node_id

    @property
    def overdue(self) -> bool:
        """The deadline in force was missed (IssueOverdue recorded for it). It stays true
        after a late resolution; an extension, return or reopen sets a new deadline."""
        return self.overdue_for is not None

    @property
    def escalation_overdue(self) -> bool:
        return self.escalation is not None and self.escalation.overdue

    def is_past_due(self, at: datetime) -> bool:
        """Would ``mark_overdue(at)`` record an IssueOverdue? (for the clock process)"""
        return (
            self.status in TRANSITIONS["mark_overdue"]
            and self.due_at is not None
            and at > self.due_at
            and self.overdue_for != self.due_at
        )

    def is_escalation_past_due(self, at: datetime) -> bool:
        """Would ``mark_escalation_overdue(at)`` record an EscalationOverdue?"""
        esc = self.escalation
        return (
            self.status in TRANSITIONS["mark_escalation_overdue"]
            and esc is not None
            and not esc.answered
            and not esc.overdue
            and at > esc.respond_by
        )

    # -- commands -------------------------------------------------------------------------

    @classmethod
    def report(
        cls,
        *,
        issue_id: UUID,
        node: NodeRef,
        title: str,
        category: str,
        source: str,
        due_at: datetime | None = None,
        description: str | None = None,
        external_id: str | None = None,
        survey_id: UUID | None = None,
        at: datetime,
    ) -> Issue:
        """IssueReported (受理) at ``node`` (any open node: a grid, a community...).

        ``external_id``: the number the pushing platform (12345 hotline, 一网统管) gave the
        work order, kept so both sides can correlate; optional. ``survey_id``: the household
        visit (扫楼) the issue comes from; only with source ``survey``.
        """
        require_open(node)
        at = require_aware(at)
        if source not in SOURCES:
            raise InvalidValue("source", f"must be one of {', '.join(SOURCES)}")
        if survey_id is not None and source != "survey":
            raise InvalidValue("source", "an issue raised from a survey has source survey")
        if due_at is not None:
            due_at = require_moment("due_at", due_at)
            if due_at <= at:
                raise InvalidValue("due_at", "must be in the future")
        return cls._create(
            cls.Reported,
            id=issue_id,
            timestamp=at,
            node_id=node.id,
            node_code=node.code,
            root_id=node.root_id,
            title=clean_text("title", title, max_len=MAX_TITLE),
            description=clean_optional_text("description", description),
            category=clean_text("category", category, max_len=MAX_TITLE),
            source=source,
            due_at=due_at,
            external_id=clean_optional_text("external_id", external_id, max_len=MAX_TITLE),
            survey_id=survey_id,
        )

    def assign(self, *, assignee: NodeRef, due_at: datetime, at: datetime) -> None:
        """IssueAssigned (派单) to a unit of the same root tenant, due at ``due_at``."""
        self._check("assign")
        require_node("assignee_code", assignee, kinds={NodeKind.UNIT}, root_id=self.root_id)
        due_at = self._future_deadline("due_at", due_at, at)
        self._record(
            self.Assigned, at, assignee_id=assignee.id, assignee_code=assignee.code, due_at=due_at
        )

    def return_(self, reason: str, at: datetime) -> None:
        """IssueReturned (退单): the assignee hands it back before signing; back to reported."""
        self._check("return_")
        assert self.assignee_id is not None and self.assignee_code is not None
        self._record(
            self.Returned,
            at,
            assignee_id=self.assignee_id,
            assignee_code=self.assignee_code,
            reason=clean_text("reason", reason),
        )

    def accept(self, at: datetime) -> None:
        """IssueAccepted (签收)."""
        self._check("accept")
        assert self.assignee_id is not None
        self._record(self.Accepted, at, assignee_id=self.assignee_id)

    def extend(self, *, due_at: datetime, reason: str, at: datetime) -> None:
        """IssueExtended (延期): only before the current deadline passes, to a later one."""
        self._check("extend")
        at = require_aware(at)
        current = self.due_at
        assert current is not None
        if at >= current:
            raise IllegalTransition(
                f"the deadline {current.isoformat()} has passed; an extension must be "
                "requested before it",
                current_state=self.status,
            )
        due_at = require_moment("due_at", due_at)
        if due_at <= current:
            raise InvalidValue(
                "due_at", f"must be after the current deadline {current.isoformat()}"
            )
        self._record(
            self.Extended,
            at,
            old_due_at=current,
            due_at=due_at,
            reason=clean_text("reason", reason),
        )

    def note_progress(self, note: str, at: datetime) -> None:
        """IssueProgressNoted (办理情况)."""
        self._check("note_progress")
        self._record(self.ProgressNoted, at, note=clean_text("note", note))

    def escalate(self, *, to: NodeRef, respond_within_minutes: int, at: datetime) -> None:
        """IssueEscalated (吹哨): the street or county must respond within the limit.

        A new whistle is refused while the current one still awaits an answer in time.
        """
        self._check("escalate")
        at = require_aware(at)
        require_node("to_code", to, kinds=ESCALATION_KINDS, root_id=self.root_id)
        minutes = require_int(
            "respond_within_minutes", respond_within_minutes, low=1, high=MAX_RESPOND_MINUTES
        )
        esc = self.escalation
        if esc is not None and not esc.answered and at <= esc.respond_by:
            raise IllegalTransition(
                f"the whistle to {esc.to_code} awaits an answer until {esc.respond_by.isoformat()}",
                current_state=self.status,
            )
        self._record(
            self.Escalated,
            at,
            to_id=to.id,
            to_code=to.code,
            level=to.kind,
            respond_within_minutes=minutes,
            respond_by=at + timedelta(minutes=minutes),
        )

    def answer_escalation(self, *, responder: NodeRef, note: str, at: datetime) -> None:
        """IssueEscalationAnswered (报到): a department reports in answer to the whistle.

        The first answer stops the response clock; later ones (other departments, or a late
        report) are recorded too.
        """
        self._check("answer_escalation")
        if self.escalation is None:
            raise IllegalTransition("no whistle has been blown on this issue",
                                    current_state=self.status)
        if responder.root_id != self.root_id:
            raise InvalidValue("responder_code", f"{responder.code} belongs to another root tenant")
        require_open(responder)
        self._record(
            self.EscalationAnswered,
            at,
            responder_id=responder.id,
            responder_code=responder.code,
            note=clean_text("note", note),
        )

    def resolve(self, result: str, at: datetime) -> None:
        """IssueResolved (办结)."""
        self._check("resolve")
        self._record(self.Resolved, at, result=clean_text("result", result))

    def evaluate(
        self, *, satisfaction: str, resolved: bool, comment: str | None = None, at: datetime
    ) -> None:
        """IssueEvaluated (回访), once per resolution."""
        self._check("evaluate")
        if self.evaluation is not None:
            raise IllegalTransition("the callback for this resolution is already recorded",
                                    current_state=self.status)
        if satisfaction not in SATISFACTIONS:
            raise InvalidValue("satisfaction", f"must be one of {', '.join(SATISFACTIONS)}")
        if not isinstance(resolved, bool):
            raise InvalidValue("resolved", "must be true or false")
        self._record(
            self.Evaluated,
            at,
            satisfaction=satisfaction,
            resolved=resolved,
            comment=clean_optional_text("comment", comment),
        )

    def close(
        self, at: datetime, *, is_admin: bool = False, override_reason: str | None = None
    ) -> None:
        """IssueClosed (归档/销号).

        Resident and hotline issues need the callback first. A dissatisfied or unresolved
        callback needs a reopen, or an admin's ``override_reason`` (recorded on the event);
        an override reason given where none is needed is not recorded.
        """
        self._check("close")
        evaluation = self.evaluation
        if evaluation is None and self.source in CALLBACK_SOURCES:
            raise IllegalTransition(
                f"a {self.source} issue needs the resident callback (回访) before it is closed",
                current_state=self.status,
            )
        recorded_override: str | None = None
        if evaluation is not None and not evaluation.positive:
            if not is_admin:
                raise IllegalTransition(
                    "the callback was dissatisfied or unresolved: reopen the issue, or an admin "
                    "closes it with an override reason",
                    current_state=self.status,
                )
            recorded_override = clean_optional_text("override_reason", override_reason)
            if recorded_override is None:
                raise InvalidValue(
                    "override_reason",
                    "closing after a dissatisfied or unresolved callback needs a reason",
                )
        self._record(self.Closed, at, override_reason=recorded_override)

    def reopen(self, reason: str, at: datetime, *, due_at: datetime | None = None) -> None:
        """IssueReopened (重办): back to the same assignee. Without ``due_at`` the new
        deadline gives the same time as the latest assignment did."""
        self._check("reopen")
        at = require_aware(at)
        if due_at is None:
            assert self.assigned_at is not None and self.assigned_due_at is not None
            due_at = at + (self.assigned_due_at - self.assigned_at)
        else:
            due_at = self._future_deadline("due_at", due_at, at)
        self._record(self.Reopened, at, reason=clean_text("reason", reason), due_at=due_at)

    def mark_overdue(self, at: datetime) -> None:
        """IssueOverdue (clock): assigned or accepted, past the deadline, not yet marked."""
        self._check("mark_overdue")
        if not self.is_past_due(require_aware(at)):
            raise IllegalTransition(
                "the deadline has not passed or is already marked", current_state=self.status
            )
        assert self.due_at is not None
        self._record(self.Overdue, at, due_at=self.due_at)

    def mark_escalation_overdue(self, at: datetime) -> None:
        """EscalationOverdue (clock): the whistle was not answered by its limit."""
        self._check("mark_escalation_overdue")
        if not self.is_escalation_past_due(require_aware(at)):
            raise IllegalTransition(
                "no unanswered whistle is past its response limit", current_state=self.status
            )
        assert self.escalation is not None
        self._record(
            self.EscalationOverdue,
            at,
            to_id=self.escalation.to_id,
            respond_by=self.escalation.respond_by,
        )

    # -- helpers --------------------------------------------------------------------------

    def _check(self, command: str) -> None:
        if self.status not in TRANSITIONS[command]:
            verb = command.rstrip("_").replace("_", " ")
            raise IllegalTransition(
                f"cannot {verb} an issue that is {self.status}", current_state=self.status
            )

    @staticmethod
    def _future_deadline(field: str, due_at: datetime, at: datetime) -> datetime:
        due_at = require_moment(field, due_at)
        if due_at <= require_aware(at):
            raise InvalidValue(field, "must be in the future")
        return due_at
