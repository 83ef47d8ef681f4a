"""Projection "nodes": the hierarchy as clients read it (rm_nodes)."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import asyncpg
import msgspec

from infra.event_store import StoredEvent

INSERT_NODE = """
INSERT INTO rm_nodes (id, root_id, code, name, kind, parent_id, path, version, registered_at,
                      updated_at)
VALUES ($1::uuid, $2, $3, $4, $5, $6::uuid,
        coalesce((SELECT p.path FROM rm_nodes p WHERE p.id = $6::uuid), '/') || $1::uuid::text || '/',
        $7, $8, $8)
ON CONFLICT (id) DO NOTHING
"""

RENAME_NODE = "UPDATE rm_nodes SET name = $2, version = $3, updated_at = $4 WHERE id = $1"

CLOSE_NODE = "UPDATE rm_nodes SET closed = true, version = $2, updated_at = $3 WHERE id = $1"

# Re-root the moved subtree: every path under the old one gets the new prefix.
MOVE_NODE = """
WITH moved AS (
    SELECT n.path AS old_path,
           (SELECT p.path FROM rm_nodes p WHERE p.id = $2::uuid) || n.id::text || '/' AS new_path
    FROM rm_nodes n WHERE n.id = $1::uuid
)
UPDATE rm_nodes r
SET path = moved.new_path || substr(r.path, length(moved.old_path) + 1),
    parent_id = CASE WHEN r.id = $1 THEN $2 ELSE r.parent_id END,
    code = CASE WHEN r.id = $1 THEN $3 ELSE r.code END,
    former_codes = CASE WHEN r.id = $1 AND $3 <> r.code
                        THEN array_append(r.former_codes, r.code) ELSE r.former_codes END,
    version = CASE WHEN r.id = $1 THEN $4 ELSE r.version END,
    updated_at = CASE WHEN r.id = $1 THEN $5 ELSE r.updated_at END
FROM moved
WHERE r.path >= moved.old_path AND r.path < left(moved.old_path, -1) || '0'
"""


class _Registered(msgspec.Struct):
    code: str
    name: str
    kind: str
    parent_id: UUID | None
    root_id: UUID


class _Renamed(msgspec.Struct):
    name: str


class _Moved(msgspec.Struct):
    new_parent_id: UUID
    new_code: str


class NodesProjection:
    name = "nodes"
    handles = frozenset({"NodeRegistered", "NodeRenamed", "NodeMoved", "NodeClosed"})
    tables: tuple[str, ...] = ("rm_nodes",)

    async def apply(self, conn: asyncpg.Connection, events: Sequence[StoredEvent]) -> None:
        for e in events:
            if e.type == "NodeRegistered":
                r = msgspec.json.decode(e.data, type=_Registered)
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
            elif e.type == "NodeRenamed":
                n = msgspec.json.decode(e.data, type=_Renamed)
                await conn.execute(RENAME_NODE, e.stream_id, n.name, e.version, e.occurred_at)
            elif e.type == "NodeMoved":
                m = msgspec.json.decode(e.data, type=_Moved)
                await conn.execute(
                    MOVE_NODE, e.stream_id, m.new_parent_id, m.new_code, e.version, e.occurred_at
                )
            elif e.type == "NodeClosed":
                await conn.execute(CLOSE_NODE, e.stream_id, e.version, e.occurred_at)
