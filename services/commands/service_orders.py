"""Commands of the 五单 volunteer-service loop: offers (亮单) and orders (点单 → 派单 → 接单 →
完成 → 评单, 取消), and the accept-deadline sweep the clock runs.

Who may do what:
* an offer — an operator or admin whose scope holds the community (a unit's or a member's
  offer), or a unit principal publishing its own unit's offer to any community of the root;
* an order is requested, dispatched, evaluated and cancelled by the community's side
  (operator or admin over the order's community);
* it is accepted and completed by the assignee side: additionally a principal (unit,
  operator or admin) whose scope holds the assigned unit, or the home unit of the assigned
  member (members have no principal of their own; their unit's party branch acts for them).
  The unit becomes a party of the order's stream, so row-level security shows it the order
  (likewise of an offer: the publishing unit, or the offering member's home unit).

Completing with ``hours`` for a member records their ServiceRecorded (双报到), and a rating
the configured rule rewards records their PointsAwarded, in the same transaction as the
order's event and with that event as their causation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated
from uuid import UUID, uuid4

import asyncpg
import msgspec

from domain.errors import IllegalTransition, InvalidValue
from domain.member import Member
from domain.refs import MAX_TITLE, business_date
from domain.service import (
    MAX_HOURS,
    MAX_RATING,
    MIN_RATING,
    ServiceOffer,
    ServiceOrder,
    accept_window,
    parse_points_rule,
)
from infra import member_identities
from infra.directory import DirectoryNode
from services.commands.lookup import node_in_root, node_in_scope
from services.commands.session import CommandSession, Saved
from services.deadline_sweep import DueItem
from services.fields import NodeCode, Text, Title
from services.problems import forbidden, not_found
from services.roles import ASSIGNEES, WRITERS

#: stream_parties roles of an order: the unit it is dispatched to (or the member's home unit)
ASSIGNEE_ROLE = "assignee"
#: ... and of an offer: the unit that publishes it
PROVIDER_ROLE = "provider"

Authorize = Callable[[ServiceOrder], Awaitable[None]]


# -- the commands (request bodies, passed through as they were decoded) ----------------------


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


# -- the answers -----------------------------------------------------------------------------


class ServiceOfferChanged(msgspec.Struct):
    id: UUID
    version: int
    position: int
    community_code: str

    @classmethod
    def of(cls, saved: Saved[ServiceOffer]) -> ServiceOfferChanged:
        offer = saved.aggregate
        return cls(offer.id, saved.version, saved.position, offer.community_code)


class ServiceOrderChanged(msgspec.Struct):
    id: UUID
    version: int
    position: int
    status: str
    #: the member's ServiceRecorded hours this command recorded (双报到), if any
    member_service_hours: float | None = None
    #: the member's PointsAwarded this command recorded (评单), if any
    points_awarded: int = 0

    @classmethod
    def of(cls, saved: Saved[ServiceOrder]) -> ServiceOrderChanged:
        order = saved.aggregate
        return cls(order.id, saved.version, saved.position, order.status)


# -- placement -------------------------------------------------------------------------------


async def _member(session: CommandSession, member_id: UUID) -> Member | None:
    """The member, when the caller may act on it: its current community in the caller's
    scope, or (a unit principal) its home unit. ``None`` otherwise."""
    community_id = await member_identities.current_community(
        session.conn, session.root_id, member_id
    )
    if community_id is None:
        return None
    community = await session.node(community_id)
    member = await session.load(Member, member_id)
    if member is None:
        return None
    if session.in_scope(community):
        return member
    is_unit = session.scope is not None and session.scope.is_unit
    if is_unit and session.in_scope(await session.node(member.home_unit_id)):
        return member
    return None


def _community_side(session: CommandSession, action: str) -> Authorize:
    """Operator or admin over the order's community."""

    async def authorize(order: ServiceOrder) -> None:
        community = await session.node(order.community_id)
        if not (session.principal.has_any(WRITERS) and session.in_scope(community)):
            raise forbidden(f"{action} needs the role operator or admin over the order's community")

    return authorize


async def _assignee_unit_id(session: CommandSession, order: ServiceOrder) -> UUID | None:
    if order.unit_id is not None:
        return order.unit_id
    if order.member_id is not None:
        member = await session.load(Member, order.member_id)
        return member.home_unit_id if member is not None else None
    return None


def _assignee_side(session: CommandSession, action: str) -> Authorize:
    """The community's side, or a principal over the assigned unit or member's home unit."""

    async def authorize(order: ServiceOrder) -> None:
        principal = session.principal
        if principal.has_any(WRITERS) and session.in_scope(await session.node(order.community_id)):
            return
        if order.member_id is None and order.unit_id is None:
            return  # not dispatched: the domain refuses with the current state
        unit = await session.node(await _assignee_unit_id(session, order))
        if principal.has_any(ASSIGNEES) and session.in_scope(unit):
            return
        raise forbidden(f"{action} is for the assigned unit or member's unit, or the community")

    return authorize


@dataclass(frozen=True)
class _Assignee:
    """Whom an order is dispatched to, and the unit that then sees it."""

    member_id: UUID | None
    unit: DirectoryNode | None
    party: UUID


async def _assignee(
    session: CommandSession, order: ServiceOrder, command: OrderDispatch
) -> _Assignee:
    """A member the caller may act on (active), or a unit of the root tenant."""
    if (command.member_id is None) == (command.unit_code is None):
        raise InvalidValue("member_id", "give exactly one of member_id and unit_code")
    if command.member_id is not None:
        member = await _member(session, command.member_id)
        if member is None:
            raise not_found(f"member {command.member_id}")
        if member.status != "active":
            raise IllegalTransition(f"the member is {member.status}", current_state=order.status)
        return _Assignee(command.member_id, None, member.home_unit_id)
    assert command.unit_code is not None
    unit = await node_in_root(session, command.unit_code, f"unit {command.unit_code}")
    return _Assignee(None, unit, unit.id)


# -- offers (亮单) ------------------------------------------------------------------------------


async def offer(session: CommandSession, command: OfferCreate) -> tuple[int, ServiceOfferChanged]:
    assert session.scope is not None
    community_code, provider_code = command.community_code, command.provider_code
    if session.scope.is_unit and not session.principal.has_any(WRITERS):
        # a unit publishes its own offer, to any community of its root tenant
        if provider_code is None:
            raise forbidden("a unit publishes offers of its own unit (provider_code)")
        provider: DirectoryNode | None = await node_in_scope(
            session, provider_code, f"unit {provider_code}"
        )
        community = await node_in_root(session, community_code, f"community {community_code}")
    else:
        if not session.principal.has_any(WRITERS):
            raise forbidden("publishing an offer needs operator or admin (or the unit itself)")
        community = await node_in_scope(session, community_code, f"community {community_code}")
        provider = (
            await node_in_root(session, provider_code, f"unit {provider_code}")
            if provider_code is not None
            else None
        )
    party = provider.id if provider is not None else None
    if command.member_id is not None:
        member = await _member(session, command.member_id)
        if member is None:
            raise not_found(f"member {command.member_id}")
        party = member.home_unit_id  # the member's unit sees its members' offers
    service_offer = ServiceOffer.offer(
        offer_id=uuid4(),
        community=community.ref(),
        provider=provider.ref() if provider is not None else None,
        member_id=command.member_id,
        title=command.title,
        category=command.category,
        at=session.now,
    )
    if party is not None:
        # a party first: a unit principal may append to its own offer's stream only so
        await session.add_party(party, service_offer.id, PROVIDER_ROLE)
    return 201, ServiceOfferChanged.of(await session.create(service_offer))


# -- orders ----------------------------------------------------------------------------------


async def request(session: CommandSession, command: OrderCreate) -> tuple[int, ServiceOrderChanged]:
    """ServiceRequested (点单) at a community of the caller's subtree."""
    community = await node_in_scope(
        session, command.community_code, f"community {command.community_code}"
    )
    service_offer = None
    if command.offer_id is not None:
        service_offer = await session.load(ServiceOffer, command.offer_id)
        if service_offer is None:
            raise not_found(f"service offer {command.offer_id}")
    order = ServiceOrder.request(
        order_id=uuid4(),
        community=community.ref(),
        title=command.title,
        description=command.description,
        offer=service_offer,
        due_on=command.due_on,
        at=session.now,
    )
    return 201, ServiceOrderChanged.of(await session.create(order))


async def dispatch(
    session: CommandSession, order_id: UUID, command: OrderDispatch
) -> tuple[int, ServiceOrderChanged]:
    """ServiceDispatched (派单) to a member the caller may act on, or a unit of the root."""
    chosen: list[_Assignee] = []
    community_side = _community_side(session, "dispatching a service order")

    async def authorize(order: ServiceOrder) -> None:
        await community_side(order)
        session.check_if_match(order)  # a stale version is 412 before the assignee is looked up
        chosen.append(await _assignee(session, order, command))

    saved = await session.update(
        ServiceOrder,
        order_id,
        lambda o: o.dispatch(
            member_id=chosen[0].member_id,
            unit=chosen[0].unit.ref() if chosen[0].unit is not None else None,
            accept_within=accept_window(session.ctx.settings.service_accept_minutes),
            at=session.now,
        ),
        authorize=authorize,
        what="service order",
    )
    # One assignee at a time: a re-dispatch ends the former unit's view of the order.
    await session.set_party(order_id, ASSIGNEE_ROLE, chosen[0].party)
    return 200, ServiceOrderChanged.of(saved)


async def accept(session: CommandSession, order_id: UUID) -> tuple[int, ServiceOrderChanged]:
    """ServiceAccepted (接单)."""
    saved = await session.update(
        ServiceOrder,
        order_id,
        lambda o: o.accept(session.now),
        authorize=_assignee_side(session, "accepting a service order"),
        what="service order",
    )
    return 200, ServiceOrderChanged.of(saved)


async def complete(
    session: CommandSession, order_id: UUID, command: OrderComplete
) -> tuple[int, ServiceOrderChanged]:
    """ServiceCompleted; with ``hours`` for a member, their ServiceRecorded in the same
    transaction, caused by the completion."""
    saved = await session.update(
        ServiceOrder,
        order_id,
        lambda o: o.complete(summary=command.summary, hours=command.hours, at=session.now),
        authorize=_assignee_side(session, "completing a service order"),
        what="service order",
    )
    order = saved.aggregate
    answer = ServiceOrderChanged.of(saved)
    credited = order.hours_for_member()
    if credited is None:
        return 200, answer
    assert order.member_id is not None
    member = await _member(session, order.member_id)
    if member is not None and member.status == "active":
        member.record_service(
            served_on=business_date(session.now),
            hours=credited,
            kind=f"五单: {order.title}"[:MAX_TITLE],
            at=session.now,
        )
        # the answer's position covers the member's event too (read-your-writes on the member)
        answer.position = (
            await session.save(member, caused_by=saved.result.event_ids[-1])
        ).position
        answer.member_service_hours = credited
    return 200, answer


async def evaluate(
    session: CommandSession, order_id: UUID, command: OrderEvaluate
) -> tuple[int, ServiceOrderChanged]:
    """ServiceEvaluated (评单); the member who served earns points by the configured rule
    (``CIVIC_POINTS_PER_RATING``), recorded as their PointsAwarded caused by the evaluation."""
    served: list[Member] = []
    community_side = _community_side(session, "evaluating a service order")

    async def authorize(order: ServiceOrder) -> None:
        await community_side(order)
        member = None if order.member_id is None else await _member(session, order.member_id)
        if member is not None:
            served.append(member)

    saved = await session.update(
        ServiceOrder,
        order_id,
        lambda o: o.evaluate(
            rating=command.rating,
            comment=command.comment,
            points_rule=parse_points_rule(session.ctx.settings.points_per_rating),
            member_active=bool(served) and served[0].status == "active",
            at=session.now,
        ),
        authorize=authorize,
        what="service order",
    )
    order = saved.aggregate
    answer = ServiceOrderChanged.of(saved)
    awarded = order.points_awarded
    if served and awarded > 0:
        served[0].award_points(awarded, f"五单评单 {command.rating}星: {order.title}", session.now)
        caused_by = saved.result.event_ids[-1]
        answer.position = (await session.save(served[0], caused_by=caused_by)).position
        answer.points_awarded = awarded
    return 200, answer


async def cancel(
    session: CommandSession, order_id: UUID, command: OrderCancel
) -> tuple[int, ServiceOrderChanged]:
    """ServiceCancelled, before completion."""
    saved = await session.update(
        ServiceOrder,
        order_id,
        lambda o: o.cancel(command.reason, session.now),
        authorize=_community_side(session, "cancelling a service order"),
        what="service order",
    )
    return 200, ServiceOrderChanged.of(saved)


# -- the accept-deadline clock -------------------------------------------------------------------

DUE_ORDERS = """
SELECT r.code AS root_code, o.id
FROM rm_service_orders o JOIN nodes r ON r.id = o.root_id
WHERE o.status = 'dispatched' AND NOT o.overdue AND o.accept_by < $1
  AND NOT r.closed AND NOT civic_subtree_closed(o.node_id)
ORDER BY o.accept_by
LIMIT $2
"""


class ServiceOverdueSweep:
    """ServiceOverdue: a dispatched order was not accepted (接单) in time."""

    name = "ServiceOverdue"

    async def due(self, conn: asyncpg.Connection, now: datetime, limit: int) -> list[DueItem]:
        rows = await conn.fetch(DUE_ORDERS, now, limit)
        return [DueItem(root_code=r["root_code"], stream_id=r["id"]) for r in rows]

    async def fire(self, session: CommandSession, stream_id: UUID) -> bool:
        order = await session.load(ServiceOrder, stream_id)
        if order is None or not order.is_past_accept_deadline(session.now):
            return False  # accepted, re-dispatched or already recorded meanwhile
        order.mark_overdue(session.now)
        await session.save(order)
        return True
