"""Writing the rectification ledger (整改台账) of a subtree: XLSX built off the event loop,
CSV streamed from a server-side cursor. The format itself is ``ledger_format``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import asyncpg
from litestar.openapi.spec import Operation

from infra.database import Scope
from infra.directory import DirectoryNode
from services import spreadsheets
from services.api.deps import read_scope
from services.api.findings import ledger_format as ledger
from services.api.findings.queries import AS_RECORDED, SELECT_FINDINGS, filters
from services.api.queries import Where
from services.auth import Principal
from services.context import AppContext

#: the ledger keeps its snapshot open while a client downloads; a stalled client is cut off.
LEDGER_IDLE_TIMEOUT_MS = 60_000
LEDGER_FETCH = 500


@dataclass
class SpreadsheetOperation(Operation):
    """A file answered in one of two media types, by ``format``: XLSX or CSV."""

    def to_schema(self) -> dict[str, Any]:
        schema = super().to_schema()
        binary = {"schema": {"type": "string", "format": "binary"}}
        schema["responses"]["200"]["content"] = {
            ledger.XLSX_MEDIA_TYPE: binary,
            ledger.CSV_MEDIA_TYPE: {"schema": {"type": "string"}},
        }
        return schema


def _ledger_query(
    scope: Scope, path: str, today: date, status: str | None
) -> tuple[str, list[Any]]:
    where = Where()
    filters(where, scope, path, today=today, status=status)
    return f"{SELECT_FINDINGS} WHERE {where.sql()} ORDER BY {AS_RECORDED}", where.args


async def xlsx(
    conn: asyncpg.Connection,
    scope: Scope,
    target: DirectoryNode,
    today: date,
    status: str | None,
) -> spreadsheets.XlsxSheet:
    """The XLSX ledger of ``target``'s subtree, written to a file as the rows come."""
    sql, args = _ledger_query(scope, target.path, today, status)
    book = ledger.xlsx_ledger(scope_name=target.name, scope_code=target.code, today=today)
    cursor = await conn.cursor(sql, *args)
    while rows := await cursor.fetch(LEDGER_FETCH):
        chunk = [ledger.ledger_row(book.rows + i, r, today).values() for i, r in enumerate(rows, 1)]
        # openpyxl is CPU work: keep it off the event loop (one chunk at a time).
        await asyncio.to_thread(book.extend, chunk)
    return book


async def csv_stream(
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
