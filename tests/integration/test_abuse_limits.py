"""Hygiene limits of issue #13, item 11: unauthenticated requests limited per client
address, a principal's live streams capped, /metrics behind a token, a default
per-principal rate one server can serve."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from infra.settings import Settings
from services.auth import Principal
from services.roles import Role
from tests.integration.test_feed import serve
from tests.reliability import assert_problem, extra_app
from tests.support import auth, build_tree


async def test_unauthenticated_requests_are_limited_per_client_address(ctx: Any, jwt: Any) -> None:
    async with extra_app(ctx, anonymous_rate_limit_per_minute=5) as api:
        statuses = [(await api.get("/v1/nodes/110101000000")).status_code for _ in range(5)]
        assert statuses == [401] * 5
        # a bad token counts as none: its signature check is what the limit protects
        r = await api.get("/v1/nodes/110101000000", headers={"Authorization": "Bearer x.y.z"})
        problem = assert_problem(r, 429)
        assert "address" in problem["detail"] and int(r.headers["retry-after"]) >= 1
        # probes are never limited, and a verified principal has its own bucket
        assert (await api.get("/health/live")).status_code == 200
        r = await api.get("/v1/nodes/110101000000", headers=auth(jwt, "110101000000", "viewer"))
        assert r.status_code != 429


async def test_metrics_need_the_metrics_token_unless_public(ctx: Any, jwt: Any) -> None:
    token = "metrics-" + "t" * 30
    async with extra_app(ctx, metrics_token=token) as api:
        r = await api.get("/metrics")
        assert_problem(r, 401)
        assert r.headers["www-authenticate"].startswith("Bearer")
        for wrong in ("Bearer nope", f"Basic {token}", f"Bearer {token}x"):
            assert (await api.get("/metrics", headers={"Authorization": wrong})).status_code == 401
        # a tenant's admin token does not open the whole server's figures
        admin = auth(jwt, "110101000000", "admin")
        assert (await api.get("/metrics", headers=admin)).status_code == 401
        r = await api.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and "civic_http_requests_total" in r.text
    async with extra_app(ctx) as api:  # no token configured: closed
        assert (await api.get("/metrics")).status_code == 401
    async with extra_app(ctx, metrics_public=True) as api:
        assert (await api.get("/metrics")).status_code == 200


def test_the_default_rate_is_sized_from_the_benchmark() -> None:
    settings = Settings.from_env({})
    # README "Performance": POST /v1/issues peaks near 600/s for the whole server; one
    # principal may not take more than a small share of that, sustained.
    assert settings.rate_limit_per_minute / 60 <= 600 / 20
    assert settings.anonymous_rate_limit_per_minute <= settings.rate_limit_per_minute
    assert Settings.from_env(
        {"CIVIC_WEBHOOK_ALLOW_HOSTS": " Hooks.Corp. ,10.0.0.1"}
    ).webhook_allow_hosts == (
        "hooks.corp",
        "10.0.0.1",
    )


async def test_live_streams_per_principal_are_capped(app: Any, client: Any, jwt: Any) -> None:
    tree = await build_tree(client, jwt, streets=1, communities=1, units=0)
    ctx = app.state.ctx
    limit = ctx.stream_slots.limit
    assert limit == 4
    headers = {
        **auth(jwt, tree.county, "integrator", sub="streamer"),
        "Accept": "text/event-stream",
    }
    others = {**auth(jwt, tree.county, "integrator", sub="another"), "Accept": "text/event-stream"}
    async with serve(app) as base, httpx.AsyncClient(base_url=base, timeout=20) as http:
        streams = []
        try:
            for _ in range(limit):
                cm = http.stream("GET", "/v1/feed", headers=headers)
                r = await cm.__aenter__()
                streams.append(cm)
                assert r.status_code == 200
            r = await http.get("/v1/feed", headers=headers)
            assert_problem(r, 429)
            assert r.headers["retry-after"].isdigit()
            async with http.stream("GET", "/v1/feed", headers=others) as r:
                assert r.status_code == 200  # the cap is the principal's
            # a stream that ends gives its slot back
            await streams.pop().__aexit__(None, None, None)
            me = Principal("streamer", tree.county, frozenset({Role.INTEGRATOR}))
            for _ in range(250):
                if ctx.stream_slots.held(me) < limit:
                    break
                await asyncio.sleep(0.02)
            assert ctx.stream_slots.held(me) == limit - 1
            async with http.stream("GET", "/v1/feed", headers=headers) as r:
                assert r.status_code == 200
        finally:
            for cm in streams:
                await cm.__aexit__(None, None, None)
