"""SQL of the outbox consumers: webhook subscriptions, their deliveries, relay cursors.

The events table is the outbox (events are written in their command's transaction), so
nothing here runs at write time. Subscriptions are managed by users in scoped transactions
(row-level security by the subscription's scope node); the delivery worker and the relays
run as the system. The subscription secret is write-only for the runtime role: only the
system-side ``load_target`` reads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from infra.paths import subtree_bounds

# -- subscriptions (scoped: the runtime role, row-level security) ------------------------

_VIEW_COLUMNS = """
    s.id, s.url, s.types, s.position, s.status, s.created_by, s.created_at, s.updated_at,
    s.delivered_count, s.last_delivered_at, s.last_error, s.last_error_at,
    (SELECT n.code FROM nodes n WHERE n.id = s.node_id) AS scope_code,
    (SELECT count(*) FROM webhook_deliveries d
      WHERE d.subscription_id = s.id AND d.status = 'dead') AS dead,
    (SELECT count(*) FROM webhook_deliveries d
      WHERE d.subscription_id = s.id AND d.status IN ('retrying', 'queued')) AS pending
"""

INSERT_SUBSCRIPTION = """
INSERT INTO webhook_subscriptions (id, root_id, node_id, url, secret, types, position, created_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
"""

READ_SUBSCRIPTION = f"""
SELECT {_VIEW_COLUMNS} FROM webhook_subscriptions s
WHERE s.id = $1 AND s.status = 'active'
  AND s.node_id IN (SELECT n.id FROM nodes n WHERE n.path >= $2 AND n.path < $3)
"""

LIST_SUBSCRIPTIONS = f"""
SELECT {_VIEW_COLUMNS} FROM webhook_subscriptions s
WHERE s.status = 'active'
  AND (s.node_id IN (SELECT n.id FROM nodes n WHERE n.path >= $1 AND n.path < $2))
  AND ($3::timestamptz IS NULL OR (s.created_at, s.id) > ($3::timestamptz, $4::uuid))
ORDER BY s.created_at, s.id
LIMIT $5
"""

DELETE_SUBSCRIPTION = """
UPDATE webhook_subscriptions SET status = 'deleted', deleted_at = now(), updated_at = now()
WHERE id = $1 AND status = 'active'
  AND node_id IN (SELECT n.id FROM nodes n WHERE n.path >= $2 AND n.path < $3)
RETURNING id
"""

LIST_DELIVERIES = """
SELECT d.position, d.event_id, d.event_type, d.status, d.attempts, d.total_attempts, d.redrives,
       d.last_status, d.last_error, d.first_attempt_at, d.last_attempt_at, d.next_attempt_at,
       d.delivered_at, d.dead_at
FROM webhook_deliveries d
WHERE d.subscription_id = $1
  AND (cardinality($2::text[]) = 0 OR d.status = ANY($2::text[]))
  AND d.position > $3
ORDER BY d.position
LIMIT $4
"""

REDRIVE = """
UPDATE webhook_deliveries
SET status = 'queued', attempts = 0, redrives = redrives + 1, next_attempt_at = NULL
WHERE subscription_id = $1 AND status = 'dead'
"""


@dataclass(frozen=True)
class SubscriptionView:
    id: UUID
    url: str
    types: tuple[str, ...]
    position: int
    status: str
    created_by: str
    created_at: datetime
    updated_at: datetime
    delivered_count: int
    last_delivered_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    scope_code: str
    dead: int
    pending: int

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> SubscriptionView:
        values = dict(r)
        values["types"] = tuple(values["types"] or ())
        return cls(**values)


@dataclass(frozen=True)
class DeliveryView:
    position: int
    event_id: UUID
    event_type: str
    status: str
    attempts: int
    total_attempts: int
    redrives: int
    last_status: int | None
    last_error: str | None
    first_attempt_at: datetime | None
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    dead_at: datetime | None


async def create_subscription(
    conn: asyncpg.Connection,
    *,
    id: UUID,
    root_id: UUID,
    node_id: UUID,
    url: str,
    secret: str,
    types: Sequence[str],
    position: int,
    created_by: str,
    scope_path: str,
) -> SubscriptionView:
    await conn.execute(
        INSERT_SUBSCRIPTION, id, root_id, node_id, url, secret, list(types), position, created_by
    )
    view = await read_subscription(conn, id, scope_path)
    assert view is not None
    return view


async def read_subscription(
    conn: asyncpg.Connection, id: UUID, scope_path: str
) -> SubscriptionView | None:
    """An active subscription scoped inside ``scope_path`` (row-level security agrees)."""
    row = await conn.fetchrow(READ_SUBSCRIPTION, id, *subtree_bounds(scope_path))
    return SubscriptionView.from_record(row) if row is not None else None


async def list_subscriptions(
    conn: asyncpg.Connection,
    scope_path: str,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> list[SubscriptionView]:
    lo, hi = subtree_bounds(scope_path)
    at, last_id = after if after is not None else (None, None)
    rows = await conn.fetch(LIST_SUBSCRIPTIONS, lo, hi, at, last_id, limit)
    return [SubscriptionView.from_record(r) for r in rows]


async def delete_subscription(conn: asyncpg.Connection, id: UUID, scope_path: str) -> bool:
    return await conn.fetchval(DELETE_SUBSCRIPTION, id, *subtree_bounds(scope_path)) is not None


async def list_deliveries(
    conn: asyncpg.Connection,
    subscription_id: UUID,
    statuses: Sequence[str],
    after_position: int,
    limit: int,
) -> list[DeliveryView]:
    rows = await conn.fetch(LIST_DELIVERIES, subscription_id, list(statuses), after_position, limit)
    return [DeliveryView(**dict(r)) for r in rows]


async def redrive(conn: asyncpg.Connection, subscription_id: UUID) -> int:
    """Queue every dead letter of the subscription again; returns how many."""
    status: str = await conn.execute(REDRIVE, subscription_id)
    return int(status.split()[-1])


# -- delivery (system transactions, run by the worker) -----------------------------------

ACTIVE_SUBSCRIPTIONS = "SELECT id FROM webhook_subscriptions WHERE status = 'active' ORDER BY id"

LOAD_TARGET = """
SELECT s.id, s.root_id, s.node_id, n.code AS scope_code, s.url, s.secret, s.types, s.position,
       s.status
FROM webhook_subscriptions s LEFT JOIN nodes n ON n.id = s.node_id
WHERE s.id = $1
"""

READ_DELIVERY = """
SELECT status, attempts, next_attempt_at, event_id, event_type FROM webhook_deliveries
WHERE subscription_id = $1 AND position = $2
"""

NEXT_QUEUED = """
SELECT position, attempts, next_attempt_at FROM webhook_deliveries
WHERE subscription_id = $1 AND status = 'queued'
ORDER BY position
LIMIT 1
"""

UPSERT_DELIVERY = """
INSERT INTO webhook_deliveries (
    subscription_id, position, root_id, node_id, event_id, event_type, status, attempts,
    total_attempts, last_status, last_error, first_attempt_at, last_attempt_at,
    next_attempt_at, delivered_at, dead_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $10, now(), now(), $11,
        CASE WHEN $7 = 'delivered' THEN now() END, CASE WHEN $7 = 'dead' THEN now() END)
ON CONFLICT (subscription_id, position) DO UPDATE SET
    status = EXCLUDED.status,
    attempts = EXCLUDED.attempts,
    total_attempts = webhook_deliveries.total_attempts + 1,
    last_status = EXCLUDED.last_status,
    last_error = EXCLUDED.last_error,
    last_attempt_at = now(),
    next_attempt_at = EXCLUDED.next_attempt_at,
    delivered_at = EXCLUDED.delivered_at,
    dead_at = EXCLUDED.dead_at
"""

ADVANCE_CURSOR = """
UPDATE webhook_subscriptions SET position = $3, updated_at = now()
WHERE id = $1 AND position = $2
RETURNING id
"""

NOTE_DELIVERED = """
UPDATE webhook_subscriptions
SET delivered_count = delivered_count + 1, last_delivered_at = now()
WHERE id = $1
"""

NOTE_ERROR = """
UPDATE webhook_subscriptions SET last_error = $2, last_error_at = now() WHERE id = $1
"""


@dataclass(frozen=True)
class DeliveryTarget:
    """What the worker needs to deliver a subscription (the secret included)."""

    id: UUID
    root_id: UUID
    node_id: UUID
    scope_code: str | None
    url: str
    secret: str
    types: tuple[str, ...]
    position: int
    status: str

    @property
    def active(self) -> bool:
        return self.status == "active" and self.scope_code is not None


@dataclass(frozen=True)
class DeliveryState:
    status: str
    attempts: int
    next_attempt_at: datetime | None
    event_id: UUID
    event_type: str


@dataclass(frozen=True)
class Attempt:
    """The outcome of one delivery attempt, as recorded."""

    position: int
    event_id: UUID
    event_type: str
    attempts: int
    status: str  # delivered, retrying or dead
    http_status: int | None = None
    error: str | None = None
    next_attempt_at: datetime | None = None


async def active_subscription_ids(conn: asyncpg.Connection) -> list[UUID]:
    return [r["id"] for r in await conn.fetch(ACTIVE_SUBSCRIPTIONS)]


async def load_target(conn: asyncpg.Connection, id: UUID) -> DeliveryTarget | None:
    row = await conn.fetchrow(LOAD_TARGET, id)
    if row is None:
        return None
    values = dict(row)
    values["types"] = tuple(values["types"] or ())
    return DeliveryTarget(**values)


async def read_delivery(
    conn: asyncpg.Connection, subscription_id: UUID, position: int
) -> DeliveryState | None:
    row = await conn.fetchrow(READ_DELIVERY, subscription_id, position)
    return DeliveryState(**dict(row)) if row is not None else None


async def next_queued(conn: asyncpg.Connection, subscription_id: UUID) -> int | None:
    row = await conn.fetchrow(NEXT_QUEUED, subscription_id)
    return row["position"] if row is not None else None


async def record_attempt(
    conn: asyncpg.Connection,
    target: DeliveryTarget,
    attempt: Attempt,
    *,
    advance_from: int | None,
) -> bool:
    """Record an attempt; when it settles a new event, move the cursor in the same transaction.

    ``advance_from``: the cursor the worker read (the cursor moves to the attempt's
    position only if it is still there); None for a re-driven dead letter, which sits
    below the cursor. Returns False when the cursor had moved: another worker owns the
    subscription now, and the caller must stop (its transaction is rolled back).
    """
    try:
        async with conn.transaction():
            await conn.execute(
                UPSERT_DELIVERY,
                target.id,
                attempt.position,
                target.root_id,
                target.node_id,
                attempt.event_id,
                attempt.event_type,
                attempt.status,
                attempt.attempts,
                attempt.http_status,
                attempt.error,
                attempt.next_attempt_at,
            )
            if attempt.status == "delivered":
                await conn.execute(NOTE_DELIVERED, target.id)
            elif attempt.error is not None:
                await conn.execute(NOTE_ERROR, target.id, attempt.error[:500])
            if advance_from is not None and attempt.status in ("delivered", "dead"):
                moved = await conn.fetchval(
                    ADVANCE_CURSOR, target.id, advance_from, attempt.position
                )
                if moved is None:
                    raise _CursorMoved
    except _CursorMoved:
        return False
    return True


class _CursorMoved(Exception):
    pass


async def advance_cursor(conn: asyncpg.Connection, id: UUID, expected: int, new: int) -> bool:
    """Move an idle cursor past events that were filtered out; False when it had moved."""
    if new <= expected:
        return True
    return await conn.fetchval(ADVANCE_CURSOR, id, expected, new) is not None


async def note_error(conn: asyncpg.Connection, id: UUID, error: str) -> None:
    await conn.execute(NOTE_ERROR, id, error[:500])


# -- relay cursors (system) ---------------------------------------------------------------

ENSURE_RELAY = """
INSERT INTO relay_cursors (name) VALUES ($1) ON CONFLICT (name) DO NOTHING
"""
READ_RELAY = "SELECT position FROM relay_cursors WHERE name = $1"
SAVE_RELAY = """
UPDATE relay_cursors
SET position = $2, published = published + $3, updated_at = now(), error = NULL
WHERE name = $1
"""
SAVE_RELAY_ERROR = "UPDATE relay_cursors SET error = $2, updated_at = now() WHERE name = $1"


async def relay_position(conn: asyncpg.Connection, name: str) -> int:
    await conn.execute(ENSURE_RELAY, name)
    position: int = await conn.fetchval(READ_RELAY, name)
    return position


async def save_relay(conn: asyncpg.Connection, name: str, position: int, published: int) -> None:
    await conn.execute(SAVE_RELAY, name, position, published)


async def save_relay_error(conn: asyncpg.Connection, name: str, error: str) -> None:
    await conn.execute(SAVE_RELAY_ERROR, name, error[:2000])
