"""Projection "unit_stats": each county unit's record (考核), as cumulative daily figures.

A unit (县级单位, 驻区单位) is judged on the work that names it wherever that work lives, which
the node roll-ups (``projections/stats.py``) count under the communities instead:

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
member, issue and finding the unit it counts for, bit flags and the deadline in force. Unit
figures do not roll up the tree: a unit's record is its own; a ranking reads one row per unit.
Days, as in "stats", are the China-local date of the event's business time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from infra.event_store import StoredEvent
from projections.daily_counters import DailyTable, DayKey, to_json
from projections.stats import END_OF_TIME, UnknownAggregate, business_day, rate

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

# -- flags of rm_unit_stats_aggregates ------------------------------------------------------
ACTIVE = 1  # pairing not terminated; member registered
OVERDUE = 2  # issue / finding: an overdue event recorded for the deadline in force
CLOSED = 4  # issue closed
VERIFIED = 8  # finding verified (销号)
ON_TIME = 16  # issue: the latest resolution came by the deadline in force

PAIRING, MEMBER, ISSUE, FINDING = "pairing", "member", "issue", "finding"

#: creation event → (kind, the field naming the unit, or None: no unit yet)
CREATIONS: dict[str, tuple[str, str | None]] = {
    "PairingSigned": (PAIRING, "unit_id"),
    "MemberRegistered": (MEMBER, "home_unit_id"),
    "IssueReported": (ISSUE, None),
    "FindingRecorded": (FINDING, None),
}
HANDLES = frozenset(
    {
        *CREATIONS,
        "CommitmentFulfilled",
        "PairingTerminated",
        "ServiceRecorded",
        "PointsAwarded",
        "PointsDeducted",
        "MemberDeregistered",
        "MemberErased",
        "IssueAssigned",
        "IssueReturned",
        "IssueExtended",
        "IssueResolved",
        "IssueEvaluated",
        "IssueClosed",
        "IssueReopened",
        "IssueOverdue",
        "RectificationAssigned",
        "RectificationVerified",
        "FindingReopened",
        "RectificationOverdue",
    }
)


# -- the event fields this projection reads ----------------------------------------------
class _PairingSigned(msgspec.Struct):
    unit_id: str
    commitments: list[Any]


class _MemberRegistered(msgspec.Struct):
    home_unit_id: str


class _ServiceRecorded(msgspec.Struct):
    hours: float


class _Points(msgspec.Struct):
    points: int


class _IssueAssigned(msgspec.Struct):
    assignee_id: str
    due_at: datetime


class _DueAt(msgspec.Struct):
    due_at: datetime


class _IssueEvaluated(msgspec.Struct):
    satisfaction: str
    resolved: bool


class _RectificationAssigned(msgspec.Struct):
    responsible_unit_id: str


class _Empty(msgspec.Struct):
    pass


_DECODERS = {
    t: msgspec.json.Decoder(cls)
    for t, cls in {
        "PairingSigned": _PairingSigned,
        "MemberRegistered": _MemberRegistered,
        "ServiceRecorded": _ServiceRecorded,
        "PointsAwarded": _Points,
        "PointsDeducted": _Points,
        "IssueAssigned": _IssueAssigned,
        "IssueExtended": _DueAt,
        "IssueReopened": _DueAt,
        "IssueEvaluated": _IssueEvaluated,
        "RectificationAssigned": _RectificationAssigned,
    }.items()
}
_EMPTY = _Empty()


def _decode(e: StoredEvent) -> Any:
    decoder = _DECODERS.get(e.type)
    return decoder.decode(e.data) if decoder is not None else _EMPTY


LOAD_AGGREGATES = """
SELECT a.root_id, a.id, a.node_id, a.kind, a.flags, a.due_at, a.version
FROM json_to_recordset($1::json) AS k(root_id uuid, id uuid)
CROSS JOIN LATERAL (
    SELECT * FROM rm_unit_stats_aggregates a WHERE a.root_id = k.root_id AND a.id = k.id
) a
"""

# (rows as JSON arrays: [root_id, id, node_id, kind, flags, due_at, version])
SAVE_AGGREGATES = """
INSERT INTO rm_unit_stats_aggregates (root_id, id, node_id, kind, flags, due_at, version)
SELECT (x->>0)::uuid, (x->>1)::uuid, (x->>2)::uuid, x->>3, (x->>4)::int2,
       (x->>5)::timestamptz, (x->>6)::int4
FROM json_array_elements($1::json) AS x
ON CONFLICT (root_id, id) DO UPDATE
SET node_id = EXCLUDED.node_id, flags = EXCLUDED.flags, due_at = EXCLUDED.due_at,
    version = EXCLUDED.version
"""


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


_LEVELS = {(k, f): _levels(k, f) for k in (PAIRING, MEMBER, ISSUE, FINDING) for f in range(32)}


@dataclass
class _Aggregate:
    root: str
    unit: str | None
    kind: str
    flags: int
    due_at: datetime | None
    version: int


class _Batch:
    def __init__(self) -> None:
        self.aggregates: dict[tuple[UUID, UUID], _Aggregate] = {}
        self.dirty: set[tuple[UUID, UUID]] = set()
        self.deltas: dict[DayKey, list[int]] = {}

    def add(self, root: str, unit: str | None, day: date, counter: int, amount: int) -> None:
        if unit is None:
            return  # work that names no unit (yet) counts for none
        key = (root, unit, day)
        vec = self.deltas.get(key)
        if vec is None:
            vec = self.deltas[key] = [0] * N_COUNTERS
        vec[counter] += amount

    def handle(self, e: StoredEvent, data: Any) -> None:
        t = e.type
        key = (e.root_id, e.stream_id)
        day = business_day(e.occurred_at)
        agg = self.aggregates.get(key)
        created = CREATIONS.get(t)
        if created is not None:
            if agg is not None:
                return  # already applied
            kind, attr = created
            unit = getattr(data, attr) if attr is not None else None
            flags = ACTIVE if kind in (PAIRING, MEMBER) else 0
            agg = _Aggregate(str(e.root_id), unit, kind, flags, None, e.version)
            self.aggregates[key] = agg
            self.dirty.add(key)
            for c in _LEVELS[kind, flags] if unit is not None else ():
                self.add(agg.root, unit, day, c, 1)
            if kind == PAIRING:
                self.add(agg.root, unit, day, COMMITMENTS, len(data.commitments))
            return
        if agg is None:
            raise UnknownAggregate(f"{t} at position {e.position}: {e.stream_id} unknown")
        if e.version <= agg.version:
            return  # already applied
        before = (agg.unit, agg.flags, agg.due_at)
        self._change(agg, e, data, day)
        if before != (agg.unit, agg.flags, agg.due_at):
            agg.version = e.version
            self.dirty.add(key)
            old_unit, old_flags, _ = before
            if (old_unit, old_flags) != (agg.unit, agg.flags):
                for c in _LEVELS[agg.kind, old_flags]:
                    self.add(agg.root, old_unit, day, c, -1)
                for c in _LEVELS[agg.kind, agg.flags]:
                    self.add(agg.root, agg.unit, day, c, 1)

    def _change(self, agg: _Aggregate, e: StoredEvent, data: Any, day: date) -> None:
        t, root, unit = e.type, agg.root, agg.unit
        if t == "CommitmentFulfilled":
            self.add(root, unit, day, FULFILLED, 1)
        elif t == "PairingTerminated" or t == "MemberDeregistered" or t == "MemberErased":
            agg.flags &= ~ACTIVE
        elif t == "ServiceRecorded":
            self.add(root, unit, day, SERVICE_CENTI, round(data.hours * 100))
        elif t == "PointsAwarded":
            self.add(root, unit, day, POINTS, data.points)
        elif t == "PointsDeducted":
            self.add(root, unit, day, POINTS, -data.points)
        elif t == "IssueAssigned":
            agg.unit = data.assignee_id
            agg.due_at = data.due_at
            agg.flags &= ~(OVERDUE | ON_TIME)
            self.add(root, agg.unit, day, ISSUES_ASSIGNED, 1)
        elif t == "IssueReopened":
            agg.due_at = data.due_at
            agg.flags &= ~(OVERDUE | ON_TIME | CLOSED)
        elif t == "IssueReturned":
            self.add(root, unit, day, ISSUES_RETURNED, 1)
            agg.unit = None
            agg.flags &= ~OVERDUE
        elif t == "IssueExtended":
            agg.due_at = data.due_at
        elif t == "IssueResolved":
            if agg.due_at is None or e.occurred_at <= agg.due_at:
                agg.flags |= ON_TIME
            else:
                agg.flags &= ~ON_TIME
        elif t == "IssueEvaluated":
            self.add(root, unit, day, ISSUES_EVALUATED, 1)
            if data.satisfaction in ("satisfied", "basically_satisfied"):
                self.add(root, unit, day, ISSUES_SATISFIED, 1)
            if data.resolved:
                self.add(root, unit, day, ISSUES_RESOLVED, 1)
        elif t == "IssueClosed":
            agg.flags |= CLOSED
        elif t == "IssueOverdue" or t == "RectificationOverdue":
            agg.flags |= OVERDUE
        elif t == "RectificationAssigned":
            agg.unit = data.responsible_unit_id
        elif t == "RectificationVerified":
            agg.flags |= VERIFIED
        elif t == "FindingReopened":
            agg.flags &= ~(VERIFIED | OVERDUE)


class UnitStatsProjection:
    name = NAME
    handles = HANDLES
    tables: tuple[str, ...] = ("rm_unit_stats_daily", "rm_unit_stats_aggregates")

    async def apply(self, conn: asyncpg.Connection, events: Sequence[StoredEvent]) -> None:
        decoded = [(e, _decode(e)) for e in events if e.type in HANDLES]
        if not decoded:
            return
        batch = _Batch()
        # every aggregate named, creations too: a re-delivered creation finds its stored row
        keys = [{"root_id": r, "id": i} for r, i in {(e.root_id, e.stream_id) for e, _ in decoded}]
        for r in await conn.fetch(LOAD_AGGREGATES, to_json(keys)):
            unit = str(r["node_id"]) if r["node_id"] is not None else None
            batch.aggregates[(r["root_id"], r["id"])] = _Aggregate(
                str(r["root_id"]), unit, r["kind"], r["flags"], r["due_at"], r["version"]
            )
        for e, data in decoded:
            batch.handle(e, data)
        if batch.dirty:
            rows = [
                (a.root, str(k[1]), a.unit, a.kind, a.flags, a.due_at, a.version)
                for k, a in ((k, batch.aggregates[k]) for k in batch.dirty)
            ]
            await conn.execute(SAVE_AGGREGATES, to_json(rows))
        await DAYS.write(conn, batch.deltas)


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
    by_day = {r["day"]: _figures(r, 1) for r in rows}
    current = UnitFigures()
    if rows and rows[0]["day"] < first:
        current = by_day[rows[0]["day"]]
    out: list[tuple[date, UnitFigures]] = []
    for n in range((last - first).days + 1):
        day = first + timedelta(days=n)
        current = by_day.get(day, current)
        out.append((day, current))
    return out


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
