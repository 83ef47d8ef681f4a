"""A brute-force recount of a seeded world's figures (``bench.world``): the roll-up tests'
oracle.

``recount`` replays the stored events through the domain aggregates and counts each
indicator from its definition, day by day, with the tree as it stood at the end of each day.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date
from typing import Any
from uuid import UUID

import asyncpg

from bench.world import CODEC, china_day
from domain.finding import Finding
from domain.issue import Issue
from domain.member import Member
from domain.node import Node
from domain.pairing import Pairing
from domain.service import ServiceOrder
from domain.survey import Survey
from infra.event_store import StoredEvent

#: raw counts per node, by name (the recount's own vocabulary, mapped to API figures below).
COUNT_NAMES = (
    "active",
    "commitments",
    "fulfilled",
    "registered",
    "service_centi",
    "points",
    "reported",
    "closed",
    "overdue",
    "on_time",
    "evaluated",
    "satisfied",
    "resolved",
    "findings",
    "verified",
    "findings_overdue",
    "orders_requested",
    "orders_completed",
    "orders_evaluated",
    "orders_rating",
    "visits",
    "visits_flagged",
    "group_rentals",
    "issues_raised",
)


async def load_events(pool: asyncpg.Pool, root_id: UUID) -> list[StoredEvent]:
    from infra.event_store import EVENT_COLUMNS

    async with pool.acquire() as conn:
        rows = await conn.fetch(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE root_id = $1 ORDER BY position", root_id
        )
    return [StoredEvent.from_record(r) for r in rows]


def _decode(e: StoredEvent) -> Any:
    return CODEC.decode(
        stream_type=e.stream_type,
        stream_id=e.stream_id,
        version=e.version,
        type_name=e.type,
        schema_version=e.schema_version,
        data=e.data,
        occurred_at=e.occurred_at,
    )


class Recount:
    """Replays events through the domain aggregates; ``snapshot()`` counts every indicator
    of every node from its definition, over the subtree as the tree stands now."""

    def __init__(self) -> None:
        self.aggregates: dict[UUID, Any] = {}
        # flows, attributed to the node where they happened
        self.flows: dict[UUID, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def apply(self, e: StoredEvent) -> None:
        event = _decode(e)
        before: Any = self.aggregates.get(e.stream_id)  # None only for a stream's first event
        t = e.type
        if t == "CommitmentFulfilled":
            self.flows[before.community_id]["fulfilled"] += 1
        elif t == "ServiceRecorded":
            self.flows[before.community_id]["service_centi"] += round(event.hours * 100)
        elif t == "PointsAwarded":
            self.flows[before.community_id]["points"] += event.points
        elif t == "PointsDeducted":
            self.flows[before.community_id]["points"] -= event.points
        elif t == "IssueEvaluated":
            flows = self.flows[before.node_id]
            flows["evaluated"] += 1
            flows["satisfied"] += event.satisfaction != "dissatisfied"
            flows["resolved"] += bool(event.resolved)
        self.aggregates[e.stream_id] = event.mutate(before)

    def parent_of(self) -> dict[UUID, UUID | None]:
        return {a.id: a.parent_id for a in self.aggregates.values() if isinstance(a, Node)}

    def snapshot(self) -> dict[UUID, dict[str, int]]:
        own: dict[UUID, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for node_id, flows in self.flows.items():
            for k, v in flows.items():
                own[node_id][k] += v
        for a in self.aggregates.values():
            if isinstance(a, Pairing):
                c = own[a.community_id]
                c["active"] += a.status == "active"
                c["commitments"] += len(a.commitments)
            elif isinstance(a, Member):
                own[a.community_id]["registered"] += a.status == "active"
            elif isinstance(a, Issue):
                c = own[a.node_id]
                c["reported"] += 1
                if a.status == "closed":
                    c["closed"] += 1
                    c["on_time"] += a.resolved_at is not None and (
                        a.due_at is None or a.resolved_at <= a.due_at
                    )
                elif a.overdue:
                    c["overdue"] += 1
            elif isinstance(a, Finding):
                c = own[a.scope_id]
                c["findings"] += 1
                if a.status == "verified":
                    c["verified"] += 1
                elif a.overdue:
                    c["findings_overdue"] += 1
            elif isinstance(a, ServiceOrder):
                c = own[a.community_id]
                c["orders_requested"] += 1
                c["orders_completed"] += a.status in ("completed", "evaluated")
                c["orders_evaluated"] += a.status == "evaluated"
                c["orders_rating"] += a.rating or 0
            elif isinstance(a, Survey):
                c = own[a.node_id]
                c["visits"] += 1
                c["visits_flagged"] += bool(a.flags)
                c["group_rentals"] += "group_rental" in a.flags
                c["issues_raised"] += a.issue_id is not None
        parents = self.parent_of()
        totals: dict[UUID, dict[str, int]] = {n: dict.fromkeys(COUNT_NAMES, 0) for n in parents}
        for node_id, counts in own.items():
            n: UUID | None = node_id
            while n is not None:
                for k, v in counts.items():
                    totals[n][k] += v
                n = parents[n]
        return totals

    def children(self, node_id: UUID) -> set[UUID]:
        return {n for n, p in self.parent_of().items() if p == node_id}

    def code_of(self, node_id: UUID) -> str:
        node: Node = self.aggregates[node_id]
        return node.code


def recount_by_day(
    events: Sequence[StoredEvent], days: Sequence[date] = ()
) -> tuple[Recount, dict[date, tuple[dict[UUID, dict[str, int]], dict[UUID, set[UUID]]]]]:
    """Replay all ``events``; snapshot the figures (and each node's children) at the end of
    every day in ``days``. Events must come in position order with non-decreasing days."""
    wanted = sorted(set(days))
    recount = Recount()
    snapshots: dict[date, tuple[dict[UUID, dict[str, int]], dict[UUID, set[UUID]]]] = {}

    def take(day: date) -> None:
        parents = recount.parent_of()
        kids: dict[UUID, set[UUID]] = defaultdict(set)
        for n, p in parents.items():
            if p is not None:
                kids[p].add(n)
        snapshots[day] = (recount.snapshot(), dict(kids))

    k = 0
    last_day: date | None = None
    for e in events:
        day = china_day(e.occurred_at)
        assert last_day is None or day >= last_day, "events must come in day order"
        last_day = day
        while k < len(wanted) and wanted[k] < day:
            take(wanted[k])
            k += 1
        recount.apply(e)
    while k < len(wanted):
        take(wanted[k])
        k += 1
    return recount, snapshots


def expected_groups(c: dict[str, int]) -> dict[str, dict[str, Any]]:
    """The API's groups for raw counts (formulas of the README's Roll-ups section)."""

    def r(a: int, b: int) -> float | None:
        return None if b == 0 else round(a / b, 4)

    return {
        "pairings": {
            "active": c["active"],
            "commitments": c["commitments"],
            "fulfilled": c["fulfilled"],
            "fulfil_rate": r(c["fulfilled"], c["commitments"]),
        },
        "members": {
            "registered": c["registered"],
            "service_hours": c["service_centi"] / 100,
            "points": c["points"],
        },
        "issues": {
            "reported": c["reported"],
            "open": c["reported"] - c["closed"],
            "closed": c["closed"],
            "overdue": c["overdue"],
            "on_time_rate": r(c["on_time"], c["closed"]),
            "satisfaction_rate": r(c["satisfied"], c["evaluated"]),
            "resolution_rate": r(c["resolved"], c["evaluated"]),
        },
        "rectifications": {
            "total": c["findings"],
            "verified": c["verified"],
            "overdue": c["findings_overdue"],
            "completion_rate": r(c["verified"], c["findings"]),
        },
        "service_orders": {
            "requested": c["orders_requested"],
            "completed": c["orders_completed"],
            "evaluated": c["orders_evaluated"],
            "average_rating": None
            if c["orders_evaluated"] == 0
            else round(c["orders_rating"] / c["orders_evaluated"], 2),
        },
        "surveys": {
            "households_visited": c["visits"],
            "flagged": c["visits_flagged"],
            "group_rentals": c["group_rentals"],
            "issues_raised": c["issues_raised"],
        },
    }


def canonical_daily(rows: Sequence[Any]) -> list[tuple[Any, ...]]:
    """``rm_stats_daily`` rows (root_id, node_id, day, counters...) reduced to what they mean:
    a node's figures from each day on. A row equal to the node's previous one (or to zero,
    for its first) says nothing, and whether it exists depends on how events were batched."""
    out: list[tuple[Any, ...]] = []
    previous: dict[tuple[Any, Any], tuple[Any, ...]] = {}
    for r in sorted((tuple(r) for r in rows), key=lambda r: (str(r[0]), str(r[1]), r[2])):
        key, values = (r[0], r[1]), tuple(r[3:])
        if previous.get(key, (0,) * len(values)) != values:
            out.append(r)
        previous[key] = values
    return out
