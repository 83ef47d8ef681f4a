"""Projection "nodes": the hierarchy as clients read it (rm_nodes).

Statements take ``$1`` root and ``$2`` node id (``projections.rows``: an update of a node the
table does not hold raises). Re-applying a rename, move or close sets the same values again.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from domain.node import Node
from infra.event_store import StoredEvent
from projections.rows import RowGuard
from projections.subscriptions import PerEvent, on

INSERT_NODE = """
INSERT INTO rm_nodes (id, root_id, code, name, kind, parent_id, path, version, registered_at,
                      updated_at)
VALUES ($1::uuid, $2, $3, $4, $5, $6::uuid,
        coalesce((SELECT p.path FROM rm_nodes p WHERE p.id = $6::uuid), '/') || $1::uuid::text || '/',
        $7, $8, $8)
ON CONFLICT (id) DO NOTHING
"""

RENAME_NODE = """
UPDATE rm_nodes SET name = $3, version = $4, updated_at = $5 WHERE root_id = $1 AND id = $2
"""

CLOSE_NODE = """
UPDATE rm_nodes SET closed = true, version = $3, updated_at = $4 WHERE root_id = $1 AND id = $2
"""

# Re-root the moved subtree: every path under the old one gets the new prefix.
MOVE_NODE = """
WITH moved AS (
    SELECT n.path AS old_path,
           (SELECT p.path FROM rm_nodes p WHERE p.id = $3::uuid) || n.id::text || '/' AS new_path
    FROM rm_nodes n WHERE n.root_id = $1 AND n.id = $2::uuid
)
UPDATE rm_nodes r
SET path = moved.new_path || substr(r.path, length(moved.old_path) + 1),
    parent_id = CASE WHEN r.id = $2 THEN $3 ELSE r.parent_id END,
    code = CASE WHEN r.id = $2 THEN $4 ELSE r.code END,
    former_codes = CASE WHEN r.id = $2 AND $4 <> r.code
                        THEN array_append(r.former_codes, r.code) ELSE r.former_codes END,
    version = CASE WHEN r.id = $2 THEN $5 ELSE r.version END,
    updated_at = CASE WHEN r.id = $2 THEN $6 ELSE r.updated_at END
FROM moved
WHERE r.path >= moved.old_path AND r.path < left(moved.old_path, -1) || '0'
"""


NODES = RowGuard("rm_nodes")


class NodesProjection(PerEvent):
    name = "nodes"
    tables: tuple[str, ...] = ("rm_nodes",)

    @on(Node.Registered)
    async def registered(self, conn: asyncpg.Connection, e: StoredEvent, r: Any) -> None:
        await conn.execute(
            INSERT_NODE,
            e.stream_id,
            e.root_id,
            r.code,
            r.name,
            r.kind,
            r.parent_id,
            e.version,
            e.occurred_at,
        )

    @on(Node.Renamed)
    async def renamed(self, conn: asyncpg.Connection, e: StoredEvent, n: Any) -> None:
        await NODES.update(conn, e, RENAME_NODE, n.name, e.version, e.occurred_at)

    @on(Node.Moved)
    async def moved(self, conn: asyncpg.Connection, e: StoredEvent, m: Any) -> None:
        await NODES.update(
            conn, e, MOVE_NODE, m.new_parent_id, m.new_code, e.version, e.occurred_at
        )

    @on(Node.Closed)
    async def closed(self, conn: asyncpg.Connection, e: StoredEvent, _: Any) -> None:
        await NODES.update(conn, e, CLOSE_NODE, e.version, e.occurred_at)
