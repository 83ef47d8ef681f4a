"""Projection "unit_stats": each county unit's record (考核), as cumulative daily figures.

A unit (县级单位, 驻区单位) is judged on the work that names it wherever that work lives, which
the node roll-ups (``projections/stats/``) count under the communities instead:

* pairings it signed (the unit side): ``active`` (not terminated), ``commitments`` (promised
  by every pairing signed), ``fulfilled`` (CommitmentFulfilled);
* issues assigned to it (派单): ``assigned`` (every IssueAssigned naming it: a flow),
  ``open`` (it is the current assignee, not closed), ``closed`` (closed while it was the
  assignee; a reopen takes it back), ``overdue`` (an IssueOverdue recorded for the deadline
  in force while it is the assignee, not closed; a new assignment, a return or a reopen
  clears it), ``returned`` (IssueReturned it made: a flow), ``on_time`` (closed, the final
  resolution by the deadline in force), ``evaluated`` / ``satisfied`` / ``resolved``
  (callbacks while it was the assignee);
* rectifications it is responsible for: ``total``, ``verified`` (currently 销号), ``overdue``
  (RectificationOverdue for the current due date, not verified);
* its in-service party members (双报到, by home unit) wherever they live: ``registered``
  (active), ``service_hours`` and ``points`` (net) they recorded — the service counts back to
  the home unit (两头考核).

Storage (migration 0030): ``rm_unit_stats_daily`` rows per unit and China-local day, the
cumulative figures at the end of that day (``projections/daily_counters.py``: now, as of a
day and a daily series are index look-ups); ``rm_unit_stats_aggregates`` per pairing,
member, issue and finding the unit it counts for, bit flags and the deadline in force (the
batch engine of "stats", ``projections/stats/engine.py``, with the rules below). Unit
figures do not roll up the tree: a unit's record is its own; a ranking reads one row per unit.
Days, as in "stats", are the China-local date of the event's business time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID

import asyncpg

from domain.finding import Finding
from domain.issue import Issue
from domain.member import Member
from domain.pairing import Pairing
from infra.event_store import StoredEvent
from projections.daily_counters import DailyTable, carried_forward
from projections.stats.common_rules import CommonRules
from projections.stats.engine import (
    ACTIVE,
    CLOSED,
    END_OF_TIME,
    FINDING,
    ISSUE,
    MEMBER,
    ON_TIME,
    OVERDUE,
    PAIRING,
    VERIFIED,
    Aggregate,
    AggregateTable,
)
from projections.stats.reads import rate
from projections.subscriptions import on

NAME = "unit_stats"

COUNTERS: tuple[str, ...] = (
    "pairings_active",
    "commitments",
    "commitments_fulfilled",
    "members_registered",
    "service_hours_centi",
    "points",
    "issues_assigned",
    "issues_open",
    "issues_closed",
    "issues_overdue",
    "issues_returned",
    "issues_on_time",
    "issues_evaluated",
    "issues_satisfied",
    "issues_resolved",
    "findings_total",
    "findings_verified",
    "findings_overdue",
)
N_COUNTERS = len(COUNTERS)
(
    PAIRINGS_ACTIVE,
    COMMITMENTS,
    FULFILLED,
    MEMBERS_REGISTERED,
    SERVICE_CENTI,
    POINTS,
    ISSUES_ASSIGNED,
    ISSUES_OPEN,
    ISSUES_CLOSED,
    ISSUES_OVERDUE,
    ISSUES_RETURNED,
    ISSUES_ON_TIME,
    ISSUES_EVALUATED,
    ISSUES_SATISFIED,
    ISSUES_RESOLVED,
    FINDINGS_TOTAL,
    FINDINGS_VERIFIED,
    FINDINGS_OVERDUE,
) = range(N_COUNTERS)

DAYS = DailyTable("rm_unit_stats_daily", COUNTERS)
AGGREGATES = AggregateTable("rm_unit_stats_aggregates")


def _levels(kind: str, flags: int) -> tuple[int, ...]:
    """The counters an aggregate contributes 1 to, for its unit, while its flags say so."""
    if kind == PAIRING:
        return (PAIRINGS_ACTIVE,) if flags & ACTIVE else ()
    if kind == MEMBER:
        return (MEMBERS_REGISTERED,) if flags & ACTIVE else ()
    if kind == ISSUE:
        if flags & CLOSED:
            return (ISSUES_CLOSED, ISSUES_ON_TIME) if flags & ON_TIME else (ISSUES_CLOSED,)
        return (ISSUES_OPEN, ISSUES_OVERDUE) if flags & OVERDUE else (ISSUES_OPEN,)
    if flags & VERIFIED:
        return (FINDINGS_TOTAL, FINDINGS_VERIFIED)
    return (FINDINGS_TOTAL, FINDINGS_OVERDUE) if flags & OVERDUE else (FINDINGS_TOTAL,)


class UnitRules(CommonRules):
    """What each event counts for the unit it names (ids read as text, as in "stats"); the
    rules both count alike are in ``projections/stats/common_rules.py``."""

    N_COUNTERS = N_COUNTERS
    FULFILLED = FULFILLED
    SERVICE_CENTI = SERVICE_CENTI
    POINTS = POINTS
    ISSUES_EVALUATED = ISSUES_EVALUATED
    ISSUES_SATISFIED = ISSUES_SATISFIED
    ISSUES_RESOLVED = ISSUES_RESOLVED
    LEVELS = {(k, f): _levels(k, f) for k in (PAIRING, MEMBER, ISSUE, FINDING) for f in range(32)}

    def _created(self, e: StoredEvent, unit: str | None, kind: str, day: date) -> Aggregate:
        flags = ACTIVE if kind in (PAIRING, MEMBER) else 0
        agg = Aggregate(e.root_id, e.stream_id, unit, kind, flags, None, e.version)
        for c in self.LEVELS[kind, flags]:
            self.add(agg.root, unit, day, c, 1)
        return agg

    # -- creations: a pairing and a member name their unit; issues and findings none yet ---
    @on(Pairing.Signed, fields=("unit_id", "commitments"), text_ids=True)
    def pairing_signed(self, e: StoredEvent, data: Any, day: date) -> Aggregate:
        agg = self._created(e, data.unit_id, PAIRING, day)
        self.add(agg.root, agg.node, day, COMMITMENTS, len(data.commitments))
        return agg

    @on(Member.Registered, fields=("home_unit_id",), text_ids=True)
    def member_registered(self, e: StoredEvent, data: Any, day: date) -> Aggregate:
        return self._created(e, data.home_unit_id, MEMBER, day)

    @on(Issue.Reported, fields=())
    def issue_reported(self, e: StoredEvent, data: Any, day: date) -> Aggregate:
        return self._created(e, None, ISSUE, day)

    @on(Finding.Recorded, fields=())
    def finding_recorded(self, e: StoredEvent, data: Any, day: date) -> Aggregate:
        return self._created(e, None, FINDING, day)

    # -- changes (besides the common ones) -----------------------------------------------

    @on(Issue.Assigned, fields=("assignee_id", "due_at"), text_ids=True)
    def assigned(self, agg: Aggregate, e: StoredEvent, data: Any, day: date) -> None:
        agg.node = data.assignee_id
        agg.due_at = data.due_at
        agg.flags &= ~(OVERDUE | ON_TIME)
        self.add(agg.root, agg.node, day, ISSUES_ASSIGNED, 1)

    @on(Issue.Reopened, fields=("due_at",))
    def reopened(self, agg: Aggregate, e: StoredEvent, data: Any, day: date) -> None:
        agg.due_at = data.due_at
        agg.flags &= ~(OVERDUE | ON_TIME | CLOSED)

    @on(Issue.Returned, fields=())
    def returned(self, agg: Aggregate, e: StoredEvent, data: Any, day: date) -> None:
        self.add(agg.root, agg.node, day, ISSUES_RETURNED, 1)
        agg.node = None
        agg.flags &= ~OVERDUE

    @on(Finding.Assigned, fields=("responsible_unit_id",), text_ids=True)
    def rectification_assigned(self, agg: Aggregate, e: StoredEvent, data: Any, day: date) -> None:
        agg.node = data.responsible_unit_id


class UnitStatsProjection:
    name = NAME
    handles = UnitRules.handles
    tables: tuple[str, ...] = ("rm_unit_stats_daily", "rm_unit_stats_aggregates")

    async def apply(self, conn: asyncpg.Connection, events: Sequence[StoredEvent]) -> None:
        decoded = UnitRules.decode(events)
        if not decoded:
            return
        batch = UnitRules()
        # every aggregate named, creations too: a re-delivered creation finds its stored row
        keys = {(e.root_id, e.stream_id) for e, _, _ in decoded}
        for a in await AGGREGATES.load(conn, keys):
            batch.aggregates[(a.root_id, a.id)] = a
        for e, sub, data in decoded:
            batch.count(e, sub, data)
        await AGGREGATES.save(conn, batch.changed())
        await DAYS.write(conn, batch.own)


# -- reads ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UnitFigures:
    """One unit's cumulative counters at some moment."""

    values: tuple[int, ...] = (0,) * N_COUNTERS

    def groups(self) -> dict[str, dict[str, Any]]:
        """The groups of API.md "Units (考核)", with rates (null when the denominator is 0)."""
        v = self.values
        return {
            "pairings": {
                "active": v[PAIRINGS_ACTIVE],
                "commitments": v[COMMITMENTS],
                "fulfilled": v[FULFILLED],
                "fulfil_rate": rate(v[FULFILLED], v[COMMITMENTS]),
            },
            "issues": {
                "assigned": v[ISSUES_ASSIGNED],
                "open": v[ISSUES_OPEN],
                "closed": v[ISSUES_CLOSED],
                "overdue": v[ISSUES_OVERDUE],
                "returned": v[ISSUES_RETURNED],
                "on_time_rate": rate(v[ISSUES_ON_TIME], v[ISSUES_CLOSED]),
                "satisfaction_rate": rate(v[ISSUES_SATISFIED], v[ISSUES_EVALUATED]),
                "resolution_rate": rate(v[ISSUES_RESOLVED], v[ISSUES_EVALUATED]),
            },
            "rectifications": {
                "total": v[FINDINGS_TOTAL],
                "verified": v[FINDINGS_VERIFIED],
                "overdue": v[FINDINGS_OVERDUE],
                "completion_rate": rate(v[FINDINGS_VERIFIED], v[FINDINGS_TOTAL]),
            },
            "members": {
                "registered": v[MEMBERS_REGISTERED],
                "service_hours": v[SERVICE_CENTI] / 100,
                "points": v[POINTS],
            },
        }

    def node_groups(self) -> dict[str, dict[str, Any]]:
        """The unit's record in the shape of a node's roll-up groups (a unit's entry among a
        node's ``children``): ``issues.reported`` counts the issues in its hands (open or
        closed), so ``open = reported - closed`` holds as for nodes."""
        g = self.groups()
        issues = g["issues"]
        v = self.values
        return {
            "pairings": g["pairings"],
            "members": g["members"],
            "issues": {
                "reported": v[ISSUES_OPEN] + v[ISSUES_CLOSED],
                "open": v[ISSUES_OPEN],
                "closed": v[ISSUES_CLOSED],
                "overdue": v[ISSUES_OVERDUE],
                "on_time_rate": issues["on_time_rate"],
                "satisfaction_rate": issues["satisfaction_rate"],
                "resolution_rate": issues["resolution_rate"],
            },
            "rectifications": g["rectifications"],
        }


def _figures(row: asyncpg.Record | None, offset: int = 0) -> UnitFigures:
    if row is None or row[offset] is None:
        return UnitFigures()
    return UnitFigures(tuple(int(row[offset + i]) for i in range(N_COUNTERS)))


AS_OF = f"""
SELECT {DAYS.columns} FROM rm_unit_stats_daily
WHERE root_id = $1 AND node_id = $2 AND day <= $3
ORDER BY day DESC LIMIT 1
"""

# Many units at once (a ranking, a node's children): one backward probe per unit.
MANY_AS_OF = f"""
SELECT k.node_id, {", ".join(f"d.{c}" for c in COUNTERS)}
FROM unnest($2::uuid[]) AS k(node_id)
LEFT JOIN LATERAL (
    SELECT {DAYS.columns} FROM rm_unit_stats_daily s
    WHERE s.root_id = $1 AND s.node_id = k.node_id AND s.day <= $3
    ORDER BY s.day DESC LIMIT 1
) d ON true
"""

SERIES = f"""
SELECT day, {DAYS.columns} FROM rm_unit_stats_daily
WHERE root_id = $1 AND node_id = $2 AND day <= $4
  AND day >= coalesce(
      (SELECT max(day) FROM rm_unit_stats_daily
       WHERE root_id = $1 AND node_id = $2 AND day <= $3),
      $3)
ORDER BY day
"""


async def unit_figures(
    conn: asyncpg.Connection, root_id: UUID, unit_id: UUID, as_of: date | None = None
) -> UnitFigures:
    """A unit's figures at the end of ``as_of`` (China-local), or now."""
    return _figures(await conn.fetchrow(AS_OF, root_id, unit_id, as_of or END_OF_TIME))


async def many_unit_figures(
    conn: asyncpg.Connection, root_id: UUID, unit_ids: Sequence[UUID], as_of: date | None = None
) -> dict[UUID, UnitFigures]:
    rows = await conn.fetch(MANY_AS_OF, root_id, list(unit_ids), as_of or END_OF_TIME)
    return {r["node_id"]: _figures(r, 1) for r in rows}


async def daily_unit_figures(
    conn: asyncpg.Connection, root_id: UUID, unit_id: UUID, first: date, last: date
) -> list[tuple[date, UnitFigures]]:
    """One entry per day from ``first`` to ``last``: the figures at the end of that day."""
    rows = await conn.fetch(SERIES, root_id, unit_id, first, last)
    return carried_forward({r["day"]: _figures(r, 1) for r in rows}, first, last, UnitFigures())


# The kinds of a node's children, and the record of those that are units (a unit's entry
# among a node's children shows its own record rather than the zeros of an empty subtree).
CHILD_KINDS = f"""
SELECT k.id, k.kind, {", ".join(f"d.{c}" for c in COUNTERS)}
FROM nodes k
LEFT JOIN LATERAL (
    SELECT {DAYS.columns} FROM rm_unit_stats_daily s
    WHERE s.root_id = $1 AND s.node_id = k.id AND s.day <= $3
    ORDER BY s.day DESC LIMIT 1
) d ON k.kind = 'unit'
WHERE k.root_id = $1 AND k.id = ANY($2::uuid[])
"""


async def children_records(
    conn: asyncpg.Connection, root_id: UUID, node_ids: Sequence[UUID], as_of: date | None = None
) -> dict[UUID, tuple[str, UnitFigures | None]]:
    """Per node id: its kind and, for a unit, its record at the end of ``as_of`` (or now)."""
    if not node_ids:
        return {}
    rows = await conn.fetch(CHILD_KINDS, root_id, list(node_ids), as_of or END_OF_TIME)
    return {r["id"]: (r["kind"], _figures(r, 2) if r["kind"] == "unit" else None) for r in rows}
