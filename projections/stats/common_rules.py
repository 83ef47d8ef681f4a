"""The rules "stats" and "unit_stats" count alike (each at its own counters' positions).

A subclass sets the positions (``FULFILLED`` ...) of its counters; where the two differ (an
issue's assignment, return and reopen; what a creation adds) each declares its own rule.
"""

from __future__ import annotations

from datetime import date
from typing import Any, ClassVar

from domain.finding import Finding
from domain.issue import Issue
from domain.member import Member
from domain.pairing import Pairing
from projections.base import LightEvent
from projections.stats.engine import (
    ACTIVE,
    CLOSED,
    ON_TIME,
    OVERDUE,
    VERIFIED,
    Aggregate,
    CounterBatch,
)
from projections.subscriptions import on


class CommonRules(CounterBatch):
    FULFILLED: ClassVar[int]
    SERVICE_CENTI: ClassVar[int]
    POINTS: ClassVar[int]
    ISSUES_EVALUATED: ClassVar[int]
    ISSUES_SATISFIED: ClassVar[int]
    ISSUES_RESOLVED: ClassVar[int]

    # -- pairings and members ------------------------------------------------------------
    @on(Pairing.CommitmentFulfilled, fields=())
    def fulfilled(self, agg: Aggregate, e: LightEvent, data: Any, day: date) -> None:
        self.add(agg.root, agg.node, day, self.FULFILLED, 1)

    @on(Pairing.Terminated, Member.Deregistered, Member.Erased, fields=())
    def inactive(self, agg: Aggregate, e: LightEvent, data: Any, day: date) -> None:
        agg.flags &= ~ACTIVE

    @on(Member.ServiceRecorded, fields=("hours",))
    def service(self, agg: Aggregate, e: LightEvent, data: Any, day: date) -> None:
        self.add(agg.root, agg.node, day, self.SERVICE_CENTI, round(data.hours * 100))

    @on(Member.PointsAwarded, fields=("points",))
    def awarded(self, agg: Aggregate, e: LightEvent, data: Any, day: date) -> None:
        self.add(agg.root, agg.node, day, self.POINTS, data.points)

    @on(Member.PointsDeducted, fields=("points",))
    def deducted(self, agg: Aggregate, e: LightEvent, data: Any, day: date) -> None:
        self.add(agg.root, agg.node, day, self.POINTS, -data.points)

    # -- issues --------------------------------------------------------------------------
    @on(Issue.Extended, fields=("due_at",))
    def extended(self, agg: Aggregate, e: LightEvent, data: Any, day: date) -> None:
        agg.due_at = data.due_at

    @on(Issue.Resolved, fields=())
    def resolved(self, agg: Aggregate, e: LightEvent, data: Any, day: date) -> None:
        if agg.due_at is None or e.occurred_at <= agg.due_at:
            agg.flags |= ON_TIME
        else:
            agg.flags &= ~ON_TIME

    @on(Issue.Evaluated, fields=("satisfaction", "resolved"))
    def evaluated(self, agg: Aggregate, e: LightEvent, data: Any, day: date) -> None:
        root, node = agg.root, agg.node
        self.add(root, node, day, self.ISSUES_EVALUATED, 1)
        if data.satisfaction in ("satisfied", "basically_satisfied"):
            self.add(root, node, day, self.ISSUES_SATISFIED, 1)
        if data.resolved:
            self.add(root, node, day, self.ISSUES_RESOLVED, 1)

    @on(Issue.Closed, fields=())
    def closed(self, agg: Aggregate, e: LightEvent, data: Any, day: date) -> None:
        agg.flags |= CLOSED

    @on(Issue.Overdue, Finding.Overdue, fields=())
    def overdue(self, agg: Aggregate, e: LightEvent, data: Any, day: date) -> None:
        agg.flags |= OVERDUE

    # -- findings ------------------------------------------------------------------------
    @on(Finding.Verified, fields=())
    def verified(self, agg: Aggregate, e: LightEvent, data: Any, day: date) -> None:
        agg.flags |= VERIFIED

    @on(Finding.Reopened, fields=())
    def finding_reopened(self, agg: Aggregate, e: LightEvent, data: Any, day: date) -> None:
        agg.flags &= ~(VERIFIED | OVERDUE)
