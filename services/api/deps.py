"""Request-level plumbing shared by the controllers: principal, context, commands, reads."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any, Concatenate, ParamSpec, TypeAlias
from uuid import UUID

import asyncpg
import msgspec
from litestar import Request, Response
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import QueryParameter

from infra.database import Scope, scoped_transaction
from services.api.guards import principal_of
from services.api.guards import require as require
from services.auth import Principal
from services.commands.session import (
    CommandOutcome,
    CommandRequest,
    CommandSession,
    Decide,
    run_command,
)
from services.context import AppContext
from services.problems import FieldError, ProblemError

P = ParamSpec("P")

POSITION_HEADER = "X-Civic-Position"
MAX_WAIT_SECONDS = 5.0

#: handler parameter types, so every controller declares them the same way.
Ctx: TypeAlias = NamedDependency[AppContext]
Caller: TypeAlias = NamedDependency[Principal]
MinPosition: TypeAlias = Annotated[
    int | None,
    QueryParameter(
        ge=0,
        le=2**63 - 1,
        required=False,
        description=(
            "Wait (at most 5 s) until read models include this position; 503 if not, 422 "
            "beyond the newest committed position, 429 with too many waits of yours."
        ),
    ),
]


def provide_ctx(state: State) -> AppContext:
    ctx: AppContext = state.ctx
    return ctx


def provide_principal(request: Request[Any, Any, Any], ctx: NamedDependency[Any]) -> Principal:
    # Taking ``ctx`` (principal_of finds the same one on the app) makes Litestar resolve
    # the two in turn: resolved as siblings they cost an anyio task group per request
    # (~5% of a command's CPU). ``Any``: nothing to validate, it is not used here.
    del ctx
    return principal_of(request)


class CommandRunner:
    """This request's command runner: ``return await command.run(handler, *args)``.

    The handler gets the ``CommandSession`` first, then ``args`` as given: the request
    Struct itself is the command, passed through, not unpacked field by field."""

    def __init__(self, request: Request[Any, Any, Any], ctx: AppContext, principal: Principal):
        self.request = request
        self.ctx = ctx
        self.principal = principal

    async def run(
        self,
        handler: Callable[Concatenate[CommandSession, P], Awaitable[tuple[int, msgspec.Struct]]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Response[bytes]:
        return await run_and_respond(
            self.request, self.ctx, self.principal, lambda s: handler(s, *args, **kwargs)
        )


def provide_command(request: Request[Any, Any, Any], ctx: Ctx, principal: Caller) -> CommandRunner:
    return CommandRunner(request, ctx, principal)


Command: TypeAlias = NamedDependency[CommandRunner]

#: the dependencies every route may ask for, registered once on the app (services/app.py).
DEPENDENCIES = {
    "ctx": Provide(provide_ctx, sync_to_thread=False),
    "principal": Provide(provide_principal, sync_to_thread=False),
    "command": Provide(provide_command, sync_to_thread=False),
}


def _parse_if_match(raw: str | None) -> int | None:
    if raw is None:
        return None
    value = raw.strip()
    if value.startswith("W/"):
        value = value[2:]
    value = value.strip('"')
    if not value.isdigit():
        raise ProblemError(
            400,
            "Bad Request",
            'If-Match must be an ETag this API returned, e.g. "3"',
            slug="validation",
        )
    return int(value)


def _parse_uuid(raw: str | None) -> UUID | None:
    if not raw:
        return None
    try:
        return UUID(raw)
    except ValueError:
        return None


async def command_request(request: Request[Any, Any, Any]) -> CommandRequest:
    key = request.headers.get("idempotency-key")
    if key is not None and not (1 <= len(key) <= 200):
        raise ProblemError(
            400, "Bad Request", "Idempotency-Key must be 1-200 characters", slug="validation"
        )
    return CommandRequest(
        method=request.method,
        path=request.url.path,
        body=await request.body(),
        idempotency_key=key,
        if_match=_parse_if_match(request.headers.get("if-match")),
        correlation_id=_parse_uuid(request.headers.get("x-correlation-id"))
        or _parse_uuid(request.scope.get("state", {}).get("request_id")),
    )


async def run_and_respond(
    request: Request[Any, Any, Any], ctx: AppContext, principal: Principal, decide: Decide
) -> Response[bytes]:
    """Run a command for this request and answer with its outcome (every POST does this)."""
    outcome = await run_command(ctx, principal, await command_request(request), decide)
    return command_response(outcome, request)


def command_response(
    outcome: CommandOutcome, request: Request[Any, Any, Any] | None = None
) -> Response[bytes]:
    headers = {}
    if request is not None and outcome.status == 201:
        where = _created_location(request, outcome.body)
        if where is not None:
            headers["Location"] = where
    if outcome.replayed:
        headers["Idempotent-Replayed"] = "true"
    if outcome.position is not None:
        headers[POSITION_HEADER] = str(outcome.position)
    return Response(
        content=outcome.body,
        status_code=outcome.status,
        media_type="application/json",
        headers=headers,
    )


def _created_location(request: Request[Any, Any, Any], body: bytes) -> str | None:
    from services.openapi_contract import location

    try:
        decoded = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None
    if not isinstance(decoded, dict):
        return None
    return location(request.app.state.created_items, request.url.path, decoded)


@asynccontextmanager
async def read_scope(
    ctx: AppContext,
    principal: Principal,
    *,
    min_position: int | None = None,
    projections: Sequence[str] = (),
    heavy: bool = False,
) -> AsyncIterator[tuple[asyncpg.Connection, Scope]]:
    """A read-only scoped transaction, after waiting (bounded) for ``min_position``.

    ``heavy``: the read walks a whole subtree (verification, checkpoints, exports); it runs
    within the server's small budget for such work (``services/limits.HeavyBudget``)."""
    if min_position is not None and projections:
        await wait_for_read_models(ctx, principal, projections, min_position)
    async with contextlib.AsyncExitStack() as stack:
        if heavy:
            stack.enter_context(ctx.heavy.slot(principal))
        conn = await stack.enter_async_context(ctx.db.acquire())
        async with scoped_transaction(
            conn,
            principal.scope,
            statement_timeout_ms=ctx.settings.statement_timeout_ms,
            cache=ctx.scopes,
        ) as (_, scope):
            await conn.execute("SET TRANSACTION READ ONLY")
            yield conn, scope


async def wait_for_read_models(
    ctx: AppContext, principal: Principal, projections: Sequence[str], position: int
) -> None:
    """Return once the read models include ``position``, holding no connection meanwhile.

    422 at once for a position beyond the newest committed one (no answer of this server
    carried it); 429 when the principal already has ``CIVIC_MAX_WAITS_PER_PRINCIPAL`` reads
    waiting; 503 after ``MAX_WAIT_SECONDS``."""
    waits = ctx.waits
    assert waits is not None, "build_context sets up the waits"
    if waits.reached_here(projections, position):
        return
    reach = await waits.reach(projections)
    if position > reach.newest:
        raise ProblemError(
            422,
            "Unprocessable Content",
            "min_position lies beyond the newest committed position; pass a position this "
            "API returned",
            slug="invalid-value",
            errors=[FieldError(field="min_position", message="beyond the newest position")],
        )
    if reach.covers(projections, position):
        return
    with ctx.wait_slots.slot(principal):
        reached = await waits.wait(projections, position, MAX_WAIT_SECONDS)
    if not reached:
        raise ProblemError(
            503,
            "Service Unavailable",
            f"read models have not reached position {position} within "
            f"{MAX_WAIT_SECONDS:.0f} s; retry shortly",
            slug="not-caught-up",
            headers={"Retry-After": "1"},
        )
