"""Reading "stats": a node's figures and its children's now or as of a day, a daily series.

"Now" is a node's latest ``rm_stats_daily`` row, "as of D" its latest row on or before D, a
daily series the rows of a range with the figures carried forward over days without a row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID

import asyncpg

from projections.daily_counters import carried_forward
from projections.stats.counters import (
    COMMITMENTS,
    COUNTERS,
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
from projections.stats.engine import END_OF_TIME

_COLS = ", ".join(COUNTERS)


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
    return carried_forward({r["day"]: _figures(r, 1) for r in rows}, first, last, Figures())
