"""The routes of the 五单 loop: offers (亮单), and orders from 点单 to 评单."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, Response, get, post
from litestar.params import FromPath, JSONBody, QueryParameter

from domain.service import ServiceOrder
from services.api.code_filters import NodeFilter, subtree_path
from services.api.deps import Caller, Command, Ctx, MinPosition, read_scope
from services.api.guards import needs
from services.api.missing import missing
from services.api.paging import Cursor, Limit, Page, decode_time_id_cursor, page_of
from services.api.responses import ETAG, documented
from services.api.service_orders import queries
from services.api.service_orders.schemas import OfferView, OrderStatus, OrderView
from services.commands import service_orders as commands
from services.commands.service_orders import (
    OfferCreate,
    OrderCancel,
    OrderComplete,
    OrderCreate,
    OrderDispatch,
    OrderEvaluate,
)
from services.roles import ASSIGNEES, READERS, WRITERS

PROJECTIONS = ("service_orders",)
OrderId = FromPath[UUID]

CHANGED = documented(200, commands.ServiceOrderChanged, "Recorded")


class ServiceOfferController(Controller):
    path = "/v1/service-offers"
    tags = ["service"]

    @post(
        "/",
        status_code=201,
        responses=documented(201, commands.ServiceOfferChanged, "Offered"),
        summary="Publish an offer (亮单): ServiceOffered",
        description="Exactly one of provider_code (a unit) and member_id. Roles: operator or "
        "admin whose scope contains the community; or a unit principal for its own unit, to "
        "any community of the root tenant.",
        guards=[needs(ASSIGNEES, "publishing a service offer")],
    )
    async def create(self, data: JSONBody[OfferCreate], command: Command) -> Response[bytes]:
        return await command.run(commands.offer, data)

    @get(
        "/",
        summary="List the offers of a subtree (newest first)",
        guards=[needs(READERS, "listing service offers")],
    )
    async def list_offers(
        self,
        ctx: Ctx,
        principal: Caller,
        node: NodeFilter = None,
        limit: Limit = 100,
        cursor: Cursor = None,
        min_position: MinPosition = None,
    ) -> Page[OfferView]:
        after = decode_time_id_cursor(cursor)
        async with read_scope(
            ctx, principal, min_position=min_position, projections=PROJECTIONS
        ) as (conn, scope):
            path = await subtree_path(conn, scope, node)
            sql, args = queries.list_offers(scope, path, after, limit)
            rows = await conn.fetch(sql, *args)
        items = [queries.offer_view(r) for r in rows]
        return page_of(items, limit, lambda v: [v.offered_at.isoformat(), str(v.id)])


class ServiceOrderController(Controller):
    path = "/v1/service-orders"
    tags = ["service"]

    @post(
        "/",
        status_code=201,
        responses=documented(201, commands.ServiceOrderChanged, "Requested"),
        summary="Record a resident's need (点单): ServiceRequested",
        description="Roles: operator or admin whose scope contains the community.",
        guards=[needs(WRITERS, "requesting a service")],
    )
    async def create(self, data: JSONBody[OrderCreate], command: Command) -> Response[bytes]:
        return await command.run(commands.request, data)

    @post(
        "/{order_id:uuid}/dispatch",
        status_code=200,
        responses=CHANGED,
        summary="Dispatch to a member or a unit (派单): ServiceDispatched",
        description="Exactly one of member_id and unit_code. From requested, or again from "
        "dispatched (to someone else, e.g. after ServiceOverdue). The unit (or the member's home "
        "unit) then sees the order. It must be accepted within CIVIC_SERVICE_ACCEPT_MINUTES. "
        "Roles: operator or admin over the order's community.",
        guards=[needs(WRITERS, "dispatching a service order")],
    )
    async def dispatch(
        self, order_id: OrderId, data: JSONBody[OrderDispatch], command: Command
    ) -> Response[bytes]:
        return await command.run(commands.dispatch, order_id, data)

    @post(
        "/{order_id:uuid}/accept",
        status_code=200,
        responses=CHANGED,
        summary="Accept the order (接单): ServiceAccepted",
        description="Roles: the assigned unit or the member's home unit (unit, operator or "
        "admin over it), or the community. No body.",
        guards=[needs(ASSIGNEES, "accepting a service order")],
    )
    async def accept(self, order_id: OrderId, command: Command) -> Response[bytes]:
        return await command.run(commands.accept, order_id)

    @post(
        "/{order_id:uuid}/complete",
        status_code=200,
        responses=CHANGED,
        summary="Report the service done: ServiceCompleted (+ the member's ServiceRecorded)",
        description="With hours and a member assigned, the member's ServiceRecorded (双报到) is "
        "appended in the same transaction. Roles: as for accept.",
        guards=[needs(ASSIGNEES, "completing a service order")],
    )
    async def complete(
        self, order_id: OrderId, data: JSONBody[OrderComplete], command: Command
    ) -> Response[bytes]:
        return await command.run(commands.complete, order_id, data)

    @post(
        "/{order_id:uuid}/evaluate",
        status_code=200,
        responses=CHANGED,
        summary="Record the resident's rating (评单): ServiceEvaluated (+ PointsAwarded)",
        description="The member who served earns points by CIVIC_POINTS_PER_RATING (default "
        "5:10, 10 points for 5 stars), recorded as their PointsAwarded in the same transaction. "
        "Roles: operator or admin over the order's community.",
        guards=[needs(WRITERS, "evaluating a service order")],
    )
    async def evaluate(
        self, order_id: OrderId, data: JSONBody[OrderEvaluate], command: Command
    ) -> Response[bytes]:
        return await command.run(commands.evaluate, order_id, data)

    @post(
        "/{order_id:uuid}/cancel",
        status_code=200,
        responses=CHANGED,
        summary="Cancel the order: ServiceCancelled",
        description="From any state before completed. Roles: operator or admin over the "
        "order's community.",
        guards=[needs(WRITERS, "cancelling a service order")],
    )
    async def cancel(
        self, order_id: OrderId, data: JSONBody[OrderCancel], command: Command
    ) -> Response[bytes]:
        return await command.run(commands.cancel, order_id, data)

    @get(
        "/{order_id:uuid}",
        summary="Read a service order (ETag: its version)",
        response_headers=ETAG,
        guards=[needs(READERS, "reading service orders")],
    )
    async def read(
        self, order_id: OrderId, ctx: Ctx, principal: Caller, min_position: MinPosition = None
    ) -> Response[OrderView]:
        async with read_scope(
            ctx, principal, min_position=min_position, projections=PROJECTIONS
        ) as (conn, scope):
            row = await conn.fetchrow(queries.READ_ORDER, scope.root_id, order_id)
            if row is None:
                raise await missing(conn, scope.root_id, order_id, ServiceOrder, "service order")
        return Response(content=queries.order_view(row), headers={"ETag": f'"{row["version"]}"'})

    @get(
        "/",
        summary="List the service orders of a subtree (newest first)",
        description="A unit principal also sees the orders dispatched to it or its members.",
        guards=[needs(READERS, "listing service orders")],
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
        after = decode_time_id_cursor(cursor)
        async with read_scope(
            ctx, principal, min_position=min_position, projections=PROJECTIONS
        ) as (conn, scope):
            path = await subtree_path(conn, scope, node)
            sql, args = queries.list_orders(scope, path, status, overdue, after, limit)
            rows = await conn.fetch(sql, *args)
        items = [queries.order_view(r) for r in rows]
        return page_of(items, limit, lambda v: [v.requested_at.isoformat(), str(v.id)])
