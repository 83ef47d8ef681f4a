"""A read of one record that finds no row: not recorded (404), or recorded but not yet in the
read model (503 ``not-caught-up``, so a client retries or passes ``min_position``)."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from domain.base import CivicAggregate
from services.problems import ProblemError, not_caught_up, not_found

# Row-level security limits the events to the caller's: another tenant's id is a 404 too; so
# is the id of another kind of stream (it will never be in this read model).
STREAM_RECORDED = """
SELECT EXISTS (SELECT 1 FROM events WHERE root_id = $1 AND stream_id = $2 AND stream_type = $3)
"""


async def missing(
    conn: asyncpg.Connection,
    root_id: UUID,
    stream_id: UUID,
    aggregate: type[CivicAggregate],
    what: str | None = None,
) -> ProblemError:
    """The problem for an ``aggregate`` whose row the read did not find; ``what`` names it
    (default: its stream type, e.g. "issue")."""
    what = what or aggregate.STREAM_TYPE
    if await conn.fetchval(STREAM_RECORDED, root_id, stream_id, aggregate.STREAM_TYPE):
        return not_caught_up(what)
    return not_found(f"{what} {stream_id}")
