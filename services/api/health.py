"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
import contextlib

import msgspec
from litestar import Response, get
from litestar.datastructures import State

from infra import migrator
from services.context import AppContext


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


@get(
    "/metrics",
    tags=["operations"],
    summary="Prometheus metrics",
    sync_to_thread=False,
    media_type="text/plain; version=0.0.4",
)
def metrics(state: State) -> Response[bytes]:
    ctx: AppContext = state.ctx
    return Response(ctx.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
