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

from datetime import date, datetime
from uuid import UUID, uuid4

import asyncpg
import msgspec

from domain.errors import IllegalTransition, InvalidValue
from domain.member import Member
from domain.refs import MAX_TITLE, business_date
from domain.service import ServiceOffer, ServiceOrder, accept_window, parse_points_rule
from infra import directory, member_identities
from infra.directory import DirectoryNode
from services.commands.issues import node_ref
from services.commands.lookup import node_in_root, node_in_scope
from services.commands.session import CommandSession
from services.deadlines import DueItem
from services.problems import forbidden, not_found
from services.roles import ASSIGNEES, WRITERS

#: stream_parties roles of an order: the unit it is dispatched to (or the member's home unit)
ASSIGNEE_ROLE = "assignee"
#: ... and of an offer: the unit that publishes it
PROVIDER_ROLE = "provider"


class ServiceOfferChanged(msgspec.Struct):
    id: UUID
    version: int
    position: int
    community_code: str


class ServiceOrderChanged(msgspec.Struct):
    id: UUID
    version: int
    position: int
    status: str
    #: the member's ServiceRecorded hours this command recorded (双报到), if any
    member_service_hours: float | None = None
    #: the member's PointsAwarded this command recorded (评单), if any
    points_awarded: int = 0


# -- placement ---------------------------------------------------------------------------------


def _contains(session: CommandSession, node: DirectoryNode | None) -> bool:
    return node is not None and session.scope is not None and session.scope.contains_path(node.path)


async def _member(session: CommandSession, member_id: UUID) -> Member | None:
    """The member, when the caller may act on it: its current community in the caller's
    scope, or (a unit principal) its home unit. ``None`` otherwise."""
    community_id = await member_identities.current_community(
        session.conn, session.root_id, member_id
    )
    if community_id is None:
        return None
    community = await directory.find_by_id(session.conn, community_id)
    member = await session.load(Member, member_id)
    if member is None:
        return None
    if _contains(session, community):
        return member
    if session.scope is not None and session.scope.is_unit:
        home = await directory.find_by_id(session.conn, member.home_unit_id)
        if _contains(session, home):
            return member
    return None


async def _load(session: CommandSession, order_id: UUID) -> ServiceOrder:
    order = await session.load(ServiceOrder, order_id)  # row-level security: invisible → None
    if order is None:
        raise not_found(f"service order {order_id}")
    return order


async def _community_side(session: CommandSession, order: ServiceOrder, action: str) -> None:
    node = await directory.find_by_id(session.conn, order.community_id)
    if not (session.principal.has_any(WRITERS) and _contains(session, node)):
        raise forbidden(f"{action} needs the role operator or admin over the order's community")


async def _assignee_unit_id(session: CommandSession, order: ServiceOrder) -> UUID | None:
    if order.unit_id is not None:
        return order.unit_id
    if order.member_id is not None:
        member = await session.load(Member, order.member_id)
        return member.home_unit_id if member is not None else None
    return None


async def _assignee_side(session: CommandSession, order: ServiceOrder, action: str) -> None:
    principal = session.principal
    community = await directory.find_by_id(session.conn, order.community_id)
    if principal.has_any(WRITERS) and _contains(session, community):
        return
    if order.member_id is None and order.unit_id is None:
        return  # not dispatched: the domain refuses with the current state
    unit_id = await _assignee_unit_id(session, order)
    unit = await directory.find_by_id(session.conn, unit_id) if unit_id else None
    if principal.has_any(ASSIGNEES) and _contains(session, unit):
        return
    raise forbidden(f"{action} is for the assigned unit or member's unit, or the community")


async def _done(
    session: CommandSession, order: ServiceOrder, status: int = 200
) -> tuple[int, ServiceOrderChanged]:
    result = await session.save(order)
    return status, ServiceOrderChanged(order.id, result.version, result.position, order.status)


# -- offers (亮单) ------------------------------------------------------------------------------


async def offer(
    session: CommandSession,
    *,
    community_code: str,
    provider_code: str | None,
    member_id: UUID | None,
    title: str,
    category: str,
) -> tuple[int, ServiceOfferChanged]:
    assert session.scope is not None
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
    if member_id is not None:
        member = await _member(session, member_id)
        if member is None:
            raise not_found(f"member {member_id}")
        party = member.home_unit_id  # the member's unit sees its members' offers
    service_offer = ServiceOffer.offer(
        offer_id=uuid4(),
        community=node_ref(community),
        provider=node_ref(provider) if provider is not None else None,
        member_id=member_id,
        title=title,
        category=category,
        at=session.now,
    )
    if party is not None:
        # a party first: a unit principal may append to its own offer's stream only so
        await directory.add_party(
            session.conn, session.root_id, party, service_offer.id, PROVIDER_ROLE
        )
    result = await session.save(service_offer)
    return 201, ServiceOfferChanged(
        service_offer.id, result.version, result.position, service_offer.community_code
    )


# -- orders -------------------------------------------------------------------------------------


async def request(
    session: CommandSession,
    *,
    community_code: str,
    title: str,
    description: str,
    offer_id: UUID | None,
    due_on: date | None,
) -> tuple[int, ServiceOrderChanged]:
    """ServiceRequested (点单) at a community of the caller's subtree."""
    community = await node_in_scope(session, community_code, f"community {community_code}")
    service_offer = None
    if offer_id is not None:
        service_offer = await session.load(ServiceOffer, offer_id)
        if service_offer is None:
            raise not_found(f"service offer {offer_id}")
    order = ServiceOrder.request(
        order_id=uuid4(),
        community=node_ref(community),
        title=title,
        description=description,
        offer=service_offer,
        due_on=due_on,
        at=session.now,
    )
    return await _done(session, order, 201)


async def dispatch(
    session: CommandSession, *, order_id: UUID, member_id: UUID | None, unit_code: str | None
) -> tuple[int, ServiceOrderChanged]:
    """ServiceDispatched (派单) to a member the caller may act on, or a unit of the root."""
    order = await _load(session, order_id)
    await _community_side(session, order, "dispatching a service order")
    session.check_if_match(order)
    party: UUID | None = None
    unit = None
    if (member_id is None) == (unit_code is None):
        raise InvalidValue("member_id", "give exactly one of member_id and unit_code")
    if member_id is not None:
        member = await _member(session, member_id)
        if member is None:
            raise not_found(f"member {member_id}")
        if member.status != "active":
            raise IllegalTransition(f"the member is {member.status}", current_state=order.status)
        party = member.home_unit_id
    else:
        assert unit_code is not None
        unit = await node_in_root(session, unit_code, f"unit {unit_code}")
        party = unit.id
    order.dispatch(
        member_id=member_id,
        unit=node_ref(unit) if unit is not None else None,
        accept_within=accept_window(session.ctx.settings.service_accept_minutes),
        at=session.now,
    )
    answer = await _done(session, order)
    # One assignee at a time: a re-dispatch ends the former unit's view of the order.
    await directory.set_party(session.conn, session.root_id, order.id, ASSIGNEE_ROLE, party)
    return answer


async def accept(session: CommandSession, *, order_id: UUID) -> tuple[int, ServiceOrderChanged]:
    """ServiceAccepted (接单)."""
    order = await _load(session, order_id)
    await _assignee_side(session, order, "accepting a service order")
    session.check_if_match(order)
    order.accept(session.now)
    return await _done(session, order)


async def complete(
    session: CommandSession, *, order_id: UUID, summary: str, hours: float | None
) -> tuple[int, ServiceOrderChanged]:
    """ServiceCompleted; with ``hours`` for a member, their ServiceRecorded in the same
    transaction, caused by the completion."""
    order = await _load(session, order_id)
    await _assignee_side(session, order, "completing a service order")
    session.check_if_match(order)
    order.complete(summary=summary, hours=hours, at=session.now)
    credited = order.hours_for_member()
    member = None
    if credited is not None:
        assert order.member_id is not None
        member = await _member(session, order.member_id)
        if member is not None and member.status == "active":
            member.record_service(
                served_on=business_date(session.now),
                hours=credited,
                kind=f"五单: {order.title}"[:MAX_TITLE],
                at=session.now,
            )
        else:
            member = None
    result = await session.save(order)
    answer = ServiceOrderChanged(order.id, result.version, result.position, order.status)
    if member is not None:
        # the answer's position covers the member's event too (read-your-writes on the member)
        answer.position = (await session.save(member, caused_by=result.event_ids[-1])).position
        answer.member_service_hours = credited
    return 200, answer


async def evaluate(
    session: CommandSession, *, order_id: UUID, rating: int, comment: str | None
) -> tuple[int, ServiceOrderChanged]:
    """ServiceEvaluated (评单); the member who served earns points by the configured rule
    (``CIVIC_POINTS_PER_RATING``), recorded as their PointsAwarded caused by the evaluation."""
    order = await _load(session, order_id)
    await _community_side(session, order, "evaluating a service order")
    session.check_if_match(order)
    member = await _member(session, order.member_id) if order.member_id is not None else None
    order.evaluate(
        rating=rating,
        comment=comment,
        points_rule=parse_points_rule(session.ctx.settings.points_per_rating),
        member_active=member is not None and member.status == "active",
        at=session.now,
    )
    result = await session.save(order)
    answer = ServiceOrderChanged(order.id, result.version, result.position, order.status)
    awarded = order.points_awarded
    if member is not None and awarded > 0:
        member.award_points(awarded, f"五单评单 {rating}星: {order.title}", session.now)
        answer.position = (await session.save(member, caused_by=result.event_ids[-1])).position
        answer.points_awarded = awarded
    return 200, answer


async def cancel(
    session: CommandSession, *, order_id: UUID, reason: str
) -> tuple[int, ServiceOrderChanged]:
    """ServiceCancelled, before completion."""
    order = await _load(session, order_id)
    await _community_side(session, order, "cancelling a service order")
    session.check_if_match(order)
    order.cancel(reason, session.now)
    return await _done(session, order)


# -- the accept-deadline clock -------------------------------------------------------------------

DUE_ORDERS = """
SELECT r.code AS root_code, o.id
FROM rm_service_orders o JOIN nodes r ON r.id = o.root_id
WHERE o.status = 'dispatched' AND NOT o.overdue AND o.accept_by < $1
  AND NOT r.closed
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
