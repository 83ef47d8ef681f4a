"""Our HTTP commands end to end: ``POST /v1/issues`` with a JWT, 32 concurrent clients (and
``http.assign_32c``: a command that changes who is party to the stream, below; and
``http.assign_cold_32c``, the same on streams the API process has not cached).

The API runs exactly like the Litestar anchor (uvicorn subprocess, one worker, access log off)
with its projector, on the group's scratch database. Each request reports an issue in one of
300 communities (20 streets x 15) with its own Idempotency-Key: a scoped transaction,
row-level security, the domain decision, the append with its hash-chain link, the key record.
Rate limiting is off for the run. Figures: requests/s, p50/p99, errors (must be 0), and where
the CPU went per request: ``.server_cpu_ms_per_req`` (the API process, its in-process projector
included; the Litestar anchor reports the same figure) and ``.db_cpu_ms_per_req`` (the scratch
database's PostgreSQL backends).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable

import httpx

from bench.cpu import backend_pids, total_cpu_seconds
from bench.load import LoadResult, run_load
from bench.registry import Context, benchmark, group_fixture
from bench.server import uvicorn_server
from services.auth import JwtConfig, issue_token
from services.commands.aggregate_cache import AggregateCache

GROUP = "http"
CLIENTS = 32
SECRET = "bench-secret-" + "x" * 40
STREETS, COMMUNITIES = 20, 15


def _token(scope: str) -> str:
    config = JwtConfig(verify_key=SECRET, signing_key=SECRET, algorithms=("HS256",))
    return issue_token(config, subject="bench", scope=scope, roles=["admin"], ttl_seconds=3600)


async def _tenant(url: str, county: str, token: str) -> list[str]:
    h = {"Authorization": f"Bearer {token}"}
    communities: list[str] = []
    async with httpx.AsyncClient(base_url=url, headers=h, timeout=30) as c:

        async def post(body: dict[str, object]) -> None:
            r = await c.post("/v1/nodes", json=body)
            r.raise_for_status()

        await post({"code": county, "name": "县", "kind": "county", "parent_code": None})
        for s in range(1, STREETS + 1):
            street = f"{county[:6]}{s:03d}000"
            await post(
                {"code": street, "name": f"街道{s}", "kind": "street", "parent_code": county}
            )
            for k in range(1, COMMUNITIES + 1):
                code = f"{street[:9]}{k:03d}"
                await post(
                    {"code": code, "name": f"社区{k}", "kind": "community", "parent_code": street}
                )
                communities.append(code)
    return communities


@contextlib.asynccontextmanager
async def api_with_county(ctx: Context, county: str) -> AsyncIterator[None]:
    """Our API under uvicorn on the group's database (rate limit off), with a county of 20
    streets x 15 communities; ``ctx.state`` gets ``server``, ``token`` and ``communities``."""
    env = {
        "DATABASE_URL": ctx.database_url,
        "CIVIC_JWT_SECRET": SECRET,
        "CIVIC_RATE_LIMIT": "0",
        "CIVIC_LOG_LEVEL": "WARNING",
        # The request pool as deployed (CIVIC_DB_POOL_MAX 10). The http, lag and export
        # groups each keep a server up for the whole run (~16 worker connections each), so
        # a loaded server gives its request connections back 10 s after its figure: before
        # the next round's 32-writer figure needs 32, within max_connections (100 by
        # default). A pool of 20 kept took a run past it; closing after 1 s made requests
        # reconnect under load (lag p99 63 against 13 ms).
        "CIVIC_DB_POOL_IDLE_SECONDS": "10",
    }
    async with uvicorn_server("services.app:app_from_env", factory=True, env=env) as server:
        token = _token(county)
        ctx.state["server"] = server
        ctx.state["county"] = county
        ctx.state["token"] = token
        ctx.state["communities"] = await _tenant(server.url, county, token)
        yield


@group_fixture(GROUP)
async def _server(ctx: Context) -> AsyncIterator[None]:
    async with api_with_county(ctx, "371202000000"):
        yield


def report_body(community: str) -> dict[str, str]:
    """The body of every ``POST /v1/issues`` of this module: a report in ``community``."""
    return {
        "node_code": community,
        "title": "北门路灯不亮",
        "category": "public-safety",
        "source": "grid",
    }


def issue_requests(
    communities: list[str], token: str, run: str
) -> tuple[Callable[[int], dict[str, str]], Callable[[int], bytes]]:
    """Headers and body of the i-th ``POST /v1/issues`` of a run: a report in community
    ``i mod 300``, with its own Idempotency-Key."""
    auth = f"Bearer {token}"

    def headers(i: int) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "Authorization": auth,
            "Idempotency-Key": f"{run}-{i}",
        }

    def body(i: int) -> bytes:
        return json.dumps(
            report_body(communities[i % len(communities)]),
            ensure_ascii=False,
        ).encode()

    return headers, body


@benchmark("http.commands_32c", GROUP, "req/s", compare=("litestar.hello_32c",))
async def commands(ctx: Context) -> float:
    """POST /v1/issues with a JWT and an Idempotency-Key, 32 keep-alive clients."""
    server = ctx.state["server"]
    headers, body = issue_requests(
        ctx.state["communities"], ctx.state["token"], uuid.uuid4().hex[:8]
    )
    backends = await backend_pids(ctx)
    cpu0, db0 = server.cpu_seconds(), total_cpu_seconds(backends)
    res = await run_load(
        f"{server.url}/v1/issues",
        method="POST",
        headers=headers,
        body=body,
        concurrency=CLIENTS,
        duration=ctx.duration,
        warmup=ctx.warmup,
    )
    ctx.report("p50_ms", res.p50_ms, "ms")
    ctx.report("p99_ms", res.p99_ms, "ms")
    ctx.report("errors", res.errors, "count")
    new = (await backend_pids(ctx)) - backends  # the pool may have grown under load
    cpu = server.cpu_seconds() - cpu0
    db = total_cpu_seconds(backends) - db0 + total_cpu_seconds(new)
    total = sum(res.statuses.values())
    if total:
        ctx.report("server_cpu_ms_per_req", cpu * 1000 / total, "ms")
        ctx.report("db_cpu_ms_per_req", db * 1000 / total, "ms")
    if res.errors:
        raise RuntimeError(f"{res.errors} errors, e.g. {res.error_samples[:2]}")
    return res.rps


ASSIGN_ISSUES = 64
ASSIGN_UNITS = 8
FAR_DEADLINE = "2099-01-01T18:00:00+08:00"


async def _assignable(ctx: Context) -> tuple[list[str], list[str]]:
    """Units under the county and ``ASSIGN_ISSUES`` reported issues, made once per group."""
    if "assignable" not in ctx.state:
        county = ctx.state["county"]
        h = {"Authorization": f"Bearer {ctx.state['token']}"}
        units = [f"U{county[:6]}{u:03d}" for u in range(1, ASSIGN_UNITS + 1)]
        async with httpx.AsyncClient(base_url=ctx.state["server"].url, headers=h, timeout=30) as c:
            for code in units:
                r = await c.post(
                    "/v1/nodes",
                    json={"code": code, "name": f"局{code}", "kind": "unit", "parent_code": county},
                )
                r.raise_for_status()
        ctx.state["assignable"] = (units, await _report_issues(ctx, ASSIGN_ISSUES))
    units, issues = ctx.state["assignable"]
    return units, issues


@benchmark("http.assign_32c", GROUP, "req/s", compare=("http.commands_32c",))
async def assign(ctx: Context) -> float:
    """派单 and 退单 alternately (``POST /v1/issues/{id}/assign`` to one of 8 units, then
    ``…/return``) on 64 issues, each with an Idempotency-Key, 32 keep-alive clients: both
    commands change the issue's assignee party (who may see the stream) with their event.

    An issue is never in flight twice: a request takes a free issue and the next command it
    is ready for, its response frees it (a refused command leaves the issue's state as it
    was). Its aggregate stays warm in the API's cache, as for an issue being worked on.
    """
    units, issues = await _assignable(ctx)
    # the state each issue is left in by the previous run's last answered command
    assigned: dict[str, bool] = ctx.state.setdefault("assigned", dict.fromkeys(issues, False))
    res, _ = await _assign_and_return(ctx, units, deque(issues), assigned, None)
    return res.rps


COLD_AFTER = AggregateCache().ttl + 1.0  # an issue untouched this long is no longer cached


@benchmark("http.assign_cold_32c", GROUP, "req/s", compare=("http.assign_32c",))
async def assign_cold(ctx: Context) -> float:
    """As ``http.assign_32c``, but every command is on an issue the API has not cached: the
    issues are taken oldest answer first from a pool large enough that each was last touched
    more than the aggregate cache's lifetime ago (``.warm_hits``, which must be 0, counts
    those that were not). Each command then reads its stream and nodes before it decides:
    with cold reads (the default) one ``civic_command_read`` call before the append; with
    ``CIVIC_COLD_READS=0`` in the environment of ``bench.run`` the whole scoped transaction.
    """
    units, _ = await _assignable(ctx)
    pool: deque[str] = ctx.state.setdefault("cold_pool", deque())
    assigned: dict[str, bool] = ctx.state.setdefault("cold_assigned", {})
    touched: dict[str, float] = ctx.state.setdefault("cold_touched", {})
    # enough cold issues for this run at 1.5x the fastest rate seen (at least 1,000 req/s)
    rate = ctx.state.get("cold_rate", 1_000.0)
    needed = int(rate * 1.5 * (ctx.warmup + ctx.duration)) + CLIENTS
    now = time.monotonic()
    cold = sum(1 for i in pool if now - touched.get(i, 0.0) > COLD_AFTER)
    if cold < needed:
        made = await _report_issues(ctx, needed - cold)
        pool.extend(made)
        assigned.update(dict.fromkeys(made, False))
        touched.update(dict.fromkeys(made, time.monotonic()))
        await asyncio.sleep(COLD_AFTER)  # their creation cached them
    res, warm_hits = await _assign_and_return(ctx, units, pool, assigned, touched)
    ctx.state["cold_rate"] = max(rate, res.rps)
    ctx.report("warm_hits", warm_hits, "count")
    if warm_hits:
        raise RuntimeError("some commands found their issue cached: the pool was too small")
    return res.rps


async def _report_issues(ctx: Context, count: int) -> list[str]:
    """``count`` issues reported through the API, 32 at a time. A request whose connection
    fails is sent again with the same Idempotency-Key (the server may have closed a kept-alive
    connection as it was reused; one full run lost a set-up to a ``ReadError`` so)."""
    communities = ctx.state["communities"]
    h = {"Authorization": f"Bearer {ctx.state['token']}"}
    gate = asyncio.Semaphore(CLIENTS)
    limits = httpx.Limits(max_connections=CLIENTS)
    batch = uuid.uuid4().hex[:8]
    async with httpx.AsyncClient(
        base_url=ctx.state["server"].url, headers=h, timeout=30, limits=limits
    ) as c:

        async def report(i: int) -> str:
            body = report_body(communities[i % len(communities)])
            key = {"Idempotency-Key": f"report-{batch}-{i}"}
            async with gate:
                for attempt in range(3):
                    try:
                        r = await c.post("/v1/issues", json=body, headers=key)
                        break
                    except httpx.TransportError:
                        if attempt == 2:
                            raise
                r.raise_for_status()
                return str(r.json()["id"])

        return list(await asyncio.gather(*(report(i) for i in range(count))))


async def _assign_and_return(
    ctx: Context,
    units: list[str],
    free: deque[str],
    assigned: dict[str, bool],
    touched: dict[str, float] | None,
) -> tuple[LoadResult, int]:
    """派单 or 退单, whichever each issue is ready for, on issues taken from ``free`` and put
    back at its end when answered. With ``touched`` (issue → when last answered, kept up to
    date), also how many were taken within ``COLD_AFTER`` of their last answer."""
    server = ctx.state["server"]
    run = uuid.uuid4().hex[:8]
    auth = f"Bearer {ctx.state['token']}"
    taken: dict[int, str] = {}
    warm_hits = 0

    def path(n: int) -> str:
        nonlocal warm_hits
        issue = taken[n] = free.popleft()
        if touched is not None and time.monotonic() - touched.get(issue, 0.0) <= COLD_AFTER:
            warm_hits += 1
        return f"/v1/issues/{issue}/{'return' if assigned[issue] else 'assign'}"

    def headers(n: int) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "Authorization": auth,
            "Idempotency-Key": f"assign-{run}-{n}",
        }

    def body(n: int) -> bytes:
        if assigned[taken[n]]:
            return json.dumps({"reason": "不属本单位职责"}, ensure_ascii=False).encode()
        return json.dumps({"assignee_code": units[n % len(units)], "due_at": FAR_DEADLINE}).encode()

    def answered(n: int, status: int, _body: bytes, _t0: float, _t1: float) -> None:
        issue = taken.pop(n)
        if status == 200:
            assigned[issue] = not assigned[issue]
        if touched is not None:
            touched[issue] = time.monotonic()
        free.append(issue)

    res = await run_load(
        f"{server.url}/v1/issues",
        method="POST",
        path=path,
        headers=headers,
        body=body,
        on_response=answered,
        concurrency=CLIENTS,
        duration=ctx.duration,
        warmup=ctx.warmup,
    )
    ctx.report("p50_ms", res.p50_ms, "ms")
    ctx.report("p99_ms", res.p99_ms, "ms")
    ctx.report("errors", res.errors, "count")
    if res.errors:
        raise RuntimeError(f"{res.errors} errors, e.g. {res.error_samples[:2]}")
    return res, warm_hits
