"""SQL of the tenant directory (the ``nodes`` table), kept in step with Node events.

Every function runs inside the caller's transaction, usually a scoped one: row-level
security limits it to the caller's root tenant.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from domain.refs import NodeRef
from infra.paths import subtree_bounds

# ``closed`` is the node's own flag or an ancestor's: a closed node closes its subtree.
_CLOSED = "EXISTS (SELECT 1 FROM nodes a WHERE a.id = ANY (civic_path_ids(n.path)) AND a.closed)"
_COLUMNS = f"n.id, n.root_id, n.code, n.name, n.kind, n.parent_id, n.path, {_CLOSED}, n.version"

FIND_BY_CODE = f"""
SELECT {_COLUMNS}
FROM nodes n
WHERE n.code = $1
UNION ALL
SELECT {_COLUMNS}
FROM node_aliases al JOIN nodes n ON n.id = al.node_id
WHERE al.code = $1
LIMIT 1
"""

FIND_BY_ID = f"SELECT {_COLUMNS} FROM nodes n WHERE n.id = $1"

#: SQLSTATE of ``civic_refuse_closed`` (migration 0020).
NODE_CLOSED_SQLSTATE = "CV423"


INSERT = """
INSERT INTO nodes (id, root_id, code, name, kind, parent_id, path, depth, version)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1)
"""

RENAME = "UPDATE nodes SET name = $2, version = $3 WHERE id = $1"
CLOSE = "UPDATE nodes SET closed = true, version = $2 WHERE id = $1"

MOVE_SUBTREE = """
UPDATE nodes
SET path = $2 || substr(path, length($1) + 1),
    depth = depth + $3
WHERE path >= $1 AND path < left($1, -1) || '0'
"""

RECODE = "UPDATE nodes SET parent_id = $2, code = $3, version = $4 WHERE id = $1"

ADD_ALIAS = """
INSERT INTO node_aliases (code, node_id, root_id, retired_at) VALUES ($1, $2, $3, $4)
"""


@dataclass(frozen=True)
class DirectoryNode:
    id: UUID
    root_id: UUID
    code: str
    name: str
    kind: str
    parent_id: UUID | None
    path: str
    #: the node or one of its ancestors is closed
    closed: bool
    version: int

    @property
    def depth(self) -> int:
        return self.path.count("/") - 1

    def contains(self, other: DirectoryNode) -> bool:
        return other.path.startswith(self.path)

    @property
    def bounds(self) -> tuple[str, str]:
        """The subtree's path range (``infra.paths``)."""
        return subtree_bounds(self.path)

    def ref(self) -> NodeRef:
        """What an aggregate is told about this node when a command names it."""
        return NodeRef(
            id=self.id,
            code=self.code,
            kind=self.kind,
            root_id=self.root_id,
            parent_id=self.parent_id,
            closed=self.closed,
        )


def _node(row: asyncpg.Record | None) -> DirectoryNode | None:
    return DirectoryNode(*row) if row is not None else None


async def find_by_code(conn: asyncpg.Connection, code: str) -> DirectoryNode | None:
    """Resolve a current or former code."""
    return _node(await conn.fetchrow(FIND_BY_CODE, code))


async def find_by_id(conn: asyncpg.Connection, node_id: UUID) -> DirectoryNode | None:
    return _node(await conn.fetchrow(FIND_BY_ID, node_id))


SUBTREE_NODES = """
SELECT n.id, n.code FROM nodes n
WHERE n.root_id = $1 AND n.path >= $2 AND n.path < $3
ORDER BY n.path
"""


async def subtree_nodes(conn: asyncpg.Connection, node: DirectoryNode) -> list[asyncpg.Record]:
    """(id, code) of every node of ``node``'s subtree, in path order."""
    return await conn.fetch(SUBTREE_NODES, node.root_id, *node.bounds)


async def code_taken(conn: asyncpg.Connection, code: str) -> bool:
    """Across every tenant: codes are statutory, so they are unique in the deployment."""
    taken: bool = await conn.fetchval("SELECT civic_code_taken($1)", code)
    return taken


async def insert(
    conn: asyncpg.Connection,
    *,
    node_id: UUID,
    root_id: UUID,
    code: str,
    name: str,
    kind: str,
    parent: DirectoryNode | None,
) -> DirectoryNode:
    path = (parent.path if parent else "/") + f"{node_id}/"
    depth = path.count("/") - 1
    await conn.execute(
        INSERT, node_id, root_id, code, name, kind, parent.id if parent else None, path, depth
    )
    return DirectoryNode(
        node_id, root_id, code, name, kind, parent.id if parent else None, path, False, 1
    )


async def rename(conn: asyncpg.Connection, node_id: UUID, name: str, version: int) -> None:
    await conn.execute(RENAME, node_id, name, version)


async def close(conn: asyncpg.Connection, node_id: UUID, version: int) -> None:
    await conn.execute(CLOSE, node_id, version)


async def move(
    conn: asyncpg.Connection,
    node: DirectoryNode,
    new_parent: DirectoryNode,
    new_code: str,
    version: int,
    at: datetime,
) -> None:
    new_path = new_parent.path + f"{node.id}/"
    await conn.execute(MOVE_SUBTREE, node.path, new_path, new_parent.depth + 1 - node.depth)
    await conn.execute(RECODE, node.id, new_parent.id, new_code, version)
    if new_code != node.code:
        await conn.execute(ADD_ALIAS, node.code, node.id, node.root_id, at)


def refuse_closed_statement(node_ids: Iterable[UUID], *, except_id: UUID | None = None) -> str:
    """A statement that fails with ``NODE_CLOSED_SQLSTATE`` when one of ``node_ids`` lies in
    a closed subtree (``except_id`` may itself be closed). For ``defer_until_commit``: built
    from UUIDs' hex digits only."""
    ids = ",".join(f"'{node_id.hex}'" for node_id in node_ids)
    excepted = f"'{except_id.hex}'::uuid" if except_id is not None else "NULL"
    return f"SELECT civic_refuse_closed(ARRAY[{ids}]::uuid[], {excepted})"


@dataclass(frozen=True)
class PartyWrite:
    """A change of who is party to a stream, as ``add_party`` (``replace=False``) or
    ``set_party`` (``replace=True``; ``node_id`` None ends the role) make it; ``before``: made
    before the command's append (whose row-level check may need it)."""

    stream_id: UUID
    role: str
    node_id: UUID | None
    replace: bool
    before: bool


async def add_party(
    conn: asyncpg.Connection, root_id: UUID, node_id: UUID, stream_id: UUID, role: str
) -> None:
    await conn.execute(
        "INSERT INTO stream_parties (root_id, node_id, stream_id, role) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT DO NOTHING",
        root_id,
        node_id,
        stream_id,
        role,
    )


REPLACE_PARTY = """
WITH ended AS (
    DELETE FROM stream_parties
    WHERE root_id = $1 AND stream_id = $3 AND role = $4 AND node_id <> $2
)
INSERT INTO stream_parties (root_id, node_id, stream_id, role) VALUES ($1, $2, $3, $4)
ON CONFLICT DO NOTHING
"""

END_PARTY = "DELETE FROM stream_parties WHERE root_id = $1 AND stream_id = $2 AND role = $3"


async def set_party(
    conn: asyncpg.Connection, root_id: UUID, stream_id: UUID, role: str, node_id: UUID | None
) -> None:
    """Make ``node_id`` the stream's one party in ``role`` (``None``: no party any more).

    For roles held by one node at a time (an issue's assignee, its current whistle target):
    a unit sees the stream only while it holds the role. Call it after the append, whose
    row-level check may still need the party that is being ended.
    """
    if node_id is None:
        await conn.execute(END_PARTY, root_id, stream_id, role)
    else:
        await conn.execute(REPLACE_PARTY, root_id, node_id, stream_id, role)
