"""Resolving a node code a read is filtered by, without telling which codes exist.

A code the caller may not see answers exactly as a code that does not exist: 404 with the
same problem document. Visible are the nodes of the caller's subtree and, for filters by a
node a record names (the unit an issue is assigned to, a finding's responsible unit), the
nodes named by a record the caller can read — which the unfiltered list shows anyway.
"""

from __future__ import annotations

from typing import Annotated

import asyncpg
from litestar.params import QueryParameter

from infra import directory
from infra.database import Scope
from infra.directory import DirectoryNode
from services.problems import not_found

#: a list's ``?node=``: the subtree it reads (``subtree_path``).
SubtreeCode = Annotated[
    str | None,
    QueryParameter(
        required=False,
        max_length=40,
        description="a node code of your subtree (default: your scope node)",
    ),
]


async def visible_node(
    conn: asyncpg.Connection,
    scope: Scope,
    code: str,
    what: str,
    *,
    named_by: str | None = None,
) -> DirectoryNode:
    """The node ``code`` names, when the caller may see it; else 404 as for an unknown code.

    ``named_by``: an ``EXISTS`` query (``$1`` = the node's id) true when a record the caller
    can read names that node; row-level security limits it to what the caller sees.
    """
    found = await directory.find_by_code(conn, code)
    if found is not None and (
        scope.contains_path(found.path)
        or (named_by is not None and await conn.fetchval(named_by, found.id))
    ):
        return found
    raise not_found(what)


async def subtree_node(conn: asyncpg.Connection, scope: Scope, code: str | None) -> DirectoryNode:
    """Node ``code`` of the caller's subtree, or the scope's own node when no code is given;
    404 (as for an unknown code) outside it."""
    found = await directory.find_by_code(conn, code if code is not None else scope.code)
    if found is None or not scope.contains_path(found.path):
        raise not_found(f"node {code}")
    return found


async def subtree_path(conn: asyncpg.Connection, scope: Scope, code: str | None) -> str:
    """The path of the subtree a list reads: node ``code`` of the caller's subtree, or the
    caller's scope when no code is given; 404 (as for an unknown code) outside it."""
    if code is None:
        return scope.path
    return (await subtree_node(conn, scope, code)).path


#: the ``?node=`` query parameter of the subtree lists (resolved by ``subtree_path``)
NodeFilter = Annotated[
    str | None,
    QueryParameter(required=False, max_length=40, description="a subtree (default: your scope)"),
]
