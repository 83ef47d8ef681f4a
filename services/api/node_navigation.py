"""GET /v1/nodes?parent= and GET /v1/nodes/{code}/tree — walking the hierarchy (clients, the console).

Both read the directory (the write side's node table), not a read model: navigation must
agree with what commands accept at once, and the directory is what scopes are made of.
The application filters by the caller's subtree, and row-level security by its root.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from litestar import Controller, get
from litestar.params import FromPath, QueryParameter

from services.api.code_filters import visible_node
from services.api.deps import Caller, Ctx, read_scope
from services.api.guards import needs
from services.api.paging import Page, decode_cursor, invalid_cursor, page_of
from services.auth import Principal
from services.context import AppContext
from services.fields import NodeKindName
from services.problems import invalid_value
from services.roles import READERS

MAX_DEPTH = 4
#: a tree answer is built in memory: beyond this many nodes, page with ?parent= instead
#: (a province at depth 3 is ~30k nodes; a county at depth 4 with grids a few thousand).
MAX_TREE_NODES = 5000

KindName = Literal["province", "city", "county", "street", "community", "grid", "unit"]
Kind = Annotated[
    KindName | None, QueryParameter(required=False, description="Only children of this kind.")
]
Depth = Annotated[
    int, QueryParameter(ge=1, le=MAX_DEPTH, description="Levels below the node (1-4).")
]


class NodeItem(msgspec.Struct):
    code: str
    name: str
    kind: NodeKindName
    child_count: int
    closed: bool


class TreeNode(msgspec.Struct):
    code: str
    name: str
    kind: NodeKindName
    closed: bool
    children: list[TreeNode]


CHILDREN = """
SELECT n.code, n.name, n.kind, n.closed,
       (SELECT count(*) FROM nodes c WHERE c.parent_id = n.id) AS child_count
FROM nodes n
WHERE n.parent_id = $1 AND ($2::text IS NULL OR n.kind = $2) AND ($3::text IS NULL OR n.code COLLATE "C" > $3)
ORDER BY n.code COLLATE "C"
LIMIT $4
"""

CHILD_COUNT = "SELECT count(*) FROM nodes WHERE parent_id = $1"

SUBTREE_TO_DEPTH = """
SELECT n.id, n.parent_id, n.code, n.name, n.kind, n.closed
FROM nodes n
WHERE n.root_id = $1 AND n.path >= $2 AND n.path < $3 AND n.depth <= $4
ORDER BY n.code COLLATE "C"
LIMIT $5
"""

NODE_DEPTH = "SELECT depth FROM nodes WHERE id = $1"


Parent = Annotated[
    str | None,
    QueryParameter(required=False, max_length=40, description="The parent's code."),
]

LIST_SUMMARY = "A node's children (without parent: the caller's scope node)"
LIST_DESCRIPTION = (
    "Children of `parent` in code order, each with its own child count; `kind` keeps "
    "one kind. Without `parent` the one item is the caller's scope node, where a "
    "client starts walking. Roles: every reader of the scope."
)


async def list_children(
    ctx: AppContext,
    principal: Principal,
    parent: str | None,
    kind: str | None,
    limit: int,
    cursor: str | None,
) -> Page[NodeItem]:
    """``GET /v1/nodes`` (routed by NodeController, which owns that path; its guard lets
    every reader in)."""
    after = _code_cursor(cursor)
    async with read_scope(ctx, principal) as (conn, scope):
        if parent is None:
            if after is not None:
                return Page(items=[], next_cursor=None)
            own = await visible_node(conn, scope, scope.code, f"node {scope.code}")
            if kind is not None and own.kind != kind:
                return Page(items=[], next_cursor=None)
            count = await conn.fetchval(CHILD_COUNT, own.id)
            item = NodeItem(own.code, own.name, own.kind, int(count), own.closed)
            return Page(items=[item], next_cursor=None)
        node = await visible_node(conn, scope, parent, f"node {parent}")
        rows = await conn.fetch(CHILDREN, node.id, kind, after, limit + 1)
    items = [
        NodeItem(r["code"], r["name"], r["kind"], int(r["child_count"]), r["closed"]) for r in rows
    ]
    return page_of(items, limit, lambda i: [i.code])


class NodeNavigationController(Controller):
    path = "/v1/nodes"
    tags = ["nodes"]

    @get(
        "/{code:str}/tree",
        summary="A node and its descendants, nested to a depth (1-4)",
        description=(
            f"`{{code, name, kind, closed, children: [...]}}` down to `depth` levels below the "
            f"node, children in code order. At most {MAX_TREE_NODES} nodes: a larger subtree "
            "answers 422 (walk it with `GET /v1/nodes?parent=`). Roles: every reader of the "
            "scope."
        ),
        guards=[needs(READERS, "reading nodes")],
    )
    async def tree(
        self, code: FromPath[str], ctx: Ctx, principal: Caller, depth: Depth = 1
    ) -> TreeNode:
        async with read_scope(ctx, principal) as (conn, scope):
            node = await visible_node(conn, scope, code, f"node {code}")
            base = await conn.fetchval(NODE_DEPTH, node.id)
            lo, hi = node.bounds
            rows = await conn.fetch(
                SUBTREE_TO_DEPTH, node.root_id, lo, hi, base + depth, MAX_TREE_NODES + 1
            )
        if len(rows) > MAX_TREE_NODES:
            raise invalid_value(
                "depth",
                f"more than {MAX_TREE_NODES} nodes to that depth; "
                "ask for less depth or page with ?parent=",
            )
        built = {r["id"]: TreeNode(r["code"], r["name"], r["kind"], r["closed"], []) for r in rows}
        for r in rows:  # code order, so every children list comes out sorted
            if r["id"] != node.id and r["parent_id"] in built:
                built[r["parent_id"]].children.append(built[r["id"]])
        return built[node.id]


def _code_cursor(cursor: str | None) -> str | None:
    key = decode_cursor(cursor)
    if key is None:
        return None
    if len(key) != 1 or not isinstance(key[0], str) or not 0 < len(key[0]) <= 40:
        raise invalid_cursor()
    return str(key[0])
