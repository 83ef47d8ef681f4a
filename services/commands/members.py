"""Commands of member registration (双报到): a unit reports to a community; a member
registers, records service, gains or loses points, transfers, deregisters, is erased.

The same person (ID-card number, else mobile) is registered once per community. The rule
is kept race-free by the member blind index (``infra.member_identities``), written in the
command's own transaction; the identity is a keyed HMAC (never the plaintext; see
``services.personal_data_view``). Of two concurrent registrations of one person exactly one
is MemberRegistered, the other request 409.

The same row records the member's current community. A member's history stays on the
chains of the communities where it happened; a transfer marks the row ``transferred`` so
that the new community may load the whole stream (see the events policy of migration 0011).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Annotated
from uuid import UUID, uuid4

import msgspec

from domain.member import MAX_HOURS_PER_ENTRY, MAX_POINTS_PER_ENTRY, Member, UnitRegistration
from domain.personal_data import MAX_NAME
from infra import member_identities
from infra.directory import DirectoryNode
from services.commands.lookup import node_in_root, node_in_scope
from services.commands.session import CommandSession, Saved
from services.fields import NodeCode, Text, Title
from services.personal_data_view import identity_hash, new_person
from services.problems import forbidden, not_found
from services.roles import WRITERS

#: stream_parties roles: the member's home unit; the unit that reported to a community.
HOME_UNIT_ROLE = "home_unit"
UNIT_ROLE = "unit"


# -- the commands (request bodies, passed through as they were decoded) ----------------------


class UnitRegister(msgspec.Struct, forbid_unknown_fields=True):
    community_code: Annotated[
        NodeCode, msgspec.Meta(description="the community (or village) the unit reports to")
    ]


class MemberRegister(msgspec.Struct, forbid_unknown_fields=True):
    community_code: Annotated[
        NodeCode, msgspec.Meta(description="the member's residential community, in your scope")
    ]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME)]
    phone: Annotated[
        str,
        msgspec.Meta(
            min_length=1, max_length=20, description="mainland mobile: 11 digits starting with 1"
        ),
    ]
    home_unit_code: Annotated[
        NodeCode, msgspec.Meta(description="the unit the member works at (same root tenant)")
    ]
    id_number: (
        Annotated[
            str,
            msgspec.Meta(
                max_length=20, description="18-character resident ID number (GB 11643 check digit)"
            ),
        ]
        | None
    ) = None
    grid_code: Annotated[NodeCode, msgspec.Meta(description="a grid of the community")] | None = (
        None
    )


class ServiceRecord(msgspec.Struct, forbid_unknown_fields=True):
    served_on: Annotated[date, msgspec.Meta(description="not in the future (China date)")]
    hours: Annotated[
        float, msgspec.Meta(description=f"more than 0, at most {MAX_HOURS_PER_ENTRY} per entry")
    ]
    kind: Annotated[Title, msgspec.Meta(description="e.g. 志愿服务, 文明劝导, 扫楼走访")]


class PointsAdjust(msgspec.Struct, forbid_unknown_fields=True):
    delta: Annotated[
        int,
        msgspec.Meta(
            description=f"positive awards (PointsAwarded), negative deducts (PointsDeducted); "
            f"not 0; |delta| ≤ {MAX_POINTS_PER_ENTRY}"
        ),
    ]
    reason: Text


class MemberTransfer(msgspec.Struct, forbid_unknown_fields=True):
    to_community_code: Annotated[
        NodeCode, msgspec.Meta(description="another community of the same root tenant")
    ]
    grid_code: (
        Annotated[NodeCode, msgspec.Meta(description="a grid of the new community")] | None
    ) = None


class MemberDeregister(msgspec.Struct, forbid_unknown_fields=True):
    reason: Text


class MemberErase(msgspec.Struct, forbid_unknown_fields=True):
    reason: Text | None = None


# -- the answers -----------------------------------------------------------------------------


class MemberChanged(msgspec.Struct):
    """A member command's answer; never personal data."""

    id: UUID
    version: int
    position: int
    status: str
    community_code: str
    service_hours: float
    points: int

    @classmethod
    def of(cls, saved: Saved[Member]) -> MemberChanged:
        member = saved.aggregate
        return cls(
            id=member.id,
            version=saved.version,
            position=saved.position,
            status=member.status,
            community_code=member.community_code,
            service_hours=member.service_hours,
            points=member.points,
        )


class UnitRegistrationChanged(msgspec.Struct):
    id: UUID
    version: int
    position: int
    unit_code: str
    community_code: str

    @classmethod
    def of(cls, saved: Saved[UnitRegistration]) -> UnitRegistrationChanged:
        registration = saved.aggregate
        return cls(
            id=registration.id,
            version=saved.version,
            position=saved.position,
            unit_code=registration.unit_code,
            community_code=registration.community_code,
        )


# -- placement -------------------------------------------------------------------------------


async def current_community(session: CommandSession, member_id: UUID) -> DirectoryNode:
    """The member's current community, when it lies in the caller's scope (else 404).

    Checked before the member is loaded: only then does row-level security show the
    member's whole stream, wherever its earlier events were chained.
    """
    community_id = await member_identities.current_community(
        session.conn, session.root_id, member_id
    )
    community = await session.node(community_id)
    if community is None or not session.in_scope(community):
        raise not_found(f"member {member_id}")
    return community


async def _update(
    session: CommandSession,
    member_id: UUID,
    act: Callable[[Member], object],
    *,
    node_id: UUID | None = None,
) -> Saved[Member]:
    await current_community(session, member_id)
    return await session.update(Member, member_id, act, what="member", node_id=node_id)


# -- commands --------------------------------------------------------------------------------


async def register_unit(
    session: CommandSession, unit_code: str, command: UnitRegister
) -> tuple[int, UnitRegistrationChanged]:
    """UnitRegistered. A unit principal reports its own unit to any community of the root
    tenant; an operator/admin records a unit reporting to a community of its subtree."""
    assert session.scope is not None
    community_code = command.community_code
    if session.scope.is_unit:
        unit = await node_in_scope(session, unit_code, f"unit {unit_code}")
        community = await node_in_root(session, community_code, f"community {community_code}")
    else:
        if not session.principal.has_any(WRITERS):
            raise forbidden(
                "recording a unit's registration at a community needs operator or admin"
            )
        community = await node_in_scope(session, community_code, f"community {community_code}")
        unit = await node_in_root(session, unit_code, f"unit {unit_code}")
    stream_id = UnitRegistration.stream_id(unit.id, community.id)
    # The unit is a party first, so a unit principal sees an earlier registration too.
    await session.add_party(unit.id, stream_id, UNIT_ROLE)
    existing = await session.load(UnitRegistration, stream_id)
    registration = UnitRegistration.register(
        unit=unit.ref(),
        community=community.ref(),
        already_registered=existing is not None,
        at=session.now,
    )
    return 201, UnitRegistrationChanged.of(await session.create(registration))


async def register(session: CommandSession, command: MemberRegister) -> tuple[int, MemberChanged]:
    person = new_person(command.name, command.phone, command.id_number)
    community_code, home_unit_code, grid_code = (
        command.community_code,
        command.home_unit_code,
        command.grid_code,
    )
    community = await node_in_scope(session, community_code, f"community {community_code}")
    home_unit = await node_in_root(session, home_unit_code, f"unit {home_unit_code}")
    grid = await node_in_scope(session, grid_code, f"grid {grid_code}") if grid_code else None
    member_id = uuid4()
    claimed = await member_identities.claim(
        session.conn,
        session.root_id,
        member_id,
        community.id,
        identity_hash(session.ctx.settings, person),
    )
    member = Member.register(
        member_id=member_id,
        person=person,
        community=community.ref(),
        home_unit=home_unit.ref(),
        grid=grid.ref() if grid else None,
        person_already_registered=not claimed,
        at=session.now,
    )
    await session.add_party(home_unit.id, member.id, HOME_UNIT_ROLE)
    return 201, MemberChanged.of(await session.create(member))


async def record_service(
    session: CommandSession, member_id: UUID, command: ServiceRecord
) -> tuple[int, MemberChanged]:
    saved = await _update(
        session,
        member_id,
        lambda m: m.record_service(
            served_on=command.served_on, hours=command.hours, kind=command.kind, at=session.now
        ),
    )
    return 200, MemberChanged.of(saved)


async def adjust_points(
    session: CommandSession, member_id: UUID, command: PointsAdjust
) -> tuple[int, MemberChanged]:
    saved = await _update(
        session, member_id, lambda m: m.adjust_points(command.delta, command.reason, session.now)
    )
    return 200, MemberChanged.of(saved)


async def transfer(
    session: CommandSession, member_id: UUID, command: MemberTransfer
) -> tuple[int, MemberChanged]:
    """MemberTransferred joins the *old* community's chain; later events the new one's.

    The destination lies in the caller's scope, like any node a command names (else 404): a
    move between streets is made by a principal whose scope holds both. Otherwise a street
    could move people into a sibling street unasked, and the "already registered" 409 would
    tell it who is registered there.
    """
    to_code, grid_code = command.to_community_code, command.grid_code
    old_community = await current_community(session, member_id)
    to_community = await node_in_scope(session, to_code, f"community {to_code}")
    grid = await node_in_scope(session, grid_code, f"grid {grid_code}") if grid_code else None
    # The slot in the new community is taken before the member is loaded (the act decides
    # synchronously); a refused transfer rolls the move back with the transaction.
    taken = not await member_identities.move(
        session.conn, session.root_id, member_id, to_community.id
    )
    saved = await session.update(
        Member,
        member_id,
        lambda m: m.transfer(
            to_community=to_community.ref(),
            grid=grid.ref() if grid else None,
            person_already_registered=taken,
            at=session.now,
        ),
        what="member",
        node_id=old_community.id,
    )
    return 200, MemberChanged.of(saved)


async def deregister(
    session: CommandSession, member_id: UUID, command: MemberDeregister
) -> tuple[int, MemberChanged]:
    saved = await _update(session, member_id, lambda m: m.deregister(command.reason, session.now))
    await member_identities.release(session.conn, session.root_id, member_id)
    return 200, MemberChanged.of(saved)


async def erase(
    session: CommandSession, member_id: UUID, command: MemberErase
) -> tuple[int, MemberChanged]:
    """MemberErased; in the same transaction the person's data key is deleted
    (crypto-shredding: the sealed personal data in the events can no longer be opened) and
    the blind index goes too (it is personal data)."""
    saved = await _update(session, member_id, lambda m: m.erase(session.now, reason=command.reason))
    await member_identities.shred(session.conn, session.root_id, member_id)
    await session.shred_personal_data(member_id)
    return 200, MemberChanged.of(saved)
