"""Resolving node codes inside a command: in the caller's subtree, or in its root tenant.

A command names nodes to act on or record against; a node that is closed, or lies under a
closed node, takes no commands (409 ``node-closed``), which is answered here before any
decision is made. (The append itself is checked too: ``CommandSession.save``.)
"""

from __future__ import annotations

from infra import directory
from infra.directory import DirectoryNode
from services.commands.session import CommandSession, node_closed
from services.problems import not_found


async def node_in_scope(session: CommandSession, code: str, what: str) -> DirectoryNode:
    """A node of the caller's subtree; anything else is 404 (existence is not revealed)."""
    node = await directory.find_by_code(session.conn, code)
    if node is None or not session.in_scope(node):
        raise not_found(what)
    return _open(node, what)


async def node_in_root(session: CommandSession, code: str, what: str) -> DirectoryNode:
    """A node anywhere in the caller's root tenant (e.g. the unit an issue is assigned to)."""
    node = await directory.find_by_code(session.conn, code)
    if node is None:
        raise not_found(what)
    return _open(node, what)


def _open(node: DirectoryNode, what: str) -> DirectoryNode:
    if node.closed:
        raise node_closed(what)
    return node
