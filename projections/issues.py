"""Projection "issues": the work orders (工单) as clients list them and the clock sweeps them.

One row per issue in ``rm_issues`` (migration 0012). Every statement is guarded by the
stream version (``version < $v``), so a batch applied twice changes nothing; an event for an
issue the table does not know raises (the runner stops and retries, never skips).

``overdue`` is deliberately not stored: it depends on the time of the read (see
``OVERDUE_SQL``), while ``overdue_recorded_due_at`` says which deadline the clock has already
recorded an IssueOverdue for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from infra.event_store import StoredEvent

#: statuses in which a deadline runs (the clock's IssueOverdue applies to them).
OPEN_STATUSES = ("assigned", "accepted")
#: statuses in which a whistle (吹哨) still waits for its answer.
WHISTLE_STATUSES = ("reported", "assigned", "accepted")

#: SQL for "the issue missed its deadline", given the read time as ``{now}`` (a parameter):
#: recorded by the clock, or open past the deadline, or resolved after it. It stays true after
#: a late resolution; an extension, return or reopen sets a new deadline.
OVERDUE_SQL = (
    "(i.overdue_recorded_due_at IS NOT NULL OR (i.due_at IS NOT NULL AND ("
    "(i.status IN ('assigned', 'accepted') AND i.due_at < {now}) OR "
    "(i.status IN ('resolved', 'closed') AND i.resolved_at > i.due_at))))"
)
#: SQL for "the whistle was not answered in time", given ``{now}``.
ESCALATION_OVERDUE_SQL = (
    "(i.escalation_respond_by IS NOT NULL AND (i.escalation_overdue OR "
    "(i.escalation_answered_at IS NOT NULL AND i.escalation_answered_at > i.escalation_respond_by) OR "
    "(i.escalation_answered_at IS NULL AND i.status IN ('reported', 'assigned', 'accepted') "
    "AND i.escalation_respond_by < {now})))"
)

INSERT_ISSUE = """
INSERT INTO rm_issues (root_id, id, node_id, node_code, title, description, category, source,
                       external_id, status, requested_due_at, due_at, reported_at, version,
                       updated_at)
VALUES ($1, $2, $5, $6, $7, $8, $9, $10, $11, 'reported', $12, $12, $4, $3, $4)
ON CONFLICT (root_id, id) DO NOTHING
"""

_GUARD = "version = $3, updated_at = $4 WHERE root_id = $1 AND id = $2 AND version < $3"


def _update(assignments: str) -> str:
    return f"UPDATE rm_issues SET {assignments}, {_GUARD}"


ASSIGNED = _update(
    "status = 'assigned', assignee_id = $5, assignee_code = $6, due_at = $7, assigned_at = $4,"
    " accepted_at = NULL, overdue_recorded_due_at = NULL, overdue_recorded_at = NULL"
)
RETURNED = _update(
    "status = 'reported', assignee_id = NULL, assignee_code = NULL, assigned_at = NULL,"
    " accepted_at = NULL, due_at = requested_due_at, overdue_recorded_due_at = NULL,"
    " overdue_recorded_at = NULL, return_count = return_count + 1, last_return_reason = $5"
)
ACCEPTED = _update("status = 'accepted', accepted_at = $4")
EXTENDED = _update("due_at = $5, extension_count = extension_count + 1, last_extension_reason = $6")
PROGRESS = _update("progress_count = progress_count + 1, last_note = $5")
ESCALATED = _update(
    "escalation_level = $5, escalation_to_id = $6, escalation_to_code = $7, escalated_at = $4,"
    " escalation_respond_by = $8, escalation_answered_at = NULL, escalation_responders = '{}',"
    " escalation_overdue = false, escalation_count = escalation_count + 1"
)
ANSWERED = _update(
    "escalation_answered_at = coalesce(escalation_answered_at, $4),"
    " escalation_responders = CASE WHEN $5 = ANY(escalation_responders)"
    " THEN escalation_responders ELSE array_append(escalation_responders, $5::text) END"
)
RESOLVED = _update("status = 'resolved', resolved_at = $4, result = $5")
EVALUATED = _update(
    "evaluation_satisfaction = $5, evaluation_resolved = $6, evaluation_comment = $7,"
    " evaluated_at = $4"
)
CLOSED = _update(
    "status = 'closed', closed_at = $4, override_reason = $5,"
    " closed_on_time = (due_at IS NULL OR resolved_at <= due_at)"
)
REOPENED = _update(
    "status = 'assigned', assigned_at = $4, due_at = $5, accepted_at = NULL, resolved_at = NULL,"
    " result = NULL, evaluation_satisfaction = NULL, evaluation_resolved = NULL,"
    " evaluation_comment = NULL, evaluated_at = NULL, overdue_recorded_due_at = NULL,"
    " overdue_recorded_at = NULL, reopen_count = reopen_count + 1, last_reopen_reason = $6"
)
OVERDUE = _update("overdue_recorded_due_at = $5, overdue_recorded_at = $4")
ESCALATION_OVERDUE = _update("escalation_overdue = true")

KNOWN_VERSION = "SELECT version FROM rm_issues WHERE root_id = $1 AND id = $2"


class _Reported(msgspec.Struct):
    node_id: UUID
    node_code: str
    title: str
    category: str
    source: str
    description: str | None = None
    due_at: datetime | None = None
    external_id: str | None = None


class _Assigned(msgspec.Struct):
    assignee_id: UUID
    assignee_code: str
    due_at: datetime


class _Reason(msgspec.Struct):
    reason: str


class _Extended(msgspec.Struct):
    due_at: datetime
    reason: str


class _Note(msgspec.Struct):
    note: str


class _Escalated(msgspec.Struct):
    to_id: UUID
    to_code: str
    level: str
    respond_by: datetime


class _Answered(msgspec.Struct):
    responder_code: str


class _Resolved(msgspec.Struct):
    result: str


class _Evaluated(msgspec.Struct):
    satisfaction: str
    resolved: bool
    comment: str | None = None


class _Closed(msgspec.Struct):
    override_reason: str | None = None


class _Reopened(msgspec.Struct):
    reason: str
    due_at: datetime


class _Overdue(msgspec.Struct):
    due_at: datetime


class _Nothing(msgspec.Struct):
    pass


def _args(
    kind: type[Any], pick: Callable[[Any], tuple[Any, ...]]
) -> Callable[[str], tuple[Any, ...]]:
    return lambda data: pick(msgspec.json.decode(data, type=kind))


#: event type → (UPDATE statement, extra parameters from the event's data).
UPDATES: dict[str, tuple[str, Callable[[str], tuple[Any, ...]]]] = {
    "IssueAssigned": (
        ASSIGNED,
        _args(_Assigned, lambda d: (d.assignee_id, d.assignee_code, d.due_at)),
    ),
    "IssueReturned": (RETURNED, _args(_Reason, lambda d: (d.reason,))),
    "IssueAccepted": (ACCEPTED, _args(_Nothing, lambda d: ())),
    "IssueExtended": (EXTENDED, _args(_Extended, lambda d: (d.due_at, d.reason))),
    "IssueProgressNoted": (PROGRESS, _args(_Note, lambda d: (d.note,))),
    "IssueEscalated": (
        ESCALATED,
        _args(_Escalated, lambda d: (d.level, d.to_id, d.to_code, d.respond_by)),
    ),
    "IssueEscalationAnswered": (ANSWERED, _args(_Answered, lambda d: (d.responder_code,))),
    "IssueResolved": (RESOLVED, _args(_Resolved, lambda d: (d.result,))),
    "IssueEvaluated": (
        EVALUATED,
        _args(_Evaluated, lambda d: (d.satisfaction, d.resolved, d.comment)),
    ),
    "IssueClosed": (CLOSED, _args(_Closed, lambda d: (d.override_reason,))),
    "IssueReopened": (REOPENED, _args(_Reopened, lambda d: (d.due_at, d.reason))),
    "IssueOverdue": (OVERDUE, _args(_Overdue, lambda d: (d.due_at,))),
    "EscalationOverdue": (ESCALATION_OVERDUE, _args(_Nothing, lambda d: ())),
}


class IssuesProjection:
    name = "issues"
    handles = frozenset({"IssueReported", *UPDATES})
    tables: tuple[str, ...] = ("rm_issues",)

    async def apply(self, conn: asyncpg.Connection, events: Sequence[StoredEvent]) -> None:
        for e in events:
            if e.type == "IssueReported":
                r = msgspec.json.decode(e.data, type=_Reported)
                await conn.execute(
                    INSERT_ISSUE,
                    e.root_id,
                    e.stream_id,
                    e.version,
                    e.occurred_at,
                    r.node_id,
                    r.node_code,
                    r.title,
                    r.description,
                    r.category,
                    r.source,
                    r.external_id,
                    r.due_at,
                )
                continue
            sql, extra = UPDATES[e.type]
            status = await conn.execute(
                sql, e.root_id, e.stream_id, e.version, e.occurred_at, *extra(e.data)
            )
            if status == "UPDATE 0":
                known = await conn.fetchval(KNOWN_VERSION, e.root_id, e.stream_id)
                if known is None:
                    raise RuntimeError(
                        f"{e.type} v{e.version} of issue {e.stream_id}: the issue is not in the "
                        "read model"
                    )
