"""The batch engine the roll-up projections share ("stats", "unit_stats").

Each counts aggregates (pairings, members, issues, findings, ...) under some node (a
community, a unit) on China-local days. Per aggregate it keeps a row in its
``*_aggregates`` table: the node it counts under, bit flags and the deadline in force, so
that the next event becomes deltas of the counters without reading the aggregate's history.

A batch is applied in memory: the state rows it needs are loaded once, each event is handed
to the rule (an ``@on`` method of the projection's ``CounterBatch`` subclass) that turns it
into deltas per (root, node, day) and changes of the state, and what changed is written with
a few set-based statements. A creation rule (the event is a ``Created``) returns the new
aggregate; a change rule edits it. The engine supplies what every rule relies on: a
re-delivered event changes nothing (the version guard), an event of an aggregate never seen
stops the projection (never skipped), and a change of an aggregate's node or flags moves its
"level" counters (``LEVELS``) from the old node to the new one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from typing import Any, ClassVar
from uuid import UUID

import asyncpg

from domain.refs import CHINA_TZ
from projections.base import LightEvent
from projections.daily_counters import DayKey, to_json
from projections.subscriptions import Subscriber, Subscription

# -- flags of the aggregates tables ----------------------------------------------------------
ACTIVE = 1  # pairing not terminated; member registered (here)
OVERDUE = 2  # issue / finding: an overdue event recorded for the deadline in force
CLOSED = 4  # issue closed
VERIFIED = 8  # finding verified (销号)
ON_TIME = 16  # issue: the latest resolution came by the deadline in force

PAIRING, MEMBER, ISSUE, FINDING = "pairing", "member", "issue", "finding"
SERVICE_ORDER, SURVEY = "service_order", "survey"
KINDS = (PAIRING, MEMBER, ISSUE, FINDING, SERVICE_ORDER, SURVEY)

#: the "now" of reads: the latest row of a node, whatever its day.
END_OF_TIME = date(9999, 12, 31)


#: the last day ``business_day`` answered, as [first instant, first instant of the next day,
#: day]: events come in position order, mostly on the day of the one before. The bounds are
#: in the time zone of the stored timestamps (UTC), which makes comparing them cheap.
_LAST_DAY: list[Any] = [None, None, None]


def business_day(at: datetime) -> date:
    """The China-local day an event is counted on."""
    last = _LAST_DAY
    if last[0] is not None and last[0] <= at < last[1]:
        day: date = last[2]
        return day
    day = at.astimezone(CHINA_TZ).date()
    zone = at.tzinfo
    start = datetime.combine(day, time.min, CHINA_TZ).astimezone(zone)
    end = datetime.combine(day + timedelta(days=1), time.min, CHINA_TZ).astimezone(zone)
    last[:] = [start, end, day]
    return day


class UnknownAggregate(LookupError):
    """An event names an aggregate or node this projection has not seen: never skipped."""


_ROOTS: dict[UUID, str] = {}


def root_text(root_id: UUID) -> str:
    """A root id as text (cached: every event of a batch asks)."""
    found = _ROOTS.get(root_id)
    if found is None:
        if len(_ROOTS) > 100_000:
            _ROOTS.clear()
        found = _ROOTS[root_id] = str(root_id)
    return found


class Aggregate:
    """One aggregate's counting state: where it counts (``node``; None: nowhere yet)."""

    __slots__ = ("due_at", "flags", "id", "kind", "node", "root", "root_id", "version")

    def __init__(
        self,
        root_id: UUID,
        id: UUID,
        node: str | None,
        kind: str,
        flags: int,
        due_at: datetime | None,
        version: int,
    ) -> None:
        self.root_id = root_id
        self.root = root_text(root_id)
        self.id = id
        self.node = node
        self.kind = kind
        self.flags = flags
        self.due_at = due_at
        self.version = version


class AggregateTable:
    """The statements of one ``*_aggregates`` table (migrations 0014, 0030).

    (LATERAL keeps the load to one primary-key probe per key, whatever the table's size.
    Row sets travel as one JSON parameter, msgspec-encoded: far cheaper to send than a
    dozen arrays whose every element the driver would inspect.)"""

    def __init__(self, table: str) -> None:
        self.table = table
        self.load_sql = f"""
SELECT a.root_id, a.id, a.node_id, a.kind, a.flags, a.due_at, a.version
FROM json_to_recordset($1::json) AS k(root_id uuid, id uuid)
CROSS JOIN LATERAL (
    SELECT * FROM {table} a WHERE a.root_id = k.root_id AND a.id = k.id
) a
"""
        # (rows as JSON arrays: [root_id, id, node_id, kind, flags, due_at, version])
        self.save_sql = f"""
INSERT INTO {table} (root_id, id, node_id, kind, flags, due_at, version)
SELECT (x->>0)::uuid, (x->>1)::uuid, (x->>2)::uuid, x->>3, (x->>4)::int2,
       (x->>5)::timestamptz, (x->>6)::int4
FROM json_array_elements($1::json) AS x
ON CONFLICT (root_id, id) DO UPDATE
SET node_id = EXCLUDED.node_id, flags = EXCLUDED.flags, due_at = EXCLUDED.due_at,
    version = EXCLUDED.version
"""

    async def load(
        self, conn: asyncpg.Connection, keys: Iterable[tuple[UUID, UUID]]
    ) -> list[Aggregate]:
        wanted = [{"root_id": r, "id": i} for r, i in keys]
        if not wanted:
            return []
        rows = await conn.fetch(self.load_sql, to_json(wanted))
        return [
            Aggregate(r[0], r[1], None if r[2] is None else str(r[2]), r[3], r[4], r[5], r[6])
            for r in rows
        ]

    async def save(self, conn: asyncpg.Connection, aggregates: Iterable[Aggregate]) -> None:
        rows = [(a.root, a.id, a.node, a.kind, a.flags, a.due_at, a.version) for a in aggregates]
        if rows:
            await conn.execute(self.save_sql, to_json(rows))

    async def insert(self, conn: asyncpg.Connection, aggregates: Iterable[Aggregate]) -> None:
        """Store aggregates known to have no row yet (COPY: no conflict check, no JSON)."""
        rows = [(a.root_id, a.id, a.node, a.kind, a.flags, a.due_at, a.version) for a in aggregates]
        if rows:
            await conn.copy_records_to_table(
                self.table,
                records=rows,
                columns=("root_id", "id", "node_id", "kind", "flags", "due_at", "version"),
            )


Decoded = tuple[LightEvent, Subscription, Any]


class CounterBatch(Subscriber):
    """One batch of a roll-up projection. Subclasses set ``N_COUNTERS`` and ``LEVELS`` and
    declare the rules:

    * ``@on(X.Created) def ...(self, e, data, day) -> Aggregate``: a new aggregate, with
      the deltas its creation adds;
    * ``@on(X.Changed) def ...(self, agg, e, data, day) -> None``: deltas of flows, and the
      state changes (node, flags, deadline) from which the engine moves level counters.
    """

    N_COUNTERS: ClassVar[int]
    #: {(kind, flags): counters an aggregate adds 1 to while its flags say so ("level")}.
    LEVELS: ClassVar[Mapping[tuple[str, int], tuple[int, ...]]]

    def __init__(self) -> None:
        self.aggregates: dict[tuple[UUID, UUID], Aggregate] = {}
        self.dirty: set[tuple[UUID, UUID]] = set()
        #: the dirty aggregates a creation rule made (kept by an exclusive replay only: it
        #: alone knows they have no stored row yet).
        self.created: set[tuple[UUID, UUID]] | None = None
        #: the batch's deltas per (root, node, day), each at the node its event counts under.
        self.own: dict[DayKey, list[int]] = {}

    @classmethod
    def decode(cls, events: Sequence[LightEvent]) -> list[Decoded]:
        """The events of the batch this projection counts, each with its rule and payload."""
        subs = cls.subscriptions
        out: list[Decoded] = []
        for e in events:
            sub = subs.get(e.type)
            if sub is not None:
                out.append((e, sub, sub.decode(e.data)))
        return out

    def add(self, root: str, node: str | None, day: date, counter: int, amount: int) -> None:
        if node is None:
            return  # work that counts under no node (yet) counts for none
        key = (root, node, day)
        vec = self.own.get(key)
        if vec is None:
            vec = self.own[key] = [0] * self.N_COUNTERS
        vec[counter] += amount

    def count(self, e: LightEvent, sub: Subscription, data: Any) -> None:
        """Apply one aggregate event (see the class's docstring)."""
        key = (e.root_id, e.stream_id)
        agg = self.aggregates.get(key)
        day = business_day(e.occurred_at)
        if sub.creates:
            if agg is not None:
                return  # already applied
            self.aggregates[key] = sub.handler(self, e, data, day)
            self.dirty.add(key)
            if self.created is not None:
                self.created.add(key)
            return
        if agg is None:
            raise UnknownAggregate(f"{e.type} at position {e.position}: {e.stream_id} unknown")
        if e.version <= agg.version:
            return  # already applied
        node, flags, due_at = agg.node, agg.flags, agg.due_at
        sub.handler(self, agg, e, data, day)
        if node != agg.node or flags != agg.flags or due_at != agg.due_at:
            # The stored version is that of the last event that changed the state: events
            # that only add to flows (service hours, points, callbacks) write nothing here;
            # exactly-once comes from the checkpoint committed with the batch.
            agg.version = e.version
            self.dirty.add(key)
            if node != agg.node or flags != agg.flags:
                for c in self.LEVELS[agg.kind, flags]:
                    self.add(agg.root, node, day, c, -1)
                for c in self.LEVELS[agg.kind, agg.flags]:
                    self.add(agg.root, agg.node, day, c, 1)

    def changed(self) -> list[Aggregate]:
        aggregates = self.aggregates
        return [aggregates[k] for k in self.dirty]
