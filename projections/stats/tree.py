"""The tree as "stats" replays it (``rm_stats_nodes``, ``rm_stats_node_parents``).

Ancestors come from here, never from the live directory, so a replay sees the tree as it
stood; every node's parent is kept per day (children as of a day). Node ids travel as
strings inside a batch (path segments, JSON parameters, dict keys whose hashes are cached).
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

from projections.daily_counters import to_json
from projections.stats.counters import COUNTERS

NodeKey = tuple[str, str]  # (root id, node id)

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
SELECT {", ".join(COUNTERS)} FROM rm_stats_daily
WHERE root_id = $1 AND node_id = $2 ORDER BY day DESC LIMIT 1
"""

#: ancestors (root first, the node last) of a path string; paths never change meaning.
_PATH_CACHE: dict[str, tuple[str, ...]] = {}
_PATH_CACHE_MAX = 200_000


def path_ids(path: str) -> tuple[str, ...]:
    found = _PATH_CACHE.get(path)
    if found is None:
        if len(_PATH_CACHE) >= _PATH_CACHE_MAX:
            _PATH_CACHE.clear()
        found = _PATH_CACHE[path] = tuple(path.strip("/").split("/"))
    return found


async def load_nodes(
    conn: asyncpg.Connection,
    keys: Iterable[NodeKey],
    paths: dict[NodeKey, str],
    versions: dict[NodeKey, int],
) -> None:
    """Fetch the stored path and version of the nodes not in ``paths`` yet (one query)."""
    nodes = [{"root_id": r, "node_id": n} for r, n in keys if (r, n) not in paths]
    if nodes:
        for r in await conn.fetch(LOAD_NODES, to_json(nodes)):
            key = (str(r["root_id"]), str(r["node_id"]))
            paths[key] = r["path"]
            versions[key] = r["version"]
