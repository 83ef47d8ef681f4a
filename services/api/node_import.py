"""POST /v1/nodes:import — the county's tree from the statistics bureau's division-code CSV.

``dry_run=true`` only reports what would happen (renames, new codes, proposed moves, errors)
and writes nothing; ``dry_run=false`` applies it in one command transaction (each row in a
savepoint: a refused row is reported with its line and the rest still imports). The rules
are ``services/node_import.py``'s. Roles: admin whose scope contains the root.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import QueryParameter

from infra import directory
from services import node_import
from services.api.code_filters import visible_node
from services.api.deps import Caller, Ctx, command_request, command_response, read_scope
from services.api.guards import needs
from services.auth import Principal
from services.commands.session import CommandSession, Decide, run_command
from services.context import AppContext
from services.problems import ProblemError, not_found
from services.roles import ADMINS

MEDIA_TYPES = ("text/csv", "text/plain", "application/csv", "application/octet-stream")


class LineErrorView(msgspec.Struct):
    #: the file's line (the header is line 1)
    line: int
    message: str


class RenameView(msgspec.Struct):
    line: int
    code: str
    old_name: str
    new_name: str


class MoveView(msgspec.Struct):
    line: int
    #: the node's current code
    code: str
    #: its code after the move (the same when only the parent changes)
    new_code: str
    name: str
    from_parent: str | None
    to_parent: str | None


class ImportReport(msgspec.Struct):
    root: str
    dry_run: bool
    created: int
    unchanged: int
    renamed: int
    moved: int
    proposed_moves: list[MoveView]
    renames: list[RenameView]
    new_codes: list[str]
    errors: list[LineErrorView]


def report(root: str, plan: node_import.Plan, *, dry_run: bool) -> ImportReport:
    failed = {e.line for e in plan.errors}
    moves = [m for m in plan.moves if m.row.line not in failed]
    renames = [r for r in plan.renames if r.row.line not in failed]
    created = [c for c in plan.creations if c.line not in failed]
    return ImportReport(
        root=root,
        dry_run=dry_run,
        created=len(created),
        unchanged=len(plan.unchanged),
        renamed=len(renames),
        moved=0 if dry_run else len(moves),
        proposed_moves=[
            MoveView(m.row.line, m.code, m.row.code, m.row.name, m.from_parent, m.row.parent_code)
            for m in moves
        ],
        renames=[RenameView(r.row.line, r.row.code, r.old_name, r.row.name) for r in renames],
        new_codes=[c.code for c in created],
        errors=[
            LineErrorView(e.line, e.message) for e in sorted(plan.errors, key=lambda e: e.line)
        ],
    )


async def dry_run(ctx: AppContext, principal: Principal, root: str, data: bytes) -> ImportReport:
    """What importing ``data`` under ``root`` would do; writes nothing."""
    rows, errors = node_import.parse(data, root)
    async with read_scope(ctx, principal) as (conn, scope):
        target = await visible_node(conn, scope, root, f"node {root}")
        plan = await node_import.plan(conn, target, rows, errors)
    return report(target.code, plan, dry_run=True)


def importing(
    root: str, data: bytes, *, limit: int | None = None, skip: frozenset[int] = frozenset()
) -> Decide:
    """The command that imports ``data`` under ``root``: plan against the tree as it stands
    in the transaction, then apply (at most ``limit`` operations, none of the lines in
    ``skip``: the CLI imports in batches to show progress)."""
    rows, errors = node_import.parse(data, root)

    async def decide(session: CommandSession) -> tuple[int, msgspec.Struct]:
        target = await directory.find_by_code(session.conn, root)
        if target is None or session.scope is None or not session.scope.contains_path(target.path):
            raise not_found(f"node {root}")
        plan = await node_import.plan(session.conn, target, rows, errors)
        ops = [op for op in node_import.operations(plan) if op.line not in skip]
        done = ops if limit is None else ops[:limit]
        plan.errors += await node_import.apply(session, done)
        if limit is not None:  # a batch: report what it did
            lines = {op.line for op in done}
            plan.moves = [m for m in plan.moves if m.row.line in lines]
            plan.renames = [r for r in plan.renames if r.row.line in lines]
            plan.creations = [c for c in plan.creations if c.line in lines]
        return 200, report(target.code, plan, dry_run=False)

    return decide


class NodeImportController(Controller):
    path = "/v1"
    tags = ["nodes"]

    @post(
        "/nodes:import",
        status_code=200,
        request_max_body_size=node_import.MAX_BYTES,
        responses={200: ResponseSpec(data_container=ImportReport, description="the report")},
        summary="Import the statistics bureau's division codes (统计用区划代码) under a root",
        description=(
            "Body: text/csv, UTF-8 (BOM accepted), header `code,name[,urban_rural_code]`. "
            "Parents come from the code prefixes (6+3+3 digits). Per row: unchanged, renamed, "
            "moved (the code is under another parent, or the bureau reissued it: NodeMoved "
            "with new_code) or created; `errors` name the file's lines (header = line 1) and "
            "the other rows still import. `dry_run=true` writes nothing. At most "
            f"{node_import.MAX_BYTES // (1024 * 1024)} MB (413) and {node_import.MAX_ROWS} "
            "rows (422). Roles: admin whose scope contains the root."
        ),
        guards=[needs(ADMINS, "importing division codes")],
    )
    async def import_nodes(
        self,
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
        root: Annotated[
            str, QueryParameter(max_length=40, description="the county (or street) to import under")
        ],
        dry: Annotated[
            bool,
            QueryParameter(
                name="dry_run", required=False, description="report only (default false)"
            ),
        ] = False,
    ) -> Response[bytes]:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in MEDIA_TYPES:
            raise ProblemError(
                415,
                "Unsupported Media Type",
                "send the division-code table as text/csv",
                slug="unsupported-media-type",
            )
        if dry:
            body = await dry_run(ctx, principal, root, await request.body())
            return Response(content=msgspec.json.encode(body), media_type="application/json")
        command = await command_request(request)
        outcome = await run_command(ctx, principal, command, importing(root, command.body))
        return command_response(outcome)
