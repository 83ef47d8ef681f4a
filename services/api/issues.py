"""/v1/issues — work orders (工单): 受理→派单→签收→办理→办结→回访→归档, 退单, 延期, 重办, 吹哨报到;
and /v1/issues:batch, the bulk import for platforms that push work orders (12345 hotline).

Roles and placement: see ``services/commands/issues.py`` and docs/issues.md.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import asyncpg
import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Operation
from litestar.params import FromPath, JSONBody, QueryParameter

from domain.issue import MAX_RESPOND_MINUTES, STATUSES
from infra import directory
from infra.database import Scope
from projections.issues import ESCALATION_OVERDUE_SQL, OVERDUE_SQL
from services.api.code_filters import visible_node
from services.api.deps import (
    POSITION_HEADER,
    Caller,
    Ctx,
    MinPosition,
    command_request,
    read_scope,
    require,
    run_and_respond,
)
from services.api.paging import Cursor, Limit, Page, decode_time_id_cursor, page_of
from services.api.responses import ETAG
from services.commands import issues as cmd
from services.commands.session import CommandRequest, CommandSession, run_command
from services.fields import IssueSource, IssueStatus, NodeCode, Satisfaction, Text, Title
from services.problems import (
    FieldError,
    ProblemError,
    forbidden,
    handle_exception,
    not_caught_up,
    not_found,
)
from services.roles import ASSIGNEES, READERS, WRITERS, Role

PROJECTIONS = ("issues",)
#: who may push work orders in bulk: the dispatching roles and platform integrations.
IMPORTERS = WRITERS | frozenset({Role.INTEGRATOR})
MAX_BATCH_ITEMS = 500
#: a full batch of long Chinese descriptions is a few MB; single requests keep the app limit.
MAX_BATCH_BYTES = 8 * 1024 * 1024
#: batch items run this many at a time (each in its own transaction).
BATCH_CONCURRENCY = 4

ExternalId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=200,
        description="The pushing platform's own work-order number (工单编号), kept for correlation.",
    ),
]
Deadline = Annotated[
    datetime,
    msgspec.Meta(
        description="RFC 3339 with offset, e.g. 2024-05-01T18:00:00+08:00",
        extra_json_schema={"format": "date-time"},
    ),
]
Source = IssueSource

IssueId = FromPath[UUID]


# -- request bodies ------------------------------------------------------------------------------


class IssueCreate(msgspec.Struct, forbid_unknown_fields=True):
    node_code: NodeCode
    title: Title
    category: Title
    source: Source
    due_at: Deadline | None = None
    description: Text | None = None
    external_id: ExternalId | None = None


class IssueAssign(msgspec.Struct, forbid_unknown_fields=True):
    assignee_code: NodeCode
    due_at: Deadline


class IssueReturn(msgspec.Struct, forbid_unknown_fields=True):
    reason: Text


class IssueExtend(msgspec.Struct, forbid_unknown_fields=True):
    due_at: Deadline
    reason: Text


class IssueProgress(msgspec.Struct, forbid_unknown_fields=True):
    note: Text


class IssueEscalate(msgspec.Struct, forbid_unknown_fields=True):
    to_code: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=40,
            description="the street or county node the issue's node lies in",
        ),
    ]
    respond_within_minutes: Annotated[
        int, msgspec.Meta(description=f"1-{MAX_RESPOND_MINUTES}, e.g. 30")
    ]


class IssueAnswer(msgspec.Struct, forbid_unknown_fields=True):
    note: Text


class IssueResolve(msgspec.Struct, forbid_unknown_fields=True):
    result: Text


class IssueEvaluate(msgspec.Struct, forbid_unknown_fields=True):
    satisfaction: Satisfaction
    resolved: bool
    comment: Text | None = None


class IssueClose(msgspec.Struct, forbid_unknown_fields=True):
    override_reason: (
        Annotated[
            str,
            msgspec.Meta(
                min_length=1,
                max_length=2000,
                description="admin only: closes despite a dissatisfied or unresolved callback",
            ),
        ]
        | None
    ) = None


class IssueReopen(msgspec.Struct, forbid_unknown_fields=True):
    reason: Text
    due_at: (
        Annotated[
            datetime,
            msgspec.Meta(description="default: as much time as the latest assignment gave"),
        ]
        | None
    ) = None


class BatchItem(msgspec.Struct, forbid_unknown_fields=True):
    idempotency_key: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=200,
            description="unique per work order: a retried batch re-creates nothing",
        ),
    ]
    node_code: NodeCode
    title: Title
    category: Title
    source: Source
    due_at: Deadline | None = None
    description: Text | None = None
    external_id: ExternalId | None = None


class IssueBatch(msgspec.Struct, forbid_unknown_fields=True):
    items: Annotated[list[BatchItem], msgspec.Meta(min_length=1, max_length=MAX_BATCH_ITEMS)]


class _BatchEnvelope(msgspec.Struct, forbid_unknown_fields=True):
    items: list[msgspec.Raw]


# -- views ---------------------------------------------------------------------------------------


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


# -- command answers, as the OpenAPI document shows them -------------------------------------------

CHANGED = {
    200: ResponseSpec(
        data_container=cmd.IssueChanged,
        description="The issue's id, new stream version, feed position and status "
        "(X-Civic-Position carries the position; Idempotent-Replayed: true on a replay)",
    )
}
CREATED = {201: ResponseSpec(data_container=cmd.IssueChanged, description="Reported")}


# -- reads ---------------------------------------------------------------------------------------

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

STREAM_VISIBLE = "SELECT EXISTS (SELECT 1 FROM events WHERE root_id = $1 AND stream_id = $2)"


def _view(r: asyncpg.Record) -> IssueView:
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


class _Where:
    """WHERE clauses with numbered parameters ($1 is the read time)."""

    def __init__(self, now: datetime) -> None:
        self.clauses: list[str] = []
        self.args: list[Any] = [now]

    def arg(self, value: Any, cast: str) -> str:
        self.args.append(value)
        return f"${len(self.args)}::{cast}"

    def add(self, clause: str) -> None:
        self.clauses.append(clause)

    def sql(self) -> str:
        return " AND ".join(self.clauses) if self.clauses else "true"


def _statuses(raw: str | None) -> list[str] | None:
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


async def _subtree(conn: asyncpg.Connection, scope: Scope, where: _Where, node: str | None) -> None:
    """Issues reported in the subtree of ``node`` (default: the caller's scope) — and, for a unit
    principal, those assigned or escalated to it (what row-level security allows, again)."""
    where.add(f"i.root_id = {where.arg(scope.root_id, 'uuid')}")
    where.add(IN_SCOPE)
    if node is None:
        return
    found = await directory.find_by_code(conn, node)
    if found is None or not scope.contains_path(found.path):
        raise not_found(f"node {node}")
    lo, hi = where.arg(found.path, "text"), where.arg(found.path[:-1] + "0", "text")
    in_subtree = f"SELECT id FROM nodes WHERE path >= {lo} AND path < {hi}"
    clause = f"(i.node_id IN ({in_subtree})"
    if scope.is_unit:
        clause += (
            f" OR i.id IN (SELECT p.stream_id FROM stream_parties p WHERE p.root_id = i.root_id"
            f" AND p.node_id IN ({in_subtree}))"
        )
    where.add(clause + ")")


# -- commands ------------------------------------------------------------------------------------

Handler = Callable[[CommandSession], Awaitable[tuple[int, msgspec.Struct]]]


class IssueController(Controller):
    path = "/v1/issues"
    tags = ["issues"]

    @post(
        "/",
        status_code=201,
        responses=CREATED,
        summary="Report an issue (受理): IssueReported",
        description="Roles: operator or admin whose scope contains node_code. Answers "
        "{id, version, position, status}.",
    )
    async def create(
        self,
        data: JSONBody[IssueCreate],
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
    ) -> Response[bytes]:
        require(principal, WRITERS, "reporting an issue")
        return await run_and_respond(
            request,
            ctx,
            principal,
            lambda s: cmd.report(
                s,
                node_code=data.node_code,
                title=data.title,
                category=data.category,
                source=data.source,
                due_at=data.due_at,
                description=data.description,
                external_id=data.external_id,
            ),
        )

    @post(
        "/{issue_id:uuid}/assign",
        status_code=200,
        responses=CHANGED,
        summary="Assign to a unit (派单): IssueAssigned",
        description="Roles: operator or admin over the issue's node. The unit may lie anywhere in "
        "the root tenant; its principals then see the issue.",
    )
    async def assign(
        self,
        issue_id: IssueId,
        data: JSONBody[IssueAssign],
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
    ) -> Response[bytes]:
        require(principal, WRITERS, "assigning an issue")
        return await run_and_respond(
            request,
            ctx,
            principal,
            lambda s: cmd.assign(
                s, issue_id=issue_id, assignee_code=data.assignee_code, due_at=data.due_at
            ),
        )

    @post(
        "/{issue_id:uuid}/accept",
        status_code=200,
        responses=CHANGED,
        summary="Sign for the issue (签收): IssueAccepted",
        description="Roles: the assigned unit (unit, operator or admin over it) or the "
        "dispatcher. No body.",
    )
    async def accept(
        self, issue_id: IssueId, request: Request[Any, Any, Any], ctx: Ctx, principal: Caller
    ) -> Response[bytes]:
        require(principal, ASSIGNEES, "accepting an issue")
        return await run_and_respond(
            request, ctx, principal, lambda s: cmd.accept(s, issue_id=issue_id)
        )

    @post(
        "/{issue_id:uuid}/return",
        status_code=200,
        responses=CHANGED,
        summary="Hand the issue back (退单): IssueReturned, back to reported",
        description="Roles: the assigned unit or the dispatcher; only before it is accepted.",
    )
    async def return_issue(
        self,
        issue_id: IssueId,
        data: JSONBody[IssueReturn],
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
    ) -> Response[bytes]:
        require(principal, ASSIGNEES, "returning an issue")
        return await run_and_respond(
            request, ctx, principal, lambda s: cmd.return_(s, issue_id=issue_id, reason=data.reason)
        )

    @post(
        "/{issue_id:uuid}/extend",
        status_code=200,
        responses=CHANGED,
        summary="Extend the deadline (延期): IssueExtended",
        description="Roles: the assigned unit or the dispatcher; only before the deadline passes "
        "(409 after), to a later one.",
    )
    async def extend(
        self,
        issue_id: IssueId,
        data: JSONBody[IssueExtend],
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
    ) -> Response[bytes]:
        require(principal, ASSIGNEES, "extending an issue's deadline")
        return await run_and_respond(
            request,
            ctx,
            principal,
            lambda s: cmd.extend(s, issue_id=issue_id, due_at=data.due_at, reason=data.reason),
        )

    @post(
        "/{issue_id:uuid}/progress",
        status_code=200,
        responses=CHANGED,
        summary="Note progress (办理情况): IssueProgressNoted",
        description="Roles: the assigned unit or the dispatcher.",
    )
    async def progress(
        self,
        issue_id: IssueId,
        data: JSONBody[IssueProgress],
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
    ) -> Response[bytes]:
        require(principal, ASSIGNEES, "noting progress")
        return await run_and_respond(
            request,
            ctx,
            principal,
            lambda s: cmd.note_progress(s, issue_id=issue_id, note=data.note),
        )

    @post(
        "/{issue_id:uuid}/escalate",
        status_code=200,
        responses=CHANGED,
        summary="Blow the whistle (吹哨): IssueEscalated",
        description="Roles: operator or admin over the issue's node. to_code is the street or "
        "county the issue's node lies in; it must answer within respond_within_minutes.",
    )
    async def escalate(
        self,
        issue_id: IssueId,
        data: JSONBody[IssueEscalate],
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
    ) -> Response[bytes]:
        require(principal, WRITERS, "blowing the whistle on an issue")
        return await run_and_respond(
            request,
            ctx,
            principal,
            lambda s: cmd.escalate(
                s,
                issue_id=issue_id,
                to_code=data.to_code,
                respond_within_minutes=data.respond_within_minutes,
            ),
        )

    @post(
        "/{issue_id:uuid}/answer",
        status_code=200,
        responses=CHANGED,
        summary="Report in to the whistle (报到): IssueEscalationAnswered",
        description="Roles: unit, operator or admin whose scope contains the whistled street or "
        "county, or the assigned unit. The first answer stops the response clock.",
    )
    async def answer(
        self,
        issue_id: IssueId,
        data: JSONBody[IssueAnswer],
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
    ) -> Response[bytes]:
        require(principal, ASSIGNEES, "answering a whistle")
        return await run_and_respond(
            request,
            ctx,
            principal,
            lambda s: cmd.answer_escalation(s, issue_id=issue_id, note=data.note),
        )

    @post(
        "/{issue_id:uuid}/resolve",
        status_code=200,
        responses=CHANGED,
        summary="Report it handled (办结): IssueResolved",
        description="Roles: the assigned unit or the dispatcher; only once accepted.",
    )
    async def resolve(
        self,
        issue_id: IssueId,
        data: JSONBody[IssueResolve],
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
    ) -> Response[bytes]:
        require(principal, ASSIGNEES, "resolving an issue")
        return await run_and_respond(
            request, ctx, principal, lambda s: cmd.resolve(s, issue_id=issue_id, result=data.result)
        )

    @post(
        "/{issue_id:uuid}/evaluate",
        status_code=200,
        responses=CHANGED,
        summary="Record the resident callback (回访): IssueEvaluated",
        description="Roles: operator or admin over the issue's node; once per resolution.",
    )
    async def evaluate(
        self,
        issue_id: IssueId,
        data: JSONBody[IssueEvaluate],
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
    ) -> Response[bytes]:
        require(principal, WRITERS, "recording the callback")
        return await run_and_respond(
            request,
            ctx,
            principal,
            lambda s: cmd.evaluate(
                s,
                issue_id=issue_id,
                satisfaction=data.satisfaction,
                resolved=data.resolved,
                comment=data.comment,
            ),
        )

    @post(
        "/{issue_id:uuid}/close",
        status_code=200,
        responses=CHANGED,
        summary="Close the issue (归档/销号): IssueClosed",
        description="Roles: operator or admin over the issue's node. Hotline and resident issues "
        "need the callback first; after a dissatisfied or unresolved callback only an admin "
        "closes, with override_reason (403 for anyone else who sends one).",
    )
    async def close(
        self,
        issue_id: IssueId,
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
        data: JSONBody[IssueClose | None] = None,
    ) -> Response[bytes]:
        require(principal, WRITERS, "closing an issue")
        override = data.override_reason if data is not None else None
        if override is not None and not principal.is_admin:
            raise forbidden("closing with an override_reason needs the role admin")
        return await run_and_respond(
            request,
            ctx,
            principal,
            lambda s: cmd.close(s, issue_id=issue_id, override_reason=override),
        )

    @post(
        "/{issue_id:uuid}/reopen",
        status_code=200,
        responses=CHANGED,
        summary="Send it back for rework (重办): IssueReopened, back to assigned",
        description="Roles: operator or admin over the issue's node; from resolved.",
    )
    async def reopen(
        self,
        issue_id: IssueId,
        data: JSONBody[IssueReopen],
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
    ) -> Response[bytes]:
        require(principal, WRITERS, "reopening an issue")
        return await run_and_respond(
            request,
            ctx,
            principal,
            lambda s: cmd.reopen(s, issue_id=issue_id, reason=data.reason, due_at=data.due_at),
        )

    # -- reads ---------------------------------------------------------------------------------

    @get(
        "/{issue_id:uuid}",
        summary="Read an issue (status, overdue, deadlines, assignee, whistle, callback)",
        description="ETag: the issue's version (send it as If-Match to commands). `overdue` is "
        "computed at read time.",
        response_headers=ETAG,
    )
    async def read(
        self, issue_id: IssueId, ctx: Ctx, principal: Caller, min_position: MinPosition = None
    ) -> Response[IssueView]:
        require(principal, READERS, "reading issues")
        now = ctx.clock()
        async with read_scope(
            ctx, principal, min_position=min_position, projections=PROJECTIONS
        ) as (conn, scope):
            row = await conn.fetchrow(READ_ISSUE, now, scope.root_id, issue_id)
            recorded = row is None and await conn.fetchval(STREAM_VISIBLE, scope.root_id, issue_id)
        if row is None:
            if recorded:
                raise not_caught_up("issue")
            raise not_found(f"issue {issue_id}")
        return Response(content=_view(row), headers={"ETag": f'"{row["version"]}"'})

    @get(
        "/",
        summary="List issues of a subtree (filters: status, overdue, assignee, source...)",
        description="Newest first. A unit principal sees the issues assigned or escalated to "
        "its unit.",
    )
    async def list_issues(
        self,
        ctx: Ctx,
        principal: Caller,
        node: Annotated[
            str | None,
            QueryParameter(
                required=False, max_length=40, description="a subtree (default: your scope)"
            ),
        ] = None,
        status: Annotated[
            str | None,
            QueryParameter(
                required=False,
                max_length=100,
                description=f"one or more, comma-separated: {', '.join(STATUSES)}",
            ),
        ] = None,
        overdue: Annotated[
            bool | None,
            QueryParameter(required=False, description="missed its deadline (at read time)"),
        ] = None,
        assignee: Annotated[
            str | None,
            QueryParameter(required=False, max_length=40, description="the assigned unit's code"),
        ] = None,
        source: Annotated[
            str | None, QueryParameter(required=False, max_length=40, description="e.g. hotline")
        ] = None,
        category: Annotated[str | None, QueryParameter(required=False, max_length=200)] = None,
        external_id: Annotated[
            str | None,
            QueryParameter(required=False, max_length=200, description="the platform's number"),
        ] = None,
        escalated_to: Annotated[
            str | None,
            QueryParameter(
                required=False, max_length=40, description="the whistled street or county"
            ),
        ] = None,
        limit: Limit = 100,
        cursor: Cursor = None,
        min_position: MinPosition = None,
    ) -> Page[IssueView]:
        require(principal, READERS, "listing issues")
        wanted = _statuses(status)
        after = decode_time_id_cursor(cursor)
        where = _Where(ctx.clock())
        async with read_scope(
            ctx, principal, min_position=min_position, projections=PROJECTIONS
        ) as (conn, scope):
            await _subtree(conn, scope, where, node)
            if wanted is not None:
                where.add(f"i.status = ANY({where.arg(wanted, 'text[]')})")
            if overdue is not None:
                expr = OVERDUE_SQL.format(now="$1::timestamptz")
                where.add(expr if overdue else f"NOT {expr}")
            for code, column in ((assignee, "assignee_id"), (escalated_to, "escalation_to_id")):
                if code is not None:
                    found = await visible_node(
                        conn, scope, code, f"node {code}", named_by=_NAMED_BY[column]
                    )
                    where.add(f"i.{column} = {where.arg(found.id, 'uuid')}")
            for value, column in ((source, "source"), (category, "category")):
                if value is not None:
                    where.add(f"i.{column} = {where.arg(value, 'text')}")
            if external_id is not None:
                where.add(f"i.external_id = {where.arg(external_id, 'text')}")
            if after is not None:
                at, last = where.arg(after[0], "timestamptz"), where.arg(after[1], "uuid")
                where.add(f"(i.reported_at, i.id) < ({at}, {last})")
            lim = where.arg(limit + 1, "int")
            rows = await conn.fetch(
                f"{SELECT_ISSUES} WHERE {where.sql()} "
                f"ORDER BY i.reported_at DESC, i.id DESC LIMIT {lim}",
                *where.args,
            )
        return page_of(
            [_view(r) for r in rows], limit, lambda v: [v.reported_at.isoformat(), str(v.id)]
        )


# -- bulk import ---------------------------------------------------------------------------------


def _batch_request_body() -> dict[str, Any]:
    """The batch's request schema, inlined (the handler decodes items one by one itself)."""
    (schema,), components = msgspec.json.schema_components([IssueBatch], ref_template="{name}")

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"$ref"}:
                return inline(components[node["$ref"]])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return {"required": True, "content": {"application/json": {"schema": inline(schema)}}}


@dataclass
class _BatchOperation(Operation):
    """Describes the request body the handler reads itself (so one bad item fails alone)."""

    def to_schema(self) -> dict[str, Any]:
        schema = super().to_schema()
        schema["requestBody"] = _batch_request_body()
        return schema


_FIELD = re.compile(r"at `\$\.([A-Za-z_]+)")


def _bad_body(detail: str, field: str = "body") -> ProblemError:
    return ProblemError(
        400,
        "Bad Request",
        detail,
        slug="validation",
        errors=[FieldError(field=field, message=detail)],
    )


def _decode_items(body: bytes) -> list[msgspec.Raw]:
    try:
        envelope = msgspec.json.decode(body, type=_BatchEnvelope)
    except msgspec.ValidationError as exc:
        match = _FIELD.search(str(exc))
        raise _bad_body(str(exc), match[1] if match else "body") from None
    except msgspec.DecodeError as exc:
        raise _bad_body(f"the body is not valid JSON: {exc}") from None
    count = len(envelope.items)
    if count > MAX_BATCH_ITEMS:
        raise ProblemError(
            413,
            "Content Too Large",
            f"a batch holds at most {MAX_BATCH_ITEMS} items (got {count}); split it",
            slug="batch-too-large",
            errors=[FieldError(field="items", message=f"at most {MAX_BATCH_ITEMS} items")],
        )
    if count == 0:
        raise _bad_body("items must hold at least one work order", "items")
    return envelope.items


class IssueBatchController(Controller):
    path = "/v1/issues:batch"
    tags = ["issues"]

    @post(
        "/",
        status_code=200,
        summary="Import work orders in bulk (12345 hotline, 一网统管): IssueReported per item",
        description=(
            f"Up to {MAX_BATCH_ITEMS} items (more: 413). Each item has its own idempotency_key "
            "and runs in its own transaction: a retried batch re-creates nothing (the item "
            "answers 200 instead of 201), the same key with a different item answers 422, and "
            "one bad item (400 malformed, 404 node outside your scope, 409, 422) fails alone. "
            "The answer is 200 with one result per item, in order: {index, status, id, version, "
            "position} or {index, status, error: problem}. Roles: operator, admin or integrator; "
            "every item's node must lie in the caller's scope."
        ),
        operation_class=_BatchOperation,
        request_max_body_size=MAX_BATCH_BYTES,
        operation_id="importIssues",
    )
    async def import_batch(
        self, request: Request[Any, Any, Any], ctx: Ctx, principal: Caller
    ) -> Response[BatchResult]:
        require(principal, IMPORTERS, "importing work orders")
        batch_request = await command_request(request)
        replay = await cmd.batch_replay(ctx, principal, batch_request)
        if replay is not None:
            status, body = replay
            return Response(
                content=msgspec.json.decode(body, type=BatchResult),
                status_code=status,
                headers={"Idempotent-Replayed": "true"},
            )
        raws = _decode_items(batch_request.body)
        results: list[BatchItemResult | None] = [None] * len(raws)
        # Items sharing a key run in order (the first creates, the next replays); other keys
        # run side by side, a few at a time.
        groups: dict[str, list[int]] = {}
        items: dict[int, BatchItem] = {}
        for index, raw in enumerate(raws):
            try:
                item = msgspec.json.decode(raw, type=BatchItem)
            except msgspec.ValidationError as exc:
                match = _FIELD.search(str(exc))
                results[index] = self._failed(
                    request, index, _bad_body(str(exc), match[1] if match else "body"), None
                )
                continue
            items[index] = item
            groups.setdefault(item.idempotency_key, []).append(index)
        gate = asyncio.Semaphore(BATCH_CONCURRENCY)

        async def run_group(indexes: list[int]) -> None:
            async with gate:
                for index in indexes:
                    results[index] = await self._one(request, ctx, principal, index, items[index])

        await asyncio.gather(*(run_group(g) for g in groups.values()))
        done = [r for r in results if r is not None]
        positions = [r.position for r in done if r.status == 201 and r.position is not None]
        answer = BatchResult(
            items=done,
            summary=BatchSummary(
                created=sum(1 for r in done if r.status == 201),
                replayed=sum(1 for r in done if r.status == 200),
                failed=sum(1 for r in done if r.status >= 400),
            ),
            position=max(positions) if positions else None,
        )
        await cmd.batch_remember(ctx, principal, batch_request, 200, msgspec.json.encode(answer))
        headers = {POSITION_HEADER: str(answer.position)} if answer.position is not None else {}
        return Response(content=answer, status_code=200, headers=headers)

    @staticmethod
    async def _one(
        request: Request[Any, Any, Any], ctx: Ctx, principal: Caller, index: int, item: BatchItem
    ) -> BatchItemResult:
        item_request = CommandRequest(
            method="POST",
            path="/v1/issues:batch#item",
            body=msgspec.json.encode(item),
            # A namespace of its own: an item key never collides with a request's key.
            idempotency_key=f"issues:batch:{item.idempotency_key}",
            correlation_id=_request_correlation(request),
        )
        try:
            outcome = await run_command(
                ctx,
                principal,
                item_request,
                lambda s: cmd.report(
                    s,
                    node_code=item.node_code,
                    title=item.title,
                    category=item.category,
                    source=item.source,
                    due_at=item.due_at,
                    description=item.description,
                    external_id=item.external_id,
                ),
            )
        except Exception as exc:
            return IssueBatchController._failed(request, index, exc, item)
        changed = msgspec.json.decode(outcome.body, type=cmd.IssueChanged)
        return BatchItemResult(
            index=index,
            status=200 if outcome.replayed else outcome.status,
            idempotency_key=item.idempotency_key,
            external_id=item.external_id,
            id=changed.id,
            version=changed.version,
            position=changed.position,
        )

    @staticmethod
    def _failed(
        request: Request[Any, Any, Any], index: int, exc: Exception, item: BatchItem | None
    ) -> BatchItemResult:
        problem_response = handle_exception(request, exc)
        problem = msgspec.json.decode(problem_response.content)
        problem["instance"] = f"{request.url.path}#/items/{index}"
        return BatchItemResult(
            index=index,
            status=problem_response.status_code or 500,
            idempotency_key=item.idempotency_key if item else None,
            external_id=item.external_id if item else None,
            error=problem,
        )


def _request_correlation(request: Request[Any, Any, Any]) -> UUID | None:
    raw = request.headers.get("x-correlation-id") or request.scope.get("state", {}).get(
        "request_id"
    )
    try:
        return UUID(raw) if raw else None
    except ValueError:
        return None
