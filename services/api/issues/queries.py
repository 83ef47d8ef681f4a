"""The issue reads: their SQL, a row as an ``IssueView``, and the list's filters."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

from domain.issue import STATUSES
from infra.database import Scope
from projections.issues import ESCALATION_OVERDUE_SQL, OVERDUE_SQL
from services.api.code_filters import subtree_path, visible_node
from services.api.issues.schemas import (
    AssigneeView,
    EscalationView,
    EvaluationView,
    IssueCounts,
    IssueView,
)
from services.api.queries import Where
from services.problems import FieldError, ProblemError

PROJECTIONS = ("issues",)

#: every read's select; ``$1`` is the read time (``Where(now)``), which ``overdue`` needs.
SELECT_ISSUES = f"""
SELECT i.*, coalesce(n.code, i.node_code) AS current_node_code,
       coalesce(a.code, i.assignee_code) AS current_assignee_code,
       coalesce(t.code, i.escalation_to_code) AS current_to_code,
       {OVERDUE_SQL.format(now="$1::timestamptz")} AS overdue,
       {ESCALATION_OVERDUE_SQL.format(now="$1::timestamptz")} AS whistle_overdue
FROM rm_issues i
LEFT JOIN nodes n ON n.id = i.node_id
LEFT JOIN nodes a ON a.id = i.assignee_id
LEFT JOIN nodes t ON t.id = i.escalation_to_id
"""

#: the scope check the application repeats on top of row-level security.
IN_SCOPE = "(i.node_id IN (SELECT civic_scope_nodes()) OR i.id IN (SELECT civic_party_streams()))"

READ_ISSUE = f"{SELECT_ISSUES} WHERE i.root_id = $2 AND i.id = $3 AND {IN_SCOPE}"

#: a unit (or whistled level) outside the subtree may filter a list when an issue the caller
#: sees names it; any other code answers as an unknown one (services/api/code_filters.py).
_NAMED_BY = {
    column: f"SELECT EXISTS (SELECT 1 FROM rm_issues i WHERE i.root_id = civic_scope_root()"
    f" AND i.{column} = $1 AND {IN_SCOPE})"
    for column in ("assignee_id", "escalation_to_id")
}


#: the list's order, newest first (its cursor is ``(reported_at, id)``).
NEWEST_FIRST = "i.reported_at DESC, i.id DESC"


def issue_view(r: asyncpg.Record) -> IssueView:
    escalation = None
    if r["escalation_level"] is not None:
        escalation = EscalationView(
            level=r["escalation_level"],
            to=r["current_to_code"],
            escalated_at=r["escalated_at"],
            respond_by=r["escalation_respond_by"],
            answered_at=r["escalation_answered_at"],
            responders=list(r["escalation_responders"]),
            overdue=r["whistle_overdue"],
            count=r["escalation_count"],
        )
    evaluation = None
    if r["evaluation_satisfaction"] is not None:
        evaluation = EvaluationView(
            satisfaction=r["evaluation_satisfaction"],
            resolved=r["evaluation_resolved"],
            comment=r["evaluation_comment"],
            evaluated_at=r["evaluated_at"],
        )
    assignee = None
    if r["assignee_id"] is not None:
        assignee = AssigneeView(id=r["assignee_id"], code=r["current_assignee_code"])
    return IssueView(
        id=r["id"],
        node_code=r["current_node_code"],
        title=r["title"],
        description=r["description"],
        category=r["category"],
        source=r["source"],
        external_id=r["external_id"],
        survey_id=r["survey_id"],
        status=r["status"],
        overdue=r["overdue"],
        due_at=r["due_at"],
        requested_due_at=r["requested_due_at"],
        overdue_recorded_at=r["overdue_recorded_at"],
        reported_at=r["reported_at"],
        assigned_at=r["assigned_at"],
        accepted_at=r["accepted_at"],
        resolved_at=r["resolved_at"],
        closed_at=r["closed_at"],
        closed_on_time=r["closed_on_time"],
        assignee=assignee,
        escalation=escalation,
        evaluation=evaluation,
        result=r["result"],
        last_note=r["last_note"],
        override_reason=r["override_reason"],
        counts=IssueCounts(
            returns=r["return_count"],
            extensions=r["extension_count"],
            progress_notes=r["progress_count"],
            reopens=r["reopen_count"],
            escalations=r["escalation_count"],
        ),
        version=r["version"],
        updated_at=r["updated_at"],
    )


def statuses(raw: str | None) -> list[str] | None:
    """The ``status`` filter: one or more comma-separated statuses (400 for another)."""
    if raw is None:
        return None
    wanted = [s.strip() for s in raw.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in STATUSES]
    if unknown or not wanted:
        raise ProblemError(
            400,
            "Bad Request",
            f"status must be one or more (comma-separated) of {', '.join(STATUSES)}",
            slug="validation",
            errors=[FieldError(field="status", message=f"unknown status {', '.join(unknown)}")],
        )
    return wanted


async def subtree(conn: asyncpg.Connection, scope: Scope, where: Where, node: str | None) -> None:
    """Issues reported in the subtree of ``node`` (default: the caller's scope) — and, for a unit
    principal, those assigned or escalated to it (what row-level security allows, again)."""
    where.add(f"i.root_id = {where.arg(scope.root_id, 'uuid')}")
    where.add(IN_SCOPE)
    if node is None:
        return
    where.recorded_in_subtree("i", await subtree_path(conn, scope, node), parties=scope.is_unit)


async def list_filters(
    conn: asyncpg.Connection,
    scope: Scope,
    now: datetime,
    *,
    node: str | None,
    status: list[str] | None,
    overdue: bool | None,
    assignee: str | None,
    escalated_to: str | None,
    source: str | None,
    category: str | None,
    external_id: str | None,
    after: tuple[datetime, UUID] | None,
) -> Where:
    """The list's WHERE: the subtree, each filter given, and the cursor (newest first)."""
    where = Where(now)
    await subtree(conn, scope, where, node)
    if status is not None:
        where.add(f"i.status = ANY({where.arg(status, 'text[]')})")
    if overdue is not None:
        expr = OVERDUE_SQL.format(now="$1::timestamptz")
        where.add(expr if overdue else f"NOT {expr}")
    for code, column in ((assignee, "assignee_id"), (escalated_to, "escalation_to_id")):
        if code is not None:
            found = await visible_node(
                conn, scope, code, f"node {code}", named_by=_NAMED_BY[column]
            )
            where.equals(f"i.{column}", found.id, "uuid")
    where.equals("i.source", source, "text")
    where.equals("i.category", category, "text")
    where.equals("i.external_id", external_id, "text")
    if after is not None:
        where.before(("i.reported_at", "i.id"), after, ("timestamptz", "uuid"))
    return where
