"""The SQL of the service reads (``rm_service_orders``, ``rm_service_offers``) and rows → views.

Codes are reissued on reorganisation: the views show the nodes' current codes. What a caller
sees is its scope's records and the streams it is a party of (a unit: the orders dispatched
to it or its members, the offers it publishes).
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

from infra.database import Scope
from services.api.queries import Where
from services.api.service_orders.schemas import OfferView, OrderView

SELECT_ORDERS = """
SELECT o.*, coalesce(c.code, o.community_code) AS current_community_code,
       coalesce(u.code, o.unit_code) AS current_unit_code
FROM rm_service_orders o
LEFT JOIN nodes c ON c.id = o.node_id
LEFT JOIN nodes u ON u.id = o.unit_id
"""
SELECT_OFFERS = """
SELECT f.*, coalesce(c.code, f.community_code) AS current_community_code,
       coalesce(u.code, f.provider_code) AS current_provider_code
FROM rm_service_offers f
LEFT JOIN nodes c ON c.id = f.node_id
LEFT JOIN nodes u ON u.id = f.provider_id
"""


def _visible(alias: str) -> str:
    return (
        f"({alias}.node_id IN (SELECT civic_scope_nodes())"
        f" OR {alias}.id IN (SELECT civic_party_streams()))"
    )


READ_ORDER = f"{SELECT_ORDERS} WHERE o.root_id = $1 AND o.id = $2 AND {_visible('o')}"


def _of_subtree(where: Where, alias: str, scope: Scope, path: str) -> None:
    """Visible records at a node of the subtree ``path``; for a unit principal also those a
    node of the subtree is a party of."""
    where.add(f"{alias}.root_id = {where.arg(scope.root_id, 'uuid')}")
    where.add(_visible(alias))
    where.recorded_in_subtree(alias, path, parties=scope.is_unit)


def list_orders(
    scope: Scope,
    path: str,
    status: str | None,
    overdue: bool | None,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> tuple[str, list[object]]:
    """The orders of the subtree ``path``, newest first (``limit + 1`` rows)."""
    where = Where()
    _of_subtree(where, "o", scope, path)
    where.equals("o.status", status, "text")
    where.equals("o.overdue", overdue, "bool")
    if after is not None:
        where.before(("o.requested_at", "o.id"), after, ("timestamptz", "uuid"))
    return where.page(SELECT_ORDERS, "o.requested_at DESC, o.id DESC", limit), where.args


def list_offers(
    scope: Scope, path: str, after: tuple[datetime, UUID] | None, limit: int
) -> tuple[str, list[object]]:
    """The offers of the subtree ``path``, newest first (``limit + 1`` rows)."""
    where = Where()
    _of_subtree(where, "f", scope, path)
    if after is not None:
        where.before(("f.offered_at", "f.id"), after, ("timestamptz", "uuid"))
    return where.page(SELECT_OFFERS, "f.offered_at DESC, f.id DESC", limit), where.args


def offer_view(r: asyncpg.Record) -> OfferView:
    return OfferView(
        id=r["id"],
        community_code=r["current_community_code"],
        provider_code=r["current_provider_code"],
        member_id=r["member_id"],
        title=r["title"],
        category=r["category"],
        offered_at=r["offered_at"],
        version=r["version"],
    )


def order_view(r: asyncpg.Record) -> OrderView:
    return OrderView(
        id=r["id"],
        community_code=r["current_community_code"],
        title=r["title"],
        description=r["description"],
        offer_id=r["offer_id"],
        due_on=r["due_on"],
        status=r["status"],
        member_id=r["member_id"],
        unit_code=r["current_unit_code"],
        accept_by=r["accept_by"],
        overdue=r["overdue"],
        dispatch_count=r["dispatch_count"],
        summary=r["summary"],
        hours=float(r["hours"]) if r["hours"] is not None else None,
        rating=r["rating"],
        comment=r["comment"],
        points_awarded=r["points_awarded"],
        cancel_reason=r["cancel_reason"],
        requested_at=r["requested_at"],
        dispatched_at=r["dispatched_at"],
        accepted_at=r["accepted_at"],
        completed_at=r["completed_at"],
        evaluated_at=r["evaluated_at"],
        cancelled_at=r["cancelled_at"],
        version=r["version"],
        updated_at=r["updated_at"],
    )
