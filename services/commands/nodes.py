"""Commands on the hierarchy: register, move, rename, close.

The directory (``nodes`` table) is updated in the same transaction as the Node events, so
scope checks and row-level security never lag behind the ledger.
"""

from __future__ import annotations

from uuid import UUID, uuid4

import asyncpg
import msgspec

from domain.errors import Conflict
from domain.hierarchy import check_child_code, check_kept_code, check_root_code
from domain.node import Node
from infra import directory
from infra.directory import DirectoryNode
from services.commands.lookup import node_in_scope
from services.commands.session import CommandSession
from services.problems import not_found


class NodeChanged(msgspec.Struct):
    id: UUID
    code: str
    version: int
    position: int


async def _load_node(session: CommandSession, node_id: UUID, what: str) -> Node:
    node = await session.load(Node, node_id)
    if node is None:
        raise not_found(what)
    return node


async def _root_code(session: CommandSession, node: DirectoryNode) -> str:
    root = await directory.find_by_id(session.conn, node.root_id)
    if root is None:  # a node's root is in the directory as long as the node is
        raise RuntimeError(f"root {node.root_id} of node {node.code} is not in the directory")
    return root.code


async def register_root(
    session: CommandSession, *, root_id: UUID, code: str, name: str, kind: str
) -> tuple[int, NodeChanged]:
    node = Node.register(
        node_id=root_id, code=code, name=name, kind=kind, parent=None, at=session.now
    )
    check_root_code(node.code, node.kind)
    if await directory.code_taken(session.conn, code):
        raise Conflict(f"node code {code} is already in use")
    await directory.insert(
        session.conn,
        node_id=node.id,
        root_id=node.id,
        code=node.code,
        name=node.name,
        kind=node.kind.value,
        parent=None,
    )
    result = await session.save(node, root_id=node.id)
    return 201, NodeChanged(node.id, node.code, result.version, result.position)


async def register_child(
    session: CommandSession, *, code: str, name: str, kind: str, parent_code: str
) -> tuple[int, NodeChanged]:
    parent_dir = await node_in_scope(session, parent_code, f"parent node {parent_code}")
    parent = await _load_node(session, parent_dir.id, f"parent node {parent_code}")
    node = Node.register(
        node_id=uuid4(), code=code, name=name, kind=kind, parent=parent, at=session.now
    )
    # The code space is shared by every tenant: a code outside the caller's own part of it is
    # refused (422) before it is looked up, so a 409 can only name a code of its own tenant.
    check_child_code(
        node.code,
        node.kind,
        parent_kind=parent.kind,
        parent_code=parent.code,
        root_code=await _root_code(session, parent_dir),
    )
    if await directory.code_taken(session.conn, code):
        raise Conflict(f"node code {code} is already in use")
    try:
        await directory.insert(
            session.conn,
            node_id=node.id,
            root_id=node.root_id,
            code=node.code,
            name=node.name,
            kind=node.kind.value,
            parent=parent_dir,
        )
    except asyncpg.UniqueViolationError:
        raise Conflict(f"node code {code} is already in use") from None
    result = await session.save(node)
    return 201, NodeChanged(node.id, node.code, result.version, result.position)


async def move(
    session: CommandSession, *, code: str, new_parent_code: str, new_code: str | None, reason: str
) -> tuple[int, NodeChanged]:
    node_dir = await node_in_scope(session, code, f"node {code}")
    target_dir = await node_in_scope(session, new_parent_code, f"new parent node {new_parent_code}")
    node = await _load_node(session, node_dir.id, f"node {code}")
    session.check_if_match(node)
    target = await _load_node(session, target_dir.id, f"new parent node {new_parent_code}")
    root_code = await _root_code(session, node_dir)
    if new_code:
        check_child_code(
            new_code,
            node.kind,
            parent_kind=target.kind,
            parent_code=target.code,
            root_code=root_code,
            field="new_code",
        )
    else:
        check_kept_code(node.code, node.kind, root_code=root_code, field="new_code")
    if new_code and new_code != node.code and await directory.code_taken(session.conn, new_code):
        raise Conflict(f"node code {new_code} is already in use")
    node.move(
        new_parent=target,
        new_code=new_code,
        reason=reason,
        is_ancestor_of_new_parent=node_dir.contains(target_dir),
        at=session.now,
    )
    result = await session.save(node)
    await directory.move(session.conn, node_dir, target_dir, node.code, result.version, session.now)
    session.ctx.scopes.clear()  # scopes under the moved node have new paths
    return 200, NodeChanged(node.id, node.code, result.version, result.position)


async def rename(session: CommandSession, *, code: str, name: str) -> tuple[int, NodeChanged]:
    node_dir = await node_in_scope(session, code, f"node {code}")
    node = await _load_node(session, node_dir.id, f"node {code}")
    session.check_if_match(node)
    node.rename(name, session.now)
    if not node.pending_events:
        raise Conflict("the node already has that name")
    result = await session.save(node)
    await directory.rename(session.conn, node.id, node.name, result.version)
    return 200, NodeChanged(node.id, node.code, result.version, result.position)


async def close(session: CommandSession, *, code: str, reason: str) -> tuple[int, NodeChanged]:
    node_dir = await node_in_scope(session, code, f"node {code}")
    if session.scope is not None and node_dir.id == session.scope.node_id:
        raise Conflict("a principal cannot close its own scope node")
    node = await _load_node(session, node_dir.id, f"node {code}")
    session.check_if_match(node)
    node.close(reason, session.now)
    result = await session.save(node, closes_node=True)
    await directory.close(session.conn, node.id, result.version)
    session.ctx.scopes.clear()  # a closed scope's tokens stop working
    return 200, NodeChanged(node.id, node.code, result.version, result.position)
