"""The per-root transparency tree in PostgreSQL: appending (the builder), state and proofs.

The tree math is ``civic_verify.tlog`` (the same code the offline verifier runs); this
module stores and reads it (migration 0034). The builder appends committed events in
position order outside the append transaction; reads run in the caller's scoped
transaction (row-level security: the caller's root).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from civic_verify.hashing import Hash, by_name
from civic_verify.tlog import (
    Frontier,
    NodeId,
    consistency_ranges,
    empty_root,
    inclusion_ranges,
    range_nodes,
    resolve,
)
from infra.event_store import StoredEvent

TREES_FOR_UPDATE = """
SELECT root_id, size, frontier, hash_algorithm FROM audit_trees
WHERE root_id = ANY($1::uuid[]) FOR UPDATE
"""

INSERT_LEAVES = """
INSERT INTO audit_tree_leaves (root_id, idx, position, hash)
SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bytea[])
"""

INSERT_NODES = """
INSERT INTO audit_tree_nodes (root_id, level, idx, hash)
SELECT * FROM unnest($1::uuid[], $2::smallint[], $3::bigint[], $4::bytea[])
"""

UPSERT_TREE = """
INSERT INTO audit_trees (root_id, size, root_hash, frontier, hash_algorithm)
VALUES ($1, $2, $3, $4::bytea[], $5)
ON CONFLICT (root_id) DO UPDATE
SET size = excluded.size, root_hash = excluded.root_hash, frontier = excluded.frontier,
    updated_at = now()
"""

TREE_STATE = "SELECT size, root_hash, hash_algorithm FROM audit_trees WHERE root_id = $1"

# Stored subtrees by (level, index); level 0 are the leaves.
TREE_NODES = """
SELECT q.level, q.idx, coalesce(l.hash, n.hash) AS hash
FROM unnest($2::smallint[], $3::bigint[]) AS q(level, idx)
LEFT JOIN audit_tree_leaves l ON q.level = 0 AND l.root_id = $1 AND l.idx = q.idx
LEFT JOIN audit_tree_nodes n ON q.level > 0 AND n.root_id = $1 AND n.level = q.level
     AND n.idx = q.idx
"""

LEAF_OF_POSITION = "SELECT idx, hash FROM audit_tree_leaves WHERE position = $1 AND root_id = $2"


class TreeUnavailable(Exception):
    """The tree does not hold what a proof needs (not built that far, or missing rows)."""


@dataclass(frozen=True)
class TreeState:
    size: int
    root: bytes
    hash_algorithm: str


async def append_events(
    conn: asyncpg.Connection, events: Sequence[StoredEvent], hash_algorithm: str
) -> None:
    """Append ``events`` (settled, in position order) to their roots' trees.

    A root's first event fixes its tree's hash algorithm (the deployment's profile then);
    later appends keep it, so a tree never mixes algorithms.
    """
    if not events:
        return
    roots = list(dict.fromkeys(e.root_id for e in events))
    frontiers: dict[UUID, Frontier] = {}
    algorithms: dict[UUID, str] = {}
    for r in await conn.fetch(TREES_FOR_UPDATE, roots):
        frontiers[r["root_id"]] = Frontier(
            by_name(r["hash_algorithm"]), r["size"], [bytes(x) for x in r["frontier"]]
        )
        algorithms[r["root_id"]] = r["hash_algorithm"]
    default: Hash = by_name(hash_algorithm)
    leaves: tuple[list[UUID], list[int], list[int], list[bytes]] = ([], [], [], [])
    nodes: tuple[list[UUID], list[int], list[int], list[bytes]] = ([], [], [], [])
    for e in events:
        frontier = frontiers.get(e.root_id)
        if frontier is None:
            frontier = frontiers[e.root_id] = Frontier(default)
            algorithms[e.root_id] = hash_algorithm
        made = frontier.push_leaf(e.hash)
        _, index, leaf = made[0]
        leaves[0].append(e.root_id)
        leaves[1].append(index)
        leaves[2].append(e.position)
        leaves[3].append(leaf)
        for level, idx, value in made[1:]:
            nodes[0].append(e.root_id)
            nodes[1].append(level)
            nodes[2].append(idx)
            nodes[3].append(value)
    await conn.execute(INSERT_LEAVES, *leaves)
    if nodes[0]:
        await conn.execute(INSERT_NODES, *nodes)
    # a batch touches few roots (usually one): a statement per root
    await conn.executemany(
        UPSERT_TREE,
        [
            (r, frontiers[r].size, frontiers[r].root(), frontiers[r].hashes(), algorithms[r])
            for r in roots
        ],
    )


async def tree_state(conn: asyncpg.Connection, root_id: UUID, default_algorithm: str) -> TreeState:
    """The root's tree as built so far (an empty tree before its first event is in)."""
    r = await conn.fetchrow(TREE_STATE, root_id)
    if r is None:
        return TreeState(0, empty_root(by_name(default_algorithm)), default_algorithm)
    return TreeState(r["size"], bytes(r["root_hash"]), r["hash_algorithm"])


async def tree_algorithm(conn: asyncpg.Connection, root_id: UUID) -> str | None:
    value: str | None = await conn.fetchval(
        "SELECT hash_algorithm FROM audit_trees WHERE root_id = $1", root_id
    )
    return value


async def fetch_nodes(
    conn: asyncpg.Connection, root_id: UUID, wanted: Sequence[NodeId]
) -> dict[NodeId, bytes]:
    if not wanted:
        return {}
    rows = await conn.fetch(
        TREE_NODES, root_id, [lvl for lvl, _ in wanted], [idx for _, idx in wanted]
    )
    found = {(r["level"], r["idx"]): bytes(r["hash"]) for r in rows if r["hash"] is not None}
    if len(found) != len(set(wanted)):
        raise TreeUnavailable("the tree does not hold every subtree the proof needs")
    return found


async def resolve_ranges(
    conn: asyncpg.Connection, root_id: UUID, h: Hash, ranges: Sequence[tuple[int, int]]
) -> list[bytes]:
    """MTH of each range, from O(log n) stored subtrees fetched in one statement."""
    nodes = await fetch_nodes(conn, root_id, range_nodes(ranges))
    return resolve(h, ranges, nodes.__getitem__)


async def root_at(conn: asyncpg.Connection, root_id: UUID, h: Hash, size: int) -> bytes:
    """The tree's root as it was at ``size`` leaves (any earlier size)."""
    if size == 0:
        return empty_root(h)
    return (await resolve_ranges(conn, root_id, h, [(0, size)]))[0]


async def consistency_proof(
    conn: asyncpg.Connection, root_id: UUID, h: Hash, first: int, second: int
) -> list[bytes]:
    return await resolve_ranges(conn, root_id, h, consistency_ranges(first, second))


async def leaf_of(
    conn: asyncpg.Connection, root_id: UUID, position: int
) -> tuple[int, bytes] | None:
    r = await conn.fetchrow(LEAF_OF_POSITION, position, root_id)
    return None if r is None else (r["idx"], bytes(r["hash"]))


async def inclusion_proof(
    conn: asyncpg.Connection, root_id: UUID, h: Hash, index: int, size: int
) -> list[bytes]:
    return await resolve_ranges(conn, root_id, h, inclusion_ranges(index, size))
