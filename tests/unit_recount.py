"""The oracle of the units' records (考核): replay the stored events through the domain
aggregates (``tests.stats_recount.Recount``) and count each unit's figures from their
definitions (``projections/unit_stats.py`` states them; this module restates them from the
aggregates' own state, not from the projection's code)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date
from typing import Any
from uuid import UUID

from bench.world import CODEC, china_day
from domain.finding import Finding
from domain.issue import Issue
from domain.member import Member
from domain.pairing import Pairing
from infra.event_store import StoredEvent
from tests.stats_recount import Recount

UNIT_COUNTS = (
    "active",
    "commitments",
    "fulfilled",
    "registered",
    "service_centi",
    "points",
    "assigned",
    "open",
    "closed",
    "overdue",
    "returned",
    "on_time",
    "evaluated",
    "satisfied",
    "resolved",
    "findings",
    "verified",
    "findings_overdue",
)


class UnitRecount(Recount):
    def __init__(self) -> None:
        super().__init__()
        #: flows credited to a unit when they happened
        self.unit_flows: dict[UUID, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def apply(self, e: StoredEvent) -> None:
        before: Any = self.aggregates.get(e.stream_id)
        event: Any = CODEC.decode(
            stream_type=e.stream_type,
            stream_id=e.stream_id,
            version=e.version,
            type_name=e.type,
            schema_version=e.schema_version,
            data=e.data,
            occurred_at=e.occurred_at,
        )
        t = e.type
        flows = self.unit_flows
        if t == "CommitmentFulfilled":
            flows[before.unit_id]["fulfilled"] += 1
        elif t == "ServiceRecorded":
            flows[before.home_unit_id]["service_centi"] += round(event.hours * 100)
        elif t == "PointsAwarded":
            flows[before.home_unit_id]["points"] += event.points
        elif t == "PointsDeducted":
            flows[before.home_unit_id]["points"] -= event.points
        elif t == "IssueAssigned":
            flows[event.assignee_id]["assigned"] += 1
        elif t == "IssueReturned":
            flows[before.assignee_id]["returned"] += 1
        elif t == "IssueEvaluated" and before.assignee_id is not None:
            f = flows[before.assignee_id]
            f["evaluated"] += 1
            f["satisfied"] += event.satisfaction != "dissatisfied"
            f["resolved"] += bool(event.resolved)
        super().apply(e)

    def unit_snapshot(self, units: Sequence[UUID]) -> dict[UUID, dict[str, int]]:
        out = {u: dict.fromkeys(UNIT_COUNTS, 0) for u in units}
        for unit, flows in self.unit_flows.items():
            for k, v in flows.items():
                out[unit][k] += v
        for a in self.aggregates.values():
            if isinstance(a, Pairing):
                out[a.unit_id]["active"] += a.status == "active"
                out[a.unit_id]["commitments"] += len(a.commitments)
            elif isinstance(a, Member):
                out[a.home_unit_id]["registered"] += a.status == "active"
            elif isinstance(a, Issue) and a.assignee_id is not None:
                c = out[a.assignee_id]
                if a.status == "closed":
                    c["closed"] += 1
                    c["on_time"] += a.resolved_at is not None and (
                        a.due_at is None or a.resolved_at <= a.due_at
                    )
                else:
                    c["open"] += 1
                    c["overdue"] += bool(a.overdue)
            elif isinstance(a, Finding) and a.responsible_unit_id is not None:
                c = out[a.responsible_unit_id]
                c["findings"] += 1
                if a.status == "verified":
                    c["verified"] += 1
                elif a.overdue:
                    c["findings_overdue"] += 1
        return out


def unit_recount_by_day(
    events: Sequence[StoredEvent], units: Sequence[UUID], days: Sequence[date] = ()
) -> tuple[UnitRecount, dict[date, dict[UUID, dict[str, int]]]]:
    """Replay ``events`` (position order, non-decreasing days); snapshot the units' figures
    at the end of every day in ``days``."""
    wanted = sorted(set(days))
    recount = UnitRecount()
    snapshots: dict[date, dict[UUID, dict[str, int]]] = {}
    k = 0
    for e in events:
        day = china_day(e.occurred_at)
        while k < len(wanted) and wanted[k] < day:
            snapshots[wanted[k]] = recount.unit_snapshot(units)
            k += 1
        recount.apply(e)
    for d in wanted[k:]:
        snapshots[d] = recount.unit_snapshot(units)
    return recount, snapshots


def _r(a: int, b: int) -> float | None:
    return None if b == 0 else round(a / b, 4)


def expected_unit_groups(c: dict[str, int]) -> dict[str, dict[str, Any]]:
    """The groups of GET /v1/units/{code}/stats for raw counts."""
    return {
        "pairings": {
            "active": c["active"],
            "commitments": c["commitments"],
            "fulfilled": c["fulfilled"],
            "fulfil_rate": _r(c["fulfilled"], c["commitments"]),
        },
        "issues": {
            "assigned": c["assigned"],
            "open": c["open"],
            "closed": c["closed"],
            "overdue": c["overdue"],
            "returned": c["returned"],
            "on_time_rate": _r(c["on_time"], c["closed"]),
            "satisfaction_rate": _r(c["satisfied"], c["evaluated"]),
            "resolution_rate": _r(c["resolved"], c["evaluated"]),
        },
        "rectifications": {
            "total": c["findings"],
            "verified": c["verified"],
            "overdue": c["findings_overdue"],
            "completion_rate": _r(c["verified"], c["findings"]),
        },
        "members": {
            "registered": c["registered"],
            "service_hours": c["service_centi"] / 100,
            "points": c["points"],
        },
    }


def expected_child_groups(c: dict[str, int]) -> dict[str, dict[str, Any]]:
    """A unit's entry among a node's ``children`` (node-shaped groups of its record)."""
    g = expected_unit_groups(c)
    return {
        "pairings": g["pairings"],
        "members": g["members"],
        "issues": {
            "reported": c["open"] + c["closed"],
            "open": c["open"],
            "closed": c["closed"],
            "overdue": c["overdue"],
            "on_time_rate": g["issues"]["on_time_rate"],
            "satisfaction_rate": g["issues"]["satisfaction_rate"],
            "resolution_rate": g["issues"]["resolution_rate"],
        },
        "rectifications": g["rectifications"],
    }
