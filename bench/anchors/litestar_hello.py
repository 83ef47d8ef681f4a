"""Anchor 4: Litestar hello-world over HTTP, served and loaded the way our API will be.

``bench/anchors/hello_app.py`` under uvicorn (subprocess, 127.0.0.1, random free port, one
worker, access log off), loaded by ``bench.load.run_load``: 32 keep-alive clients, closed loop,
POSTing a ~250-byte JSON body. Primary figure: requests/s; attached: p50/p99 latency (ms),
errors, and the server's CPU seconds per 1,000 requests.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from bench.load import run_load
from bench.registry import Context, benchmark, group_fixture
from bench.server import uvicorn_server

GROUP = "litestar"
CLIENTS = 32
BODY = json.dumps(
    {
        "node": "county-07/street-03/community-11",
        "title": "Streetlight out at the north gate of building 12",
        "body": "Reported on the evening patrol; the lamp has been dark for three nights.",
        "category": "public-safety",
        "priority": 2,
    },
    separators=(",", ":"),
).encode()
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer " + "x" * 180}


@group_fixture(GROUP)
async def _server(ctx: Context) -> AsyncIterator[None]:
    async with uvicorn_server("bench.anchors.hello_app:create_app", factory=True) as server:
        ctx.state["server"] = server
        ctx.state["info"] = {"url": server.url, "body_bytes": len(BODY)}
        yield


@benchmark("litestar.hello_32c", GROUP, "req/s")
async def hello_32_clients(ctx: Context) -> float:
    """POST /hello (msgspec Struct in, 201 out), 32 keep-alive clients."""
    server = ctx.state["server"]
    cpu0 = server.cpu_seconds()
    res = await run_load(
        f"{server.url}/hello",
        method="POST",
        headers=HEADERS,
        body=BODY,
        concurrency=CLIENTS,
        duration=ctx.duration,
        warmup=ctx.warmup,
    )
    cpu = server.cpu_seconds() - cpu0
    total = sum(res.statuses.values())
    ctx.report("p50_ms", res.p50_ms, "ms")
    ctx.report("p99_ms", res.p99_ms, "ms")
    ctx.report("errors", res.errors, "count")
    if total:
        ctx.report("server_cpu_ms_per_req", cpu * 1000 / total, "ms")
    if res.errors:
        raise RuntimeError(f"{res.errors} errors, e.g. {res.error_samples[:2]}")
    return res.rps
