"""In-service party members reporting to their home community (在职党员"双报到").

Two aggregates: ``UnitRegistration`` (a unit's party organisation reports to a community,
UnitRegistered) and ``Member`` (one person registered at one community: service hours,
points, transfer, deregistration and erasure of their personal data).

Whether the same person is already registered in a community needs the blind index the
application keeps (see ``domain.personal_data.identity_key``); it passes the answer in.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any
from uuid import UUID

from domain.base import CivicAggregate
from domain.clock import require_aware
from domain.errors import Conflict, IllegalTransition, InvalidValue
from domain.hierarchy import NodeKind
from domain.personal_data import PersonalData, personal_data
from domain.refs import (
    MAX_TITLE,
    NodeRef,
    business_date,
    clean_optional_text,
    clean_text,
    require_date,
    require_int,
    require_node,
    require_number,
)

ACTIVE = "active"
DEREGISTERED = "deregistered"
ERASED = "erased"

MAX_HOURS_PER_ENTRY = 24
MAX_POINTS_PER_ENTRY = 10_000

#: namespace of the deterministic ids of unit registrations (one stream per unit+community).
_UNIT_REGISTRATION_NS = uuid.UUID("6f2b8d2e-0c55-4d1e-9a57-3c1f5d7e2b10")


class UnitRegistration(CivicAggregate):
    """A unit's party organisation has reported to a community (单位报到)."""

    STREAM_TYPE = "unit_registration"

    class Registered(CivicAggregate.Created):
        TOPIC = "UnitRegistered.v1"
        unit_id: UUID
        unit_code: str
        community_id: UUID
        community_code: str
        root_id: UUID

        def apply(self, registration: Any) -> None:
            pass

    def __init__(
        self,
        unit_id: UUID,
        unit_code: str,
        community_id: UUID,
        community_code: str,
        root_id: UUID,
    ) -> None:
        self.unit_id = unit_id
        self.unit_code = unit_code
        self.community_id = community_id
        self.community_code = community_code
        self.root_id = root_id

    @property
    def owner_node_id(self) -> UUID:
        return self.community_id

    @staticmethod
    def stream_id(unit_id: UUID, community_id: UUID) -> UUID:
        """One stream per (unit, community): a second registration collides in the store."""
        return uuid.uuid5(_UNIT_REGISTRATION_NS, f"{unit_id}/{community_id}")

    @classmethod
    def register(
        cls,
        *,
        unit: NodeRef,
        community: NodeRef,
        already_registered: bool = False,
        at: datetime,
    ) -> UnitRegistration:
        """UnitRegistered; the stream id is ``stream_id(unit.id, community.id)``."""
        require_node("unit_code", unit, kinds={NodeKind.UNIT})
        require_node("community_code", community, kinds={NodeKind.COMMUNITY}, root_id=unit.root_id)
        if already_registered:
            raise Conflict(f"{unit.code} has already reported to {community.code}")
        return cls._create(
            cls.Registered,
            id=cls.stream_id(unit.id, community.id),
            timestamp=require_aware(at),
            unit_id=unit.id,
            unit_code=unit.code,
            community_id=community.id,
            community_code=community.code,
            root_id=unit.root_id,
        )


class Member(CivicAggregate):
    """One party member registered at their residential community."""

    STREAM_TYPE = "member"

    class Registered(CivicAggregate.Created):
        TOPIC = "MemberRegistered.v1"
        #: the only field holding personal information; ``None`` once crypto-shredded.
        person: PersonalData | None
        home_unit_id: UUID
        home_unit_code: str
        community_id: UUID
        community_code: str
        grid_id: UUID | None
        grid_code: str | None
        root_id: UUID

        def apply(self, member: Any) -> None:
            pass

    class ServiceRecorded(CivicAggregate.Event):
        TOPIC = "ServiceRecorded.v1"
        served_on: date
        hours: float
        kind: str

        def apply(self, member: Any) -> None:
            member.service_hours = round(member.service_hours + self.hours, 2)
            member.service_count += 1

    class PointsAwarded(CivicAggregate.Event):
        TOPIC = "PointsAwarded.v1"
        points: int
        reason: str

        def apply(self, member: Any) -> None:
            member.points += self.points

    class PointsDeducted(CivicAggregate.Event):
        TOPIC = "PointsDeducted.v1"
        points: int
        reason: str

        def apply(self, member: Any) -> None:
            member.points -= self.points

    class Transferred(CivicAggregate.Event):
        TOPIC = "MemberTransferred.v1"
        from_community_id: UUID
        from_community_code: str
        to_community_id: UUID
        to_community_code: str
        to_grid_id: UUID | None
        to_grid_code: str | None

        def apply(self, member: Any) -> None:
            member.former_community_ids = (*member.former_community_ids, member.community_id)
            member.community_id = self.to_community_id
            member.community_code = self.to_community_code
            member.grid_id = self.to_grid_id
            member.grid_code = self.to_grid_code

    class Deregistered(CivicAggregate.Event):
        TOPIC = "MemberDeregistered.v1"
        reason: str

        def apply(self, member: Any) -> None:
            member.status = DEREGISTERED

    class Erased(CivicAggregate.Event):
        TOPIC = "MemberErased.v1"
        reason: str | None

        def apply(self, member: Any) -> None:
            member.person = None
            member.status = ERASED

    def __init__(
        self,
        person: PersonalData | None,
        home_unit_id: UUID,
        home_unit_code: str,
        community_id: UUID,
        community_code: str,
        grid_id: UUID | None,
        grid_code: str | None,
        root_id: UUID,
    ) -> None:
        self.person = person
        self.home_unit_id = home_unit_id
        self.home_unit_code = home_unit_code
        self.community_id = community_id
        self.community_code = community_code
        self.grid_id = grid_id
        self.grid_code = grid_code
        self.root_id = root_id
        self.former_community_ids: tuple[UUID, ...] = ()
        self.status = ACTIVE
        self.service_hours = 0.0
        self.service_count = 0
        self.points = 0

    @property
    def owner_node_id(self) -> UUID:
        return self.community_id

    @property
    def erased(self) -> bool:
        return self.status == ERASED

    # -- commands -------------------------------------------------------------------------

    @classmethod
    def register(
        cls,
        *,
        member_id: UUID,
        person: PersonalData,
        community: NodeRef,
        home_unit: NodeRef,
        grid: NodeRef | None = None,
        person_already_registered: bool = False,
        at: datetime,
    ) -> Member:
        """MemberRegistered. ``person`` comes from ``personal_data(...)`` (re-validated here);
        ``person_already_registered`` is the blind-index answer for this community."""
        person = personal_data(person.name, person.phone, person.id_number)
        require_node("community_code", community, kinds={NodeKind.COMMUNITY})
        require_node("home_unit_code", home_unit, kinds={NodeKind.UNIT}, root_id=community.root_id)
        if grid is not None:
            _require_grid_in(grid, community)
        if person_already_registered:
            raise Conflict(f"this person is already registered at {community.code}")
        return cls._create(
            cls.Registered,
            id=member_id,
            timestamp=require_aware(at),
            person=person,
            home_unit_id=home_unit.id,
            home_unit_code=home_unit.code,
            community_id=community.id,
            community_code=community.code,
            grid_id=grid.id if grid else None,
            grid_code=grid.code if grid else None,
            root_id=community.root_id,
        )

    def record_service(self, *, served_on: date, hours: float, kind: str, at: datetime) -> None:
        """ServiceRecorded: 0 < hours ≤ 24 per entry, on a day not in the future."""
        self._refuse_unless_active()
        served_on = require_date("served_on", served_on)
        if served_on > business_date(require_aware(at)):
            raise InvalidValue("served_on", "service cannot be recorded for a future day")
        hours = round(require_number("hours", hours), 2)
        if not 0 < hours <= MAX_HOURS_PER_ENTRY:
            raise InvalidValue("hours", f"must be more than 0 and at most {MAX_HOURS_PER_ENTRY}")
        self._record(
            self.ServiceRecorded,
            at,
            served_on=served_on,
            hours=hours,
            kind=clean_text("kind", kind, max_len=MAX_TITLE),
        )

    def adjust_points(self, delta: int, reason: str, at: datetime) -> None:
        """PointsAwarded for a positive ``delta``, PointsDeducted for a negative one."""
        self._refuse_unless_active()
        delta = require_int("delta", delta, low=-MAX_POINTS_PER_ENTRY, high=MAX_POINTS_PER_ENTRY)
        if delta == 0:
            raise InvalidValue("delta", "must not be zero: positive awards, negative deducts")
        if delta > 0:
            self.award_points(delta, reason, at, field="delta")
        else:
            self.deduct_points(-delta, reason, at, field="delta")

    def award_points(
        self, points: int, reason: str, at: datetime, *, field: str = "points"
    ) -> None:
        """PointsAwarded (积分)."""
        self._refuse_unless_active()
        points = require_int(field, points, low=1, high=MAX_POINTS_PER_ENTRY)
        self._record(self.PointsAwarded, at, points=points, reason=clean_text("reason", reason))

    def deduct_points(
        self, points: int, reason: str, at: datetime, *, field: str = "points"
    ) -> None:
        """PointsDeducted; the balance never goes below zero."""
        self._refuse_unless_active()
        points = require_int(field, points, low=1, high=MAX_POINTS_PER_ENTRY)
        if points > self.points:
            raise InvalidValue(
                field, f"cannot deduct {points} points from a balance of {self.points}"
            )
        self._record(self.PointsDeducted, at, points=points, reason=clean_text("reason", reason))

    def transfer(
        self,
        *,
        to_community: NodeRef,
        grid: NodeRef | None = None,
        person_already_registered: bool = False,
        at: datetime,
    ) -> None:
        """MemberTransferred to another community of the same root tenant. Events already
        recorded stay with the old community; later ones join the new one's chain."""
        self._refuse_unless_active()
        require_node(
            "to_community_code", to_community, kinds={NodeKind.COMMUNITY}, root_id=self.root_id
        )
        if to_community.id == self.community_id:
            raise InvalidValue("to_community_code", "the member is already registered there")
        if grid is not None:
            _require_grid_in(grid, to_community)
        if person_already_registered:
            raise Conflict(f"this person is already registered at {to_community.code}")
        self._record(
            self.Transferred,
            at,
            from_community_id=self.community_id,
            from_community_code=self.community_code,
            to_community_id=to_community.id,
            to_community_code=to_community.code,
            to_grid_id=grid.id if grid else None,
            to_grid_code=grid.code if grid else None,
        )

    def deregister(self, reason: str, at: datetime) -> None:
        """MemberDeregistered: the record stays, no more service or points."""
        self._refuse_unless_active()
        self._record(self.Deregistered, at, reason=clean_text("reason", reason))

    def erase(self, at: datetime, reason: str | None = None) -> None:
        """MemberErased: the privacy layer deletes the person's key (crypto-shredding)."""
        if self.status == ERASED:
            raise IllegalTransition("the member's personal data is already erased",
                                    current_state=self.status)
        self._record(self.Erased, at, reason=clean_optional_text("reason", reason))

    def _refuse_unless_active(self) -> None:
        if self.status != ACTIVE:
            raise IllegalTransition(f"the member is {self.status}", current_state=self.status)


def _require_grid_in(grid: NodeRef, community: NodeRef) -> None:
    require_node("grid_code", grid, kinds={NodeKind.GRID}, root_id=community.root_id)
    if grid.parent_id != community.id:
        raise InvalidValue("grid_code", f"{grid.code} is not a grid of {community.code}")
