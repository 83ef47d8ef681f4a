"""Volunteer service, the 五单 loop: 亮单 → 点单 → 派单 → 接单 → 评单.

Two aggregates: ``ServiceOffer`` (亮单: a unit or an in-service member publishes what it can
do, ServiceOffered) and ``ServiceOrder`` (a resident's need, entered by the community:
ServiceRequested, then dispatched to a member or a unit, accepted, completed, evaluated;
cancelled from any state before completed).

Statuses: requested → dispatched → accepted → completed → evaluated, or cancelled. A
dispatched order that nobody accepted may be dispatched again (to someone else). The
accept deadline is set when the order is dispatched (``accept_within``, configured by the
application) and the clock records ServiceOverdue once when it passes unaccepted.

What completing and evaluating mean for the member who served (双报到 hours, 积分 points) is
decided here (``hours_for_member``, ``points_for``); the application records it on the
member's own stream in the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

from domain.base import CivicAggregate
from domain.clock import require_aware
from domain.errors import IllegalTransition, InvalidValue
from domain.hierarchy import NodeKind
from domain.refs import (
    MAX_TITLE,
    NodeRef,
    clean_optional_text,
    clean_text,
    require_date,
    require_int,
    require_node,
    require_number,
)

REQUESTED = "requested"
DISPATCHED = "dispatched"
ACCEPTED = "accepted"
COMPLETED = "completed"
EVALUATED = "evaluated"
CANCELLED = "cancelled"
STATUSES = (REQUESTED, DISPATCHED, ACCEPTED, COMPLETED, EVALUATED, CANCELLED)

MAX_HOURS = 24
MIN_RATING, MAX_RATING = 1, 5
MAX_ACCEPT_MINUTES = 30 * 24 * 60

#: command → statuses it is allowed in (the transition table; tests walk all of it).
TRANSITIONS: dict[str, frozenset[str]] = {
    "dispatch": frozenset({REQUESTED, DISPATCHED}),
    "accept": frozenset({DISPATCHED}),
    "complete": frozenset({ACCEPTED}),
    "evaluate": frozenset({COMPLETED}),
    "cancel": frozenset({REQUESTED, DISPATCHED, ACCEPTED}),
    "mark_overdue": frozenset({DISPATCHED}),
}


class ServiceOffer(CivicAggregate):
    """亮单: what a unit or an in-service member offers a community."""

    STREAM_TYPE = "service_offer"

    class Offered(CivicAggregate.Created):
        TOPIC = "ServiceOffered.v1"
        community_id: UUID
        community_code: str
        root_id: UUID
        provider_id: UUID | None
        provider_code: str | None
        member_id: UUID | None
        title: str
        category: str

        def apply(self, offer: Any) -> None:
            pass

    def __init__(
        self,
        community_id: UUID,
        community_code: str,
        root_id: UUID,
        provider_id: UUID | None,
        provider_code: str | None,
        member_id: UUID | None,
        title: str,
        category: str,
    ) -> None:
        self.community_id = community_id
        self.community_code = community_code
        self.root_id = root_id
        self.provider_id = provider_id
        self.provider_code = provider_code
        self.member_id = member_id
        self.title = title
        self.category = category

    @property
    def owner_node_id(self) -> UUID:
        return self.community_id

    @classmethod
    def offer(
        cls,
        *,
        offer_id: UUID,
        community: NodeRef,
        provider: NodeRef | None = None,
        member_id: UUID | None = None,
        title: str,
        category: str,
        at: datetime,
    ) -> ServiceOffer:
        """ServiceOffered by exactly one of a unit (``provider``) or a member."""
        require_node("community_code", community, kinds={NodeKind.COMMUNITY})
        if (provider is None) == (member_id is None):
            raise InvalidValue("provider_code", "give exactly one of provider_code and member_id")
        if provider is not None:
            require_node(
                "provider_code", provider, kinds={NodeKind.UNIT}, root_id=community.root_id
            )
        return cls._create(
            cls.Offered,
            id=offer_id,
            timestamp=require_aware(at),
            community_id=community.id,
            community_code=community.code,
            root_id=community.root_id,
            provider_id=provider.id if provider else None,
            provider_code=provider.code if provider else None,
            member_id=member_id,
            title=clean_text("title", title, max_len=MAX_TITLE),
            category=clean_text("category", category, max_len=MAX_TITLE),
        )


class ServiceOrder(CivicAggregate):
    """点单 → 派单 → 接单 → (完成) → 评单."""

    STREAM_TYPE = "service_order"

    class Requested(CivicAggregate.Created):
        TOPIC = "ServiceRequested.v1"
        community_id: UUID
        community_code: str
        root_id: UUID
        title: str
        description: str
        offer_id: UUID | None
        due_on: date | None

        def apply(self, order: Any) -> None:
            pass

    class Dispatched(CivicAggregate.Event):
        TOPIC = "ServiceDispatched.v1"
        member_id: UUID | None
        unit_id: UUID | None
        unit_code: str | None
        accept_by: datetime

        def apply(self, order: Any) -> None:
            order.status = DISPATCHED
            order.member_id = self.member_id
            order.unit_id = self.unit_id
            order.unit_code = self.unit_code
            order.accept_by = self.accept_by
            order.overdue = False
            order.dispatch_count += 1

    class Accepted(CivicAggregate.Event):
        TOPIC = "ServiceAccepted.v1"

        def apply(self, order: Any) -> None:
            order.status = ACCEPTED

    class Completed(CivicAggregate.Event):
        TOPIC = "ServiceCompleted.v1"
        summary: str
        hours: float | None

        def apply(self, order: Any) -> None:
            order.status = COMPLETED
            order.hours = self.hours

    class Evaluated(CivicAggregate.Event):
        TOPIC = "ServiceEvaluated.v1"
        rating: int
        comment: str | None
        #: what the configured rule awarded the member who served (0: nothing)
        points: int

        def apply(self, order: Any) -> None:
            order.status = EVALUATED
            order.rating = self.rating
            order.points_awarded = self.points

    class Cancelled(CivicAggregate.Event):
        TOPIC = "ServiceCancelled.v1"
        reason: str
        from_status: str

        def apply(self, order: Any) -> None:
            order.status = CANCELLED

    class Overdue(CivicAggregate.Event):
        TOPIC = "ServiceOverdue.v1"
        accept_by: datetime

        def apply(self, order: Any) -> None:
            order.overdue = True

    def __init__(
        self,
        community_id: UUID,
        community_code: str,
        root_id: UUID,
        title: str,
        description: str,
        offer_id: UUID | None,
        due_on: date | None,
    ) -> None:
        self.community_id = community_id
        self.community_code = community_code
        self.root_id = root_id
        self.title = title
        self.description = description
        self.offer_id = offer_id
        self.due_on = due_on
        self.status = REQUESTED
        self.member_id: UUID | None = None
        self.unit_id: UUID | None = None
        self.unit_code: str | None = None
        self.accept_by: datetime | None = None
        self.overdue = False
        self.dispatch_count = 0
        self.hours: float | None = None
        self.rating: int | None = None
        self.points_awarded = 0

    @property
    def owner_node_id(self) -> UUID:
        return self.community_id

    def is_past_accept_deadline(self, at: datetime) -> bool:
        """Would ``mark_overdue(at)`` record a ServiceOverdue? (for the clock process)"""
        return (
            self.status in TRANSITIONS["mark_overdue"]
            and self.accept_by is not None
            and not self.overdue
            and require_aware(at) > self.accept_by
        )

    # -- commands -------------------------------------------------------------------------

    @classmethod
    def request(
        cls,
        *,
        order_id: UUID,
        community: NodeRef,
        title: str,
        description: str,
        offer: ServiceOffer | None = None,
        due_on: date | None = None,
        at: datetime,
    ) -> ServiceOrder:
        """ServiceRequested (点单), optionally for a published offer of the same community."""
        require_node("community_code", community, kinds={NodeKind.COMMUNITY})
        if offer is not None and offer.community_id != community.id:
            raise InvalidValue("offer_id", "the offer was published to another community")
        if due_on is not None:
            due_on = require_date("due_on", due_on)
        return cls._create(
            cls.Requested,
            id=order_id,
            timestamp=require_aware(at),
            community_id=community.id,
            community_code=community.code,
            root_id=community.root_id,
            title=clean_text("title", title, max_len=MAX_TITLE),
            description=clean_text("description", description),
            offer_id=offer.id if offer is not None else None,
            due_on=due_on,
        )

    def dispatch(
        self,
        *,
        member_id: UUID | None = None,
        unit: NodeRef | None = None,
        accept_within: timedelta,
        at: datetime,
    ) -> None:
        """ServiceDispatched (派单) to exactly one member (of the root tenant; the
        application checks the member is active) or one unit."""
        self._check("dispatch")
        if (member_id is None) == (unit is None):
            raise InvalidValue("member_id", "give exactly one of member_id and unit_code")
        if unit is not None:
            require_node("unit_code", unit, kinds={NodeKind.UNIT}, root_id=self.root_id)
        minutes = accept_within.total_seconds() / 60
        if not 0 < minutes <= MAX_ACCEPT_MINUTES:
            raise ValueError("accept_within must be positive and at most 30 days")
        self._record(
            self.Dispatched,
            at,
            member_id=member_id,
            unit_id=unit.id if unit else None,
            unit_code=unit.code if unit else None,
            accept_by=require_aware(at) + accept_within,
        )

    def accept(self, at: datetime) -> None:
        """ServiceAccepted (接单)."""
        self._check("accept")
        self._record(self.Accepted, at)

    def complete(self, *, summary: str, hours: float | None = None, at: datetime) -> None:
        """ServiceCompleted; ``hours`` (0 < h ≤ 24) is the time the service took."""
        self._check("complete")
        if hours is not None:
            hours = round(require_number("hours", hours), 2)
            if not 0 < hours <= MAX_HOURS:
                raise InvalidValue("hours", f"must be more than 0 and at most {MAX_HOURS}")
        self._record(self.Completed, at, summary=clean_text("summary", summary), hours=hours)

    def hours_for_member(self) -> float | None:
        """The hours the completion credits to a member (双报到), if a member served."""
        if self.status != COMPLETED or self.member_id is None:
            return None
        return self.hours

    def evaluate(
        self,
        *,
        rating: int,
        comment: str | None = None,
        points_rule: Mapping[int, int],
        member_active: bool = True,
        at: datetime,
    ) -> None:
        """ServiceEvaluated (评单); the member who served earns ``points_rule[rating]``
        points (when they are still registered)."""
        self._check("evaluate")
        rating = require_int("rating", rating, low=MIN_RATING, high=MAX_RATING)
        points = 0
        if self.member_id is not None and member_active:
            points = max(0, int(points_rule.get(rating, 0)))
        self._record(
            self.Evaluated,
            at,
            rating=rating,
            comment=clean_optional_text("comment", comment),
            points=points,
        )

    def cancel(self, reason: str, at: datetime) -> None:
        """ServiceCancelled, from any state before completed."""
        self._check("cancel")
        self._record(
            self.Cancelled, at, reason=clean_text("reason", reason), from_status=self.status
        )

    def mark_overdue(self, at: datetime) -> None:
        """ServiceOverdue (clock): dispatched, not accepted by ``accept_by``; once per dispatch."""
        self._check("mark_overdue")
        if not self.is_past_accept_deadline(at):
            raise IllegalTransition(
                "the accept deadline has not passed or is already marked",
                current_state=self.status,
            )
        assert self.accept_by is not None
        self._record(self.Overdue, at, accept_by=self.accept_by)

    def _check(self, command: str) -> None:
        if self.status not in TRANSITIONS[command]:
            verb = command.replace("_", " ")
            raise IllegalTransition(
                f"cannot {verb} a service order that is {self.status}", current_state=self.status
            )


def accept_window(minutes: int) -> timedelta:
    """``CIVIC_SERVICE_ACCEPT_MINUTES`` as the time 接单 may take (1 minute to 30 days)."""
    if not 0 < minutes <= MAX_ACCEPT_MINUTES:
        raise ValueError(f"CIVIC_SERVICE_ACCEPT_MINUTES must be 1..{MAX_ACCEPT_MINUTES}")
    return timedelta(minutes=minutes)


def parse_points_rule(text: str) -> dict[int, int]:
    """``CIVIC_POINTS_PER_RATING``: ``rating:points`` pairs, comma-separated (``"5:10,4:5"``).

    Ratings not listed earn nothing. Raises ``ValueError`` on anything else (start-up error).
    """
    rule: dict[int, int] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        rating_text, sep, points_text = part.partition(":")
        if not sep:
            raise ValueError(f"CIVIC_POINTS_PER_RATING: {part!r} is not rating:points")
        rating, points = int(rating_text), int(points_text)
        if not MIN_RATING <= rating <= MAX_RATING or not 0 <= points <= 10_000:
            raise ValueError(f"CIVIC_POINTS_PER_RATING: {part!r} is out of range")
        rule[rating] = points
    return rule
