"""Commands on pairings (结对共建): sign, fulfil a commitment, hold an activity, review,
terminate.

Who may do what (the routes' guards check roles first):
* sign / review / terminate — the organising side (operator, admin) with both the unit and
  the community inside its scope;
* fulfil / activities — the organising side, or the unit side: a principal scoped to the
  pairing's unit (role ``unit``, ``operator`` or ``admin``).

"No second active pairing of the same unit and community with an overlapping term" is
decided on the pair's reserved terms (``infra.pairing_terms``), in the command's own
transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from typing import Annotated
from uuid import UUID, uuid4

import msgspec

from domain.pairing import MAX_COMMITMENTS, MAX_PARTICIPANTS, Commitment, Pairing, Term
from infra import pairing_terms
from services.commands.lookup import node_in_scope
from services.commands.session import CommandSession, Saved
from services.fields import NodeCode, PairingRating, Text, Title
from services.problems import forbidden, not_found
from services.roles import WRITERS

#: the stream_parties role of a pairing's unit (unit principals see their pairings).
PARTY_ROLE = "unit"

Authorize = Callable[[Pairing], Awaitable[None]]


# -- the commands (request bodies, passed through as they were decoded) ----------------------


class CommitmentIn(msgspec.Struct, forbid_unknown_fields=True):
    title: Annotated[Title, msgspec.Meta(description="what the unit promises (承诺事项)")]
    due_on: Annotated[date, msgspec.Meta(description="within the term")]


class PairingSign(msgspec.Struct, forbid_unknown_fields=True):
    unit_code: Annotated[NodeCode, msgspec.Meta(description="a unit node inside your scope")]
    community_code: Annotated[
        NodeCode, msgspec.Meta(description="a community (or village) node inside your scope")
    ]
    starts_on: date
    ends_on: Annotated[date, msgspec.Meta(description="after starts_on; both days included")]
    commitments: Annotated[list[CommitmentIn], msgspec.Meta(max_length=MAX_COMMITMENTS)] = (
        msgspec.field(default_factory=list)
    )


class CommitmentFulfil(msgspec.Struct, forbid_unknown_fields=True):
    evidence: Annotated[Text, msgspec.Meta(description="what shows it was kept (a note, a link)")]


class ActivityHold(msgspec.Struct, forbid_unknown_fields=True):
    held_on: Annotated[date, msgspec.Meta(description="within the term, not in the future")]
    title: Title
    participants: Annotated[int, msgspec.Meta(ge=1, le=MAX_PARTICIPANTS)]


class PairingReview(msgspec.Struct, forbid_unknown_fields=True):
    rating: PairingRating
    comment: Text | None = None


class PairingTerminate(msgspec.Struct, forbid_unknown_fields=True):
    reason: Text


# -- the answer ------------------------------------------------------------------------------


class PairingChanged(msgspec.Struct):
    id: UUID
    version: int
    position: int
    status: str
    unit_code: str
    community_code: str
    commitments_total: int
    commitments_fulfilled: int

    @classmethod
    def of(cls, saved: Saved[Pairing]) -> PairingChanged:
        pairing = saved.aggregate
        return cls(
            id=pairing.id,
            version=saved.version,
            position=saved.position,
            status=pairing.status,
            unit_code=pairing.unit_code,
            community_code=pairing.community_code,
            commitments_total=len(pairing.commitments),
            commitments_fulfilled=pairing.fulfilled_count,
        )


# -- placement -------------------------------------------------------------------------------


async def _sides(session: CommandSession, pairing: Pairing) -> tuple[bool, bool]:
    """Whether the caller's scope holds the pairing's unit, and its community; a pairing
    neither side of which lies in the scope is not the caller's (404)."""
    unit = session.in_scope(await session.node(pairing.unit_id))
    community = session.in_scope(await session.node(pairing.community_id))
    if not (unit or community):
        raise not_found(f"pairing {pairing.id}")
    return unit, community


def _organiser(session: CommandSession, action: str) -> Authorize:
    """Signing side: both the unit and the community inside the caller's scope."""

    async def authorize(pairing: Pairing) -> None:
        if (await _sides(session, pairing)) != (True, True):
            raise forbidden(f"{action} needs both the unit and the community inside your scope")

    return authorize


def _unit_side(session: CommandSession, action: str) -> Authorize:
    """The organising side (operator/admin), or a principal scoped to the pairing's unit."""

    async def authorize(pairing: Pairing) -> None:
        unit, _ = await _sides(session, pairing)
        if not (session.principal.has_any(WRITERS) or unit):
            raise forbidden(f"{action} is for the pairing's unit or an operator/admin")

    return authorize


# -- commands --------------------------------------------------------------------------------


async def sign(session: CommandSession, command: PairingSign) -> tuple[int, PairingChanged]:
    unit = await node_in_scope(session, command.unit_code, f"unit {command.unit_code}")
    community = await node_in_scope(
        session, command.community_code, f"community {command.community_code}"
    )
    terms = await pairing_terms.lock_active_terms(
        session.conn, session.root_id, unit.id, community.id
    )
    pairing = Pairing.sign(
        pairing_id=uuid4(),
        unit=unit.ref(),
        community=community.ref(),
        starts_on=command.starts_on,
        ends_on=command.ends_on,
        commitments=[Commitment(title=c.title, due_on=c.due_on) for c in command.commitments],
        other_active_terms=[Term(start, end) for start, end in terms],
        at=session.now,
    )
    await pairing_terms.reserve(
        session.conn,
        session.root_id,
        pairing.id,
        unit.id,
        community.id,
        pairing.starts_on,
        pairing.ends_on,
    )
    await session.add_party(unit.id, pairing.id, PARTY_ROLE)
    return 201, PairingChanged.of(await session.create(pairing))


async def fulfil(
    session: CommandSession, pairing_id: UUID, index: int, command: CommitmentFulfil
) -> tuple[int, PairingChanged]:
    saved = await session.update(
        Pairing,
        pairing_id,
        lambda p: p.fulfil(index, command.evidence, session.now),
        authorize=_unit_side(session, "fulfilling a commitment"),
    )
    return 200, PairingChanged.of(saved)


async def hold_activity(
    session: CommandSession, pairing_id: UUID, command: ActivityHold
) -> tuple[int, PairingChanged]:
    saved = await session.update(
        Pairing,
        pairing_id,
        lambda p: p.hold_activity(
            held_on=command.held_on,
            title=command.title,
            participants=command.participants,
            at=session.now,
        ),
        authorize=_unit_side(session, "recording an activity"),
    )
    return 200, PairingChanged.of(saved)


async def review(
    session: CommandSession, pairing_id: UUID, command: PairingReview
) -> tuple[int, PairingChanged]:
    saved = await session.update(
        Pairing,
        pairing_id,
        lambda p: p.review(rating=command.rating, comment=command.comment, at=session.now),
        authorize=_organiser(session, "reviewing a pairing"),
    )
    return 200, PairingChanged.of(saved)


async def terminate(
    session: CommandSession, pairing_id: UUID, command: PairingTerminate
) -> tuple[int, PairingChanged]:
    saved = await session.update(
        Pairing,
        pairing_id,
        lambda p: p.terminate(command.reason, session.now),
        authorize=_organiser(session, "terminating a pairing"),
    )
    await pairing_terms.release(session.conn, session.root_id, pairing_id)
    return 200, PairingChanged.of(saved)
