"""The application factory: one place wires settings, pool, store, projections and routes.

Nothing is built at import time; ``create_app(settings)`` returns a ready Litestar app
whose lifespan opens the pool, applies migrations and starts the projector.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from litestar import Controller, Litestar, Request
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from domain.clock import Clock
from domain.registry import AGGREGATES, event_classes
from domain.service import accept_window, parse_points_rule
from infra import migrator
from infra.chain import hasher_for_profile
from infra.crypto_profile import ensure_profile
from infra.database import create_pool
from infra.event_codec import EventCodec
from infra.event_store import EventStore
from infra.logging import configure_logging
from infra.metrics import Metrics
from infra.pii_keys import master_key
from infra.settings import Settings
from projections.audit_tree import AuditTreeProjection
from projections.base import Projection
from projections.registry import all_projections
from projections.runner import ProjectionRunner, handles_by_name
from projections.waits import PositionWaits
from services.api import health
from services.api.audit import AuditController
from services.api.audit_tree import AuditTreeController
from services.api.contract_docs import ContractDocsController
from services.api.deps import DEPENDENCIES
from services.api.exports import ExportController
from services.api.feed import FeedController
from services.api.findings import FindingController
from services.api.history import HistoryController
from services.api.issues import IssueBatchController, IssueController
from services.api.members import MemberController, UnitRegistrationController
from services.api.node_import import NodeImportController
from services.api.node_navigation import NodeNavigationController
from services.api.nodes import NodeController
from services.api.pairings import PairingController
from services.api.query_guard import refuse_unknown_query
from services.api.reveals import RevealAuditController
from services.api.service_orders import ServiceOfferController, ServiceOrderController
from services.api.stats import StatsController
from services.api.surveys import SurveyController
from services.api.unit_stats import UnitStatsController
from services.api.webhooks import WebhookController
from services.checkpoints import Checkpointer
from services.commands.findings import RectificationOverdueSweep
from services.commands.issues import EscalationOverdueSweep, IssueOverdueSweep
from services.commands.service_orders import ServiceOverdueSweep
from services.console import console_router
from services.content_type import require_json_body
from services.context import AppContext
from services.deadline_sweep import DeadlineSweep
from services.deadlines import DeadlineClock
from services.docs_assets import assets_router, render_plugins
from services.gc_tuning import settle_heap_for_serving
from services.integration import Integration
from services.jwks_refresh import refresh_signing_keys
from services.keys import jwt_config
from services.limits import HeavyBudget, PerPrincipal
from services.middleware import request_context
from services.notifier import CommitNotifier
from services.openapi_contract import created_items, finish, operation_id, tags
from services.problems import handle_exception
from services.ratelimit import rate_limit


def build_context(settings: Settings, clock: Clock | None = None) -> AppContext:
    master_key(settings)  # personal data cannot be stored without it: fail at start-up
    # the 五单 settings: a malformed value fails at start-up, not on the first order
    parse_points_rule(settings.points_per_rating)
    accept_window(settings.service_accept_minutes)
    ctx = AppContext(
        settings=settings,
        jwt=jwt_config(settings),
        store=EventStore(hasher_for_profile(settings.crypto_profile)),
        codec=EventCodec(event_classes(), AGGREGATES, require_cipher=True),
        metrics=Metrics(),
    )
    if clock is not None:
        ctx.clock = clock
    ctx.waits = PositionWaits(lambda: ctx.db, handles_by_name)
    ctx.after_commit.append(ctx.waits.saw_commit)
    ctx.wait_slots = PerPrincipal(settings.max_waits_per_principal, "waiting reads")
    ctx.stream_slots = PerPrincipal(settings.max_streams_per_principal, "live streams")
    ctx.heavy = HeavyBudget(settings.heavy_concurrency)
    return ctx


def deadline_sweeps() -> list[DeadlineSweep]:
    """The deadline sweeps the clock runs (one line per workflow that has deadlines)."""
    return [
        RectificationOverdueSweep(),
        IssueOverdueSweep(),
        EscalationOverdueSweep(),
        ServiceOverdueSweep(),
    ]


def resolve_database_url(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    if settings.is_production:
        raise RuntimeError("DATABASE_URL is required in production")
    from infra import embedded_pg

    return embedded_pg.start(settings.data_dir)


#: connections for background work besides one per projection: the NOTIFY listener, the lag
#: sampler, webhook and NATS relays.
WORKER_CONNECTIONS = 8


def create_app(settings: Settings, *, clock: Clock | None = None, api: bool = True) -> Litestar:
    """``api=False`` serves only health and metrics (the projector process)."""
    configure_logging(settings.log_level)
    ctx = build_context(settings, clock)
    deadline_clock = DeadlineClock(ctx, deadline_sweeps(), interval=settings.clock_interval_seconds)
    integration = Integration.from_settings(settings)
    ctx.after_commit.append(integration.live)
    checkpointer = Checkpointer.from_settings(ctx)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        database_url = resolve_database_url(settings)
        # Request connections keep no session state (see create_pool); workers hold
        # LISTENs and session advisory locks, so their pool keeps asyncpg's full reset.
        pool = await create_pool(
            database_url,
            min_size=settings.pool_min,
            max_size=settings.pool_max,
            session_state=False,
            statement_timeout_ms=settings.statement_timeout_ms,
            idle_seconds=settings.pool_idle_seconds,
        )
        ctx.pool = pool
        runner: ProjectionRunner | None = None
        notifier: CommitNotifier | None = None
        workers: asyncpg.Pool | None = None
        try:
            if settings.migrate_on_start:
                async with pool.acquire() as conn:
                    await migrator.apply(conn)
            async with pool.acquire() as conn:
                await ensure_profile(conn, settings.crypto_profile)
            if settings.run_projector:
                # Projection owners hold their connection (and its advisory lock) for as long
                # as they own the projection: they get their own pool, so they can never
                # starve request handling.
                projections: list[Projection] = [
                    *all_projections(),
                    AuditTreeProjection(ctx.store.hasher.name),
                ]
                workers = await create_pool(
                    database_url,
                    min_size=1,
                    max_size=len(projections) + WORKER_CONNECTIONS,
                    idle_seconds=settings.pool_idle_seconds,
                )
                runner = ProjectionRunner(workers, projections, metrics=ctx.metrics)
                await runner.start()
                app.state.runner = runner
                if ctx.waits is not None:
                    ctx.waits.attach(runner)
                deadline_clock.start()
                integration.start(workers)
                checkpointer.start()
            notifier = CommitNotifier(pool, runner.poke if runner else None)
            ctx.after_commit.append(notifier)
            yield
        finally:
            await deadline_clock.stop()
            await integration.stop()
            await checkpointer.stop()
            if ctx.waits is not None:
                await ctx.waits.close()
            if runner is not None:
                await runner.stop()
            if notifier is not None:
                await notifier.close()
            ctx.pool = None
            if workers is not None:
                await workers.close()
            await pool.close()

    return Litestar(
        route_handlers=[
            *(_api_routes() if api else []),
            *([console_router()] if api else []),
            *([assets_router()] if api else []),
            health.live,
            health.ready,
            health.metrics,
        ],
        lifespan=[lifespan],
        dependencies=DEPENDENCIES,
        state=State(
            {
                "ctx": ctx,
                "deadline_clock": deadline_clock,
                **integration.state(),
                "checkpointer": checkpointer,
            }
        ),
        exception_handlers={Exception: handle_exception},
        before_request=_before_request,
        middleware=[
            request_context(ctx.metrics),
            refresh_signing_keys(ctx.jwt),
            rate_limit(
                ctx.jwt,
                settings.rate_limit_per_minute,
                settings.anonymous_rate_limit_per_minute,
            ),
        ],
        request_max_body_size=settings.max_body_bytes,
        cors_config=CORSConfig(allow_origins=[], allow_methods=["GET", "POST", "DELETE"]),
        openapi_config=OpenAPIConfig(
            title="civic-ledger",
            version="1.0.0",
            description=(
                "Event-sourced ledger of grassroots governance work (党建引领基层治理): "
                "hierarchy, pairings, member registration, issues and rectification, with a "
                "tamper-evident audit trail. Errors are application/problem+json (RFC 9457)."
            ),
            path="/schema",
            render_plugins=render_plugins(),
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")
                }
            ),
            security=[{"bearer": []}],
            tags=tags(),
            operation_id_creator=operation_id,
        ),
        on_startup=[_finish_openapi],
        debug=False,
    )


async def _before_request(request: Request[Any, Any, Any]) -> None:
    """The request's shape, before any handler runs: parameters it names, the body's type."""
    await refuse_unknown_query(request)
    await require_json_body(request)


def _finish_openapi(app: Litestar) -> None:
    # The served document is the plugin's cached dict: completing it in place is what
    # /schema/openapi.json (and every renderer) then serves.
    from litestar._openapi.plugin import OpenAPIPlugin

    doc = finish(app.plugins.get(OpenAPIPlugin).provide_openapi_schema())
    # what a 201's Location is built from, read once here rather than from the whole
    # document on every response (services/api/deps.py)
    app.state.created_items = created_items(doc)


def _api_routes() -> list[type[Controller]]:
    return [
        NodeController,
        NodeImportController,
        NodeNavigationController,
        FeedController,
        WebhookController,
        HistoryController,
        AuditController,
        AuditTreeController,
        RevealAuditController,
        FindingController,
        IssueController,
        IssueBatchController,
        PairingController,
        MemberController,
        UnitRegistrationController,
        ServiceOfferController,
        ServiceOrderController,
        SurveyController,
        StatsController,
        UnitStatsController,
        ExportController,
        ContractDocsController,
    ]


def app_from_env() -> Litestar:
    """``uvicorn --factory services.app:app_from_env``: settings from the environment."""
    app = create_app(Settings.from_env())
    settle_heap_for_serving()
    return app
