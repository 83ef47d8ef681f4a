"""/v1/service-offers and /v1/service-orders — the 五单 volunteer-service loop
(亮单 → 点单 → 派单 → 接单 → 评单).

Roles and placement: see ``services/commands/service_orders.py``.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import asyncpg
import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter

from domain.service import MAX_HOURS, MAX_RATING, MIN_RATING
from infra import directory
from infra.database import Scope
from services.api.deps import (
    Caller,
    Ctx,
    MinPosition,
    read_scope,
    require,
    run_and_respond,
)
from services.api.paging import Cursor, Limit, Page, decode_time_id_cursor, page_of
from services.commands import service_orders as cmd
from services.fields import NodeCode, Text, Title
from services.problems import not_caught_up, not_found
from services.roles import ASSIGNEES, READERS, WRITERS

PROJECTIONS = ("service_orders",)
OrderId = FromPath[UUID]
OrderStatus = Literal["requested", "dispatched", "accepted", "completed", "evaluated", "cancelled"]


# -- request bodies ------------------------------------------------------------------------------


class OfferCreate(msgspec.Struct, forbid_unknown_fields=True):
    community_code: NodeCode
    title: Annotated[Title, msgspec.Meta(description="e.g. 义务理发, 法律咨询, 家电维修")]
    category: Title
    provider_code: Annotated[NodeCode, msgspec.Meta(description="the unit offering")] | None = None
    member_id: Annotated[UUID, msgspec.Meta(description="the member offering")] | None = None


class OrderCreate(msgspec.Struct, forbid_unknown_fields=True):
    community_code: NodeCode
    title: Title
    description: Text
    offer_id: UUID | None = None
    due_on: date | None = None


class OrderDispatch(msgspec.Struct, forbid_unknown_fields=True):
    member_id: Annotated[UUID, msgspec.Meta(description="exactly one of member_id, unit_code")] | (
        None
    ) = None
    unit_code: NodeCode | None = None


class OrderComplete(msgspec.Struct, forbid_unknown_fields=True):
    summary: Text
    hours: (
        Annotated[
            float,
            msgspec.Meta(
                description=f"more than 0, at most {MAX_HOURS}; a member's hours are recorded "
                "as their service (双报到)"
            ),
        ]
        | None
    ) = None


class OrderEvaluate(msgspec.Struct, forbid_unknown_fields=True):
    rating: Annotated[int, msgspec.Meta(description=f"{MIN_RATING}..{MAX_RATING}")]
    comment: Text | None = None


class OrderCancel(msgspec.Struct, forbid_unknown_fields=True):
    reason: Text


# -- views ---------------------------------------------------------------------------------------


class OfferView(msgspec.Struct):
    id: UUID
    community_code: str
    provider_code: str | None
    member_id: UUID | None
    title: str
    category: str
    offered_at: datetime
    version: int


class OrderView(msgspec.Struct):
    id: UUID
    community_code: str
    title: str
    description: str
    offer_id: UUID | None
    due_on: date | None
    status: str
    member_id: UUID | None
    unit_code: str | None
    accept_by: datetime | None
    #: dispatched and not accepted by ``accept_by`` (ServiceOverdue recorded)
    overdue: bool
    dispatch_count: int
    summary: str | None
    hours: float | None
    rating: int | None
    comment: str | None
    points_awarded: int
    cancel_reason: str | None
    requested_at: datetime
    dispatched_at: datetime | None
    accepted_at: datetime | None
    completed_at: datetime | None
    evaluated_at: datetime | None
    cancelled_at: datetime | None
    version: int
    updated_at: datetime


CHANGED = {200: ResponseSpec(data_container=cmd.ServiceOrderChanged, description="Recorded")}
CREATED = {201: ResponseSpec(data_container=cmd.ServiceOrderChanged, description="Requested")}
OFFERED = {201: ResponseSpec(data_container=cmd.ServiceOfferChanged, description="Offered")}

# -- reads ---------------------------------------------------------------------------------------

IN_SCOPE = "(o.node_id IN (SELECT civic_scope_nodes()) OR o.id IN (SELECT civic_party_streams()))"

SELECT_ORDERS = """
SELECT o.*, coalesce(c.code, o.community_code) AS current_community_code,
       coalesce(u.code, o.unit_code) AS current_unit_code
FROM rm_service_orders o
LEFT JOIN nodes c ON c.id = o.node_id
LEFT JOIN nodes u ON u.id = o.unit_id
"""
READ_ORDER = f"{SELECT_ORDERS} WHERE o.root_id = $1 AND o.id = $2 AND {IN_SCOPE}"
STREAM_VISIBLE = "SELECT EXISTS (SELECT 1 FROM events WHERE root_id = $1 AND stream_id = $2)"

# $1 root, $2/$3 the subtree's path range, $4 unit scope, $5 status, $6/$7 cursor, $8 limit,
# $9 overdue
LIST_ORDERS = f"""
{SELECT_ORDERS}
WHERE o.root_id = $1 AND {IN_SCOPE}
  AND (o.node_id IN (SELECT id FROM nodes WHERE path >= $2 AND path < $3)
       OR ($4 AND o.id IN (SELECT p.stream_id FROM stream_parties p
                           WHERE p.root_id = o.root_id
                             AND p.node_id IN (SELECT id FROM nodes
                                               WHERE path >= $2 AND path < $3))))
  AND ($5::text IS NULL OR o.status = $5)
  AND ($6::timestamptz IS NULL OR (o.requested_at, o.id) < ($6, $7::uuid))
  AND ($9::bool IS NULL OR o.overdue = $9)
ORDER BY o.requested_at DESC, o.id DESC
LIMIT $8
"""

LIST_OFFERS = """
SELECT f.*, coalesce(c.code, f.community_code) AS current_community_code,
       coalesce(u.code, f.provider_code) AS current_provider_code
FROM rm_service_offers f
LEFT JOIN nodes c ON c.id = f.node_id
LEFT JOIN nodes u ON u.id = f.provider_id
WHERE f.root_id = $1
  AND (f.node_id IN (SELECT civic_scope_nodes()) OR f.id IN (SELECT civic_party_streams()))
  AND (f.node_id IN (SELECT id FROM nodes WHERE path >= $2 AND path < $3)
       OR ($4 AND f.id IN (SELECT p.stream_id FROM stream_parties p
                           WHERE p.root_id = f.root_id
                             AND p.node_id IN (SELECT id FROM nodes
                                               WHERE path >= $2 AND path < $3))))
  AND ($5::timestamptz IS NULL OR (f.offered_at, f.id) < ($5, $6::uuid))
ORDER BY f.offered_at DESC, f.id DESC
LIMIT $7
"""


def _order_view(r: asyncpg.Record) -> OrderView:
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


async def subtree_range(
    conn: asyncpg.Connection, scope: Scope, node: str | None
) -> tuple[str, str]:
    """The path range of ``?node=`` (default: the caller's scope); 404 outside the scope."""
    path = scope.path
    if node is not None:
        found = await directory.find_by_code(conn, node)
        if found is None or not scope.contains_path(found.path):
            raise not_found(f"node {node}")
        path = found.path
    return path, path[:-1] + "0"


NodeFilter = Annotated[
    str | None,
    QueryParameter(required=False, max_length=40, description="a subtree (default: your scope)"),
]


class ServiceOfferController(Controller):
    path = "/v1/service-offers"
    tags = ["service"]

    @post(
        "/",
        status_code=201,
        responses=OFFERED,
        summary="Publish an offer (亮单): ServiceOffered",
        description="Exactly one of provider_code (a unit) and member_id. Roles: operator or "
        "admin whose scope contains the community; or a unit principal for its own unit, to "
        "any community of the root tenant.",
    )
    async def create(
        self,
        data: JSONBody[OfferCreate],
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
    ) -> Response[bytes]:
        require(principal, ASSIGNEES, "publishing a service offer")
        return await run_and_respond(
            request,
            ctx,
            principal,
            lambda s: cmd.offer(
                s,
                community_code=data.community_code,
                provider_code=data.provider_code,
                member_id=data.member_id,
                title=data.title,
                category=data.category,
            ),
        )

    @get("/", summary="List the offers of a subtree (newest first)")
    async def list_offers(
        self,
        ctx: Ctx,
        principal: Caller,
        node: NodeFilter = None,
        limit: Limit = 100,
        cursor: Cursor = None,
        min_position: MinPosition = None,
    ) -> Page[OfferView]:
        require(principal, READERS, "listing service offers")
        after = decode_time_id_cursor(cursor)
        async with read_scope(
            ctx, principal, min_position=min_position, projections=PROJECTIONS
        ) as (conn, scope):
            lo, hi = await subtree_range(conn, scope, node)
            rows = await conn.fetch(
                LIST_OFFERS,
                scope.root_id,
                lo,
                hi,
                scope.is_unit,
                after[0] if after else None,
                after[1] if after else None,
                limit + 1,
            )
        items = [
            OfferView(
                id=r["id"],
                community_code=r["current_community_code"],
                provider_code=r["current_provider_code"],
                member_id=r["member_id"],
                title=r["title"],
                category=r["category"],
                offered_at=r["offered_at"],
                version=r["version"],
            )
            for r in rows
        ]
        return page_of(items, limit, lambda v: [v.offered_at.isoformat(), str(v.id)])


class ServiceOrderController(Controller):
    path = "/v1/service-orders"
    tags = ["service"]

    @post(
        "/",
        status_code=201,
        responses=CREATED,
        summary="Record a resident's need (点单): ServiceRequested",
        description="Roles: operator or admin whose scope contains the community.",
    )
    async def create(
        self,
        data: JSONBody[OrderCreate],
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
    ) -> Response[bytes]:
        require(principal, WRITERS, "requesting a service")
        return await run_and_respond(
            request,
            ctx,
            principal,
            lambda s: cmd.request(
                s,
                community_code=data.community_code,
                title=data.title,
                description=data.description,
                offer_id=data.offer_id,
                due_on=data.due_on,
            ),
        )

    @post(
        "/{order_id:uuid}/dispatch",
        status_code=200,
        responses=CHANGED,
        summary="Dispatch to a member or a unit (派单): ServiceDispatched",
        description="Exactly one of member_id and unit_code. From requested, or again from "
        "dispatched (to someone else, e.g. after ServiceOverdue). The unit (or the member's home "
        "unit) then sees the order. It must be accepted within CIVIC_SERVICE_ACCEPT_MINUTES. "
        "Roles: operator or admin over the order's community.",
    )
    async def dispatch(
        self,
        order_id: OrderId,
        data: JSONBody[OrderDispatch],
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
    ) -> Response[bytes]:
        require(principal, WRITERS, "dispatching a service order")
        return await run_and_respond(
            request,
            ctx,
            principal,
            lambda s: cmd.dispatch(
                s, order_id=order_id, member_id=data.member_id, unit_code=data.unit_code
            ),
        )

    @post(
        "/{order_id:uuid}/accept",
        status_code=200,
        responses=CHANGED,
        summary="Accept the order (接单): ServiceAccepted",
        description="Roles: the assigned unit or the member's home unit (unit, operator or "
        "admin over it), or the community. No body.",
    )
    async def accept(
        self, order_id: OrderId, request: Request[Any, Any, Any], ctx: Ctx, principal: Caller
    ) -> Response[bytes]:
        require(principal, ASSIGNEES, "accepting a service order")
        return await run_and_respond(
            request, ctx, principal, lambda s: cmd.accept(s, order_id=order_id)
        )

    @post(
        "/{order_id:uuid}/complete",
        status_code=200,
        responses=CHANGED,
        summary="Report the service done: ServiceCompleted (+ the member's ServiceRecorded)",
        description="With hours and a member assigned, the member's ServiceRecorded (双报到) is "
        "appended in the same transaction. Roles: as for accept.",
    )
    async def complete(
        self,
        order_id: OrderId,
        data: JSONBody[OrderComplete],
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
    ) -> Response[bytes]:
        require(principal, ASSIGNEES, "completing a service order")
        return await run_and_respond(
            request,
            ctx,
            principal,
            lambda s: cmd.complete(s, order_id=order_id, summary=data.summary, hours=data.hours),
        )

    @post(
        "/{order_id:uuid}/evaluate",
        status_code=200,
        responses=CHANGED,
        summary="Record the resident's rating (评单): ServiceEvaluated (+ PointsAwarded)",
        description="The member who served earns points by CIVIC_POINTS_PER_RATING (default "
        "5:10, 10 points for 5 stars), recorded as their PointsAwarded in the same transaction. "
        "Roles: operator or admin over the order's community.",
    )
    async def evaluate(
        self,
        order_id: OrderId,
        data: JSONBody[OrderEvaluate],
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
    ) -> Response[bytes]:
        require(principal, WRITERS, "evaluating a service order")
        return await run_and_respond(
            request,
            ctx,
            principal,
            lambda s: cmd.evaluate(s, order_id=order_id, rating=data.rating, comment=data.comment),
        )

    @post(
        "/{order_id:uuid}/cancel",
        status_code=200,
        responses=CHANGED,
        summary="Cancel the order: ServiceCancelled",
        description="From any state before completed. Roles: operator or admin over the "
        "order's community.",
    )
    async def cancel(
        self,
        order_id: OrderId,
        data: JSONBody[OrderCancel],
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
    ) -> Response[bytes]:
        require(principal, WRITERS, "cancelling a service order")
        return await run_and_respond(
            request, ctx, principal, lambda s: cmd.cancel(s, order_id=order_id, reason=data.reason)
        )

    @get("/{order_id:uuid}", summary="Read a service order (ETag: its version)")
    async def read(
        self, order_id: OrderId, ctx: Ctx, principal: Caller, min_position: MinPosition = None
    ) -> Response[OrderView]:
        require(principal, READERS, "reading service orders")
        async with read_scope(
            ctx, principal, min_position=min_position, projections=PROJECTIONS
        ) as (conn, scope):
            row = await conn.fetchrow(READ_ORDER, scope.root_id, order_id)
            recorded = row is None and await conn.fetchval(STREAM_VISIBLE, scope.root_id, order_id)
        if row is None:
            if recorded:
                raise not_caught_up("service order")
            raise not_found(f"service order {order_id}")
        return Response(content=_order_view(row), headers={"ETag": f'"{row["version"]}"'})

    @get(
        "/",
        summary="List the service orders of a subtree (newest first)",
        description="A unit principal also sees the orders dispatched to it or its members.",
    )
    async def list_orders(
        self,
        ctx: Ctx,
        principal: Caller,
        node: NodeFilter = None,
        status: Annotated[OrderStatus | None, QueryParameter(required=False)] = None,
        overdue: Annotated[
            bool | None,
            QueryParameter(
                required=False, description="ServiceOverdue recorded (not accepted in time)"
            ),
        ] = None,
        limit: Limit = 100,
        cursor: Cursor = None,
        min_position: MinPosition = None,
    ) -> Page[OrderView]:
        require(principal, READERS, "listing service orders")
        after = decode_time_id_cursor(cursor)
        async with read_scope(
            ctx, principal, min_position=min_position, projections=PROJECTIONS
        ) as (conn, scope):
            lo, hi = await subtree_range(conn, scope, node)
            rows = await conn.fetch(
                LIST_ORDERS,
                scope.root_id,
                lo,
                hi,
                scope.is_unit,
                status,
                after[0] if after else None,
                after[1] if after else None,
                limit + 1,
                overdue,
            )
        return page_of(
            [_order_view(r) for r in rows],
            limit,
            lambda v: [v.requested_at.isoformat(), str(v.id)],
        )
