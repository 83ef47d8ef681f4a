"""Projection "surveys": household visits (扫楼) in ``rm_surveys`` (migration 0027), and the
coverage query per grid.

The note is kept exactly as stored (sealed); ``services/personal_data_view.py`` opens it.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from domain.survey import Survey
from infra.event_store import StoredEvent
from projections.rows import RowGuard
from projections.subscriptions import PerEvent, on

INSERT = """
INSERT INTO rm_surveys (root_id, id, node_id, node_code, community_id, building, room,
                        visited_on, residents, flags, note, issue_id, status, visited_at,
                        version, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12, 'recorded', $13, $14, $13)
ON CONFLICT (root_id, id) DO NOTHING
"""

ERASED = """
UPDATE rm_surveys SET note = NULL, status = 'erased', version = $3, updated_at = $4
WHERE root_id = $1 AND id = $2 AND version < $3
"""

SURVEYS = RowGuard("rm_surveys")


class SurveysProjection(PerEvent):
    name = "surveys"
    tables: tuple[str, ...] = ("rm_surveys",)

    @on(Survey.Visited)
    async def visited(self, conn: asyncpg.Connection, e: StoredEvent, v: Any) -> None:
        note = None if bytes(v.note) == b"null" else bytes(v.note)
        await conn.execute(
            INSERT,
            e.root_id,
            e.stream_id,
            v.node_id,
            v.node_code,
            v.community_id,
            v.building,
            v.room,
            v.visited_on,
            v.residents,
            v.flags,
            note.decode() if note is not None else None,
            v.issue_id,
            e.occurred_at,
            e.version,
        )

    @on(Survey.NoteErased)
    async def note_erased(self, conn: asyncpg.Connection, e: StoredEvent, _: Any) -> None:
        await SURVEYS.update(conn, e, ERASED, e.version, e.occurred_at)


# Per grid (and per community, for visits recorded at the community itself) of a subtree:
# distinct households (building + room) visited in the period, visits, flagged visits, group
# rentals, issues raised, the latest visit day. Grids nobody visited are listed with zeros
# (what coverage is for). $1 root, $2/$3 the subtree's path range, $4/$5 the period.
COVERAGE = """
SELECT n.id, n.code, n.name, n.kind,
       -- (a LEFT JOIN miss is a row of NULLs, which count(DISTINCT (a, b)) would count)
       count(DISTINCT (s.building, s.room)) FILTER (WHERE s.id IS NOT NULL) AS households,
       count(s.id) AS visits,
       count(s.id) FILTER (WHERE cardinality(s.flags) > 0) AS flagged,
       count(s.id) FILTER (WHERE 'group_rental' = ANY(s.flags)) AS group_rentals,
       count(s.issue_id) AS issues_raised,
       max(s.visited_on) AS last_visited_on
FROM nodes n
LEFT JOIN rm_surveys s ON s.root_id = n.root_id AND s.node_id = n.id
     AND s.visited_on >= $4 AND s.visited_on <= $5
WHERE n.root_id = $1 AND n.path >= $2 AND n.path < $3
  AND n.id IN (SELECT civic_scope_nodes())
  AND (n.kind = 'grid' OR s.id IS NOT NULL)
GROUP BY n.id, n.code, n.name, n.kind
ORDER BY n.code
"""
