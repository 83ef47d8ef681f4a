"""Cumulative daily counter rows, shared by the roll-up projections ("stats", "unit_stats").

A table of this shape holds, per ``(root_id, node_id)`` and China-local ``day`` on which
something changed, the *cumulative* counters at the end of that day: "now" is a key's latest
row, "as of D" its latest row on or before D, a daily series the rows of a range carried
forward — index look-ups whose cost does not grow with the number of events (why cumulative
rows rather than summed deltas: see ``projections/stats/__init__.py``).

``DailyTable(name, counters)`` builds the statements for one such table and writes a batch
of deltas ``{(root, node, day): [delta per counter]}`` into it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from operator import add
from typing import Any, TypeVar

import asyncpg
import msgspec

DayKey = tuple[str, str, date]  # (root id, node id, day)
#: a node's latest stored row: (its day, its cumulative counters); (None, zeros) if none.
Latest = tuple[date | None, list[int]]
F = TypeVar("F")

_json_encoder = msgspec.json.Encoder()


def to_json(value: Any) -> str:
    return _json_encoder.encode(value).decode()


def carried_forward(
    by_day: Mapping[date, F], first: date, last: date, before: F
) -> list[tuple[date, F]]:
    """One entry per day from ``first`` to ``last``: the figures of the latest row on or
    before that day (``by_day``; ``before``: the figures before its first row)."""
    earlier = [d for d in by_day if d < first]
    current = by_day[max(earlier)] if earlier else before
    out: list[tuple[date, F]] = []
    for n in range((last - first).days + 1):
        day = first + timedelta(days=n)
        current = by_day.get(day, current)
        out.append((day, current))
    return out


class DailyTable:
    def __init__(self, table: str, counters: Sequence[str]) -> None:
        self.table = table
        self.counters = tuple(counters)
        cols = ", ".join(self.counters)
        self.columns = cols
        # The deltas, as JSON arrays [root_id, node_id, day, delta of each counter...], one
        # per (node, day) with something to add.
        deltas = f"""
SELECT (x->>0)::uuid AS root_id, (x->>1)::uuid AS node_id, (x->>2)::date AS day,
       {", ".join(f"(x->>{i + 3})::int8 AS {c}" for i, c in enumerate(self.counters))}
FROM json_array_elements($1::json) AS x
"""
        # One row per (node, day): the day's cumulative figures become the latest stored row
        # on or before that day (the day's own row, else the one it carries forward, else
        # zero) + the sum of the node's deltas up to and including that day (a window over
        # the node's days: later days of the same write carry the earlier deltas).
        self.upsert_days = f"""
WITH d AS (
    SELECT root_id, node_id, day,
           {", ".join(f"sum({c}) OVER w AS {c}" for c in self.counters)}
    FROM ({deltas}) x
    WINDOW w AS (PARTITION BY root_id, node_id ORDER BY day)
)
INSERT INTO {table} (root_id, node_id, day, {cols})
SELECT d.root_id, d.node_id, d.day,
       {", ".join(f"coalesce(p.{c}, 0) + d.{c}" for c in self.counters)}
FROM d
LEFT JOIN LATERAL (
    SELECT * FROM {table} p
    WHERE p.root_id = d.root_id AND p.node_id = d.node_id AND p.day <= d.day
    ORDER BY p.day DESC LIMIT 1
) p ON true
ON CONFLICT (root_id, node_id, day) DO UPDATE
SET {", ".join(f"{c} = EXCLUDED.{c}" for c in self.counters)}
"""
        # Nodes that already have stored rows after their first day in the write: business
        # days arrived out of order (rare), and those later rows must carry the deltas too.
        # Asked before the upsert, so that only rows stored before it count.
        self.later_rows = f"""
SELECT k.root_id, k.node_id
FROM (SELECT root_id, node_id, min(day) AS day FROM ({deltas}) x GROUP BY root_id, node_id) k
WHERE EXISTS (SELECT 1 FROM {table} r
              WHERE r.root_id = k.root_id AND r.node_id = k.node_id AND r.day > k.day)
"""
        # Add a delta to a node's stored rows in (after, before), bounds excluded (``before``
        # NULL: no upper bound).
        self.carry_forward = f"""
UPDATE {table}
SET {", ".join(f"{c} = {c} + ${i + 5}" for i, c in enumerate(self.counters))}
WHERE root_id = $1 AND node_id = $2 AND day > $3 AND ($4::date IS NULL OR day < $4)
"""
        self.latest = f"""
SELECT {cols} FROM {table}
WHERE root_id = $1 AND node_id = $2 ORDER BY day DESC LIMIT 1
"""
        # The latest row of each node named (nodes without rows: none).
        self.latest_rows = f"""
SELECT l.root_id, l.node_id, l.day, {", ".join(f"l.{c}" for c in self.counters)}
FROM json_to_recordset($1::json) AS k(root_id uuid, node_id uuid)
CROSS JOIN LATERAL (
    SELECT * FROM {table} p WHERE p.root_id = k.root_id AND p.node_id = k.node_id
    ORDER BY p.day DESC LIMIT 1
) l
"""

    async def write(self, conn: asyncpg.Connection, deltas: Mapping[DayKey, Sequence[int]]) -> None:
        """Write the deltas into the cumulative rows; then, in the rare case of stored rows
        after a node's first day here (out-of-order business days), add the deltas to those
        rows as well."""
        rows = [(*key, *vec) for key, vec in deltas.items() if any(vec)]
        if not rows:
            return
        payload = to_json(rows)
        later = await conn.fetch(self.later_rows, payload)
        await conn.execute(self.upsert_days, payload)
        n = len(self.counters)
        for r in later:
            root, node = str(r["root_id"]), str(r["node_id"])
            entries = sorted(
                (day, vec) for (rt, nd, day), vec in deltas.items() if (rt, nd) == (root, node)
            )
            running = [0] * n
            for k, (day, vec) in enumerate(entries):
                running = [a + b for a, b in zip(running, vec, strict=True)]
                before = entries[k + 1][0] if k + 1 < len(entries) else None
                await conn.execute(self.carry_forward, root, node, day, before, *running)

    async def write_alone(
        self,
        conn: asyncpg.Connection,
        deltas: Mapping[DayKey, Sequence[int]],
        latest: dict[tuple[str, str], Latest],
    ) -> None:
        """``write`` for the table's only writer (a rebuild's scratch copy), which keeps in
        ``latest`` each node's latest stored row (misses are read here; cleared, it is read
        again). A node whose deltas all fall after its latest row — in a replay in event
        order, nearly all — gets its cumulative rows computed here and sent with COPY, new
        rows that need no look-up, no conflict check and no JSON; the other nodes' deltas
        (a day already stored, business days out of order) go through ``write``."""
        by_node: dict[tuple[str, str], list[tuple[date, Sequence[int]]]] = {}
        for (root, node, day), vec in deltas.items():
            if any(vec):
                by_node.setdefault((root, node), []).append((day, vec))
        if not by_node:
            return
        missing = [{"root_id": r, "node_id": n} for r, n in by_node if (r, n) not in latest]
        n = len(self.counters)
        if missing:
            for r in missing:
                latest[r["root_id"], r["node_id"]] = (None, [0] * n)
            for row in await conn.fetch(self.latest_rows, to_json(missing)):
                latest[str(row[0]), str(row[1])] = (row[2], [row[i] for i in range(3, 3 + n)])
        records: list[tuple[Any, ...]] = []
        others: dict[DayKey, Sequence[int]] = {}
        for key, entries in by_node.items():
            entries.sort(key=lambda entry: entry[0])
            last_day, running = latest[key]
            root, node = key
            if last_day is None or entries[0][0] > last_day:
                for day, vec in entries:
                    running = list(map(add, running, vec))
                    records.append((root, node, day, *running))
                latest[key] = (entries[-1][0], running)
                continue
            for day, vec in entries:
                others[root, node, day] = vec
                running = list(map(add, running, vec))
            latest[key] = (max(last_day, entries[-1][0]), running)
        if records:
            await conn.copy_records_to_table(
                self.table, records=records, columns=("root_id", "node_id", "day", *self.counters)
            )
        if others:
            await self.write(conn, others)
