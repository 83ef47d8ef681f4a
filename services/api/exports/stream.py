"""Streaming one list as a file, with bounded memory however many rows it has.

The rows come from a server-side cursor in chunks of ``FETCH`` and go straight into the file
(``services.spreadsheets``: XLSX through openpyxl's write-only temporary files, then streamed
from a file; CSV streamed chunk by chunk). The node is resolved before the first byte, so a
404 is still a problem+json answer. Reveals (members shown in clear to an admin) are recorded
before the file — or, for a CSV, before each chunk — leaves the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeAlias

import asyncpg
from litestar import Request, Response
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.response import Stream

from domain.refs import business_date
from infra.database import Scope
from infra.directory import DirectoryNode
from services import spreadsheets
from services.api.code_filters import NodeFilter, subtree_node
from services.api.deps import Caller, Ctx, MinPosition, read_scope
from services.auth import Principal
from services.context import AppContext
from services.personal_data_view import Reveal, record_reveals
from services.spreadsheets import Column

#: rows per cursor fetch (and per CSV chunk)
FETCH = 1000
#: a client that stops reading a CSV for this long loses the connection (no pinned snapshot)
IDLE_TIMEOUT_MS = 60_000

Format = Annotated[Literal["xlsx", "csv"], QueryParameter(name="format", required=False)]

#: the list's statement and its arguments, for the export's target node
Query = Callable[
    [AppContext, asyncpg.Connection, Scope, DirectoryNode], Awaitable[tuple[str, Sequence[Any]]]
]
#: turns one fetched chunk into rows, given the serial number of its first row; may collect
#: reveals (members) to be recorded before the rows leave.
Rows = Callable[
    [AppContext, Principal, Scope, int, Sequence[asyncpg.Record], list[Reveal]],
    list[Sequence[Any]],
]


@dataclass(frozen=True)
class Export:
    """One list as a file."""

    #: sheet name and the Chinese file name's stem
    sheet: str
    #: the ASCII fallback file name's stem
    ascii: str
    columns: tuple[Column, ...]
    query: Query
    rows: Rows
    #: the read models the list reads (``min_position`` waits for them)
    projections: Sequence[str]

    @property
    def endpoint(self) -> str:
        """The route, as reveals are recorded under it."""
        return f"GET /v1/{self.ascii}/export"


@dataclass(frozen=True)
class ExportRequest:
    """What every export route takes: the request's caller, ``?node=``, ``?format=`` and
    ``?min_position=`` (declared once, by ``provide_export``)."""

    request: Request[Any, Any, Any]
    ctx: AppContext
    principal: Principal
    node: str | None
    fmt: str
    min_position: int | None

    async def answer(self, what: Export) -> Response[Any]:
        """The list ``what`` of the requested subtree, as a streamed file."""
        ctx, principal, fmt = self.ctx, self.principal, self.fmt
        today = business_date(ctx.clock())
        # An export holds a pool connection for as long as it reads, so it runs on one of the
        # server's heavy-read slots: refused at once (503/429) when none is free, never a wait
        # for a connection that commands and reads need. A CSV takes its slot when it starts
        # streaming; the check here answers before the 200 is sent.
        ctx.heavy.check(principal)

        async def record(reveals: list[Reveal]) -> None:
            await record_reveals(
                ctx, principal, reveals, endpoint=what.endpoint, request=self.request
            )
            reveals.clear()

        async with read_scope(
            ctx,
            principal,
            min_position=self.min_position,
            projections=what.projections,
            heavy=fmt == "xlsx",
        ) as (conn, scope):
            target = await subtree_node(conn, scope, self.node)
            sheet = None
            reveals: list[Reveal] = []
            if fmt == "xlsx":
                sheet = spreadsheets.XlsxSheet(
                    sheet=what.sheet,
                    columns=what.columns,
                    title=f"{target.name}{what.sheet}",
                    info=f"统计范围：{target.name}（{target.code}）    导出日期：{today:%Y年%m月%d日}",
                )
                sql, args = await what.query(ctx, conn, scope, target)
                cursor = await conn.cursor(sql, *args)
                while chunk := await cursor.fetch(FETCH):
                    built = what.rows(ctx, principal, scope, sheet.rows + 1, chunk, reveals)
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
                await conn.execute(
                    f"SET LOCAL idle_in_transaction_session_timeout = {IDLE_TIMEOUT_MS}"
                )
                sql, args = await what.query(ctx, conn, scope, target)
                cursor = await conn.cursor(sql, *args)
                serial = 1
                reveals: list[Reveal] = []
                while chunk := await cursor.fetch(FETCH):
                    built = what.rows(ctx, principal, scope, serial, chunk, reveals)
                    serial += len(built)
                    if reveals:
                        await record(reveals)  # before this chunk leaves
                    yield spreadsheets.csv_chunk(built)

        return Stream(
            csv_stream(),
            media_type=spreadsheets.CSV_MEDIA_TYPE,
            headers={"Content-Disposition": disposition},
        )


def provide_export(
    request: Request[Any, Any, Any],
    ctx: Ctx,
    principal: Caller,
    node: NodeFilter = None,
    fmt: Format = "xlsx",
    min_position: MinPosition = None,
) -> ExportRequest:
    return ExportRequest(request, ctx, principal, node, fmt, min_position)


Exporting: TypeAlias = NamedDependency[ExportRequest]
