"""Commands on pairings (结对共建): sign, fulfil a commitment, hold an activity, review,
terminate.

Who may do what (the controller checks roles first):
* sign / review / terminate — the organising side (operator, admin) with both the unit and
  the community inside its scope;
* fulfil / activities — the organising side, or the unit side: a principal scoped to the
  pairing's unit (role ``unit``, ``operator`` or ``admin``).

"No second active pairing of the same unit and community with an overlapping term" is
decided on ``pairing_terms`` (migration 0010), written in the command's own transaction,
while a transaction-level advisory lock on the (unit, community) pair serialises signings
of that pair: the second of two concurrent signings waits, then sees the first's term.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from uuid import UUID, uuid4

import msgspec

from domain.pairing import Commitment, Pairing, Term
from domain.refs import NodeRef
from infra import directory
from infra.directory import DirectoryNode
from services.commands.lookup import node_in_scope
from services.commands.session import CommandSession
from services.problems import forbidden, not_found
from services.roles import WRITERS

#: the stream_parties role of a pairing's unit (unit principals see their pairings).
PARTY_ROLE = "unit"

#: advisory-lock namespace of pairing signings ("pa").
_PAIR_LOCK = 0x7061

LOCK_PAIR = "SELECT pg_advisory_xact_lock($1::int, hashtext($2::text))"
ACTIVE_TERMS = """
SELECT starts_on, ends_on FROM pairing_terms
WHERE root_id = $1 AND unit_id = $2 AND community_id = $3 AND active
"""
INSERT_TERM = """
INSERT INTO pairing_terms (root_id, pairing_id, unit_id, community_id, starts_on, ends_on)
VALUES ($1, $2, $3, $4, $5, $6)
"""
END_TERM = "UPDATE pairing_terms SET active = false WHERE root_id = $1 AND pairing_id = $2"


class PairingChanged(msgspec.Struct):
    id: UUID
    version: int
    position: int
    status: str
    unit_code: str
    community_code: str
    commitments_total: int
    commitments_fulfilled: int


@dataclass(frozen=True)
class _Loaded:
    pairing: Pairing
    unit: DirectoryNode | None
    community: DirectoryNode | None


def _node_ref(node: DirectoryNode) -> NodeRef:
    return NodeRef(
        id=node.id,
        code=node.code,
        kind=node.kind,
        root_id=node.root_id,
        parent_id=node.parent_id,
        closed=node.closed,
    )


def _changed(pairing: Pairing, version: int, position: int) -> PairingChanged:
    return PairingChanged(
        id=pairing.id,
        version=version,
        position=position,
        status=pairing.status,
        unit_code=pairing.unit_code,
        community_code=pairing.community_code,
        commitments_total=len(pairing.commitments),
        commitments_fulfilled=pairing.fulfilled_count,
    )


def _in_scope(session: CommandSession, node: DirectoryNode | None) -> bool:
    return node is not None and session.scope is not None and session.scope.contains_path(node.path)


async def _load(session: CommandSession, pairing_id: UUID) -> _Loaded:
    pairing = await session.load(Pairing, pairing_id)  # RLS: invisible → None
    if pairing is None:
        raise not_found(f"pairing {pairing_id}")
    unit = await directory.find_by_id(session.conn, pairing.unit_id)
    community = await directory.find_by_id(session.conn, pairing.community_id)
    if not (_in_scope(session, unit) or _in_scope(session, community)):
        raise not_found(f"pairing {pairing_id}")
    return _Loaded(pairing, unit, community)


def _require_organiser(session: CommandSession, loaded: _Loaded, action: str) -> None:
    """Signing side: both the unit and the community inside the caller's scope."""
    if not (_in_scope(session, loaded.unit) and _in_scope(session, loaded.community)):
        raise forbidden(f"{action} needs both the unit and the community inside your scope")


def _require_unit_side(session: CommandSession, loaded: _Loaded, action: str) -> None:
    """The organising side (operator/admin), or a principal scoped to the pairing's unit."""
    if session.principal.has_any(WRITERS):
        return
    if not _in_scope(session, loaded.unit):
        raise forbidden(f"{action} is for the pairing's unit or an operator/admin")


async def sign(
    session: CommandSession,
    *,
    unit_code: str,
    community_code: str,
    starts_on: date,
    ends_on: date,
    commitments: Sequence[tuple[str, date]],
) -> tuple[int, PairingChanged]:
    unit = await node_in_scope(session, unit_code, f"unit {unit_code}")
    community = await node_in_scope(session, community_code, f"community {community_code}")
    conn = session.conn
    await conn.execute(LOCK_PAIR, _PAIR_LOCK, f"{unit.id}/{community.id}")
    rows = await conn.fetch(ACTIVE_TERMS, session.root_id, unit.id, community.id)
    pairing = Pairing.sign(
        pairing_id=uuid4(),
        unit=_node_ref(unit),
        community=_node_ref(community),
        starts_on=starts_on,
        ends_on=ends_on,
        commitments=[Commitment(title=t, due_on=d) for t, d in commitments],
        other_active_terms=[Term(r["starts_on"], r["ends_on"]) for r in rows],
        at=session.now,
    )
    await conn.execute(
        INSERT_TERM,
        session.root_id,
        pairing.id,
        unit.id,
        community.id,
        pairing.starts_on,
        pairing.ends_on,
    )
    await directory.add_party(conn, session.root_id, unit.id, pairing.id, PARTY_ROLE)
    result = await session.save(pairing)
    return 201, _changed(pairing, result.version, result.position)


async def fulfil(
    session: CommandSession, *, pairing_id: UUID, index: int, evidence: str
) -> tuple[int, PairingChanged]:
    loaded = await _load(session, pairing_id)
    _require_unit_side(session, loaded, "fulfilling a commitment")
    session.check_if_match(loaded.pairing)
    loaded.pairing.fulfil(index, evidence, session.now)
    result = await session.save(loaded.pairing)
    return 200, _changed(loaded.pairing, result.version, result.position)


async def hold_activity(
    session: CommandSession, *, pairing_id: UUID, held_on: date, title: str, participants: int
) -> tuple[int, PairingChanged]:
    loaded = await _load(session, pairing_id)
    _require_unit_side(session, loaded, "recording an activity")
    session.check_if_match(loaded.pairing)
    loaded.pairing.hold_activity(
        held_on=held_on, title=title, participants=participants, at=session.now
    )
    result = await session.save(loaded.pairing)
    return 200, _changed(loaded.pairing, result.version, result.position)


async def review(
    session: CommandSession, *, pairing_id: UUID, rating: str, comment: str | None
) -> tuple[int, PairingChanged]:
    loaded = await _load(session, pairing_id)
    _require_organiser(session, loaded, "reviewing a pairing")
    session.check_if_match(loaded.pairing)
    loaded.pairing.review(rating=rating, comment=comment, at=session.now)
    result = await session.save(loaded.pairing)
    return 200, _changed(loaded.pairing, result.version, result.position)


async def terminate(
    session: CommandSession, *, pairing_id: UUID, reason: str
) -> tuple[int, PairingChanged]:
    loaded = await _load(session, pairing_id)
    _require_organiser(session, loaded, "terminating a pairing")
    session.check_if_match(loaded.pairing)
    loaded.pairing.terminate(reason, session.now)
    await session.conn.execute(END_TERM, session.root_id, loaded.pairing.id)
    result = await session.save(loaded.pairing)
    return 200, _changed(loaded.pairing, result.version, result.position)
