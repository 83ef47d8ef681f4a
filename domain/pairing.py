"""The Pairing aggregate (结对共建): a county-level unit's party organisation pairs with a
community (or village) for a term, promises commitments with due dates (承诺事项), holds
joint activities, is reviewed, and may be terminated early.

Whether another active pairing of the same unit and community overlaps the new term needs
the read model; the application passes those terms in and the rule stays here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any
from uuid import UUID

from domain.base import CivicAggregate
from domain.clock import require_aware
from domain.errors import Conflict, IllegalTransition, InvalidValue
from domain.hierarchy import NodeKind
from domain.refs import (
    MAX_TITLE,
    NodeRef,
    business_date,
    clean_optional_text,
    clean_text,
    require_date,
    require_int,
    require_node,
)

ACTIVE = "active"
TERMINATED = "terminated"

#: review ratings (优秀 / 良好 / 一般 / 较差).
RATINGS = ("excellent", "good", "fair", "poor")

MAX_COMMITMENTS = 100
MAX_PARTICIPANTS = 100_000


@dataclass(frozen=True)
class Commitment:
    """A promised deliverable (承诺事项) as signed: what, and by when."""

    title: str
    due_on: date


@dataclass(frozen=True)
class Term:
    """A pairing's term, both days included."""

    starts_on: date
    ends_on: date

    def overlaps(self, other: Term) -> bool:
        return self.starts_on <= other.ends_on and other.starts_on <= self.ends_on


@dataclass(frozen=True)
class CommitmentState:
    """A commitment as it stands: the signed promise and, once kept, when and with what evidence."""

    title: str
    due_on: date
    fulfilled_at: datetime | None = None
    evidence: str | None = None

    @property
    def fulfilled(self) -> bool:
        return self.fulfilled_at is not None


class Pairing(CivicAggregate):
    STREAM_TYPE = "pairing"

    class Signed(CivicAggregate.Created):
        TOPIC = "PairingSigned.v1"
        unit_id: UUID
        unit_code: str
        community_id: UUID
        community_code: str
        root_id: UUID
        starts_on: date
        ends_on: date
        commitments: tuple[Commitment, ...]

        def apply(self, pairing: Any) -> None:
            pass

    class CommitmentFulfilled(CivicAggregate.Event):
        TOPIC = "CommitmentFulfilled.v1"
        index: int
        title: str
        evidence: str

        def apply(self, pairing: Any) -> None:
            commitments = list(pairing.commitments)
            commitments[self.index] = replace(
                commitments[self.index], fulfilled_at=self.timestamp, evidence=self.evidence
            )
            pairing.commitments = tuple(commitments)

    class ActivityHeld(CivicAggregate.Event):
        TOPIC = "PairingActivityHeld.v1"
        held_on: date
        title: str
        participants: int

        def apply(self, pairing: Any) -> None:
            pairing.activity_count += 1
            pairing.participant_total += self.participants
            if pairing.last_activity_on is None or self.held_on > pairing.last_activity_on:
                pairing.last_activity_on = self.held_on

    class Reviewed(CivicAggregate.Event):
        TOPIC = "PairingReviewed.v1"
        rating: str
        comment: str | None

        def apply(self, pairing: Any) -> None:
            pairing.rating = self.rating
            pairing.review_count += 1

    class Terminated(CivicAggregate.Event):
        TOPIC = "PairingTerminated.v1"
        reason: str

        def apply(self, pairing: Any) -> None:
            pairing.status = TERMINATED
            pairing.terminated_at = self.timestamp
            pairing.termination_reason = self.reason

    def __init__(
        self,
        unit_id: UUID,
        unit_code: str,
        community_id: UUID,
        community_code: str,
        root_id: UUID,
        starts_on: date,
        ends_on: date,
        commitments: tuple[Commitment, ...],
    ) -> None:
        self.unit_id = unit_id
        self.unit_code = unit_code
        self.community_id = community_id
        self.community_code = community_code
        self.root_id = root_id
        self.starts_on = starts_on
        self.ends_on = ends_on
        self.commitments: tuple[CommitmentState, ...] = tuple(
            CommitmentState(title=c.title, due_on=c.due_on) for c in commitments
        )
        self.status = ACTIVE
        self.activity_count = 0
        self.participant_total = 0
        self.last_activity_on: date | None = None
        self.rating: str | None = None
        self.review_count = 0
        self.terminated_at: datetime | None = None
        self.termination_reason: str | None = None

    @property
    def owner_node_id(self) -> UUID:
        return self.community_id

    @property
    def term(self) -> Term:
        return Term(self.starts_on, self.ends_on)

    @property
    def fulfilled_count(self) -> int:
        return sum(1 for c in self.commitments if c.fulfilled)

    def in_force_on(self, day: date) -> bool:
        """Active and ``day`` lies within the term."""
        return self.status == ACTIVE and self.starts_on <= day <= self.ends_on

    # -- commands -------------------------------------------------------------------------

    @classmethod
    def sign(
        cls,
        *,
        pairing_id: UUID,
        unit: NodeRef,
        community: NodeRef,
        starts_on: date,
        ends_on: date,
        commitments: Sequence[Commitment],
        other_active_terms: Sequence[Term] = (),
        at: datetime,
    ) -> Pairing:
        """Sign a pairing (PairingSigned).

        ``other_active_terms`` are the terms of the *active* pairings of the same unit and
        community that already exist; any overlap with the new term is a ``Conflict``.
        """
        require_node("unit_code", unit, kinds={NodeKind.UNIT})
        require_node("community_code", community, kinds={NodeKind.COMMUNITY}, root_id=unit.root_id)
        starts_on = require_date("starts_on", starts_on)
        ends_on = require_date("ends_on", ends_on)
        if ends_on <= starts_on:
            raise InvalidValue("ends_on", "the term must end after it starts")
        term = Term(starts_on, ends_on)
        cleaned = _clean_commitments(commitments, term)
        for other in other_active_terms:
            if term.overlaps(other):
                raise Conflict(
                    f"{unit.code} already has an active pairing with {community.code} "
                    f"from {other.starts_on} to {other.ends_on}, overlapping this term"
                )
        return cls._create(
            cls.Signed,
            id=pairing_id,
            timestamp=require_aware(at),
            unit_id=unit.id,
            unit_code=unit.code,
            community_id=community.id,
            community_code=community.code,
            root_id=unit.root_id,
            starts_on=starts_on,
            ends_on=ends_on,
            commitments=cleaned,
        )

    def fulfil(self, index: int, evidence: str, at: datetime) -> None:
        """Mark commitment ``index`` (0-based, in signing order) fulfilled (CommitmentFulfilled)."""
        self._refuse_unless_active()
        if not self.commitments:
            raise InvalidValue("index", "this pairing has no commitments")
        index = require_int("index", index, low=0, high=len(self.commitments) - 1)
        commitment = self.commitments[index]
        if commitment.fulfilled:
            raise IllegalTransition(
                f"commitment {index} ({commitment.title}) was already fulfilled",
                current_state="fulfilled",
            )
        self._record(
            self.CommitmentFulfilled,
            at,
            index=index,
            title=commitment.title,
            evidence=clean_text("evidence", evidence),
        )

    def hold_activity(
        self, *, held_on: date, title: str, participants: int, at: datetime
    ) -> None:
        """Record a joint activity (PairingActivityHeld): within the term, not in the future."""
        self._refuse_unless_active()
        held_on = require_date("held_on", held_on)
        if held_on > business_date(require_aware(at)):
            raise InvalidValue("held_on", "an activity cannot be recorded before it is held")
        if not self.starts_on <= held_on <= self.ends_on:
            raise InvalidValue(
                "held_on", f"must lie within the term {self.starts_on} to {self.ends_on}"
            )
        self._record(
            self.ActivityHeld,
            at,
            held_on=held_on,
            title=clean_text("title", title, max_len=MAX_TITLE),
            participants=require_int("participants", participants, low=1, high=MAX_PARTICIPANTS),
        )

    def review(self, *, rating: str, comment: str | None = None, at: datetime) -> None:
        """Rate the pairing (PairingReviewed): excellent | good | fair | poor."""
        self._refuse_unless_active()
        if rating not in RATINGS:
            raise InvalidValue("rating", f"must be one of {', '.join(RATINGS)}")
        self._record(
            self.Reviewed, at, rating=rating, comment=clean_optional_text("comment", comment)
        )

    def terminate(self, reason: str, at: datetime) -> None:
        """End the pairing early (PairingTerminated)."""
        self._refuse_unless_active()
        self._record(self.Terminated, at, reason=clean_text("reason", reason))

    def _refuse_unless_active(self) -> None:
        if self.status != ACTIVE:
            raise IllegalTransition("the pairing has been terminated", current_state=self.status)


def _clean_commitments(commitments: Sequence[Commitment], term: Term) -> tuple[Commitment, ...]:
    if len(commitments) > MAX_COMMITMENTS:
        raise InvalidValue("commitments", f"at most {MAX_COMMITMENTS} commitments per pairing")
    cleaned = []
    for i, c in enumerate(commitments):
        title = clean_text(f"commitments[{i}].title", c.title, max_len=MAX_TITLE)
        due_on = require_date(f"commitments[{i}].due_on", c.due_on)
        if not term.starts_on <= due_on <= term.ends_on:
            raise InvalidValue(
                f"commitments[{i}].due_on",
                f"must lie within the term {term.starts_on} to {term.ends_on}",
            )
        cleaned.append(Commitment(title=title, due_on=due_on))
    return tuple(cleaned)
