"""Commands of member registration (双报到): a unit reports to a community; a member
registers, records service, gains or loses points, transfers, deregisters, is erased.

The same person (ID-card number, else mobile) is registered once per community. The rule
is kept race-free by ``member_identities`` (migration 0011), written in the command's own
transaction: a partial unique index on (root, community, identity_hash) WHERE active, where
identity_hash is a keyed HMAC (never the plaintext; see ``services.personal_data_view``).
Of two concurrent registrations of one person, the second's insert waits for the first
and then finds the slot taken: exactly one MemberRegistered, the other request 409.

The same row records the member's current community. A member's history stays on the
chains of the communities where it happened; a transfer marks the row ``transferred`` so
that the new community may load the whole stream (see the events policy of migration 0011).
"""

from __future__ import annotations

from datetime import date
from uuid import UUID, uuid4

import asyncpg
import msgspec

from domain.member import Member, UnitRegistration
from domain.refs import NodeRef
from infra import directory
from infra.directory import DirectoryNode
from services.commands.lookup import node_in_root, node_in_scope
from services.commands.session import CommandSession
from services.personal_data_view import identity_hash, new_person
from services.problems import forbidden, not_found
from services.roles import WRITERS

#: stream_parties roles: the member's home unit; the unit that reported to a community.
HOME_UNIT_ROLE = "home_unit"
UNIT_ROLE = "unit"

CLAIM_IDENTITY = """
INSERT INTO member_identities (root_id, member_id, community_id, identity_hash)
VALUES ($1, $2, $3, $4)
ON CONFLICT (root_id, community_id, identity_hash) WHERE active DO NOTHING
RETURNING member_id
"""
CURRENT_COMMUNITY = """
SELECT community_id FROM member_identities WHERE root_id = $1 AND member_id = $2
"""
# No RETURNING: the moved row may leave the caller's subtree (and so its visibility).
MOVE_IDENTITY = """
UPDATE member_identities SET community_id = $3, transferred = true
WHERE root_id = $1 AND member_id = $2
"""
RELEASE_IDENTITY = (
    "UPDATE member_identities SET active = false WHERE root_id = $1 AND member_id = $2"
)
SHRED_IDENTITY = """
UPDATE member_identities SET active = false, identity_hash = NULL
WHERE root_id = $1 AND member_id = $2
"""


class MemberChanged(msgspec.Struct):
    """A member command's answer; never personal data."""

    id: UUID
    version: int
    position: int
    status: str
    community_code: str
    service_hours: float
    points: int


class UnitRegistrationChanged(msgspec.Struct):
    id: UUID
    version: int
    position: int
    unit_code: str
    community_code: str


def _node_ref(node: DirectoryNode) -> NodeRef:
    return NodeRef(
        id=node.id,
        code=node.code,
        kind=node.kind,
        root_id=node.root_id,
        parent_id=node.parent_id,
        closed=node.closed,
    )


def _changed(member: Member, version: int, position: int) -> MemberChanged:
    return MemberChanged(
        id=member.id,
        version=version,
        position=position,
        status=member.status,
        community_code=member.community_code,
        service_hours=member.service_hours,
        points=member.points,
    )


async def _load(session: CommandSession, member_id: UUID) -> Member:
    """The member, when its current community lies in the caller's scope (else 404).

    The current community is checked first (from member_identities): only then does row-level
    security show the member's whole stream, wherever its earlier events were chained.
    """
    community_id = await session.conn.fetchval(CURRENT_COMMUNITY, session.root_id, member_id)
    community = await directory.find_by_id(session.conn, community_id) if community_id else None
    if (
        community is None
        or session.scope is None
        or not session.scope.contains_path(community.path)
    ):
        raise not_found(f"member {member_id}")
    member = await session.load(Member, member_id)
    if member is None:
        raise not_found(f"member {member_id}")
    session.check_if_match(member)
    return member


async def register_unit(
    session: CommandSession, *, unit_code: str, community_code: str
) -> tuple[int, UnitRegistrationChanged]:
    """UnitRegistered. A unit principal reports its own unit to any community of the root
    tenant; an operator/admin records a unit reporting to a community of its subtree."""
    assert session.scope is not None
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
    await directory.add_party(session.conn, session.root_id, unit.id, stream_id, UNIT_ROLE)
    existing = await session.load(UnitRegistration, stream_id)
    registration = UnitRegistration.register(
        unit=_node_ref(unit),
        community=_node_ref(community),
        already_registered=existing is not None,
        at=session.now,
    )
    result = await session.save(registration)
    return 201, UnitRegistrationChanged(
        id=registration.id,
        version=result.version,
        position=result.position,
        unit_code=registration.unit_code,
        community_code=registration.community_code,
    )


async def register(
    session: CommandSession,
    *,
    community_code: str,
    name: str,
    phone: str,
    id_number: str | None,
    home_unit_code: str,
    grid_code: str | None,
) -> tuple[int, MemberChanged]:
    person = new_person(name, phone, id_number)
    community = await node_in_scope(session, community_code, f"community {community_code}")
    home_unit = await node_in_root(session, home_unit_code, f"unit {home_unit_code}")
    grid = await node_in_scope(session, grid_code, f"grid {grid_code}") if grid_code else None
    member_id = uuid4()
    claimed = await session.conn.fetchval(
        CLAIM_IDENTITY,
        session.root_id,
        member_id,
        community.id,
        identity_hash(session.ctx.settings, person),
    )
    member = Member.register(
        member_id=member_id,
        person=person,
        community=_node_ref(community),
        home_unit=_node_ref(home_unit),
        grid=_node_ref(grid) if grid else None,
        person_already_registered=claimed is None,
        at=session.now,
    )
    await directory.add_party(
        session.conn, session.root_id, home_unit.id, member.id, HOME_UNIT_ROLE
    )
    result = await session.save(member)
    return 201, _changed(member, result.version, result.position)


async def record_service(
    session: CommandSession, *, member_id: UUID, served_on: date, hours: float, kind: str
) -> tuple[int, MemberChanged]:
    member = await _load(session, member_id)
    member.record_service(served_on=served_on, hours=hours, kind=kind, at=session.now)
    result = await session.save(member)
    return 200, _changed(member, result.version, result.position)


async def adjust_points(
    session: CommandSession, *, member_id: UUID, delta: int, reason: str
) -> tuple[int, MemberChanged]:
    member = await _load(session, member_id)
    member.adjust_points(delta, reason, session.now)
    result = await session.save(member)
    return 200, _changed(member, result.version, result.position)


async def transfer(
    session: CommandSession, *, member_id: UUID, to_community_code: str, grid_code: str | None
) -> tuple[int, MemberChanged]:
    """MemberTransferred joins the *old* community's chain; later events the new one's.

    The destination lies in the caller's scope, like any node a command names (else 404): a
    move between streets is made by a principal whose scope holds both. Otherwise a street
    could move people into a sibling street unasked, and the "already registered" 409 would
    tell it who is registered there.
    """
    member = await _load(session, member_id)
    to_community = await node_in_scope(session, to_community_code, f"community {to_community_code}")
    grid = await node_in_scope(session, grid_code, f"grid {grid_code}") if grid_code else None
    old_community_id = member.community_id
    conn = session.conn
    taken = False
    # A savepoint: the person already holding a slot in the new community is an answer
    # (409 from the domain), not a failed transaction.
    await conn.execute("SAVEPOINT member_identity")
    try:
        moved = await conn.execute(MOVE_IDENTITY, session.root_id, member.id, to_community.id)
    except asyncpg.UniqueViolationError:
        await conn.execute("ROLLBACK TO SAVEPOINT member_identity")
        taken = True
    else:
        await conn.execute("RELEASE SAVEPOINT member_identity")
        if moved != "UPDATE 1":
            raise RuntimeError(f"member {member.id} has no identity index row")
    member.transfer(
        to_community=_node_ref(to_community),
        grid=_node_ref(grid) if grid else None,
        person_already_registered=taken,
        at=session.now,
    )
    result = await session.save(member, node_id=old_community_id)
    return 200, _changed(member, result.version, result.position)


async def deregister(
    session: CommandSession, *, member_id: UUID, reason: str
) -> tuple[int, MemberChanged]:
    member = await _load(session, member_id)
    member.deregister(reason, session.now)
    await session.conn.execute(RELEASE_IDENTITY, session.root_id, member.id)
    result = await session.save(member)
    return 200, _changed(member, result.version, result.position)


async def erase(
    session: CommandSession, *, member_id: UUID, reason: str | None
) -> tuple[int, MemberChanged]:
    """MemberErased; in the same transaction the person's data key is deleted
    (crypto-shredding: the sealed personal data in the events can no longer be opened) and
    the blind index goes too (it is personal data)."""
    member = await _load(session, member_id)
    member.erase(session.now, reason=reason)
    await session.conn.execute(SHRED_IDENTITY, session.root_id, member.id)
    await session.shred_personal_data(member.id)
    result = await session.save(member)
    return 200, _changed(member, result.version, result.position)
