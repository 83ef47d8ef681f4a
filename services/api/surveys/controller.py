"""The routes of household surveys: record a visit, erase its note, read, list, coverage."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.params import Body, FromPath, JSONBody, QueryParameter

from domain.refs import business_date
from domain.survey import Survey
from infra.paths import subtree_bounds
from projections.surveys import COVERAGE
from services.api.code_filters import NodeFilter, subtree_path
from services.api.deps import Caller, Command, Ctx, MinPosition, read_scope
from services.api.guards import needs
from services.api.missing import missing
from services.api.paging import Cursor, Limit, Page, decode_time_id_cursor, page_of
from services.api.periods import FromDay, ToDay, day_range
from services.api.responses import ETAG, documented
from services.api.surveys import queries
from services.api.surveys.schemas import Coverage, SurveyView
from services.commands import surveys as commands
from services.commands.surveys import Flag, SurveyCreate, SurveyErase
from services.personal_data_view import Reveal, record_reveals
from services.roles import ADMINS, READERS, WRITERS

PROJECTIONS = ("surveys",)
#: the default coverage period: the 90 days up to today (a quarter's round of 扫楼)
COVERAGE_DAYS = 90
MAX_COVERAGE_DAYS = 3660


class SurveyController(Controller):
    path = "/v1/surveys"
    tags = ["surveys"]

    @post(
        "/",
        status_code=201,
        responses=documented(201, commands.SurveyChanged, "Recorded"),
        summary="Record a household visit (扫楼): HouseholdVisited (+ IssueReported)",
        description="With raise_issue and at least one flag, an IssueReported (source survey, "
        "carrying survey_id) is appended in the same transaction; the answer carries issue_id. "
        "Roles: operator or admin whose scope contains the community or grid.",
        guards=[needs(WRITERS, "recording a household visit")],
    )
    async def create(self, data: JSONBody[SurveyCreate], command: Command) -> Response[bytes]:
        return await command.run(commands.visit, data)

    @post(
        "/{survey_id:uuid}/erase",
        status_code=200,
        responses=documented(200, commands.SurveyChanged, "Erased"),
        summary="Erase a visit's note (SurveyNoteErased; crypto-shredding)",
        description="Role: admin. The body is optional. Afterwards the note reads [erased].",
        guards=[needs(ADMINS, "erasing a survey's note")],
    )
    async def erase(
        self,
        survey_id: FromPath[UUID],
        command: Command,
        data: Annotated[SurveyErase | None, Body()] = None,
    ) -> Response[bytes]:
        return await command.run(commands.erase_note, survey_id, data)

    @get(
        "/coverage",
        summary="Survey coverage per grid of a subtree (households visited in a period)",
        description=f"One item per grid of the subtree (visited or not) and per community with "
        f"visits recorded at the community itself. Period: from..to (China dates, default "
        f"the {COVERAGE_DAYS} days up to today).",
        guards=[needs(READERS, "reading survey coverage")],
    )
    async def coverage(
        self,
        ctx: Ctx,
        principal: Caller,
        node: NodeFilter = None,
        from_: FromDay = None,
        to: ToDay = None,
        min_position: MinPosition = None,
    ) -> Coverage:
        first, last = day_range(
            from_,
            to,
            today=business_date(ctx.clock()),
            default_days=COVERAGE_DAYS,
            max_days=MAX_COVERAGE_DAYS,
        )
        async with read_scope(
            ctx, principal, min_position=min_position, projections=PROJECTIONS
        ) as (conn, scope):
            path = await subtree_path(conn, scope, node)
            rows = await conn.fetch(COVERAGE, scope.root_id, *subtree_bounds(path), first, last)
        return Coverage(
            code=node or scope.code,
            from_=first.isoformat(),
            to=last.isoformat(),
            items=[queries.coverage_item(r) for r in rows],
        )

    @get(
        "/{survey_id:uuid}",
        summary="Read a household visit (ETag: its version)",
        response_headers=ETAG,
        guards=[needs(READERS, "reading surveys")],
    )
    async def read(
        self,
        survey_id: FromPath[UUID],
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
        min_position: MinPosition = None,
    ) -> Response[SurveyView]:
        async with read_scope(
            ctx, principal, min_position=min_position, projections=PROJECTIONS
        ) as (conn, scope):
            row = await conn.fetchrow(queries.READ, scope.root_id, survey_id)
            if row is None:
                raise await missing(conn, scope.root_id, survey_id, Survey)
        reveals: list[Reveal] = []
        view = queries.survey_view(row, principal, ctx, scope, reveals)
        await record_reveals(
            ctx, principal, reveals, endpoint="GET /v1/surveys/{id}", request=request
        )
        return Response(content=view, headers={"ETag": f'"{view.version}"'})

    @get(
        "/",
        summary="List household visits of a subtree (newest first; filter by flag)",
        guards=[needs(READERS, "listing surveys")],
    )
    async def list_surveys(
        self,
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
        node: NodeFilter = None,
        flag: Annotated[Flag | None, QueryParameter(required=False)] = None,
        limit: Limit = 100,
        cursor: Cursor = None,
        min_position: MinPosition = None,
    ) -> Page[SurveyView]:
        after = decode_time_id_cursor(cursor)
        async with read_scope(
            ctx, principal, min_position=min_position, projections=PROJECTIONS
        ) as (conn, scope):
            path = await subtree_path(conn, scope, node)
            sql, args = queries.list_surveys(scope, path, flag, after, limit)
            rows = await conn.fetch(sql, *args)
        reveals: list[Reveal] = []
        # the extra row only says "there is more": not shown, so not recorded as revealed
        items = [queries.survey_view(r, principal, ctx, scope, reveals) for r in rows[:limit]]
        items += [queries.survey_view(r, principal, ctx, scope, []) for r in rows[limit:]]
        await record_reveals(ctx, principal, reveals, endpoint="GET /v1/surveys", request=request)
        return page_of(items, limit, lambda v: [v.visited_at.isoformat(), str(v.id)])
