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
from services.commands.session import CommandSession, Saved
from services.fields import NodeCode, NodeKindName, Text, Title
from services.problems import not_found

# -- the commands (request bodies, passed through as they were decoded) ----------------------


class NodeCreate(msgspec.Struct, forbid_unknown_fields=True):
    code: NodeCode
    name: Title
    kind: NodeKindName
    parent_code: NodeCode | None = None


class NodeMove(msgspec.Struct, forbid_unknown_fields=True):
    new_parent_code: NodeCode
    reason: Text
    new_code: NodeCode | None = None


class NodeRename(msgspec.Struct, forbid_unknown_fields=True):
    name: Title


class NodeClose(msgspec.Struct, forbid_unknown_fields=True):
    reason: Text


# -- the answer ------------------------------------------------------------------------------


class NodeChanged(msgspec.Struct):
    id: UUID
    code: str
    version: int
    position: int

    @classmethod
    def of(cls, saved: Saved[Node]) -> NodeChanged:
        return cls(saved.aggregate.id, saved.aggregate.code, saved.version, saved.position)


async def _load_node(session: CommandSession, node_id: UUID, what: str) -> Node:
    node = await session.load(Node, node_id)
    if node is None:
        raise not_found(what)
    return node


async def _root_code(session: CommandSession, node: DirectoryNode) -> str:
    root = await session.node(node.root_id)
    if root is None:  # a node's root is in the directory as long as the node is
        raise RuntimeError(f"root {node.root_id} of node {node.code} is not in the directory")
    return root.code


async def _enter(session: CommandSession, node: Node, parent: DirectoryNode | None) -> None:
    """The new node joins the directory under ``parent``, its code unused in any tenant (409);
    a concurrent registration of the same code fails the insert (409 too)."""
    taken = Conflict(f"node code {node.code} is already in use")
    if await directory.code_taken(session.conn, node.code):
        raise taken
    try:
        await directory.insert(
            session.conn,
            node_id=node.id,
            root_id=node.root_id,
            code=node.code,
            name=node.name,
            kind=node.kind.value,
            parent=parent,
        )
    except asyncpg.UniqueViolationError:
        raise taken from None


# -- commands --------------------------------------------------------------------------------


async def register_root(
    session: CommandSession, root_id: UUID, command: NodeCreate
) -> tuple[int, NodeChanged]:
    node = Node.register(
        node_id=root_id,
        code=command.code,
        name=command.name,
        kind=command.kind,
        parent=None,
        at=session.now,
    )
    check_root_code(node.code, node.kind)
    await _enter(session, node, None)
    return 201, NodeChanged.of(await session.create(node, root_id=node.id))


async def register_child(session: CommandSession, command: NodeCreate) -> tuple[int, NodeChanged]:
    if command.parent_code is None:
        raise ValueError("a node without a parent is a root tenant: register_root")
    code, parent_code = command.code, command.parent_code
    parent_dir = await node_in_scope(session, parent_code, f"parent node {parent_code}")
    parent = await _load_node(session, parent_dir.id, f"parent node {parent_code}")
    node = Node.register(
        node_id=uuid4(),
        code=code,
        name=command.name,
        kind=command.kind,
        parent=parent,
        at=session.now,
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
    await _enter(session, node, parent_dir)
    return 201, NodeChanged.of(await session.create(node))


async def move(session: CommandSession, code: str, command: NodeMove) -> tuple[int, NodeChanged]:
    new_parent_code, new_code = command.new_parent_code, command.new_code
    node_dir = await node_in_scope(session, code, f"node {code}")
    target_dir = await node_in_scope(session, new_parent_code, f"new parent node {new_parent_code}")
    # What the decision needs besides the node itself, read before it is loaded (the act is
    # synchronous); the checks on them are made in their order, after If-Match.
    target = await _load_node(session, target_dir.id, f"new parent node {new_parent_code}")
    root_code = await _root_code(session, node_dir)
    taken = bool(
        new_code
        and new_code != node_dir.code
        and await directory.code_taken(session.conn, new_code)
    )

    def act(node: Node) -> None:
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
        if taken:
            raise Conflict(f"node code {new_code} is already in use")
        node.move(
            new_parent=target,
            new_code=new_code,
            reason=command.reason,
            is_ancestor_of_new_parent=node_dir.contains(target_dir),
            at=session.now,
        )

    saved = await session.update(Node, node_dir.id, act)
    await directory.move(
        session.conn, node_dir, target_dir, saved.aggregate.code, saved.version, session.now
    )
    session.ctx.scopes.clear()  # scopes under the moved node have new paths
    return 200, NodeChanged.of(saved)


async def rename(
    session: CommandSession, code: str, command: NodeRename
) -> tuple[int, NodeChanged]:
    node_dir = await node_in_scope(session, code, f"node {code}")

    def act(node: Node) -> None:
        node.rename(command.name, session.now)
        if not node.pending_events:
            raise Conflict("the node already has that name")

    saved = await session.update(Node, node_dir.id, act)
    await directory.rename(session.conn, saved.aggregate.id, saved.aggregate.name, saved.version)
    return 200, NodeChanged.of(saved)


async def close(session: CommandSession, code: str, command: NodeClose) -> tuple[int, NodeChanged]:
    node_dir = await node_in_scope(session, code, f"node {code}")
    if session.scope is not None and node_dir.id == session.scope.node_id:
        raise Conflict("a principal cannot close its own scope node")
    saved = await session.update(
        Node,
        node_dir.id,
        lambda n: n.close(command.reason, session.now),
        closes_node=True,
    )
    await directory.close(session.conn, saved.aggregate.id, saved.version)
    session.ctx.scopes.clear()  # a closed scope's tokens stop working
    return 200, NodeChanged.of(saved)
