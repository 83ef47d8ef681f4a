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

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import asyncpg

from domain.issue import Issue
from infra.event_store import StoredEvent
from projections.rows import RowGuard
from projections.subscriptions import Subscriber, UnknownEvent, on

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

ISSUES = RowGuard("rm_issues")
_REPORTED = (
    "node_id",
    "node_code",
    "title",
    "description",
    "category",
    "source",
    "external_id",
    "due_at",
    "survey_id",
)

#: an update's statement and its parameters after ``$1..$4`` (root, id, version, time).
Update = tuple[str, tuple[Any, ...]]


class IssuesProjection(Subscriber):
    name = "issues"
    tables: tuple[str, ...] = ("rm_issues",)

    @on(Issue.Reported, fields=_REPORTED)
    def reported(self, e: StoredEvent, r: Any) -> tuple[Any, ...]:
        return (
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

    # The updates: each reads only the fields it stores.
    @on(Issue.Assigned, fields=("assignee_id", "assignee_code", "due_at"))
    def assigned(self, d: Any) -> Update:
        return ASSIGNED, (d.assignee_id, d.assignee_code, d.due_at)

    @on(Issue.Returned, fields=("reason",))
    def returned(self, d: Any) -> Update:
        return RETURNED, (d.reason,)

    @on(Issue.Accepted, fields=())
    def accepted(self, _: Any) -> Update:
        return ACCEPTED, ()

    @on(Issue.Extended, fields=("due_at", "reason"))
    def extended(self, d: Any) -> Update:
        return EXTENDED, (d.due_at, d.reason)

    @on(Issue.ProgressNoted, fields=("note",))
    def progress(self, d: Any) -> Update:
        return PROGRESS, (d.note,)

    @on(Issue.Escalated, fields=("to_id", "to_code", "level", "respond_by"))
    def escalated(self, d: Any) -> Update:
        return ESCALATED, (d.level, d.to_id, d.to_code, d.respond_by)

    @on(Issue.EscalationAnswered, fields=("responder_code",))
    def answered(self, d: Any) -> Update:
        return ANSWERED, (d.responder_code,)

    @on(Issue.Resolved, fields=("result",))
    def resolved(self, d: Any) -> Update:
        return RESOLVED, (d.result,)

    @on(Issue.Evaluated, fields=("satisfaction", "resolved", "comment"))
    def evaluated(self, d: Any) -> Update:
        return EVALUATED, (d.satisfaction, d.resolved, d.comment)

    @on(Issue.Closed, fields=("override_reason",))
    def closed(self, d: Any) -> Update:
        return CLOSED, (d.override_reason,)

    @on(Issue.Reopened, fields=("due_at", "reason"))
    def reopened(self, d: Any) -> Update:
        return REOPENED, (d.due_at, d.reason)

    @on(Issue.Overdue, fields=("due_at",))
    def overdue(self, d: Any) -> Update:
        return OVERDUE, (d.due_at,)

    @on(Issue.EscalationOverdue, fields=())
    def escalation_overdue(self, _: Any) -> Update:
        return ESCALATION_OVERDUE, ()

    async def apply(self, conn: asyncpg.Connection, events: Sequence[StoredEvent]) -> None:
        """The batch in a few statements, with the effect of applying its events one by one.

        Creations go first, in one INSERT: an issue's IssueReported precedes all its other
        events, and rows of different issues do not interact. The updates go in rounds,
        the k-th round holding every issue's k-th update of the batch, one pipelined
        ``executemany`` per statement and round: each row still sees its events in order.
        """
        subs = self.subscriptions
        reported: list[tuple[Any, ...]] = []
        # round -> statement -> parameters, in order of first appearance
        rounds: list[dict[str, list[tuple[Any, ...]]]] = []
        seen: dict[tuple[UUID, UUID], int] = {}
        updated: list[StoredEvent] = []
        for e in events:
            sub = subs.get(e.type)
            if sub is None:
                raise UnknownEvent(f"issues cannot apply {e.type}")
            data = sub.decode(e.data)
            if sub.event is Issue.Reported:
                reported.append(sub.handler(self, e, data))
                continue
            sql, extra = sub.handler(self, data)
            key = (e.root_id, e.stream_id)
            k = seen.get(key, 0)
            seen[key] = k + 1
            if k == len(rounds):
                rounds.append({})
            rounds[k].setdefault(sql, []).append(
                (e.root_id, e.stream_id, e.version, e.occurred_at, *extra)
            )
            updated.append(e)
        if reported:
            await conn.execute(
                INSERT_ISSUES, *(list(column) for column in zip(*reported, strict=True))
            )
        for by_statement in rounds:
            for sql, rows in by_statement.items():
                await conn.executemany(sql, rows)
        # An update of an issue the table does not hold changed nothing: it must stop the
        # projection (never skip), whatever the version guards did.
        await ISSUES.require(conn, updated)
