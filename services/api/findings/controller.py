"""/v1/findings — inspection findings and rectification (巡视整改), and the ledger export.

Roles: record — operator/admin of the finding's node; progress and complete — the
responsible unit (role unit scoped to it) or operator/admin; verify and reopen — inspector or
admin of the finding's node (never through the responsible unit's own scope); reads and the
ledger export — every role that reads the subtree (viewer, operator, unit, inspector, admin,
integrator). A unit principal sees the findings its unit is responsible for.

``warning`` (none | green | yellow | red at 20 days left, 10 days left, overdue) and
``overdue_days`` are computed at read time from ``due_on`` and the application clock's China
date, so a finding imported with a past due date is red at once; the list filter computes the
same bands in SQL from that date.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from litestar import Controller, Response, get, post
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.response import Stream

from domain.finding import Finding
from domain.refs import business_date
from infra import directory
from services.api.code_filters import SubtreeCode, subtree_path, visible_node
from services.api.deps import Caller, Command, Ctx, MinPosition, read_scope
from services.api.findings import ledger
from services.api.findings import ledger_format as ledger_file
from services.api.findings.queries import (
    AS_RECORDED,
    PROJECTIONS,
    SELECT_FINDINGS,
    filters,
    finding_view,
    responsible_unit_id,
)
from services.api.findings.schemas import FindingView, Status, Warning
from services.api.guards import needs
from services.api.missing import missing
from services.api.paging import Cursor, Limit, Page, decode_time_id_cursor, page_of
from services.api.queries import Where
from services.api.responses import ETAG, documented
from services.commands import findings as commands
from services.commands.findings import (
    Completion,
    FindingCreate,
    ProgressReport,
    Reopen,
    Verification,
)
from services.context import AppContext
from services.problems import not_found
from services.roles import ASSIGNEES, INSPECTORS, READERS, WRITERS

FindingId = FromPath[UUID]

CHANGED = documented(200, commands.FindingChanged, "The finding's new version")
#: who may work on the rectification, and who reviews it (the handlers check the placement).
ASSIGNEE_SIDE = "Roles: the responsible unit (role unit), operator, admin."
REVIEW_SIDE = "Roles: inspector, admin (of the finding's node)."


def _today(ctx: AppContext) -> date:
    return business_date(ctx.clock())


class FindingController(Controller):
    path = "/v1/findings"
    tags = ["findings"]

    @post(
        "/",
        status_code=201,
        summary="Record a finding and assign its rectification (建账)",
        responses=documented(201, commands.FindingChanged, "The recorded finding"),
        description="FindingRecorded + RectificationAssigned in one append. A due date in the "
        "past is accepted (imported ledgers): the finding is then overdue at once. Roles: "
        "operator, admin.",
        guards=[needs(WRITERS, "recording a finding")],
    )
    async def create(self, data: JSONBody[FindingCreate], command: Command) -> Response[bytes]:
        return await command.run(commands.record, data)

    @post(
        "/{finding_id:uuid}/progress",
        status_code=200,
        summary="Report rectification progress (更新)",
        responses=CHANGED,
        description=ASSIGNEE_SIDE,
        guards=[needs(ASSIGNEES, "reporting rectification progress")],
    )
    async def progress(
        self, finding_id: FindingId, data: JSONBody[ProgressReport], command: Command
    ) -> Response[bytes]:
        return await command.run(commands.report_progress, finding_id, data)

    @post(
        "/{finding_id:uuid}/complete",
        status_code=200,
        summary="Report the rectification completed (awaits verification)",
        responses=CHANGED,
        description=ASSIGNEE_SIDE,
        guards=[needs(ASSIGNEES, "completing a rectification")],
    )
    async def complete(
        self, finding_id: FindingId, data: JSONBody[Completion], command: Command
    ) -> Response[bytes]:
        return await command.run(commands.complete, finding_id, data)

    @post(
        "/{finding_id:uuid}/verify",
        status_code=200,
        summary="Verify a completed rectification: 销号 (accepted) or back to work",
        responses=CHANGED,
        description=REVIEW_SIDE,
        guards=[needs(INSPECTORS, "verifying a rectification")],
    )
    async def verify(
        self, finding_id: FindingId, data: JSONBody[Verification], command: Command
    ) -> Response[bytes]:
        return await command.run(commands.verify, finding_id, data)

    @post(
        "/{finding_id:uuid}/reopen",
        status_code=200,
        summary="Reopen a verified finding (回头看 found a relapse)",
        responses=CHANGED,
        description=REVIEW_SIDE,
        guards=[needs(INSPECTORS, "reopening a finding")],
    )
    async def reopen(
        self, finding_id: FindingId, data: JSONBody[Reopen], command: Command
    ) -> Response[bytes]:
        return await command.run(commands.reopen, finding_id, data)

    @get(
        "/{finding_id:uuid}",
        summary="Read a finding (warning and overdue_days as of today, China date)",
        responses=documented(200, FindingView, "The finding (ETag: its version)"),
        response_headers=ETAG,
        guards=[needs(READERS, "reading findings")],
    )
    async def read(
        self,
        finding_id: FindingId,
        ctx: Ctx,
        principal: Caller,
        min_position: MinPosition = None,
    ) -> Response[bytes]:
        today = _today(ctx)
        async with read_scope(
            ctx, principal, min_position=min_position, projections=PROJECTIONS
        ) as (conn, scope):
            where = Where()
            where.equals("f.id", finding_id, "uuid")
            filters(where, scope, scope.path, today=today)
            row = await conn.fetchrow(f"{SELECT_FINDINGS} WHERE {where.sql()}", *where.args)
            if row is None:
                raise await missing(conn, scope.root_id, finding_id, Finding)
        return Response(
            content=msgspec.json.encode(finding_view(row, today)),
            media_type="application/json",
            headers={"ETag": f'"{row["version"]}"'},
        )

    @get(
        "/",
        summary="List findings of a subtree (filters: status, warning, responsible unit)",
        guards=[needs(READERS, "listing findings")],
    )
    async def list_findings(
        self,
        ctx: Ctx,
        principal: Caller,
        node: SubtreeCode = None,
        status: Annotated[Status | None, QueryParameter(required=False)] = None,
        warning: Annotated[
            Warning | None,
            QueryParameter(
                required=False, description="green: ≤ 20 days left, yellow: ≤ 10, red: overdue"
            ),
        ] = None,
        responsible_unit: Annotated[
            str | None, QueryParameter(required=False, max_length=40)
        ] = None,
        limit: Limit = 50,
        cursor: Cursor = None,
        min_position: MinPosition = None,
    ) -> Page[FindingView]:
        today = _today(ctx)
        after = decode_time_id_cursor(cursor)
        async with read_scope(
            ctx, principal, min_position=min_position, projections=PROJECTIONS
        ) as (conn, scope):
            path = await subtree_path(conn, scope, node)
            where = Where()
            filters(
                where,
                scope,
                path,
                today=today,
                status=status,
                warning=warning,
                unit_id=await responsible_unit_id(conn, scope, responsible_unit),
            )
            if after is not None:
                at, last_id = where.arg(after[0], "timestamptz"), where.arg(after[1], "uuid")
                where.add(f"(f.recorded_at, f.id) > ({at}, {last_id})")
            rows = await conn.fetch(where.page(SELECT_FINDINGS, AS_RECORDED, limit), *where.args)
        return page_of(
            [finding_view(r, today) for r in rows],
            limit,
            lambda v: [v.recorded_at.isoformat(), str(v.id)],
        )

    @get(
        "/ledger",
        summary="Export the rectification ledger (整改台账) of a subtree as XLSX or CSV",
        description="One row per finding, Chinese headers (序号, 问题来源, 巡视轮次, 问题描述, "
        "整改类别, 整改措施, 责任单位, 整改时限, 整改状态, 完成时间, 销号时间, 逾期天数, "
        "最新进展), in the order recorded. XLSX: sheet 整改台账 with a title row, frozen "
        "header, real dates. CSV: UTF-8 with BOM, streamed. Roles: every reading role.",
        response_description="the ledger file (XLSX or CSV), as an attachment",
        operation_class=ledger.SpreadsheetOperation,
        guards=[needs(READERS, "exporting the rectification ledger")],
    )
    async def export_ledger(
        self,
        ctx: Ctx,
        principal: Caller,
        node: SubtreeCode = None,
        fmt: Annotated[
            Literal["xlsx", "csv"], QueryParameter(name="format", required=False)
        ] = "xlsx",
        status: Annotated[Status | None, QueryParameter(required=False)] = None,
        min_position: MinPosition = None,
    ) -> Response[Any]:
        today = _today(ctx)
        # Resolve the node first: a 404 (or a timeout's 503) answers before any byte is sent.
        async with read_scope(
            ctx, principal, min_position=min_position, projections=PROJECTIONS, heavy=True
        ) as (conn, scope):
            if node is not None:
                target = await visible_node(conn, scope, node, f"node {node}")
            else:
                found = await directory.find_by_id(conn, scope.node_id)
                if found is None:
                    raise not_found(f"node {scope.code}")
                target = found
            book = await ledger.xlsx(conn, scope, target, today, status) if fmt == "xlsx" else None
        disposition = ledger_file.content_disposition(target.code, today, fmt)
        if book is not None:
            return Stream(  # saved off the connection and the loop, streamed from a file
                book.stream(),
                media_type=ledger_file.XLSX_MEDIA_TYPE,
                headers={"Content-Disposition": disposition},
            )
        return Stream(
            ledger.csv_stream(ctx, principal, target.path, today, status),
            media_type=ledger_file.CSV_MEDIA_TYPE,
            headers={"Content-Disposition": disposition},
        )
