"""Lists officials send upward (工单台账, 结对共建台账, 双报到党员名册) as XLSX or CSV:
``GET /v1/issues/export``, ``/v1/pairings/export``, ``/v1/members/export``
``?node=&format=xlsx|csv`` — the same rows the list endpoints show the caller (its subtree;
a unit principal the work that names its unit), in the order recorded.

Bounded memory however many rows: the rows come from a server-side cursor in chunks of
``FETCH`` and go straight into the file (``services.spreadsheets``: XLSX through openpyxl's
write-only temporary files, then streamed from a file; CSV streamed chunk by chunk). The node
is resolved before the first byte, so a 404 is still a problem+json answer.

Members: personal data is masked unless the caller is an admin; an admin's export shows it
in clear and every member so shown is recorded in ``pii_reveals`` (endpoint
``GET /v1/members/export``, reason from ``X-Reveal-Reason``) before the file — or, for a CSV,
before each chunk — leaves the server, exactly as a list read records its reveals.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from litestar import Controller, Request, Response, get
from litestar.params import QueryParameter
from litestar.response import Stream

from domain.refs import business_date
from infra import directory
from infra.database import Scope
from infra.directory import DirectoryNode
from services import spreadsheets
from services.api import issues as issue_api
from services.api import members as member_api
from services.api import pairings as pairing_api
from services.api.deps import (
    Caller,
    Ctx,
    MinPosition,
    read_scope,
    require,
)

# the ledger's OpenAPI operation: a file in one of two media types, by ``format``
from services.api.findings import _LedgerOperation as FileOperation
from services.auth import Principal
from services.context import AppContext
from services.personal_data_view import Reveal, may_reveal, person_view, record_reveals
from services.problems import not_found
from services.roles import READERS
from services.spreadsheets import Column

#: rows per cursor fetch (and per CSV chunk)
FETCH = 1000
#: a client that stops reading a CSV for this long loses the connection (no pinned snapshot)
IDLE_TIMEOUT_MS = 60_000
#: "no limit" for the list statements that take one
ALL_ROWS = 2**62
#: exports one process builds at a time: each holds a pool connection (and its snapshot)
#: for as long as it reads, so they must not be able to take the pool from commands and reads

Format = Annotated[Literal["xlsx", "csv"], QueryParameter(name="format", required=False)]
NodeParam = Annotated[
    str | None,
    QueryParameter(required=False, max_length=40, description="a subtree (default: your scope)"),
]

# -- row builders ----------------------------------------------------------------------------

STATUS_LABELS = {
    "reported": "已受理",
    "assigned": "已派单",
    "accepted": "已签收",
    "resolved": "已办结",
    "closed": "已销号",
}
SOURCE_LABELS = {
    "grid": "网格上报",
    "hotline": "12345热线",
    "survey": "入户走访",
    "inspection": "巡查发现",
    "resident": "居民反映",
}
SATISFACTION_LABELS = {
    "satisfied": "满意",
    "basically_satisfied": "基本满意",
    "dissatisfied": "不满意",
}
PAIRING_STATUS_LABELS = {"active": "履行中", "terminated": "已终止"}
MEMBER_STATUS_LABELS = {"active": "在册", "deregistered": "已注销", "erased": "已删除"}
RATING_LABELS = {"excellent": "优秀", "good": "良好", "fair": "一般", "poor": "较差"}

_C = Column
ISSUE_COLUMNS = (
    _C("序号", 7, "number", centered=True),
    _C("工单编号", 38),
    _C("外部编号", 16),
    _C("标题", 30),
    _C("类别", 10, centered=True),
    _C("来源", 10, centered=True),
    _C("上报节点", 16),
    _C("状态", 8, centered=True),
    _C("超期", 6, centered=True, alarm=True),
    _C("上报时间", 17, "datetime", centered=True),
    _C("承办单位", 16),
    _C("派单时间", 17, "datetime", centered=True),
    _C("办理时限", 17, "datetime", centered=True),
    _C("签收时间", 17, "datetime", centered=True),
    _C("办结时间", 17, "datetime", centered=True),
    _C("销号时间", 17, "datetime", centered=True),
    _C("按时办结", 8, centered=True),
    _C("满意度", 9, centered=True),
    _C("退单次数", 8, "number", centered=True),
    _C("重办次数", 8, "number", centered=True),
    _C("办理结果", 30),
    _C("最新进展", 30),
)


def _yes_no(value: bool | None) -> str:
    return "" if value is None else ("是" if value else "否")


def issue_row(serial: int, r: asyncpg.Record) -> tuple[Any, ...]:
    return (
        serial,
        str(r["id"]),
        r["external_id"],
        r["title"],
        r["category"],
        SOURCE_LABELS.get(r["source"], r["source"]),
        r["current_node_code"],
        STATUS_LABELS.get(r["status"], r["status"]),
        "是" if r["overdue"] else "",
        r["reported_at"],
        r["current_assignee_code"] if r["assignee_id"] is not None else None,
        r["assigned_at"],
        r["due_at"],
        r["accepted_at"],
        r["resolved_at"],
        r["closed_at"],
        _yes_no(r["closed_on_time"]),
        SATISFACTION_LABELS.get(r["evaluation_satisfaction"] or "", ""),
        r["return_count"],
        r["reopen_count"],
        r["result"],
        r["last_note"],
    )


PAIRING_COLUMNS = (
    _C("序号", 7, "number", centered=True),
    _C("结对编号", 38),
    _C("共建单位", 16),
    _C("结对社区", 16),
    _C("开始日期", 12, "date", centered=True),
    _C("结束日期", 12, "date", centered=True),
    _C("状态", 8, centered=True),
    _C("承诺事项", 40),
    _C("承诺数", 8, "number", centered=True),
    _C("已履行", 8, "number", centered=True),
    _C("活动次数", 8, "number", centered=True),
    _C("参与人次", 8, "number", centered=True),
    _C("最近活动", 12, "date", centered=True),
    _C("评议", 8, centered=True),
    _C("签订时间", 17, "datetime", centered=True),
    _C("终止原因", 24),
)


def _commitments(raw: Any) -> str:
    items = msgspec.json.decode(raw) if isinstance(raw, str | bytes) else raw
    lines = []
    for n, c in enumerate(items or [], 1):
        done = "（已履行）" if c.get("fulfilled_at") else ""
        lines.append(f"{n}. {c.get('title', '')}（{c.get('due_on', '')}）{done}")
    return "\n".join(lines)


def pairing_row(serial: int, r: asyncpg.Record) -> tuple[Any, ...]:
    return (
        serial,
        str(r["id"]),
        r["unit_code"],
        r["community_code"],
        r["starts_on"],
        r["ends_on"],
        PAIRING_STATUS_LABELS.get(r["status"], r["status"]),
        _commitments(r["commitments"]),
        r["commitments_total"],
        r["commitments_fulfilled"],
        r["activity_count"],
        r["participant_total"],
        r["last_activity_on"],
        RATING_LABELS.get(r["rating"] or "", r["rating"] or ""),
        r["signed_at"],
        r["termination_reason"],
    )


MEMBER_COLUMNS = (
    _C("序号", 7, "number", centered=True),
    _C("党员编号", 38),
    _C("姓名", 10),
    _C("手机号码", 14),
    _C("身份证号", 21),
    _C("报到社区", 16),
    _C("所在单位", 16),
    _C("网格", 16),
    _C("状态", 8, centered=True),
    _C("服务时长", 9, "number", centered=True),
    _C("服务次数", 8, "number", centered=True),
    _C("积分", 8, "number", centered=True),
    _C("报到时间", 17, "datetime", centered=True),
)


@dataclass(frozen=True)
class Export:
    """One list as a file: its name, columns and rows."""

    #: sheet name and the Chinese file name's stem
    sheet: str
    #: the ASCII fallback file name's stem
    ascii: str
    columns: tuple[Column, ...]


ISSUES = Export("工单台账", "issues", ISSUE_COLUMNS)
PAIRINGS = Export("结对共建台账", "pairings", PAIRING_COLUMNS)
MEMBERS = Export("双报到党员名册", "members", MEMBER_COLUMNS)

Query = Callable[[asyncpg.Connection, Scope, DirectoryNode], Awaitable[tuple[str, Sequence[Any]]]]
#: turns one fetched chunk into rows, given the serial number of its first row; may collect
#: reveals (members) to be recorded before the rows leave.
Rows = Callable[[Scope, int, Sequence[asyncpg.Record], list[Reveal]], list[Sequence[Any]]]


async def _target(conn: asyncpg.Connection, scope: Scope, node: str | None) -> DirectoryNode:
    code = node if node is not None else scope.code
    found = await directory.find_by_code(conn, code)
    if found is None or not scope.contains_path(found.path):
        raise not_found(f"node {code}")
    return found


async def export(
    *,
    ctx: AppContext,
    principal: Principal,
    request: Request[Any, Any, Any],
    what: Export,
    node: str | None,
    fmt: str,
    query: Query,
    rows: Rows,
    projections: Sequence[str],
    min_position: int | None,
    endpoint: str,
) -> Response[Any]:
    today = business_date(ctx.clock())
    # An export holds a pool connection for as long as it reads, so it runs on one of the
    # server's heavy-read slots: refused at once (503/429) when none is free, never a wait
    # for a connection that commands and reads need. A CSV takes its slot when it starts
    # streaming; the check here answers before the 200 is sent.
    ctx.heavy.check(principal)

    async def record(reveals: list[Reveal]) -> None:
        await record_reveals(ctx, principal, reveals, endpoint=endpoint, request=request)
        reveals.clear()

    async with read_scope(
        ctx, principal, min_position=min_position, projections=projections, heavy=fmt == "xlsx"
    ) as (conn, scope):
        target = await _target(conn, scope, node)
        sheet = None
        reveals: list[Reveal] = []
        if fmt == "xlsx":
            sheet = spreadsheets.XlsxSheet(
                sheet=what.sheet,
                columns=what.columns,
                title=f"{target.name}{what.sheet}",
                info=f"统计范围：{target.name}（{target.code}）    导出日期：{today:%Y年%m月%d日}",
            )
            sql, args = await query(conn, scope, target)
            cursor = await conn.cursor(sql, *args)
            while chunk := await cursor.fetch(FETCH):
                built = rows(scope, sheet.rows + 1, chunk, reveals)
                # openpyxl is CPU work: off the event loop, one chunk at a time
                await asyncio.to_thread(sheet.extend, built)
    disposition = spreadsheets.content_disposition(
        f"{what.ascii}-{target.code}-{today:%Y%m%d}.{fmt}",
        f"{what.sheet}-{target.code}-{today:%Y%m%d}.{fmt}",
    )
    if sheet is not None:
        await record(reveals)  # before any byte of the file leaves
        return Stream(
            sheet.stream(),
            media_type=spreadsheets.XLSX_MEDIA_TYPE,
            headers={"Content-Disposition": disposition},
        )

    async def csv_stream() -> AsyncIterator[bytes]:
        yield spreadsheets.csv_chunk((), header=[c.header for c in what.columns])
        async with read_scope(ctx, principal, heavy=True) as (conn, scope):
            await conn.execute(f"SET LOCAL idle_in_transaction_session_timeout = {IDLE_TIMEOUT_MS}")
            sql, args = await query(conn, scope, target)
            cursor = await conn.cursor(sql, *args)
            serial = 1
            reveals: list[Reveal] = []
            while chunk := await cursor.fetch(FETCH):
                built = rows(scope, serial, chunk, reveals)
                serial += len(built)
                if reveals:
                    await record(reveals)  # before this chunk leaves
                yield spreadsheets.csv_chunk(built)

    return Stream(
        csv_stream(),
        media_type=spreadsheets.CSV_MEDIA_TYPE,
        headers={"Content-Disposition": disposition},
    )


# -- the three lists ----------------------------------------------------------------------------


def _issues_query(ctx: AppContext) -> Query:
    async def query(conn: asyncpg.Connection, scope: Scope, target: DirectoryNode) -> Any:
        where = issue_api._Where(ctx.clock())
        # the list endpoint's own subtree rule (a unit principal: the issues naming its unit)
        await issue_api._subtree(conn, scope, where, target.code)
        sql = f"{issue_api.SELECT_ISSUES} WHERE {where.sql()} ORDER BY i.reported_at, i.id"
        return sql, where.args

    return query


async def _pairings_query(conn: asyncpg.Connection, scope: Scope, target: DirectoryNode) -> Any:
    args = (scope.root_id, target.path, target.path[:-1] + "0", None, None, None, ALL_ROWS)
    return pairing_api.LIST_PAIRINGS, args


async def _members_query(conn: asyncpg.Connection, scope: Scope, target: DirectoryNode) -> Any:
    args = (scope.root_id, target.path, target.path[:-1] + "0", None, None, None, ALL_ROWS)
    return member_api.LIST_MEMBERS, args


def _member_rows(ctx: AppContext, principal: Principal) -> Rows:
    def rows(
        scope: Scope, first: int, chunk: Sequence[asyncpg.Record], reveals: list[Reveal]
    ) -> list[Any]:
        out = []
        for n, r in enumerate(chunk, first):
            person = person_view(
                r["person"],
                reveal=may_reveal(principal, scope, r["community_path"]),
                settings=ctx.settings,
                root_id=scope.root_id,
                member_id=r["id"],
                key_id=r["key_id"],
                wrapped_key=r["wrapped_key"],
            )
            if person.revealed:
                reveals.append(Reveal(member_id=r["id"], node_id=r["node_id"]))
            out.append(
                (
                    n,
                    str(r["id"]),
                    person.name,
                    person.phone,
                    person.id_number,
                    r["community_code"],
                    r["home_unit_code"],
                    r["grid_code"],
                    MEMBER_STATUS_LABELS.get(r["status"], r["status"]),
                    float(r["service_hours"]),
                    r["service_count"],
                    r["points"],
                    r["registered_at"],
                )
            )
        return out

    return rows


def _simple(row: Callable[[int, asyncpg.Record], Sequence[Any]]) -> Rows:
    def rows(scope: Scope, first: int, chunk: Sequence[asyncpg.Record], _: list[Reveal]) -> Any:
        return [row(n, r) for n, r in enumerate(chunk, first)]

    return rows


class ExportController(Controller):
    path = "/v1"
    tags = ["exports"]

    @get(
        "/issues/export",
        operation_class=FileOperation,
        summary="Export the issues (工单台账) of a subtree as XLSX or CSV",
        description="One row per issue, oldest first, Chinese headers, instants in China time. "
        "XLSX: frozen header, real dates, A4 landscape; CSV: UTF-8 with BOM. Both streamed. "
        "Roles: every reading role (a unit principal: the issues assigned or escalated to it).",
        response_description="the file (XLSX or CSV), as an attachment",
    )
    async def issues(
        self,
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
        node: NodeParam = None,
        fmt: Format = "xlsx",
        min_position: MinPosition = None,
    ) -> Response[Any]:
        require(principal, READERS, "exporting issues")
        return await export(
            ctx=ctx,
            principal=principal,
            request=request,
            what=ISSUES,
            node=node,
            fmt=fmt,
            query=_issues_query(ctx),
            rows=_simple(issue_row),
            projections=issue_api.PROJECTIONS,
            min_position=min_position,
            endpoint="GET /v1/issues/export",
        )

    @get(
        "/pairings/export",
        operation_class=FileOperation,
        summary="Export the pairings (结对共建台账) of a subtree as XLSX or CSV",
        description="One row per pairing (its communities' and its units'), in signing order, "
        "commitments listed in one cell. Roles: every reading role.",
        response_description="the file (XLSX or CSV), as an attachment",
    )
    async def pairings(
        self,
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
        node: NodeParam = None,
        fmt: Format = "xlsx",
        min_position: MinPosition = None,
    ) -> Response[Any]:
        require(principal, READERS, "exporting pairings")
        return await export(
            ctx=ctx,
            principal=principal,
            request=request,
            what=PAIRINGS,
            node=node,
            fmt=fmt,
            query=_pairings_query,
            rows=_simple(pairing_row),
            projections=pairing_api.PROJECTIONS,
            min_position=min_position,
            endpoint="GET /v1/pairings/export",
        )

    @get(
        "/members/export",
        operation_class=FileOperation,
        summary="Export the in-service members (双报到党员名册) of a subtree as XLSX or CSV",
        description="One row per member (current community or home unit in the subtree), in "
        "registration order. Name, mobile and ID number masked unless the caller is an admin; "
        "an admin's export records every member shown in clear (see /v1/audit/reveals; "
        "reason: X-Reveal-Reason). Roles: every reading role.",
        response_description="the file (XLSX or CSV), as an attachment",
    )
    async def members(
        self,
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
        node: NodeParam = None,
        fmt: Format = "xlsx",
        min_position: MinPosition = None,
    ) -> Response[Any]:
        require(principal, READERS, "exporting members")
        return await export(
            ctx=ctx,
            principal=principal,
            request=request,
            what=MEMBERS,
            node=node,
            fmt=fmt,
            query=_members_query,
            rows=_member_rows(ctx, principal),
            projections=member_api.PROJECTIONS,
            min_position=min_position,
            endpoint="GET /v1/members/export",
        )
