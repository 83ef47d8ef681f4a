"""Projection "service_orders": the 五单 offers (``rm_service_offers``) and orders
(``rm_service_orders``), migration 0026.

Every update is guarded by the stream version (``version < $v``), so a batch applied twice
changes nothing; an event of an order the table does not know raises (never skipped,
``projections.rows``).
"""

from __future__ import annotations

from typing import Any

import asyncpg

from domain.service import ServiceOffer, ServiceOrder
from infra.event_store import StoredEvent
from projections.rows import RowGuard
from projections.subscriptions import PerEvent, on

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

ORDERS = RowGuard("rm_service_orders")


class ServiceOrdersProjection(PerEvent):
    name = "service_orders"
    tables: tuple[str, ...] = ("rm_service_offers", "rm_service_orders")

    @on(ServiceOffer.Offered)
    async def offered(self, conn: asyncpg.Connection, e: StoredEvent, o: Any) -> None:
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

    @on(ServiceOrder.Requested)
    async def requested(self, conn: asyncpg.Connection, e: StoredEvent, r: Any) -> None:
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

    @staticmethod
    async def _update(conn: asyncpg.Connection, e: StoredEvent, sql: str, *fields: Any) -> None:
        await ORDERS.update(conn, e, sql, e.version, e.occurred_at, *fields)

    @on(ServiceOrder.Dispatched)
    async def dispatched(self, conn: asyncpg.Connection, e: StoredEvent, d: Any) -> None:
        await self._update(conn, e, DISPATCHED, d.member_id, d.unit_id, d.unit_code, d.accept_by)

    @on(ServiceOrder.Accepted)
    async def accepted(self, conn: asyncpg.Connection, e: StoredEvent, _: Any) -> None:
        await self._update(conn, e, ACCEPTED)

    @on(ServiceOrder.Completed)
    async def completed(self, conn: asyncpg.Connection, e: StoredEvent, c: Any) -> None:
        await self._update(conn, e, COMPLETED, c.summary, c.hours)

    @on(ServiceOrder.Evaluated)
    async def evaluated(self, conn: asyncpg.Connection, e: StoredEvent, v: Any) -> None:
        await self._update(conn, e, EVALUATED, v.rating, v.comment, v.points)

    @on(ServiceOrder.Cancelled)
    async def cancelled(self, conn: asyncpg.Connection, e: StoredEvent, x: Any) -> None:
        await self._update(conn, e, CANCELLED, x.reason)

    @on(ServiceOrder.Overdue)
    async def overdue(self, conn: asyncpg.Connection, e: StoredEvent, _: Any) -> None:
        await self._update(conn, e, OVERDUE)
