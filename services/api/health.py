"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.datastructures import State

from infra import migrator
from infra.settings import Settings
from services.context import AppContext
from services.problems import ProblemError


class Health(msgspec.Struct):
    status: str
    checks: dict[str, str] = msgspec.field(default_factory=dict)


@get("/health/live", tags=["operations"], summary="The process is alive", sync_to_thread=False)
def live() -> Health:
    return Health(status="ok")


@get("/health/ready", tags=["operations"], summary="Database reachable and migrations applied")
async def ready(state: State) -> Response[Health]:
    ctx: AppContext = state.ctx
    checks: dict[str, str] = {}
    ok = True
    try:
        if ctx.pool is None:
            raise ConnectionError("no pool")
        async with asyncio.timeout(2.0), ctx.pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
            checks["database"] = "ok"
            waiting = await migrator.pending(conn)
            checks["migrations"] = "ok" if not waiting else f"{len(waiting)} pending"
            ok = not waiting
    except Exception as exc:
        checks.setdefault("database", f"unavailable: {type(exc).__name__}")
        ok = False
    runner = getattr(state, "runner", None)
    if runner is not None:
        with contextlib.suppress(Exception):
            owned = sum(1 for s in runner.states.values() if s.owned)
            checks["projections_owned_here"] = str(owned)
    return Response(
        Health(status="ok" if ok else "unavailable", checks=checks),
        status_code=200 if ok else 503,
        headers={} if ok else {"Retry-After": "2"},
    )


def metrics_allowed(settings: Settings, authorization: str | None) -> bool:
    """``CIVIC_METRICS_PUBLIC=true``, or ``Authorization: Bearer <CIVIC_METRICS_TOKEN>``.

    Not a tenant's JWT, not even an admin's: the figures are the whole server's (every
    tenant's request and event counts), and a scraper holds a static secret more easily
    than a short-lived token (Prometheus: ``authorization.credentials_file``)."""
    if settings.metrics_public:
        return True
    if not settings.metrics_token or not authorization:
        return False
    scheme, _, credentials = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        credentials.strip().encode(), settings.metrics_token.encode()
    )


@get(
    "/metrics",
    tags=["operations"],
    summary="Prometheus metrics (Bearer CIVIC_METRICS_TOKEN, unless CIVIC_METRICS_PUBLIC)",
    sync_to_thread=False,
    media_type="text/plain; version=0.0.4",
)
def metrics(request: Request[Any, Any, Any], state: State) -> Response[bytes]:
    ctx: AppContext = state.ctx
    if not metrics_allowed(ctx.settings, request.headers.get("authorization")):
        raise ProblemError(
            401,
            "Unauthorized",
            "metrics need Authorization: Bearer <CIVIC_METRICS_TOKEN>",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    return Response(ctx.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
