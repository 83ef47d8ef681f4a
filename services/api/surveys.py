"""/v1/surveys — household surveys (扫楼 / 入户走访).

Recording: operator or admin whose scope contains the community or grid. Reads: every role
of the subtree; the note is masked (``[masked]``) unless the caller is an admin, whose
clear-text reads are recorded in ``pii_reveals`` like members' (docs/privacy.md). Erasing a
note (admin) deletes the survey's data key.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

import asyncpg
import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.openapi import ResponseSpec
from litestar.params import Body, FromPath, JSONBody, QueryParameter

from domain.refs import business_date
from domain.survey import FLAGS, MAX_RESIDENTS
from infra.database import Scope
from projections.surveys import COVERAGE
from services.api.deps import (
    Caller,
    Ctx,
    MinPosition,
    read_scope,
    require,
    run_and_respond,
)
from services.api.paging import Cursor, Limit, Page, decode_time_id_cursor, page_of
from services.api.service_orders import NodeFilter, subtree_range
from services.auth import Principal
from services.commands import surveys as cmd
from services.context import AppContext
from services.fields import NodeCode, Text, Title
from services.personal_data_view import Reveal, may_reveal, note_view, record_reveals
from services.problems import FieldError, ProblemError, not_caught_up, not_found
from services.roles import READERS, WRITERS, Role

PROJECTIONS = ("surveys",)
Flag = Literal["group_rental", "safety_hazard", "needs_help", "vacant", "other"]
#: the default coverage period: the 90 days up to today (a quarter's round of 扫楼)
COVERAGE_DAYS = 90
MAX_COVERAGE_DAYS = 3660


class SurveyCreate(msgspec.Struct, forbid_unknown_fields=True):
    node_code: Annotated[NodeCode, msgspec.Meta(description="a community or one of its grids")]
    building: Annotated[Title, msgspec.Meta(description="e.g. 3幢")]
    room: Annotated[Title, msgspec.Meta(description="e.g. 2单元301")]
    visited_on: Annotated[date, msgspec.Meta(description="not in the future (China date)")]
    flags: Annotated[list[Flag], msgspec.Meta(max_length=len(FLAGS))] = msgspec.field(
        default_factory=list
    )
    residents: Annotated[int, msgspec.Meta(ge=0, le=MAX_RESIDENTS)] | None = None
    note: (
        Annotated[Text, msgspec.Meta(description="personal data: sealed, masked for non-admins")]
        | None
    ) = None
    raise_issue: Annotated[
        bool, msgspec.Meta(description="with at least one flag: also report an issue (survey)")
    ] = False


class SurveyErase(msgspec.Struct, forbid_unknown_fields=True):
    reason: Text | None = None


class SurveyView(msgspec.Struct):
    id: UUID
    node_code: str
    building: str
    room: str
    visited_on: date
    residents: int | None
    flags: list[str]
    note: str | None
    #: the note is masked (the caller is not an admin)
    note_masked: bool
    issue_id: UUID | None
    status: str
    visited_at: datetime
    version: int


class CoverageItem(msgspec.Struct):
    code: str
    name: str
    kind: str
    #: distinct households (building + room) visited in the period
    households: int
    visits: int
    flagged: int
    group_rentals: int
    issues_raised: int
    last_visited_on: date | None


class Coverage(msgspec.Struct):
    code: str
    from_: str = msgspec.field(name="from")
    to: str = ""
    items: list[CoverageItem] = msgspec.field(default_factory=list)


CREATED = {201: ResponseSpec(data_container=cmd.SurveyChanged, description="Recorded")}
ERASED = {200: ResponseSpec(data_container=cmd.SurveyChanged, description="Erased")}

SELECT = """
SELECT s.*, coalesce(n.code, s.node_code) AS current_node_code, n.path AS node_path,
       k.key_id, k.wrapped_key
FROM rm_surveys s
LEFT JOIN nodes n ON n.id = s.node_id
LEFT JOIN person_keys k ON k.root_id = s.root_id AND k.member_id = s.id
"""
READ = SELECT + "WHERE s.root_id = $1 AND s.id = $2 AND s.node_id IN (SELECT civic_scope_nodes())"
STREAM_VISIBLE = "SELECT EXISTS (SELECT 1 FROM events WHERE root_id = $1 AND stream_id = $2)"
LIST = (
    SELECT
    + """
WHERE s.root_id = $1 AND s.node_id IN (SELECT civic_scope_nodes())
  AND s.node_id IN (SELECT id FROM nodes WHERE path >= $2 AND path < $3)
  AND ($4::text IS NULL OR $4 = ANY(s.flags))
  AND ($5::timestamptz IS NULL OR (s.visited_at, s.id) < ($5, $6::uuid))
ORDER BY s.visited_at DESC, s.id DESC
LIMIT $7
"""
)


def _view(
    r: asyncpg.Record, principal: Principal, ctx: AppContext, scope: Scope, reveals: list[Reveal]
) -> SurveyView:
    shown = note_view(
        r["note"],
        # an admin whose scope holds the survey's grid or community (never a unit's scope)
        reveal=may_reveal(principal, scope, r["node_path"]),
        settings=ctx.settings,
        root_id=scope.root_id,
        survey_id=r["id"],
        key_id=r["key_id"],
        wrapped_key=r["wrapped_key"],
        erased=r["status"] == "erased",
    )
    if shown.revealed:
        reveals.append(Reveal(member_id=r["id"], node_id=r["node_id"]))
    return SurveyView(
        id=r["id"],
        node_code=r["current_node_code"],
        building=r["building"],
        room=r["room"],
        visited_on=r["visited_on"],
        residents=r["residents"],
        flags=list(r["flags"]),
        note=shown.note,
        note_masked=shown.masked,
        issue_id=r["issue_id"],
        status=r["status"],
        visited_at=r["visited_at"],
        version=r["version"],
    )


def _invalid(field: str, message: str) -> ProblemError:
    return ProblemError(
        422,
        "Unprocessable Content",
        f"{field}: {message}",
        slug="invalid-value",
        errors=[FieldError(field=field, message=message)],
    )


class SurveyController(Controller):
    path = "/v1/surveys"
    tags = ["surveys"]

    @post(
        "/",
        status_code=201,
        responses=CREATED,
        summary="Record a household visit (扫楼): HouseholdVisited (+ IssueReported)",
        description="With raise_issue and at least one flag, an IssueReported (source survey, "
        "carrying survey_id) is appended in the same transaction; the answer carries issue_id. "
        "Roles: operator or admin whose scope contains the community or grid.",
    )
    async def create(
        self,
        data: JSONBody[SurveyCreate],
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
    ) -> Response[bytes]:
        require(principal, WRITERS, "recording a household visit")
        return await run_and_respond(
            request,
            ctx,
            principal,
            lambda s: cmd.visit(
                s,
                node_code=data.node_code,
                building=data.building,
                room=data.room,
                visited_on=data.visited_on,
                residents=data.residents,
                flags=list(data.flags),
                note=data.note,
                raise_issue=data.raise_issue,
            ),
        )

    @post(
        "/{survey_id:uuid}/erase",
        status_code=200,
        responses=ERASED,
        summary="Erase a visit's note (SurveyNoteErased; crypto-shredding)",
        description="Role: admin. The body is optional. Afterwards the note reads [erased].",
    )
    async def erase(
        self,
        survey_id: FromPath[UUID],
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
        data: Annotated[SurveyErase | None, Body()] = None,
    ) -> Response[bytes]:
        require(principal, frozenset({Role.ADMIN}), "erasing a survey's note")
        reason = data.reason if data is not None else None
        return await run_and_respond(
            request,
            ctx,
            principal,
            lambda s: cmd.erase_note(s, survey_id=survey_id, reason=reason),
        )

    @get(
        "/coverage",
        summary="Survey coverage per grid of a subtree (households visited in a period)",
        description=f"One item per grid of the subtree (visited or not) and per community with "
        f"visits recorded at the community itself. Period: from..to (China dates, default "
        f"the {COVERAGE_DAYS} days up to today).",
    )
    async def coverage(
        self,
        ctx: Ctx,
        principal: Caller,
        node: NodeFilter = None,
        from_: Annotated[
            date | None,
            QueryParameter(name="from", required=False, description="First day (YYYY-MM-DD)."),
        ] = None,
        to: Annotated[
            date | None,
            QueryParameter(required=False, description="Last day (YYYY-MM-DD); default today."),
        ] = None,
        min_position: MinPosition = None,
    ) -> Coverage:
        require(principal, READERS, "reading survey coverage")
        last = to or business_date(ctx.clock())
        first = from_ or last - timedelta(days=COVERAGE_DAYS - 1)
        if first > last:
            raise _invalid("from", f"must not be after to ({last.isoformat()})")
        if (last - first).days + 1 > MAX_COVERAGE_DAYS:
            raise _invalid("to", f"a period covers at most {MAX_COVERAGE_DAYS} days")
        async with read_scope(
            ctx, principal, min_position=min_position, projections=PROJECTIONS
        ) as (conn, scope):
            lo, hi = await subtree_range(conn, scope, node)
            code = node or scope.code
            rows = await conn.fetch(COVERAGE, scope.root_id, lo, hi, first, last)
        return Coverage(
            code=code,
            from_=first.isoformat(),
            to=last.isoformat(),
            items=[
                CoverageItem(
                    code=r["code"],
                    name=r["name"],
                    kind=r["kind"],
                    households=r["households"],
                    visits=r["visits"],
                    flagged=r["flagged"],
                    group_rentals=r["group_rentals"],
                    issues_raised=r["issues_raised"],
                    last_visited_on=r["last_visited_on"],
                )
                for r in rows
            ],
        )

    @get("/{survey_id:uuid}", summary="Read a household visit (ETag: its version)")
    async def read(
        self,
        survey_id: FromPath[UUID],
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
        min_position: MinPosition = None,
    ) -> Response[SurveyView]:
        require(principal, READERS, "reading surveys")
        async with read_scope(
            ctx, principal, min_position=min_position, projections=PROJECTIONS
        ) as (conn, scope):
            row = await conn.fetchrow(READ, scope.root_id, survey_id)
            recorded = row is None and await conn.fetchval(STREAM_VISIBLE, scope.root_id, survey_id)
        if row is None:
            if recorded:
                raise not_caught_up("survey")
            raise not_found(f"survey {survey_id}")
        reveals: list[Reveal] = []
        view = _view(row, principal, ctx, scope, reveals)
        await record_reveals(
            ctx, principal, reveals, endpoint="GET /v1/surveys/{id}", request=request
        )
        return Response(content=view, headers={"ETag": f'"{view.version}"'})

    @get("/", summary="List household visits of a subtree (newest first; filter by flag)")
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
        require(principal, READERS, "listing surveys")
        after = decode_time_id_cursor(cursor)
        async with read_scope(
            ctx, principal, min_position=min_position, projections=PROJECTIONS
        ) as (conn, scope):
            lo, hi = await subtree_range(conn, scope, node)
            rows = await conn.fetch(
                LIST,
                scope.root_id,
                lo,
                hi,
                flag,
                after[0] if after else None,
                after[1] if after else None,
                limit + 1,
            )
        reveals: list[Reveal] = []
        items = [_view(r, principal, ctx, scope, reveals) for r in rows[:limit]]
        items += [_view(r, principal, ctx, scope, []) for r in rows[limit:]]
        await record_reveals(ctx, principal, reveals, endpoint="GET /v1/surveys", request=request)
        return page_of(items, limit, lambda v: [v.visited_at.isoformat(), str(v.id)])
