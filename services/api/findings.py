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

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import asyncpg
import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.openapi.spec import Operation
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.response import Stream

from domain.finding import GREEN_DAYS, MAX_EVIDENCE, MAX_MEASURES, YELLOW_DAYS
from domain.finding import warning as warning_of
from domain.refs import business_date
from infra import directory
from infra.database import Scope
from infra.directory import DirectoryNode
from services import spreadsheets
from services.api import findings_ledger as ledger
from services.api.code_filters import visible_node
from services.api.deps import (
    Caller,
    Ctx,
    MinPosition,
    read_scope,
    require,
    run_and_respond,
)
from services.api.paging import Cursor, Limit, Page, decode_time_id_cursor, page_of
from services.api.responses import ETAG, documented
from services.auth import Principal
from services.commands import findings as commands
from services.context import AppContext
from services.fields import (
    FindingCategory,
    FindingStatus,
    FindingWarning,
    NodeCode,
    Text,
    Title,
)
from services.problems import not_caught_up, not_found
from services.roles import ASSIGNEES, INSPECTORS, READERS, WRITERS

PROJECTIONS = ("findings",)

Category = Literal["immediate", "deadline", "long_term"]
Status = Literal["assigned", "in_progress", "completed", "verified"]
Warning = Literal["none", "green", "yellow", "red"]

#: the ledger keeps its snapshot open while a client downloads; a stalled client is cut off.
LEDGER_IDLE_TIMEOUT_MS = 60_000
LEDGER_FETCH = 500


# -- requests ------------------------------------------------------------------------------


class FindingCreate(msgspec.Struct, forbid_unknown_fields=True):
    node_code: Annotated[NodeCode, msgspec.Meta(description="the node the finding concerns")]
    source: Annotated[Title, msgspec.Meta(description="e.g. 省委第三巡视组")]
    description: Text
    responsible_unit_code: Annotated[
        NodeCode, msgspec.Meta(description="a unit node of the same root tenant")
    ]
    due_on: Annotated[date, msgspec.Meta(description="may lie in the past (imported ledgers)")]
    measures: Annotated[list[Text], msgspec.Meta(min_length=1, max_length=MAX_MEASURES)]
    category: Annotated[
        Category | None,
        msgspec.Meta(description="立行立改 / 限期整改 (default) / 长期坚持"),
    ] = None
    round: Annotated[Title | None, msgspec.Meta(description="巡视轮次, e.g. 2024年第一轮")] = None


class ProgressReport(msgspec.Struct, forbid_unknown_fields=True):
    note: Text
    evidence: (
        Annotated[
            str, msgspec.Meta(max_length=MAX_EVIDENCE, description="a reference to the evidence")
        ]
        | None
    ) = None


class Completion(msgspec.Struct, forbid_unknown_fields=True):
    summary: Text


class Verification(msgspec.Struct, forbid_unknown_fields=True):
    accepted: Annotated[bool, msgspec.Meta(description="true: 销号; false: back to work")]
    comment: Annotated[Text, msgspec.Meta(description="the reviewer's opinion or the reason")]


class Reopen(msgspec.Struct, forbid_unknown_fields=True):
    reason: Text
    due_on: Annotated[
        date | None, msgspec.Meta(description="default: 30 days from today (China date)")
    ] = None


# -- views ---------------------------------------------------------------------------------


class FindingView(msgspec.Struct):
    id: UUID
    node_code: str
    node_name: str
    source: str
    round: str | None
    description: str
    category: FindingCategory
    category_label: str
    responsible_unit_code: str | None
    responsible_unit_name: str | None
    measures: list[str]
    due_on: date | None
    status: FindingStatus
    status_label: str
    warning: FindingWarning
    overdue: bool
    overdue_days: int
    overdue_recorded_for: date | None
    recorded_at: datetime
    completed_at: datetime | None
    completion_summary: str | None
    verified_at: datetime | None
    verification_comment: str | None
    rejected_count: int
    last_rejection_reason: str | None
    reopened_count: int
    last_reopen_reason: str | None
    progress_count: int
    last_progress_note: str | None
    last_progress_evidence: str | None
    last_progress_at: datetime | None
    version: int


# -- SQL -----------------------------------------------------------------------------------

SELECT_FINDINGS = """
SELECT f.id, n.code AS node_code, n.name AS node_name, f.source, f.round, f.description,
       f.category, coalesce(u.code, f.responsible_unit_code) AS unit_code, u.name AS unit_name,
       f.measures, f.due_on, f.status, f.rework, f.overdue_recorded_due_on, f.recorded_at,
       f.completed_at, f.completion_summary, f.verified_at, f.verification_comment,
       f.rejected_count, f.last_rejection_reason, f.reopened_count, f.last_reopen_reason,
       f.progress_count, f.last_progress_note, f.last_progress_evidence, f.last_progress_at,
       f.version
FROM rm_findings f
JOIN nodes n ON n.id = f.node_id
LEFT JOIN nodes u ON u.id = f.responsible_unit_id
"""

STREAM_EXISTS = """
SELECT 1 FROM events WHERE root_id = $1 AND stream_id = $2 AND stream_type = 'finding' LIMIT 1
"""

#: the warning bands in SQL, relative to today's China date ($today), as domain.finding.warning.
_OPEN = "f.status <> 'verified' AND f.due_on IS NOT NULL"
WARNING_SQL = {
    "red": f"({_OPEN} AND f.due_on < {{t}})",
    "yellow": f"({_OPEN} AND f.due_on >= {{t}} AND f.due_on <= {{t}} + {{y}})",
    "green": f"({_OPEN} AND f.due_on > {{t}} + {{y}} AND f.due_on <= {{t}} + {{g}})",
    "none": "(f.status = 'verified' OR f.due_on IS NULL OR f.due_on > {t} + {g})",
}


class _Where:
    """WHERE clauses with numbered parameters."""

    def __init__(self) -> None:
        self.clauses: list[str] = []
        self.args: list[Any] = []

    def arg(self, value: Any, cast: str) -> str:
        self.args.append(value)
        return f"${len(self.args)}::{cast}"

    def add(self, clause: str) -> None:
        self.clauses.append(clause)

    def sql(self) -> str:
        return " AND ".join(self.clauses) if self.clauses else "true"


def _subtree(where: _Where, scope: Scope, path: str) -> None:
    """Findings recorded in the subtree of ``path`` — and, for a unit principal, those whose
    responsible unit lies there (what row-level security allows, checked again here)."""
    lo, hi = where.arg(path, "text"), where.arg(path[:-1] + "0", "text")
    clause = f"(n.path >= {lo} AND n.path < {hi}"
    if scope.is_unit:
        clause += f" OR (u.path >= {lo} AND u.path < {hi})"
    where.add(clause + ")")


def _filters(
    where: _Where,
    scope: Scope,
    path: str,
    *,
    today: date,
    status: str | None = None,
    warning: str | None = None,
    unit_id: UUID | None = None,
) -> None:
    where.add(f"f.root_id = {where.arg(scope.root_id, 'uuid')}")
    _subtree(where, scope, path)
    if status is not None:
        where.add(f"f.status = {where.arg(status, 'text')}")
    if warning is not None:
        template = WARNING_SQL[warning]
        where.add(
            template.format(
                t=where.arg(today, "date"),
                y=where.arg(YELLOW_DAYS, "int") if "{y}" in template else "",
                g=where.arg(GREEN_DAYS, "int") if "{g}" in template else "",
            )
        )
    if unit_id is not None:
        where.add(f"f.responsible_unit_id = {where.arg(unit_id, 'uuid')}")


def _view(r: asyncpg.Record, today: date) -> FindingView:
    due_on: date | None = r["due_on"]
    status: str = r["status"]
    days = ledger.overdue_days(due_on, status, today)
    return FindingView(
        id=r["id"],
        node_code=r["node_code"],
        node_name=r["node_name"],
        source=r["source"],
        round=r["round"],
        description=r["description"],
        category=r["category"],
        category_label=ledger.CATEGORY_LABELS.get(r["category"], r["category"]),
        responsible_unit_code=r["unit_code"],
        responsible_unit_name=r["unit_name"],
        measures=msgspec.json.decode(r["measures"], type=list[str]),
        due_on=due_on,
        status=status,
        status_label=ledger.status_label(status, r["rework"]),
        warning=warning_of(due_on, today, status) if due_on is not None else "none",
        overdue=days > 0,
        overdue_days=days,
        overdue_recorded_for=r["overdue_recorded_due_on"],
        recorded_at=r["recorded_at"],
        completed_at=r["completed_at"],
        completion_summary=r["completion_summary"],
        verified_at=r["verified_at"],
        verification_comment=r["verification_comment"],
        rejected_count=r["rejected_count"],
        last_rejection_reason=r["last_rejection_reason"],
        reopened_count=r["reopened_count"],
        last_reopen_reason=r["last_reopen_reason"],
        progress_count=r["progress_count"],
        last_progress_note=r["last_progress_note"],
        last_progress_evidence=r["last_progress_evidence"],
        last_progress_at=r["last_progress_at"],
        version=r["version"],
    )


async def _node_in_scope(conn: asyncpg.Connection, scope: Scope, code: str) -> DirectoryNode:
    node = await directory.find_by_code(conn, code)
    if node is None or not scope.contains_path(node.path):
        raise not_found(f"node {code}")
    return node


#: a responsible unit outside the subtree may filter the list when a finding the caller sees
#: names it; any other code answers as an unknown one (services/api/code_filters.py).
_NAMED_BY_A_FINDING = """
SELECT EXISTS (SELECT 1 FROM rm_findings f
               WHERE f.root_id = civic_scope_root() AND f.responsible_unit_id = $1
                 AND (f.node_id IN (SELECT civic_scope_nodes())
                      OR f.id IN (SELECT civic_party_streams())))
"""


async def _unit_id(conn: asyncpg.Connection, scope: Scope, code: str | None) -> UUID | None:
    if code is None:
        return None
    unit = await visible_node(
        conn, scope, code, f"responsible unit {code}", named_by=_NAMED_BY_A_FINDING
    )
    return unit.id


def _today(ctx: AppContext) -> date:
    return business_date(ctx.clock())


# -- the controller ------------------------------------------------------------------------


@dataclass
class _LedgerOperation(Operation):
    """The ledger answers a file in one of two media types, by ``format``."""

    def to_schema(self) -> dict[str, Any]:
        schema = super().to_schema()
        binary = {"schema": {"type": "string", "format": "binary"}}
        schema["responses"]["200"]["content"] = {
            ledger.XLSX_MEDIA_TYPE: binary,
            ledger.CSV_MEDIA_TYPE: {"schema": {"type": "string"}},
        }
        return schema


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
    )
    async def create(
        self,
        data: JSONBody[FindingCreate],
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
    ) -> Response[bytes]:
        require(principal, WRITERS, "recording a finding")
        return await run_and_respond(
            request,
            ctx,
            principal,
            lambda s: commands.record(
                s,
                node_code=data.node_code,
                source=data.source,
                description=data.description,
                responsible_unit_code=data.responsible_unit_code,
                due_on=data.due_on,
                measures=list(data.measures),
                category=data.category,
                round=data.round,
            ),
        )

    @post(
        "/{finding_id:uuid}/progress",
        status_code=200,
        summary="Report rectification progress (更新)",
        responses=documented(200, commands.FindingChanged, "The finding's new version"),
        description="Roles: the responsible unit (role unit), operator, admin.",
    )
    async def progress(
        self,
        finding_id: FromPath[UUID],
        data: JSONBody[ProgressReport],
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
    ) -> Response[bytes]:
        require(principal, ASSIGNEES, "reporting rectification progress")
        return await run_and_respond(
            request,
            ctx,
            principal,
            lambda s: commands.report_progress(
                s, finding_id=finding_id, note=data.note, evidence=data.evidence
            ),
        )

    @post(
        "/{finding_id:uuid}/complete",
        status_code=200,
        summary="Report the rectification completed (awaits verification)",
        responses=documented(200, commands.FindingChanged, "The finding's new version"),
        description="Roles: the responsible unit (role unit), operator, admin.",
    )
    async def complete(
        self,
        finding_id: FromPath[UUID],
        data: JSONBody[Completion],
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
    ) -> Response[bytes]:
        require(principal, ASSIGNEES, "completing a rectification")
        return await run_and_respond(
            request,
            ctx,
            principal,
            lambda s: commands.complete(s, finding_id=finding_id, summary=data.summary),
        )

    @post(
        "/{finding_id:uuid}/verify",
        status_code=200,
        summary="Verify a completed rectification: 销号 (accepted) or back to work",
        responses=documented(200, commands.FindingChanged, "The finding's new version"),
        description="Roles: inspector, admin (of the finding's node).",
    )
    async def verify(
        self,
        finding_id: FromPath[UUID],
        data: JSONBody[Verification],
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
    ) -> Response[bytes]:
        require(principal, INSPECTORS, "verifying a rectification")
        return await run_and_respond(
            request,
            ctx,
            principal,
            lambda s: commands.verify(
                s, finding_id=finding_id, accepted=data.accepted, comment=data.comment
            ),
        )

    @post(
        "/{finding_id:uuid}/reopen",
        status_code=200,
        summary="Reopen a verified finding (回头看 found a relapse)",
        responses=documented(200, commands.FindingChanged, "The finding's new version"),
        description="Roles: inspector, admin (of the finding's node).",
    )
    async def reopen(
        self,
        finding_id: FromPath[UUID],
        data: JSONBody[Reopen],
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
    ) -> Response[bytes]:
        require(principal, INSPECTORS, "reopening a finding")
        return await run_and_respond(
            request,
            ctx,
            principal,
            lambda s: commands.reopen(
                s, finding_id=finding_id, reason=data.reason, due_on=data.due_on
            ),
        )

    @get(
        "/{finding_id:uuid}",
        summary="Read a finding (warning and overdue_days as of today, China date)",
        responses=documented(200, FindingView, "The finding (ETag: its version)"),
        response_headers=ETAG,
    )
    async def read(
        self,
        finding_id: FromPath[UUID],
        ctx: Ctx,
        principal: Caller,
        min_position: MinPosition = None,
    ) -> Response[bytes]:
        require(principal, READERS, "reading findings")
        today = _today(ctx)
        async with read_scope(
            ctx, principal, min_position=min_position, projections=PROJECTIONS
        ) as (conn, scope):
            where = _Where()
            where.add(f"f.id = {where.arg(finding_id, 'uuid')}")
            _filters(where, scope, scope.path, today=today)
            row = await conn.fetchrow(f"{SELECT_FINDINGS} WHERE {where.sql()}", *where.args)
            recorded = row is None and await conn.fetchval(STREAM_EXISTS, scope.root_id, finding_id)
        if row is None:
            if recorded:
                raise not_caught_up("finding")
            raise not_found(f"finding {finding_id}")
        return Response(
            content=msgspec.json.encode(_view(row, today)),
            media_type="application/json",
            headers={"ETag": f'"{row["version"]}"'},
        )

    @get("/", summary="List findings of a subtree (filters: status, warning, responsible unit)")
    async def list_findings(
        self,
        ctx: Ctx,
        principal: Caller,
        node: Annotated[
            str | None,
            QueryParameter(required=False, max_length=40, description="default: your scope"),
        ] = None,
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
        require(principal, READERS, "listing findings")
        today = _today(ctx)
        after = decode_time_id_cursor(cursor)
        async with read_scope(
            ctx, principal, min_position=min_position, projections=PROJECTIONS
        ) as (conn, scope):
            path = (await _node_in_scope(conn, scope, node)).path if node else scope.path
            where = _Where()
            _filters(
                where,
                scope,
                path,
                today=today,
                status=status,
                warning=warning,
                unit_id=await _unit_id(conn, scope, responsible_unit),
            )
            if after is not None:
                at, last_id = where.arg(after[0], "timestamptz"), where.arg(after[1], "uuid")
                where.add(f"(f.recorded_at, f.id) > ({at}, {last_id})")
            lim = where.arg(limit + 1, "int")
            rows = await conn.fetch(
                f"{SELECT_FINDINGS} WHERE {where.sql()} ORDER BY f.recorded_at, f.id LIMIT {lim}",
                *where.args,
            )
        return page_of(
            [_view(r, today) for r in rows],
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
        operation_class=_LedgerOperation,
    )
    async def export_ledger(
        self,
        ctx: Ctx,
        principal: Caller,
        node: Annotated[
            str | None,
            QueryParameter(required=False, max_length=40, description="default: your scope"),
        ] = None,
        fmt: Annotated[
            Literal["xlsx", "csv"], QueryParameter(name="format", required=False)
        ] = "xlsx",
        status: Annotated[Status | None, QueryParameter(required=False)] = None,
        min_position: MinPosition = None,
    ) -> Response[Any]:
        require(principal, READERS, "exporting the rectification ledger")
        today = _today(ctx)
        # Resolve the node first: a 404 (or a timeout's 503) answers before any byte is sent.
        async with read_scope(
            ctx, principal, min_position=min_position, projections=PROJECTIONS, heavy=True
        ) as (conn, scope):
            if node is not None:
                target = await _node_in_scope(conn, scope, node)
            else:
                found = await directory.find_by_id(conn, scope.node_id)
                if found is None:
                    raise not_found(f"node {scope.code}")
                target = found
            book = await _xlsx(conn, scope, target, today, status) if fmt == "xlsx" else None
        disposition = ledger.content_disposition(target.code, today, fmt)
        if book is not None:
            return Stream(  # saved off the connection and the loop, streamed from a file
                book.stream(),
                media_type=ledger.XLSX_MEDIA_TYPE,
                headers={"Content-Disposition": disposition},
            )
        return Stream(
            _csv_stream(ctx, principal, target.path, today, status),
            media_type=ledger.CSV_MEDIA_TYPE,
            headers={"Content-Disposition": disposition},
        )


def _ledger_query(
    scope: Scope, path: str, today: date, status: str | None
) -> tuple[str, list[Any]]:
    where = _Where()
    _filters(where, scope, path, today=today, status=status)
    return f"{SELECT_FINDINGS} WHERE {where.sql()} ORDER BY f.recorded_at, f.id", where.args


async def _xlsx(
    conn: asyncpg.Connection,
    scope: Scope,
    target: DirectoryNode,
    today: date,
    status: str | None,
) -> spreadsheets.XlsxSheet:
    sql, args = _ledger_query(scope, target.path, today, status)
    book = ledger.xlsx_ledger(scope_name=target.name, scope_code=target.code, today=today)
    cursor = await conn.cursor(sql, *args)
    while rows := await cursor.fetch(LEDGER_FETCH):
        chunk = [ledger.ledger_row(book.rows + i, r, today).values() for i, r in enumerate(rows, 1)]
        # openpyxl is CPU work: keep it off the event loop (one chunk at a time).
        await asyncio.to_thread(book.extend, chunk)
    return book


async def _csv_stream(
    ctx: AppContext, principal: Principal, path: str, today: date, status: str | None
) -> AsyncIterator[bytes]:
    """The CSV in chunks from a server-side cursor: memory stays bounded however long the
    ledger. Every fetch runs under the statement timeout, and a client that stops reading
    for ``LEDGER_IDLE_TIMEOUT_MS`` loses the connection rather than pinning a snapshot."""
    yield ledger.csv_chunk((), header=True)
    async with read_scope(ctx, principal, heavy=True) as (conn, scope):
        await conn.execute(
            f"SET LOCAL idle_in_transaction_session_timeout = {LEDGER_IDLE_TIMEOUT_MS}"
        )
        sql, args = _ledger_query(scope, path, today, status)
        cursor = await conn.cursor(sql, *args)
        serial = 0
        while rows := await cursor.fetch(LEDGER_FETCH):
            chunk = []
            for r in rows:
                serial += 1
                chunk.append(ledger.ledger_row(serial, r, today))
            yield ledger.csv_chunk(chunk)
