"""/v1/issues — work orders (工单): 受理→派单→签收→办理→办结→回访→归档, 退单, 延期, 重办, 吹哨报到.

Roles (the routes' guards) and placement (the command handlers): see
``services/commands/issues.py`` and docs/issues.md.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, Response, get, post
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter

from domain.issue import STATUSES, Issue
from services.api.code_filters import SubtreeCode
from services.api.deps import Caller, Command, Ctx, MinPosition, read_scope
from services.api.guards import needs
from services.api.issues.queries import (
    NEWEST_FIRST,
    PROJECTIONS,
    READ_ISSUE,
    SELECT_ISSUES,
    issue_view,
    list_filters,
    statuses,
)
from services.api.issues.schemas import IssueView
from services.api.missing import missing
from services.api.paging import Cursor, Limit, Page, decode_time_id_cursor, page_of
from services.api.responses import ETAG
from services.commands import issues as cmd
from services.commands.issues import (
    IssueAnswer,
    IssueAssign,
    IssueClose,
    IssueCreate,
    IssueEscalate,
    IssueEvaluate,
    IssueExtend,
    IssueProgress,
    IssueReopen,
    IssueResolve,
    IssueReturn,
)
from services.problems import forbidden
from services.roles import ASSIGNEES, READERS, WRITERS

IssueId = FromPath[UUID]

# -- command answers, as the OpenAPI document shows them -------------------------------------------

CHANGED = {
    200: ResponseSpec(
        data_container=cmd.IssueChanged,
        description="The issue's id, new stream version, feed position and status "
        "(X-Civic-Position carries the position; Idempotent-Replayed: true on a replay)",
    )
}
CREATED = {201: ResponseSpec(data_container=cmd.IssueChanged, description="Reported")}


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
        guards=[needs(WRITERS, "reporting an issue")],
    )
    async def create(self, data: JSONBody[IssueCreate], command: Command) -> Response[bytes]:
        return await command.run(cmd.report, data)

    @post(
        "/{issue_id:uuid}/assign",
        status_code=200,
        responses=CHANGED,
        summary="Assign to a unit (派单): IssueAssigned",
        description="Roles: operator or admin over the issue's node. The unit may lie anywhere in "
        "the root tenant; its principals then see the issue.",
        guards=[needs(WRITERS, "assigning an issue")],
    )
    async def assign(
        self, issue_id: IssueId, data: JSONBody[IssueAssign], command: Command
    ) -> Response[bytes]:
        return await command.run(cmd.assign, issue_id, data)

    @post(
        "/{issue_id:uuid}/accept",
        status_code=200,
        responses=CHANGED,
        summary="Sign for the issue (签收): IssueAccepted",
        description="Roles: the assigned unit (unit, operator or admin over it) or the "
        "dispatcher. No body.",
        guards=[needs(ASSIGNEES, "accepting an issue")],
    )
    async def accept(self, issue_id: IssueId, command: Command) -> Response[bytes]:
        return await command.run(cmd.accept, issue_id)

    @post(
        "/{issue_id:uuid}/return",
        status_code=200,
        responses=CHANGED,
        summary="Hand the issue back (退单): IssueReturned, back to reported",
        description="Roles: the assigned unit or the dispatcher; only before it is accepted.",
        guards=[needs(ASSIGNEES, "returning an issue")],
    )
    async def return_issue(
        self, issue_id: IssueId, data: JSONBody[IssueReturn], command: Command
    ) -> Response[bytes]:
        return await command.run(cmd.return_, issue_id, data)

    @post(
        "/{issue_id:uuid}/extend",
        status_code=200,
        responses=CHANGED,
        summary="Extend the deadline (延期): IssueExtended",
        description="Roles: the assigned unit or the dispatcher; only before the deadline passes "
        "(409 after), to a later one.",
        guards=[needs(ASSIGNEES, "extending an issue's deadline")],
    )
    async def extend(
        self, issue_id: IssueId, data: JSONBody[IssueExtend], command: Command
    ) -> Response[bytes]:
        return await command.run(cmd.extend, issue_id, data)

    @post(
        "/{issue_id:uuid}/progress",
        status_code=200,
        responses=CHANGED,
        summary="Note progress (办理情况): IssueProgressNoted",
        description="Roles: the assigned unit or the dispatcher.",
        guards=[needs(ASSIGNEES, "noting progress")],
    )
    async def progress(
        self, issue_id: IssueId, data: JSONBody[IssueProgress], command: Command
    ) -> Response[bytes]:
        return await command.run(cmd.note_progress, issue_id, data)

    @post(
        "/{issue_id:uuid}/escalate",
        status_code=200,
        responses=CHANGED,
        summary="Blow the whistle (吹哨): IssueEscalated",
        description="Roles: operator or admin over the issue's node. to_code is the street or "
        "county the issue's node lies in; it must answer within respond_within_minutes.",
        guards=[needs(WRITERS, "blowing the whistle on an issue")],
    )
    async def escalate(
        self, issue_id: IssueId, data: JSONBody[IssueEscalate], command: Command
    ) -> Response[bytes]:
        return await command.run(cmd.escalate, issue_id, data)

    @post(
        "/{issue_id:uuid}/answer",
        status_code=200,
        responses=CHANGED,
        summary="Report in to the whistle (报到): IssueEscalationAnswered",
        description="Roles: unit, operator or admin whose scope contains the whistled street or "
        "county, or the assigned unit. The first answer stops the response clock.",
        guards=[needs(ASSIGNEES, "answering a whistle")],
    )
    async def answer(
        self, issue_id: IssueId, data: JSONBody[IssueAnswer], command: Command
    ) -> Response[bytes]:
        return await command.run(cmd.answer_escalation, issue_id, data)

    @post(
        "/{issue_id:uuid}/resolve",
        status_code=200,
        responses=CHANGED,
        summary="Report it handled (办结): IssueResolved",
        description="Roles: the assigned unit or the dispatcher; only once accepted.",
        guards=[needs(ASSIGNEES, "resolving an issue")],
    )
    async def resolve(
        self, issue_id: IssueId, data: JSONBody[IssueResolve], command: Command
    ) -> Response[bytes]:
        return await command.run(cmd.resolve, issue_id, data)

    @post(
        "/{issue_id:uuid}/evaluate",
        status_code=200,
        responses=CHANGED,
        summary="Record the resident callback (回访): IssueEvaluated",
        description="Roles: operator or admin over the issue's node; once per resolution.",
        guards=[needs(WRITERS, "recording the callback")],
    )
    async def evaluate(
        self, issue_id: IssueId, data: JSONBody[IssueEvaluate], command: Command
    ) -> Response[bytes]:
        return await command.run(cmd.evaluate, issue_id, data)

    @post(
        "/{issue_id:uuid}/close",
        status_code=200,
        responses=CHANGED,
        summary="Close the issue (归档/销号): IssueClosed",
        description="Roles: operator or admin over the issue's node. Hotline and resident issues "
        "need the callback first; after a dissatisfied or unresolved callback only an admin "
        "closes, with override_reason (403 for anyone else who sends one).",
        guards=[needs(WRITERS, "closing an issue")],
    )
    async def close(
        self, issue_id: IssueId, command: Command, data: JSONBody[IssueClose | None] = None
    ) -> Response[bytes]:
        close = data if data is not None else IssueClose()
        if close.override_reason is not None and not command.principal.is_admin:
            raise forbidden("closing with an override_reason needs the role admin")
        return await command.run(cmd.close, issue_id, close)

    @post(
        "/{issue_id:uuid}/reopen",
        status_code=200,
        responses=CHANGED,
        summary="Send it back for rework (重办): IssueReopened, back to assigned",
        description="Roles: operator or admin over the issue's node; from resolved.",
        guards=[needs(WRITERS, "reopening an issue")],
    )
    async def reopen(
        self, issue_id: IssueId, data: JSONBody[IssueReopen], command: Command
    ) -> Response[bytes]:
        return await command.run(cmd.reopen, issue_id, data)

    # -- reads ---------------------------------------------------------------------------------

    @get(
        "/{issue_id:uuid}",
        summary="Read an issue (status, overdue, deadlines, assignee, whistle, callback)",
        description="ETag: the issue's version (send it as If-Match to commands). `overdue` is "
        "computed at read time.",
        response_headers=ETAG,
        guards=[needs(READERS, "reading issues")],
    )
    async def read(
        self, issue_id: IssueId, ctx: Ctx, principal: Caller, min_position: MinPosition = None
    ) -> Response[IssueView]:
        now = ctx.clock()
        async with read_scope(
            ctx, principal, min_position=min_position, projections=PROJECTIONS
        ) as (conn, scope):
            row = await conn.fetchrow(READ_ISSUE, now, scope.root_id, issue_id)
            if row is None:
                raise await missing(conn, scope.root_id, issue_id, Issue)
        return Response(content=issue_view(row), headers={"ETag": f'"{row["version"]}"'})

    @get(
        "/",
        summary="List issues of a subtree (filters: status, overdue, assignee, source...)",
        description="Newest first. A unit principal sees the issues assigned or escalated to "
        "its unit.",
        guards=[needs(READERS, "listing issues")],
    )
    async def list_issues(
        self,
        ctx: Ctx,
        principal: Caller,
        node: SubtreeCode = None,
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
        wanted = statuses(status)
        after = decode_time_id_cursor(cursor)
        now = ctx.clock()
        async with read_scope(
            ctx, principal, min_position=min_position, projections=PROJECTIONS
        ) as (conn, scope):
            where = await list_filters(
                conn,
                scope,
                now,
                node=node,
                status=wanted,
                overdue=overdue,
                assignee=assignee,
                escalated_to=escalated_to,
                source=source,
                category=category,
                external_id=external_id,
                after=after,
            )
            rows = await conn.fetch(where.page(SELECT_ISSUES, NEWEST_FIRST, limit), *where.args)
        return page_of(
            [issue_view(r) for r in rows], limit, lambda v: [v.reported_at.isoformat(), str(v.id)]
        )
