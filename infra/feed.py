"""Reading the event feed: settled events after a cursor, in position order.

Two readers share this module:

* scoped (``read_scoped``): the events of one subtree, for ``GET /v1/feed`` and webhook
  subscriptions. It runs inside a scoped transaction, so row-level security limits it to
  the scope as well as the explicit subtree filter here.
* system (``read_all``): every tenant's events, for relays (NATS) run by the system.

Only positions below the horizon (``civic_horizon()``) are read: every transaction that
could still commit a smaller position has finished, so a cursor moved to the end of a
page never skips an event that commits late. A short page means everything below the
horizon has been seen, so the cursor may move to ``horizon - 1`` even though that
position belongs to no event of the scope (positions of other tenants are skipped).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from infra.database import Scope
from infra.event_store import EVENT_COLUMNS, StoredEvent

_N_EVENT_COLUMNS = len(EVENT_COLUMNS.split(","))

_PATH_CODES = """
       ARRAY(SELECT a.code
             FROM unnest(string_to_array(trim(both '/' from n.path), '/'))
                  WITH ORDINALITY AS s(id, i)
             JOIN nodes a ON a.id = s.id::uuid
             ORDER BY s.i) AS path_codes"""

READ_SCOPED = f"""
WITH page AS (
    SELECT {EVENT_COLUMNS} FROM events e
    WHERE e.root_id = $1
      AND e.position > $2 AND e.position < $3
      AND e.node_id IN (SELECT n.id FROM nodes n
                        WHERE n.root_id = $1 AND n.path >= $4 AND n.path < $5)
      AND (cardinality($6::text[]) = 0 OR e.type = ANY($6::text[]))
    ORDER BY e.position
    LIMIT $7
)
SELECT page.*, n.code AS node_code, {_PATH_CODES}, NULL::text AS root_code
FROM page LEFT JOIN nodes n ON n.id = page.node_id
ORDER BY page.position
"""

READ_ONE_SCOPED = f"""
WITH page AS (
    SELECT {EVENT_COLUMNS} FROM events e
    WHERE e.root_id = $1 AND e.position = $2 AND e.position < civic_horizon()
      AND e.node_id IN (SELECT n.id FROM nodes n
                        WHERE n.root_id = $1 AND n.path >= $3 AND n.path < $4)
)
SELECT page.*, n.code AS node_code, {_PATH_CODES}, NULL::text AS root_code
FROM page LEFT JOIN nodes n ON n.id = page.node_id
"""

READ_ALL = f"""
WITH page AS (
    SELECT {EVENT_COLUMNS} FROM events e
    WHERE e.position > $1 AND e.position < $2
    ORDER BY e.position
    LIMIT $3
)
SELECT page.*, n.code AS node_code, {_PATH_CODES}, r.code AS root_code
FROM page
LEFT JOIN nodes n ON n.id = page.node_id
LEFT JOIN nodes r ON r.id = page.root_id
ORDER BY page.position
"""

HORIZON = "SELECT civic_horizon()"


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """A stored event with where it lives: its node's current code and path of codes."""

    event: StoredEvent
    node_code: str
    path_codes: tuple[str, ...]
    root_code: str | None = None

    @property
    def position(self) -> int:
        return self.event.position

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> FeedEvent:
        values = tuple(r)
        event = StoredEvent(*values[:_N_EVENT_COLUMNS])
        node_code = r["node_code"] or str(event.node_id)
        return cls(
            event=event,
            node_code=node_code,
            path_codes=tuple(r["path_codes"] or (node_code,)),
            root_code=r["root_code"],
        )


@dataclass(frozen=True, slots=True)
class FeedPage:
    events: list[FeedEvent]
    #: the position to read after next time (never past the horizon)
    next: int
    horizon: int
    #: True when the page was full: more may follow at once
    full: bool


async def current_end(conn: asyncpg.Connection) -> int:
    """Where a consumer that wants only what happens from now on starts (its ``after``):
    every position below the horizon is settled, so nothing from then on is missed."""
    horizon: int = await conn.fetchval(HORIZON)
    return max(0, horizon - 1)


def next_cursor(after: int, events: Sequence[FeedEvent], limit: int, horizon: int) -> int:
    """Where the next read starts: the last event of a full page, else ``horizon - 1``.

    A short page saw everything below the horizon, so the cursor may skip the positions
    of other scopes up to ``horizon - 1``; it never goes backwards.
    """
    if events and len(events) >= limit:
        return events[-1].position
    return max(after, horizon - 1)


async def read_scoped(
    conn: asyncpg.Connection,
    scope: Scope,
    after: int,
    limit: int,
    *,
    types: Sequence[str] = (),
) -> FeedPage:
    """Settled events of ``scope``'s subtree after ``after`` (inside a scoped transaction)."""
    horizon: int = await conn.fetchval(HORIZON)
    lo, hi = scope.bounds
    rows = await conn.fetch(READ_SCOPED, scope.root_id, after, horizon, lo, hi, list(types), limit)
    events = [FeedEvent.from_record(r) for r in rows]
    return FeedPage(
        events=events,
        next=next_cursor(after, events, limit, horizon),
        horizon=horizon,
        full=len(events) >= limit,
    )


async def read_one_scoped(
    conn: asyncpg.Connection, scope: Scope, position: int
) -> FeedEvent | None:
    """The event at ``position`` if it is settled and in ``scope``'s subtree."""
    lo, hi = scope.bounds
    row = await conn.fetchrow(READ_ONE_SCOPED, scope.root_id, position, lo, hi)
    return FeedEvent.from_record(row) if row is not None else None


async def read_all(conn: asyncpg.Connection, after: int, limit: int) -> FeedPage:
    """Every tenant's settled events after ``after`` (a system transaction)."""
    horizon: int = await conn.fetchval(HORIZON)
    rows = await conn.fetch(READ_ALL, after, horizon, limit)
    events = [FeedEvent.from_record(r) for r in rows]
    return FeedPage(
        events=events,
        next=next_cursor(after, events, limit, horizon),
        horizon=horizon,
        full=len(events) >= limit,
    )
