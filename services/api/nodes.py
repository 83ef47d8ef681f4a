"""/v1/nodes — the tenant hierarchy."""

from __future__ import annotations

from functools import partial
from typing import Any
from uuid import UUID, uuid4

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, JSONBody

from domain.clock import instant
from services.api.code_filters import visible_node
from services.api.deps import (
    Caller,
    Command,
    Ctx,
    MinPosition,
    command_request,
    command_response,
    read_scope,
)
from services.api.guards import needs, require
from services.api.node_navigation import (
    LIST_DESCRIPTION,
    LIST_SUMMARY,
    Kind,
    NodeItem,
    Parent,
    list_children,
)
from services.api.paging import Cursor, Limit, Page
from services.api.responses import ETAG, documented
from services.commands import nodes as node_commands
from services.commands.nodes import NodeClose, NodeCreate, NodeMove, NodeRename
from services.commands.session import run_command
from services.fields import NodeKindName
from services.problems import ProblemError, not_caught_up
from services.roles import ADMINS, READERS, WRITERS


class NodeView(msgspec.Struct):
    id: UUID
    code: str
    name: str
    kind: NodeKindName
    parent_code: str | None
    path: list[str]
    children: list[str]
    former_codes: list[str]
    closed: bool
    version: int
    registered_at: str
    updated_at: str
    requested_code: str | None = None


READ_NODE = """
SELECT n.id, n.code, n.name, n.kind, n.path, n.former_codes, n.closed, n.version,
       n.registered_at, n.updated_at,
       (SELECT p.code FROM rm_nodes p WHERE p.id = n.parent_id) AS parent_code,
       ARRAY(SELECT a.code
             FROM unnest(string_to_array(trim(both '/' from n.path), '/')) WITH ORDINALITY AS s(id, i)
             JOIN rm_nodes a ON a.id = s.id::uuid
             ORDER BY s.i) AS path_codes,
       ARRAY(SELECT c.code FROM rm_nodes c WHERE c.parent_id = n.id ORDER BY c.code) AS children
FROM rm_nodes n
WHERE n.id = $1
"""


CHANGED = documented(200, node_commands.NodeChanged, "The node's new version and position")


class NodeController(Controller):
    path = "/v1/nodes"
    tags = ["nodes"]

    @post(
        "/",
        status_code=201,
        summary="Register a node (a root tenant when parent_code is null)",
        responses=documented(201, node_commands.NodeChanged, "The registered node"),
    )
    async def create(
        self,
        data: JSONBody[NodeCreate],
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
        command: Command,
    ) -> Response[bytes]:
        # The role depends on the body (a root tenant, or a node under a parent): no guard.
        if data.parent_code is not None:
            require(principal, WRITERS, "registering a node")
            return await command.run(node_commands.register_child, data)
        # Bootstrapping a tenant: an admin whose token is scoped to the root to create.
        require(principal, ADMINS, "creating a root tenant")
        if principal.scope != data.code:
            raise ProblemError(
                403,
                "Forbidden",
                "a root tenant is created by an admin whose token scope is that root's code",
            )
        root_id = uuid4()
        outcome = await run_command(
            ctx,
            principal,
            await command_request(request),
            partial(node_commands.register_root, root_id=root_id, command=data),
            bootstrap_root=root_id,
        )
        return command_response(outcome, request)

    @get(
        "/",
        summary=LIST_SUMMARY,
        description=LIST_DESCRIPTION,
        guards=[needs(READERS, "reading nodes")],
    )
    async def children(
        self,
        ctx: Ctx,
        principal: Caller,
        parent: Parent = None,
        kind: Kind = None,
        limit: Limit = 100,
        cursor: Cursor = None,
    ) -> Page[NodeItem]:
        return await list_children(ctx, principal, parent, kind, limit, cursor)

    @get(
        "/{code:str}",
        summary="Read a node (former codes resolve to the node's current code)",
        responses=documented(200, NodeView, "The node (ETag: its version)"),
        response_headers=ETAG,
        guards=[needs(READERS, "reading nodes")],
    )
    async def read(
        self, code: FromPath[str], ctx: Ctx, principal: Caller, min_position: MinPosition = None
    ) -> Response[bytes]:
        async with read_scope(
            ctx, principal, min_position=min_position, projections=("nodes",)
        ) as (conn, scope):
            found = await visible_node(conn, scope, code, f"node {code}")
            row = await conn.fetchrow(READ_NODE, found.id)
        if row is None:
            # Registered, but the read model has not caught up yet.
            raise not_caught_up("node")
        view = NodeView(
            id=row["id"],
            code=row["code"],
            name=row["name"],
            kind=row["kind"],
            parent_code=row["parent_code"],
            path=list(row["path_codes"]),
            children=list(row["children"]),
            former_codes=list(row["former_codes"]),
            closed=row["closed"],
            version=row["version"],
            registered_at=instant(row["registered_at"]),
            updated_at=instant(row["updated_at"]),
            requested_code=code if code != row["code"] else None,
        )
        return Response(
            content=msgspec.json.encode(view),
            media_type="application/json",
            headers={"ETag": f'"{row["version"]}"'},
        )

    @post(
        "/{code:str}/move",
        status_code=200,
        summary="Re-parent a node, optionally reissuing its code",
        responses=CHANGED,
        guards=[needs(WRITERS, "moving a node")],
    )
    async def move(
        self, code: FromPath[str], data: JSONBody[NodeMove], command: Command
    ) -> Response[bytes]:
        return await command.run(node_commands.move, code, data)

    @post(
        "/{code:str}/rename",
        status_code=200,
        summary="Rename a node",
        responses=CHANGED,
        guards=[needs(WRITERS, "renaming a node")],
    )
    async def rename(
        self, code: FromPath[str], data: JSONBody[NodeRename], command: Command
    ) -> Response[bytes]:
        return await command.run(node_commands.rename, code, data)

    @post(
        "/{code:str}/close",
        status_code=200,
        summary="Close a node (its history stays)",
        responses=CHANGED,
        guards=[needs(ADMINS, "closing a node")],
    )
    async def close(
        self, code: FromPath[str], data: JSONBody[NodeClose], command: Command
    ) -> Response[bytes]:
        return await command.run(node_commands.close, code, data)
