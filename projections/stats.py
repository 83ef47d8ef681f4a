"""Projection "stats": indicators per node over its whole subtree, as cumulative daily figures.

What is counted (the README's "Roll-ups" section gives the formulas):

* pairings: ``active`` (signed, not terminated), ``commitments`` (promised by every pairing
  signed), ``fulfilled`` (CommitmentFulfilled);
* members: ``registered`` (active members: registered, not transferred away, deregistered or
  erased), ``service_hours`` and ``points`` (net of deductions) recorded while the member
  belonged to a community of the subtree (they stay where they were earned);
* issues: ``reported``, ``closed``, ``overdue`` (an IssueOverdue recorded for the deadline in
  force, not yet closed; a new assignment, a return or a reopen clears it, as in the
  domain), ``on_time`` (closed, and the final resolution came by the deadline in force),
  ``evaluated`` / ``satisfied`` / ``resolved`` (every callback counts);
* rectifications: ``total`` findings, ``verified`` (currently 销号), ``overdue``
  (RectificationOverdue recorded for the current due date, not verified).
* service_orders (五单): ``requested``, ``completed``, ``evaluated`` (ServiceRequested /
  ServiceCompleted / ServiceEvaluated) and the sum of the ratings (``average_rating`` when read);
* surveys (扫楼): household visits, flagged visits, visits flagged ``group_rental``, visits
  that raised an issue (all counted when HouseholdVisited is recorded).

Each aggregate counts under its owner node: a pairing and a member under their community
(a transfer moves the member), an issue under the node it was reported at, a finding under
its scope node, a service order under its community, a survey under the grid or community
it was recorded at.

Storage (migration 0014):

* ``rm_stats_daily``: for every node and every China-local day (UTC+8) on which its figures
  changed, the *cumulative* figures of its subtree at the end of that day. "Now" is a node's
  latest row, "as of D" its latest row on or before D, a daily series the rows of a range
  with the figures carried forward over days without a row: index look-ups whose cost does
  not grow with the number of events. An event adds its delta to its node and every
  ancestor, on its day and (rarely: only when business times arrive out of order) on the
  later rows of those nodes. Cumulative rows rather than per-day deltas summed by a window
  function when read: a read then touches one row per node however long the history, where
  a sum over delta rows grows with the number of days (a county's five years are ~1,800 rows
  per node); the price is paid only by backdated events, which must update later rows too.
* ``rm_stats_nodes`` / ``rm_stats_node_parents``: the tree as replayed by this projection
  (ancestors come from here, never from the live directory, so a replay sees the tree as it
  stood) and every node's parent per day (children as of a day).
* ``rm_stats_aggregates``: per pairing, member, issue and finding the node it counts under,
  bit flags and the deadline in force, to turn the next event into deltas.

Days are the China-local date of the event's ``occurred_at`` (business time; in live
operation it is within milliseconds of ``recorded_at``, and it is what deadlines and
as-of questions are about).

A move (NodeMoved) on day M takes the moved node's current totals T off every old ancestor
that is not also a new one, and adds T to every new ancestor that was not an old one, dated
M. As-of answers before M still show the old tree; the children lists follow
``rm_stats_node_parents``.

A batch is applied in memory (state rows loaded once, deltas summed per node and day) and
written with a few set-based statements; node events are written as they come since later
events of the batch depend on the tree.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from domain.refs import CHINA_TZ
from infra.event_store import StoredEvent
from projections.daily_counters import DailyTable

NAME = "stats"

#: the stored counters, in column order.
COUNTERS: tuple[str, ...] = (
    "pairings_active",
    "commitments",
    "commitments_fulfilled",
    "members_registered",
    "service_hours_centi",
    "points",
    "issues_reported",
    "issues_closed",
    "issues_overdue",
    "issues_on_time",
    "issues_evaluated",
    "issues_satisfied",
    "issues_resolved",
    "findings_total",
    "findings_verified",
    "findings_overdue",
    # 五单 and 扫楼 (migration 0028)
    "service_orders_requested",
    "service_orders_completed",
    "service_orders_evaluated",
    "service_rating_sum",
    "surveys_visited",
    "surveys_flagged",
    "surveys_group_rentals",
    "surveys_issues_raised",
)
N_COUNTERS = len(COUNTERS)
(
    PAIRINGS_ACTIVE,
    COMMITMENTS,
    FULFILLED,
    MEMBERS_REGISTERED,
    SERVICE_CENTI,
    POINTS,
    ISSUES_REPORTED,
    ISSUES_CLOSED,
    ISSUES_OVERDUE,
    ISSUES_ON_TIME,
    ISSUES_EVALUATED,
    ISSUES_SATISFIED,
    ISSUES_RESOLVED,
    FINDINGS_TOTAL,
    FINDINGS_VERIFIED,
    FINDINGS_OVERDUE,
    SERVICE_REQUESTED,
    SERVICE_COMPLETED,
    SERVICE_EVALUATED,
    SERVICE_RATING_SUM,
    SURVEYS_VISITED,
    SURVEYS_FLAGGED,
    SURVEYS_GROUP_RENTALS,
    SURVEYS_ISSUES_RAISED,
) = range(N_COUNTERS)

#: the "now" of reads: the latest row of a node, whatever its day.
END_OF_TIME = date(9999, 12, 31)

# -- flags of rm_stats_aggregates ---------------------------------------------------------
ACTIVE = 1  # pairing not terminated; member registered here
OVERDUE = 2  # issue / finding: an overdue event recorded for the deadline in force
CLOSED = 4  # issue closed
VERIFIED = 8  # finding verified (销号)
ON_TIME = 16  # issue: the latest resolution came by the deadline in force

PAIRING, MEMBER, ISSUE, FINDING = "pairing", "member", "issue", "finding"
SERVICE_ORDER, SURVEY = "service_order", "survey"

NODE_EVENTS = frozenset({"NodeRegistered", "NodeRenamed", "NodeMoved"})
CREATIONS = {
    "PairingSigned": PAIRING,
    "MemberRegistered": MEMBER,
    "IssueReported": ISSUE,
    "FindingRecorded": FINDING,
    "ServiceRequested": SERVICE_ORDER,
    "HouseholdVisited": SURVEY,
}
HANDLES = frozenset(
    {
        *NODE_EVENTS,
        *CREATIONS,
        "CommitmentFulfilled",
        "PairingTerminated",
        "ServiceRecorded",
        "PointsAwarded",
        "PointsDeducted",
        "MemberTransferred",
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
        "RectificationVerified",
        "FindingReopened",
        "RectificationOverdue",
        "ServiceCompleted",
        "ServiceEvaluated",
    }
)


def business_day(at: datetime) -> date:
    """The China-local day an event is counted on."""
    return at.astimezone(CHINA_TZ).date()


# -- the event fields this projection reads ----------------------------------------------
class _NodeRegistered(msgspec.Struct):
    code: str
    name: str
    kind: str
    parent_id: str | None


class _NodeRenamed(msgspec.Struct):
    name: str


class _NodeMoved(msgspec.Struct):
    new_parent_id: str
    new_code: str


class _PairingSigned(msgspec.Struct):
    community_id: str
    commitments: list[Any]


class _MemberRegistered(msgspec.Struct):
    community_id: str


class _ServiceRecorded(msgspec.Struct):
    hours: float


class _Points(msgspec.Struct):
    points: int


class _MemberTransferred(msgspec.Struct):
    to_community_id: str


class _IssueReported(msgspec.Struct):
    node_id: str
    due_at: datetime | None = None


class _DueAt(msgspec.Struct):
    due_at: datetime


class _IssueEvaluated(msgspec.Struct):
    satisfaction: str
    resolved: bool


class _FindingRecorded(msgspec.Struct):
    scope_id: str


class _ServiceRequested(msgspec.Struct):
    community_id: str


class _ServiceEvaluated(msgspec.Struct):
    rating: int


class _HouseholdVisited(msgspec.Struct):
    node_id: str
    flags: list[str]
    issue_id: str | None = None


class _Empty(msgspec.Struct):
    pass


_DATA_TYPES: dict[str, type[msgspec.Struct]] = {
    "NodeRegistered": _NodeRegistered,
    "NodeRenamed": _NodeRenamed,
    "NodeMoved": _NodeMoved,
    "PairingSigned": _PairingSigned,
    "MemberRegistered": _MemberRegistered,
    "ServiceRecorded": _ServiceRecorded,
    "PointsAwarded": _Points,
    "PointsDeducted": _Points,
    "MemberTransferred": _MemberTransferred,
    "IssueReported": _IssueReported,
    "IssueAssigned": _DueAt,
    "IssueExtended": _DueAt,
    "IssueReopened": _DueAt,
    "IssueEvaluated": _IssueEvaluated,
    "FindingRecorded": _FindingRecorded,
    "ServiceRequested": _ServiceRequested,
    "ServiceEvaluated": _ServiceEvaluated,
    "HouseholdVisited": _HouseholdVisited,
}
_DECODERS = {t: msgspec.json.Decoder(cls) for t, cls in _DATA_TYPES.items()}
_EMPTY = _Empty()


_json_encoder = msgspec.json.Encoder()


def _json(value: Any) -> str:
    return _json_encoder.encode(value).decode()


def _decode(e: StoredEvent) -> Any:
    decoder = _DECODERS.get(e.type)
    return decoder.decode(e.data) if decoder is not None else _EMPTY


# -- SQL ------------------------------------------------------------------------------------
_COLS = ", ".join(COUNTERS)

# (LATERAL keeps these to one primary-key probe per key, whatever the table's size.)
#
# Row sets travel as one JSON parameter (msgspec-encoded): far cheaper to send than a
# dozen arrays whose every element the driver would inspect.
LOAD_AGGREGATES = """
SELECT a.root_id, a.id, a.node_id, a.kind, a.flags, a.due_at, a.version
FROM json_to_recordset($1::json) AS k(root_id uuid, id uuid)
CROSS JOIN LATERAL (
    SELECT * FROM rm_stats_aggregates a WHERE a.root_id = k.root_id AND a.id = k.id
) a
"""

# (rows as JSON arrays: [root_id, id, node_id, kind, flags, due_at, version])
SAVE_AGGREGATES = """
INSERT INTO rm_stats_aggregates (root_id, id, node_id, kind, flags, due_at, version)
SELECT (x->>0)::uuid, (x->>1)::uuid, (x->>2)::uuid, x->>3, (x->>4)::int2,
       (x->>5)::timestamptz, (x->>6)::int4
FROM json_array_elements($1::json) AS x
ON CONFLICT (root_id, id) DO UPDATE
SET node_id = EXCLUDED.node_id, flags = EXCLUDED.flags, due_at = EXCLUDED.due_at,
    version = EXCLUDED.version
"""

LOAD_NODES = """
SELECT n.root_id, n.node_id, n.path, n.version
FROM json_to_recordset($1::json) AS k(root_id uuid, node_id uuid)
CROSS JOIN LATERAL (
    SELECT * FROM rm_stats_nodes n WHERE n.root_id = k.root_id AND n.node_id = k.node_id
) n
"""

INSERT_NODE = """
INSERT INTO rm_stats_nodes (root_id, node_id, parent_id, path, code, name, kind, version)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (root_id, node_id) DO NOTHING
"""

SET_PARENT = """
INSERT INTO rm_stats_node_parents (root_id, node_id, from_day, parent_id)
VALUES ($1, $2, $3, $4)
ON CONFLICT (root_id, node_id, from_day) DO UPDATE SET parent_id = EXCLUDED.parent_id
"""

RENAME_NODE = """
UPDATE rm_stats_nodes SET name = $3, version = $4
WHERE root_id = $1 AND node_id = $2 AND version < $4
"""

# Re-root the moved subtree's paths, then the node's own parent, code and version.
MOVE_SUBTREE = """
UPDATE rm_stats_nodes
SET path = $3 || substr(path, length($2) + 1)
WHERE root_id = $1 AND path >= $2 AND path < left($2, -1) || '0'
"""
MOVE_NODE = """
UPDATE rm_stats_nodes SET parent_id = $3, code = $4, version = $5
WHERE root_id = $1 AND node_id = $2
"""

LATEST_TOTALS = f"""
SELECT {_COLS} FROM rm_stats_daily
WHERE root_id = $1 AND node_id = $2 ORDER BY day DESC LIMIT 1
"""


# The cumulative rows' statements (upsert, out-of-order carry-forward): projections/daily_counters.py.
DAYS = DailyTable("rm_stats_daily", COUNTERS)


# -- in-memory state of one batch -----------------------------------------------------------
# Node ids travel as strings inside a batch (path segments, JSON parameters, dict keys whose
# hashes are cached); aggregates are keyed by the driver's UUIDs of the event.
NodeKey = tuple[str, str]  # (root id, node id)
DayKey = tuple[str, str, date]  # (root id, node id, day)

#: the node a new aggregate counts under, by creation event.
CREATION_NODE = {
    "PairingSigned": "community_id",
    "MemberRegistered": "community_id",
    "IssueReported": "node_id",
    "FindingRecorded": "scope_id",
    "ServiceRequested": "community_id",
    "HouseholdVisited": "node_id",
}

_ROOTS: dict[UUID, str] = {}


def _root(root_id: UUID) -> str:
    found = _ROOTS.get(root_id)
    if found is None:
        if len(_ROOTS) > 100_000:
            _ROOTS.clear()
        found = _ROOTS[root_id] = str(root_id)
    return found


class _Aggregate:
    __slots__ = ("due_at", "flags", "id", "kind", "node", "root", "root_id", "version")

    def __init__(
        self,
        root_id: UUID,
        id: UUID,
        node: str,
        kind: str,
        flags: int,
        due_at: datetime | None,
        version: int,
    ) -> None:
        self.root_id = root_id
        self.root = _root(root_id)
        self.id = id
        self.node = node
        self.kind = kind
        self.flags = flags
        self.due_at = due_at
        self.version = version


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


_LEVELS = {
    (kind, flags): _levels(kind, flags)
    for kind in (PAIRING, MEMBER, ISSUE, FINDING, SERVICE_ORDER, SURVEY)
    for flags in range(32)
}

#: ancestors (root first, the node last) of a path string; paths never change meaning.
_PATH_CACHE: dict[str, tuple[str, ...]] = {}
_PATH_CACHE_MAX = 200_000


def _path_ids(path: str) -> tuple[str, ...]:
    found = _PATH_CACHE.get(path)
    if found is None:
        if len(_PATH_CACHE) >= _PATH_CACHE_MAX:
            _PATH_CACHE.clear()
        found = _PATH_CACHE[path] = tuple(path.strip("/").split("/"))
    return found


class UnknownAggregate(LookupError):
    """An event names an aggregate or node this projection has not seen: never skipped."""


@dataclass
class _Batch:
    conn: asyncpg.Connection
    #: exclusive replay: the maps below hold everything stored so far (loads only misses) and
    #: creation events cannot find their aggregate stored already.
    exclusive: bool = False
    aggregates: dict[tuple[UUID, UUID], _Aggregate] = field(default_factory=dict)
    dirty: set[tuple[UUID, UUID]] = field(default_factory=set)
    paths: dict[NodeKey, str] = field(default_factory=dict)
    node_versions: dict[NodeKey, int] = field(default_factory=dict)
    ancestors_cache: dict[NodeKey, tuple[str, ...]] = field(default_factory=dict)
    #: the batch's deltas per (root, node, day), the node's own events only ...
    own: dict[DayKey, list[int]] = field(default_factory=dict)
    #: ... and rolled up to every ancestor (``propagate``, before a move and at the end).
    deltas: dict[DayKey, list[int]] = field(default_factory=dict)

    # -- loading ---------------------------------------------------------------------------
    async def load(self, decoded: Sequence[tuple[StoredEvent, Any]]) -> None:
        """Fetch the stored state of the aggregates and nodes the events name (one query
        each, for what is not in memory already)."""
        known, paths = self.aggregates, self.paths
        agg_keys: set[tuple[UUID, UUID]] = set()  # to fetch
        node_keys: set[NodeKey] = set()  # to fetch, unless in ``paths`` already
        created: set[tuple[UUID, UUID]] = set()
        for e, data in decoded:
            t = e.type
            if t in NODE_EVENTS:
                root = _root(e.root_id)
                node_keys.add((root, str(e.stream_id)))
                parent = (
                    data.new_parent_id if t == "NodeMoved" else getattr(data, "parent_id", None)
                )
                if parent is not None:
                    node_keys.add((root, parent))
                continue
            key = (e.root_id, e.stream_id)
            attr = CREATION_NODE.get(t)
            if attr is not None:
                node = (_root(e.root_id), getattr(data, attr))
                if node not in paths:
                    node_keys.add(node)
                if self.exclusive:
                    created.add(key)
                    continue
            elif t == "MemberTransferred":
                node = (_root(e.root_id), data.to_community_id)
                if node not in paths:
                    node_keys.add(node)
            if key not in known:
                agg_keys.add(key)
        agg_keys -= created
        if agg_keys:
            wanted = [{"root_id": r, "id": i} for r, i in agg_keys]
            for r in await self.conn.fetch(LOAD_AGGREGATES, _json(wanted)):
                a = _Aggregate(r[0], r[1], str(r[2]), r[3], r[4], r[5], r[6])
                known[(a.root_id, a.id)] = a
                if (a.root, a.node) not in paths:
                    node_keys.add((a.root, a.node))
        nodes = [{"root_id": r, "node_id": n} for r, n in node_keys if (r, n) not in paths]
        if nodes:
            for r in await self.conn.fetch(LOAD_NODES, _json(nodes)):
                node_key = (str(r["root_id"]), str(r["node_id"]))
                paths[node_key] = r["path"]
                self.node_versions[node_key] = r["version"]

    # -- deltas ----------------------------------------------------------------------------
    def ancestors(self, root: str, node: str) -> tuple[str, ...]:
        """The node and its ancestors (root first), from this projection's own tree."""
        key = (root, node)
        found = self.ancestors_cache.get(key)
        if found is None:
            path = self.paths.get(key)
            if path is None:
                raise UnknownAggregate(f"node {node} of root {root} is not in rm_stats_nodes")
            found = _path_ids(path)
            self.ancestors_cache[key] = found
        return found

    def add(self, root: str, node: str, day: date, counter: int, amount: int) -> None:
        key = (root, node, day)
        vec = self.own.get(key)
        if vec is None:
            vec = self.own[key] = [0] * N_COUNTERS
        vec[counter] += amount

    def propagate(self) -> None:
        """Roll the nodes' own deltas up to every ancestor, with the tree as it stands."""
        for (root, node, day), vec in self.own.items():
            if any(vec):
                self.add_vector(root, self.ancestors(root, node), day, vec)
        self.own.clear()

    def add_vector(self, root: str, nodes: Iterable[str], day: date, vec: Sequence[int]) -> None:
        deltas = self.deltas
        for a in nodes:
            key = (root, a, day)
            acc = deltas.get(key)
            if acc is None:
                deltas[key] = list(vec)
            else:
                deltas[key] = [x + y for x, y in zip(acc, vec, strict=True)]

    def shift_level(self, agg: _Aggregate, before: tuple[str, int], day: date) -> None:
        """Emit the change of the aggregate's level contributions (flags and/or node)."""
        old_node, old_flags = before
        for c in _LEVELS[agg.kind, old_flags]:
            self.add(agg.root, old_node, day, c, -1)
        for c in _LEVELS[agg.kind, agg.flags]:
            self.add(agg.root, agg.node, day, c, 1)

    # -- events ----------------------------------------------------------------------------
    async def handle(self, e: StoredEvent, data: Any) -> None:
        t = e.type
        if t in NODE_EVENTS:
            await self._node_event(e, data)
            return
        key = (e.root_id, e.stream_id)
        day = e.occurred_at.astimezone(CHINA_TZ).date()
        agg = self.aggregates.get(key)
        kind = CREATIONS.get(t)
        if kind is not None:
            if agg is not None:
                return  # already applied
            node = getattr(data, CREATION_NODE[t])
            agg = _Aggregate(e.root_id, e.stream_id, node, kind, 0, None, e.version)
            self.aggregates[key] = agg
            self.dirty.add(key)
            self._create(agg, data, day)
            return
        if agg is None:
            raise UnknownAggregate(f"{t} at position {e.position}: {e.stream_id} unknown")
        if e.version <= agg.version:
            return  # already applied
        before = (agg.node, agg.flags)
        due_at = agg.due_at
        self._change(agg, e, data, day)
        if before != (agg.node, agg.flags) or due_at != agg.due_at:
            # The stored version is that of the last event that changed the state: events
            # that only add to flows (service hours, points, callbacks) write nothing here;
            # exactly-once comes from the checkpoint committed with the batch.
            agg.version = e.version
            self.dirty.add(key)
            if before != (agg.node, agg.flags):
                self.shift_level(agg, before, day)

    def _create(self, agg: _Aggregate, data: Any, day: date) -> None:
        root, node = agg.root, agg.node
        if agg.kind == PAIRING:
            agg.flags = ACTIVE
            self.add(root, node, day, PAIRINGS_ACTIVE, 1)
            self.add(root, node, day, COMMITMENTS, len(data.commitments))
        elif agg.kind == MEMBER:
            agg.flags = ACTIVE
            self.add(root, node, day, MEMBERS_REGISTERED, 1)
        elif agg.kind == ISSUE:
            agg.due_at = data.due_at
            self.add(root, node, day, ISSUES_REPORTED, 1)
        elif agg.kind == SERVICE_ORDER:
            self.add(root, node, day, SERVICE_REQUESTED, 1)
        elif agg.kind == SURVEY:
            self.add(root, node, day, SURVEYS_VISITED, 1)
            if data.flags:
                self.add(root, node, day, SURVEYS_FLAGGED, 1)
            if "group_rental" in data.flags:
                self.add(root, node, day, SURVEYS_GROUP_RENTALS, 1)
            if data.issue_id is not None:
                self.add(root, node, day, SURVEYS_ISSUES_RAISED, 1)
        else:
            self.add(root, node, day, FINDINGS_TOTAL, 1)

    def _change(self, agg: _Aggregate, e: StoredEvent, data: Any, day: date) -> None:
        t = e.type
        root, node = agg.root, agg.node
        # pairings
        if t == "CommitmentFulfilled":
            self.add(root, node, day, FULFILLED, 1)
        elif t == "PairingTerminated":
            agg.flags &= ~ACTIVE
        # members
        elif t == "ServiceRecorded":
            self.add(root, node, day, SERVICE_CENTI, round(data.hours * 100))
        elif t == "PointsAwarded":
            self.add(root, node, day, POINTS, data.points)
        elif t == "PointsDeducted":
            self.add(root, node, day, POINTS, -data.points)
        elif t == "MemberTransferred":
            agg.node = data.to_community_id
        elif t in ("MemberDeregistered", "MemberErased"):
            agg.flags &= ~ACTIVE
        # issues
        elif t == "IssueAssigned" or t == "IssueReopened":
            agg.due_at = data.due_at
            agg.flags &= ~(OVERDUE | ON_TIME)
        elif t == "IssueReturned":
            agg.flags &= ~OVERDUE
        elif t == "IssueExtended":
            agg.due_at = data.due_at
        elif t == "IssueResolved":
            if agg.due_at is None or e.occurred_at <= agg.due_at:
                agg.flags |= ON_TIME
            else:
                agg.flags &= ~ON_TIME
        elif t == "IssueEvaluated":
            self.add(root, node, day, ISSUES_EVALUATED, 1)
            if data.satisfaction in ("satisfied", "basically_satisfied"):
                self.add(root, node, day, ISSUES_SATISFIED, 1)
            if data.resolved:
                self.add(root, node, day, ISSUES_RESOLVED, 1)
        elif t == "IssueClosed":
            agg.flags |= CLOSED
        elif t == "IssueOverdue" or t == "RectificationOverdue":
            agg.flags |= OVERDUE
        # findings
        elif t == "RectificationVerified":
            agg.flags |= VERIFIED
        elif t == "FindingReopened":
            agg.flags &= ~(VERIFIED | OVERDUE)
        # 五单 service orders
        elif t == "ServiceCompleted":
            self.add(root, node, day, SERVICE_COMPLETED, 1)
        elif t == "ServiceEvaluated":
            self.add(root, node, day, SERVICE_EVALUATED, 1)
            self.add(root, node, day, SERVICE_RATING_SUM, data.rating)

    async def _node_event(self, e: StoredEvent, data: Any) -> None:
        root, node = _root(e.root_id), str(e.stream_id)
        key = (root, node)
        day = business_day(e.occurred_at)
        conn = self.conn
        if e.type == "NodeRegistered":
            if key in self.paths:
                return  # already applied
            parent = data.parent_id
            if parent is None:
                path = f"/{node}/"
            else:
                parent_path = self.paths.get((root, parent))
                if parent_path is None:
                    raise UnknownAggregate(f"parent {parent} of node {node} unknown")
                path = f"{parent_path}{node}/"
            await conn.execute(
                INSERT_NODE, root, node, parent, path, data.code, data.name, data.kind, e.version
            )
            await conn.execute(SET_PARENT, root, node, day, parent)
            self.paths[key] = path
            self.node_versions[key] = e.version
            return
        if key not in self.paths:
            raise UnknownAggregate(f"{e.type} at position {e.position}: node {node} unknown")
        if e.version <= self.node_versions[key]:
            return  # already applied
        self.node_versions[key] = e.version
        if e.type == "NodeRenamed":
            await conn.execute(RENAME_NODE, root, node, data.name, e.version)
            return
        # NodeMoved
        new_parent = data.new_parent_id
        parent_path = self.paths.get((root, new_parent))
        if parent_path is None:
            raise UnknownAggregate(f"new parent {new_parent} of node {node} unknown")
        old_path = self.paths[key]
        new_path = f"{parent_path}{node}/"
        old_ancestors = self.ancestors(root, node)[:-1]
        new_ancestors = _path_ids(parent_path)
        self.propagate()  # what happened before the move counts under the old tree
        totals = await self._totals(root, node)
        common = set(old_ancestors) & set(new_ancestors)
        self.add_vector(
            root, [a for a in old_ancestors if a not in common], day, [-v for v in totals]
        )
        self.add_vector(root, [a for a in new_ancestors if a not in common], day, totals)
        if new_path != old_path:
            await conn.execute(MOVE_SUBTREE, root, old_path, new_path)
        await conn.execute(MOVE_NODE, root, node, new_parent, data.new_code, e.version)
        await conn.execute(SET_PARENT, root, node, day, new_parent)
        for k, p in list(self.paths.items()):
            if k[0] == root and p.startswith(old_path):
                self.paths[k] = new_path + p[len(old_path) :]
        self.ancestors_cache.clear()

    async def _totals(self, root: str, node: str) -> list[int]:
        """The node's current figures: its latest stored row plus the unwritten deltas."""
        row = await self.conn.fetchrow(LATEST_TOTALS, root, node)
        totals = [int(v) for v in row] if row is not None else [0] * N_COUNTERS
        for (r, n, _day), vec in self.deltas.items():
            if r == root and n == node:
                totals = [a + b for a, b in zip(totals, vec, strict=True)]
        return totals

    # -- writing ---------------------------------------------------------------------------
    async def flush(self) -> None:
        self.propagate()
        await self.write_aggregates()
        await self._flush_days()

    async def write_aggregates(self) -> None:
        if self.dirty:
            aggregates = self.aggregates
            rows = [
                (a.root, a.id, a.node, a.kind, a.flags, a.due_at, a.version)
                for a in (aggregates[k] for k in self.dirty)
            ]
            await self.conn.execute(SAVE_AGGREGATES, _json(rows))

    async def _flush_days(self) -> None:
        await DAYS.write(self.conn, self.deltas)


class StatsProjection:
    """The projection.

    ``exclusive=True`` is what ``for_rebuild`` gives a rebuild, which replays alone into
    scratch tables: the aggregates' states and the tree stay in memory between batches (up
    to ``cache_limit`` aggregates), and the writes of about ``write_every`` events are
    gathered into one (an aggregate touched by several batches is written once); the rebuild
    calls ``finish`` to write the rest before it swaps the tables in. The live projection
    (``exclusive=False``) loads what each batch needs and writes everything with it."""

    name = NAME
    handles = HANDLES
    tables: tuple[str, ...] = (
        "rm_stats_nodes",
        "rm_stats_node_parents",
        "rm_stats_daily",
        "rm_stats_aggregates",
    )

    def __init__(
        self, *, exclusive: bool = False, cache_limit: int = 1_000_000, write_every: int = 20_000
    ) -> None:
        self.exclusive = exclusive
        self.cache_limit = cache_limit
        self.write_every = write_every
        self._aggregates: dict[tuple[UUID, UUID], _Aggregate] = {}
        self._paths: dict[NodeKey, str] = {}
        self._node_versions: dict[NodeKey, int] = {}
        self._dirty: set[tuple[UUID, UUID]] = set()
        self._deltas: dict[DayKey, list[int]] = {}
        self._unwritten = 0

    def for_rebuild(self) -> StatsProjection:
        return StatsProjection(
            exclusive=True, cache_limit=self.cache_limit, write_every=self.write_every
        )

    def _batch(self, conn: asyncpg.Connection) -> _Batch:
        batch = _Batch(conn)
        if self.exclusive:
            batch.exclusive = True
            batch.aggregates = self._aggregates
            batch.paths = self._paths
            batch.node_versions = self._node_versions
            batch.dirty = self._dirty
            batch.deltas = self._deltas
        return batch

    async def apply(self, conn: asyncpg.Connection, events: Sequence[StoredEvent]) -> None:
        decoded = [(e, _decode(e)) for e in events if e.type in HANDLES]
        batch = self._batch(conn)
        try:
            await batch.load(decoded)
            for e, data in decoded:
                await batch.handle(e, data)
            if not self.exclusive:
                await batch.flush()
                return
            batch.propagate()
            self._unwritten += len(decoded)
            if self._unwritten >= self.write_every or len(self._aggregates) > self.cache_limit:
                await self._write(batch)
        except BaseException:
            # the transaction will not commit: forget whatever is not stored
            self._forget()
            raise

    async def finish(self, conn: asyncpg.Connection) -> None:
        """Write what an exclusive replay still holds in memory."""
        if self.exclusive:
            try:
                await self._write(self._batch(conn))
            except BaseException:
                self._forget()
                raise

    async def _write(self, batch: _Batch) -> None:
        await batch.flush()
        self._dirty.clear()
        self._deltas.clear()
        self._unwritten = 0
        if len(self._aggregates) > self.cache_limit:
            self._aggregates.clear()

    def _forget(self) -> None:
        for cache in (self._aggregates, self._paths, self._node_versions, self._dirty):
            cache.clear()
        self._deltas.clear()
        self._unwritten = 0


# -- reads ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Figures:
    """One node's cumulative counters at some moment."""

    values: tuple[int, ...] = (0,) * N_COUNTERS

    def __getitem__(self, counter: int) -> int:
        return self.values[counter]

    def groups(self) -> dict[str, dict[str, Any]]:
        """The four groups of API.md, with rates (null when the denominator is 0)."""
        v = self.values
        return {
            "pairings": {
                "active": v[PAIRINGS_ACTIVE],
                "commitments": v[COMMITMENTS],
                "fulfilled": v[FULFILLED],
                "fulfil_rate": rate(v[FULFILLED], v[COMMITMENTS]),
            },
            "members": {
                "registered": v[MEMBERS_REGISTERED],
                "service_hours": v[SERVICE_CENTI] / 100,
                "points": v[POINTS],
            },
            "issues": {
                "reported": v[ISSUES_REPORTED],
                "open": v[ISSUES_REPORTED] - v[ISSUES_CLOSED],
                "closed": v[ISSUES_CLOSED],
                "overdue": v[ISSUES_OVERDUE],
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
            "service_orders": {
                "requested": v[SERVICE_REQUESTED],
                "completed": v[SERVICE_COMPLETED],
                "evaluated": v[SERVICE_EVALUATED],
                "average_rating": None
                if v[SERVICE_EVALUATED] == 0
                else round(v[SERVICE_RATING_SUM] / v[SERVICE_EVALUATED], 2),
            },
            "surveys": {
                "households_visited": v[SURVEYS_VISITED],
                "flagged": v[SURVEYS_FLAGGED],
                "group_rentals": v[SURVEYS_GROUP_RENTALS],
                "issues_raised": v[SURVEYS_ISSUES_RAISED],
            },
        }


def rate(numerator: int, denominator: int) -> float | None:
    """A ratio rounded to 4 decimals; None when the denominator is 0."""
    return None if denominator == 0 else round(numerator / denominator, 4)


@dataclass(frozen=True)
class NodeFigures:
    node_id: UUID
    code: str | None
    name: str | None
    figures: Figures


# The node and its children as of the day (each candidate child's latest parent record on or
# before the day must name this node), then per node one primary-key probe for its name and
# one backward probe for its latest row: LATERAL keeps every step an index look-up.
FIGURES = f"""
WITH ids AS (
    SELECT $2::uuid AS node_id, 0 AS ord
    UNION ALL
    SELECT c.node_id, 1 FROM rm_stats_node_parents c
    WHERE c.root_id = $1 AND c.parent_id = $2 AND c.from_day <= $3
      AND c.from_day = (
          SELECT l.from_day FROM rm_stats_node_parents l
          WHERE l.root_id = $1 AND l.node_id = c.node_id AND l.from_day <= $3
          ORDER BY l.from_day DESC LIMIT 1)
)
SELECT i.node_id, i.ord, n.code, n.name, {", ".join(f"d.{c}" for c in COUNTERS)}
FROM ids i
LEFT JOIN LATERAL (
    SELECT code, name FROM rm_stats_nodes n WHERE n.root_id = $1 AND n.node_id = i.node_id
    LIMIT 1
) n ON true
LEFT JOIN LATERAL (
    SELECT {_COLS} FROM rm_stats_daily s
    WHERE s.root_id = $1 AND s.node_id = i.node_id AND s.day <= $3
    ORDER BY s.day DESC LIMIT 1
) d ON true
ORDER BY i.ord, n.code
"""

SERIES = f"""
SELECT day, {_COLS} FROM rm_stats_daily
WHERE root_id = $1 AND node_id = $2 AND day <= $4
  AND day >= coalesce(
      (SELECT max(day) FROM rm_stats_daily WHERE root_id = $1 AND node_id = $2 AND day <= $3),
      $3)
ORDER BY day
"""


def _figures(row: asyncpg.Record, offset: int) -> Figures:
    values = tuple(row[offset + i] for i in range(N_COUNTERS))
    if values[0] is None:
        return Figures()
    return Figures(tuple(int(v) for v in values))


async def node_figures(
    conn: asyncpg.Connection, root_id: UUID, node_id: UUID, as_of: date | None = None
) -> tuple[NodeFigures, list[NodeFigures]]:
    """A node's figures and its children's (the children as the tree stood that day), at the
    end of ``as_of`` (China-local), or now."""
    rows = await conn.fetch(FIGURES, root_id, node_id, as_of or END_OF_TIME)
    found = [NodeFigures(r["node_id"], r["code"], r["name"], _figures(r, 4)) for r in rows]
    return found[0], found[1:]


async def daily_figures(
    conn: asyncpg.Connection, root_id: UUID, node_id: UUID, first: date, last: date
) -> list[tuple[date, Figures]]:
    """One entry per day from ``first`` to ``last``: the figures at the end of that day."""
    rows = await conn.fetch(SERIES, root_id, node_id, first, last)
    by_day = {r["day"]: _figures(r, 1) for r in rows}
    current = Figures()
    if rows and rows[0]["day"] < first:
        current = by_day[rows[0]["day"]]
    out: list[tuple[date, Figures]] = []
    for n in range((last - first).days + 1):
        day = first + timedelta(days=n)
        current = by_day.get(day, current)
        out.append((day, current))
    return out
