"""A read of one record that finds no row: not recorded (404), or recorded but not yet in the
read model (503 ``not-caught-up``, so a client retries or passes ``min_position``)."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from services.problems import ProblemError, not_caught_up, not_found

# Row-level security limits the events to the caller's: another tenant's id is a 404 too.
STREAM_VISIBLE = "SELECT EXISTS (SELECT 1 FROM events WHERE root_id = $1 AND stream_id = $2)"


async def missing(
    conn: asyncpg.Connection, root_id: UUID, stream_id: UUID, what: str
) -> ProblemError:
    """The problem for a ``what`` (e.g. "service order") whose row the read did not find."""
    if await conn.fetchval(STREAM_VISIBLE, root_id, stream_id):
        return not_caught_up(what)
    return not_found(f"{what} {stream_id}")
