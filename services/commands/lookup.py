"""Resolving node codes inside a command: in the caller's subtree, or in its root tenant."""

from __future__ import annotations

from infra import directory
from infra.directory import DirectoryNode
from services.commands.session import CommandSession
from services.problems import not_found


async def node_in_scope(session: CommandSession, code: str, what: str) -> DirectoryNode:
    """A node of the caller's subtree; anything else is 404 (existence is not revealed)."""
    node = await directory.find_by_code(session.conn, code)
    if node is None or session.scope is None or not node.path.startswith(session.scope.path):
        raise not_found(what)
    return node


async def node_in_root(session: CommandSession, code: str, what: str) -> DirectoryNode:
    """A node anywhere in the caller's root tenant (e.g. the unit an issue is assigned to)."""
    node = await directory.find_by_code(session.conn, code)
    if node is None:
        raise not_found(what)
    return node
