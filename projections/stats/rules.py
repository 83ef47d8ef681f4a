"""What "stats" counts: one rule per event (see the package's docstring for the formulas).

Pure: a rule turns an event into deltas (``add``) and changes of its aggregate's state (the
rules "unit_stats" counts alike are in ``common_rules``); the
engine (``projections.stats.engine``) moves the level counters when the state changes, and
``projections.stats.batch`` loads, rolls up and writes. Ids are read as text (node ids key
the batch's maps and travel in JSON parameters).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from domain.finding import Finding
from domain.issue import Issue
from domain.member import Member
from domain.pairing import Pairing
from domain.service import ServiceOrder
from domain.survey import Survey
from projections.base import LightEvent
from projections.stats.common_rules import CommonRules
from projections.stats.counters import (
    COMMITMENTS,
    FINDINGS_OVERDUE,
    FINDINGS_TOTAL,
    FINDINGS_VERIFIED,
    FULFILLED,
    ISSUES_CLOSED,
    ISSUES_EVALUATED,
    ISSUES_ON_TIME,
    ISSUES_OVERDUE,
    ISSUES_REPORTED,
    ISSUES_RESOLVED,
    ISSUES_SATISFIED,
    MEMBERS_REGISTERED,
    N_COUNTERS,
    PAIRINGS_ACTIVE,
    POINTS,
    SERVICE_CENTI,
    SERVICE_COMPLETED,
    SERVICE_EVALUATED,
    SERVICE_RATING_SUM,
    SERVICE_REQUESTED,
    SURVEYS_FLAGGED,
    SURVEYS_GROUP_RENTALS,
    SURVEYS_ISSUES_RAISED,
    SURVEYS_VISITED,
)
from projections.stats.engine import (
    ACTIVE,
    CLOSED,
    FINDING,
    ISSUE,
    KINDS,
    MEMBER,
    ON_TIME,
    OVERDUE,
    PAIRING,
    SERVICE_ORDER,
    SURVEY,
    VERIFIED,
    Aggregate,
)
from projections.subscriptions import on


def _levels(kind: str, flags: int) -> tuple[int, ...]:
    """The counters an aggregate contributes 1 to while its flags say so (its "level")."""
    found: list[int] = []
    if kind == PAIRING:
        if flags & ACTIVE:
            found.append(PAIRINGS_ACTIVE)
    elif kind == MEMBER:
        if flags & ACTIVE:
            found.append(MEMBERS_REGISTERED)
    elif kind == ISSUE:
        if flags & CLOSED:
            found.append(ISSUES_CLOSED)
            if flags & ON_TIME:
                found.append(ISSUES_ON_TIME)
        elif flags & OVERDUE:
            found.append(ISSUES_OVERDUE)
    elif kind == FINDING:
        if flags & VERIFIED:
            found.append(FINDINGS_VERIFIED)
        elif flags & OVERDUE:
            found.append(FINDINGS_OVERDUE)
    return tuple(found)


def _new(e: LightEvent, node: str, kind: str, flags: int = 0, due_at: Any = None) -> Aggregate:
    return Aggregate(e.root_id, e.stream_id, node, kind, flags, due_at, e.version)


class StatsRules(CommonRules):
    N_COUNTERS = N_COUNTERS
    FULFILLED = FULFILLED
    SERVICE_CENTI = SERVICE_CENTI
    POINTS = POINTS
    ISSUES_EVALUATED = ISSUES_EVALUATED
    ISSUES_SATISFIED = ISSUES_SATISFIED
    ISSUES_RESOLVED = ISSUES_RESOLVED
    LEVELS = {(kind, flags): _levels(kind, flags) for kind in KINDS for flags in range(32)}

    # -- creations: each aggregate counts under its node ---------------------------------
    @on(Pairing.Signed, fields=("community_id", "commitments"), text_ids=True)
    def pairing_signed(self, e: LightEvent, data: Any, day: date) -> Aggregate:
        agg = _new(e, data.community_id, PAIRING, ACTIVE)
        self.add(agg.root, agg.node, day, PAIRINGS_ACTIVE, 1)
        self.add(agg.root, agg.node, day, COMMITMENTS, len(data.commitments))
        return agg

    @on(Member.Registered, fields=("community_id",), text_ids=True)
    def member_registered(self, e: LightEvent, data: Any, day: date) -> Aggregate:
        agg = _new(e, data.community_id, MEMBER, ACTIVE)
        self.add(agg.root, agg.node, day, MEMBERS_REGISTERED, 1)
        return agg

    @on(Issue.Reported, fields=("node_id", "due_at"), text_ids=True)
    def issue_reported(self, e: LightEvent, data: Any, day: date) -> Aggregate:
        agg = _new(e, data.node_id, ISSUE, due_at=data.due_at)
        self.add(agg.root, agg.node, day, ISSUES_REPORTED, 1)
        return agg

    @on(Finding.Recorded, fields=("scope_id",), text_ids=True)
    def finding_recorded(self, e: LightEvent, data: Any, day: date) -> Aggregate:
        agg = _new(e, data.scope_id, FINDING)
        self.add(agg.root, agg.node, day, FINDINGS_TOTAL, 1)
        return agg

    @on(ServiceOrder.Requested, fields=("community_id",), text_ids=True)
    def service_requested(self, e: LightEvent, data: Any, day: date) -> Aggregate:
        agg = _new(e, data.community_id, SERVICE_ORDER)
        self.add(agg.root, agg.node, day, SERVICE_REQUESTED, 1)
        return agg

    @on(Survey.Visited, fields=("node_id", "flags", "issue_id"), text_ids=True)
    def household_visited(self, e: LightEvent, data: Any, day: date) -> Aggregate:
        agg = _new(e, data.node_id, SURVEY)
        root, node = agg.root, agg.node
        self.add(root, node, day, SURVEYS_VISITED, 1)
        if data.flags:
            self.add(root, node, day, SURVEYS_FLAGGED, 1)
        if "group_rental" in data.flags:
            self.add(root, node, day, SURVEYS_GROUP_RENTALS, 1)
        if data.issue_id is not None:
            self.add(root, node, day, SURVEYS_ISSUES_RAISED, 1)
        return agg

    # -- pairings ------------------------------------------------------------------------

    # -- members -------------------------------------------------------------------------

    @on(Member.Transferred, fields=("to_community_id",), text_ids=True)
    def transferred(self, agg: Aggregate, e: LightEvent, data: Any, day: date) -> None:
        agg.node = data.to_community_id

    @on(Issue.Assigned, Issue.Reopened, fields=("due_at",))
    def new_deadline(self, agg: Aggregate, e: LightEvent, data: Any, day: date) -> None:
        agg.due_at = data.due_at
        agg.flags &= ~(OVERDUE | ON_TIME)

    @on(Issue.Returned, fields=())
    def returned(self, agg: Aggregate, e: LightEvent, data: Any, day: date) -> None:
        agg.flags &= ~OVERDUE

    # -- findings ------------------------------------------------------------------------

    # -- 五单 service orders ---------------------------------------------------------------
    @on(ServiceOrder.Completed, fields=())
    def service_completed(self, agg: Aggregate, e: LightEvent, data: Any, day: date) -> None:
        self.add(agg.root, agg.node, day, SERVICE_COMPLETED, 1)

    @on(ServiceOrder.Evaluated, fields=("rating",))
    def service_evaluated(self, agg: Aggregate, e: LightEvent, data: Any, day: date) -> None:
        self.add(agg.root, agg.node, day, SERVICE_EVALUATED, 1)
        self.add(agg.root, agg.node, day, SERVICE_RATING_SUM, data.rating)
