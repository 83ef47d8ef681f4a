"""Never skip an event: the one check for updates of a read model's rows.

A projection's updates are guarded by the stream version (``... WHERE root_id = $1 AND
id = $2 AND version < $v``) so that a batch applied twice changes nothing. An update that
matched no row is then either "already applied" (the row exists, at the event's version or
past it) or an event the read model cannot apply: its row is missing (its creation was never
applied) or behind. The second must stop the projection, which ``RowGuard`` does by raising
``RowMissing``: the batch rolls back, the runner reports and retries, and the checkpoint
stays before the event.

Every projection with rows keyed ``(root_id, id)`` uses it, for single updates
(``update``) and pipelined ones (``require``, after an ``executemany`` whose statuses
asyncpg does not return).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from infra.event_store import StoredEvent


class RowMissing(RuntimeError):
    """An event's row is not in the read model (or is behind it): never skipped."""


class RowGuard:
    def __init__(self, table: str) -> None:
        self.table = table
        self._version = f"SELECT version FROM {table} WHERE root_id = $1 AND id = $2"
        # The first of the given keys (in order) without a row at or past its version.
        self._first_behind = f"""
SELECT k.ord
FROM unnest($1::uuid[], $2::uuid[], $3::int4[]) WITH ORDINALITY AS k(root_id, id, version, ord)
WHERE NOT EXISTS (SELECT 1 FROM {table} t
                  WHERE t.root_id = k.root_id AND t.id = k.id AND t.version >= k.version)
ORDER BY k.ord LIMIT 1
"""

    async def update(self, conn: asyncpg.Connection, e: StoredEvent, sql: str, *args: Any) -> None:
        """Run ``sql`` with ``$1, $2`` = ``e``'s root and stream and then ``args``; raise
        ``RowMissing`` when it matched no row and the row is not at ``e``'s version yet."""
        status = await conn.execute(sql, e.root_id, e.stream_id, *args)
        if status.endswith(" 0"):
            await self._check(conn, e)

    async def _check(self, conn: asyncpg.Connection, e: StoredEvent) -> None:
        version: int | None = await conn.fetchval(self._version, e.root_id, e.stream_id)
        if version is None or version < e.version:
            raise RowMissing(self._message(e, version))

    async def require(self, conn: asyncpg.Connection, events: Sequence[StoredEvent]) -> None:
        """After the events' updates ran: raise ``RowMissing`` for the first whose row is not
        at (or past) its version."""
        if not events:
            return
        first = await conn.fetchval(
            self._first_behind,
            [e.root_id for e in events],
            [e.stream_id for e in events],
            [e.version for e in events],
        )
        if first is not None:
            e = events[first - 1]
            await self._check(conn, e)

    def _message(self, e: StoredEvent, version: int | None) -> str:
        state = "no row" if version is None else f"its row is at version {version}"
        return (
            f"{e.type} v{e.version} at position {e.position} of {e.stream_id}: not in the read"
            f" model ({self.table}: {state})"
        )
