"""Projection "service_orders": the 五单 offers (``rm_service_offers``) and orders
(``rm_service_orders``), migration 0026.

Every update is guarded by the stream version (``version < $v``), so a batch applied twice
changes nothing; an event of an order the table does not know raises (never skipped).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from uuid import UUID

import asyncpg
import msgspec

from infra.event_store import StoredEvent

INSERT_OFFER = """
INSERT INTO rm_service_offers (root_id, id, node_id, community_code, provider_id, provider_code,
                               member_id, title, category, offered_at, version)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (root_id, id) DO NOTHING
"""

INSERT_ORDER = """
INSERT INTO rm_service_orders (root_id, id, node_id, community_code, title, description,
                               offer_id, due_on, status, requested_at, version, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'requested', $9, $10, $9)
ON CONFLICT (root_id, id) DO NOTHING
"""

_GUARD = "version = $3, updated_at = $4 WHERE root_id = $1 AND id = $2 AND version < $3"


def _update(assignments: str) -> str:
    return f"UPDATE rm_service_orders SET {assignments}, {_GUARD}"


DISPATCHED = _update(
    "status = 'dispatched', member_id = $5, unit_id = $6, unit_code = $7, accept_by = $8,"
    " dispatched_at = $4, overdue = false, dispatch_count = dispatch_count + 1"
)
ACCEPTED = _update("status = 'accepted', accepted_at = $4")
COMPLETED = _update("status = 'completed', completed_at = $4, summary = $5, hours = $6")
EVALUATED = _update(
    "status = 'evaluated', evaluated_at = $4, rating = $5, comment = $6, points_awarded = $7"
)
CANCELLED = _update("status = 'cancelled', cancelled_at = $4, cancel_reason = $5")
OVERDUE = _update("overdue = true")

KNOWN = "SELECT EXISTS (SELECT 1 FROM rm_service_orders WHERE root_id = $1 AND id = $2)"


class _Offered(msgspec.Struct):
    community_id: UUID
    community_code: str
    title: str
    category: str
    provider_id: UUID | None = None
    provider_code: str | None = None
    member_id: UUID | None = None


class _Requested(msgspec.Struct):
    community_id: UUID
    community_code: str
    title: str
    description: str
    offer_id: UUID | None = None
    due_on: date | None = None


class _Dispatched(msgspec.Struct):
    accept_by: datetime
    member_id: UUID | None = None
    unit_id: UUID | None = None
    unit_code: str | None = None


class _Completed(msgspec.Struct):
    summary: str
    hours: float | None = None


class _Evaluated(msgspec.Struct):
    rating: int
    comment: str | None = None
    points: int = 0


class _Cancelled(msgspec.Struct):
    reason: str


UPDATES = (
    "ServiceDispatched",
    "ServiceAccepted",
    "ServiceCompleted",
    "ServiceEvaluated",
    "ServiceCancelled",
    "ServiceOverdue",
)


class ServiceOrdersProjection:
    name = "service_orders"
    handles = frozenset({"ServiceOffered", "ServiceRequested", *UPDATES})
    tables: tuple[str, ...] = ("rm_service_offers", "rm_service_orders")

    async def apply(self, conn: asyncpg.Connection, events: Sequence[StoredEvent]) -> None:
        for e in events:
            await self._apply(conn, e)

    async def _apply(self, conn: asyncpg.Connection, e: StoredEvent) -> None:
        t = e.type
        head = (e.root_id, e.stream_id, e.version, e.occurred_at)
        if t == "ServiceOffered":
            o = msgspec.json.decode(e.data, type=_Offered)
            await conn.execute(
                INSERT_OFFER,
                e.root_id,
                e.stream_id,
                o.community_id,
                o.community_code,
                o.provider_id,
                o.provider_code,
                o.member_id,
                o.title,
                o.category,
                e.occurred_at,
                e.version,
            )
            return
        if t == "ServiceRequested":
            r = msgspec.json.decode(e.data, type=_Requested)
            await conn.execute(
                INSERT_ORDER,
                e.root_id,
                e.stream_id,
                r.community_id,
                r.community_code,
                r.title,
                r.description,
                r.offer_id,
                r.due_on,
                e.occurred_at,
                e.version,
            )
            return
        if not await conn.fetchval(KNOWN, e.root_id, e.stream_id):
            raise RuntimeError(
                f"{t} v{e.version} of service order {e.stream_id}: not in the read model"
            )
        if t == "ServiceDispatched":
            d = msgspec.json.decode(e.data, type=_Dispatched)
            await conn.execute(DISPATCHED, *head, d.member_id, d.unit_id, d.unit_code, d.accept_by)
        elif t == "ServiceAccepted":
            await conn.execute(ACCEPTED, *head)
        elif t == "ServiceCompleted":
            c = msgspec.json.decode(e.data, type=_Completed)
            await conn.execute(COMPLETED, *head, c.summary, c.hours)
        elif t == "ServiceEvaluated":
            v = msgspec.json.decode(e.data, type=_Evaluated)
            await conn.execute(EVALUATED, *head, v.rating, v.comment, v.points)
        elif t == "ServiceCancelled":
            x = msgspec.json.decode(e.data, type=_Cancelled)
            await conn.execute(CANCELLED, *head, x.reason)
        elif t == "ServiceOverdue":
            await conn.execute(OVERDUE, *head)
        else:
            raise RuntimeError(f"service_orders cannot apply {t}")
