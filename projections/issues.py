"""Projection "issues": the work orders (工单) as clients list them and the clock sweeps them.

One row per issue in ``rm_issues`` (migration 0012). Every statement is guarded by the
stream version (``version < $v``), so a batch applied twice changes nothing; an event for an
issue the table does not know raises (the runner stops and retries, never skips). A batch is
written with a few set-based or pipelined statements (see ``IssuesProjection.apply``): the
projector shares the API's event loop, where every awaited round trip costs a turn.

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

# Every IssueReported of a batch in one statement (one array per column).
INSERT_ISSUES = """
INSERT INTO rm_issues (root_id, id, node_id, node_code, title, description, category, source,
                       external_id, status, requested_due_at, due_at, reported_at, version,
                       updated_at, survey_id)
SELECT r, i, n, nc, t, d, c, s, x, 'reported', due, due, at, v, at, sv
FROM unnest($1::uuid[], $2::uuid[], $3::int4[], $4::timestamptz[], $5::uuid[], $6::text[],
            $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::timestamptz[],
            $13::uuid[])
     AS u(r, i, v, at, n, nc, t, d, c, s, x, due, sv)
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

# The first of the given issues that is not in the read model, if any.
FIRST_UNKNOWN = """
SELECT k.ord FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS k(root_id, id, ord)
WHERE NOT EXISTS (SELECT 1 FROM rm_issues i WHERE i.root_id = k.root_id AND i.id = k.id)
ORDER BY k.ord LIMIT 1
"""


class _Reported(msgspec.Struct):
    node_id: UUID
    node_code: str
    title: str
    category: str
    source: str
    description: str | None = None
    due_at: datetime | None = None
    external_id: str | None = None
    survey_id: UUID | None = None


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
        """The batch in a few statements, with the effect of applying its events one by one.

        Creations go first, in one INSERT: an issue's IssueReported precedes all its other
        events, and rows of different issues do not interact. The updates go in rounds,
        the k-th round holding every issue's k-th update of the batch, one pipelined
        ``executemany`` per event type and round: each row still sees its events in order.
        """
        reported: list[tuple[Any, ...]] = []
        # round -> event type -> parameters, in order of first appearance
        rounds: list[dict[str, list[tuple[Any, ...]]]] = []
        seen: dict[tuple[UUID, UUID], int] = {}
        updated: list[StoredEvent] = []
        for e in events:
            if e.type == "IssueReported":
                r = msgspec.json.decode(e.data, type=_Reported)
                reported.append(
                    (
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
                        r.survey_id,
                    )
                )
                continue
            _sql, extra = UPDATES[e.type]
            key = (e.root_id, e.stream_id)
            k = seen.get(key, 0)
            seen[key] = k + 1
            if k == len(rounds):
                rounds.append({})
            rounds[k].setdefault(e.type, []).append(
                (e.root_id, e.stream_id, e.version, e.occurred_at, *extra(e.data))
            )
            updated.append(e)
        if reported:
            await conn.execute(
                INSERT_ISSUES, *(list(column) for column in zip(*reported, strict=True))
            )
        for by_type in rounds:
            for event_type, rows in by_type.items():
                await conn.executemany(UPDATES[event_type][0], rows)
        if updated:
            # An update of an issue the table does not know would have changed nothing: it
            # must stop the projection (never skip), whatever the version guards did.
            first = await conn.fetchval(
                FIRST_UNKNOWN, [e.root_id for e in updated], [e.stream_id for e in updated]
            )
            if first is not None:
                e = updated[first - 1]
                raise RuntimeError(
                    f"{e.type} v{e.version} of issue {e.stream_id}: the issue is not in the "
                    "read model"
                )
