"""Shared fixtures: a real PostgreSQL for every test session.

Uses DATABASE_URL when set (CI points it at the local server), otherwise the embedded
``pgserver`` under ./.data. Each session creates its own database, so parallel sessions
and helpers never collide, and drops it at the end.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from infra import migrator
from infra.database import create_pool
from infra.dsn import with_database

REPO = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``after_all`` run last: they check what the whole session recorded."""
    items.sort(key=lambda item: item.get_closest_marker("after_all") is not None)


def _server_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    from infra.embedded_pg import start

    return start(REPO / ".data", keep_running=False)


@pytest.fixture(scope="session")
def server_url() -> str:
    return _server_url()


@asynccontextmanager
async def scratch_database(server_url: str) -> AsyncIterator[str]:
    """A fresh, migrated database on the server (its URL), dropped afterwards."""
    name = f"civic_test_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        url = with_database(server_url, name)
        conn = await asyncpg.connect(url)
        try:
            await migrator.apply(conn)
        finally:
            await conn.close()
        yield url
    finally:
        admin = await asyncpg.connect(server_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture(scope="session")
async def database_url(server_url: str) -> AsyncIterator[str]:
    async with scratch_database(server_url) as url:
        yield url


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(database_url, min_size=2, max_size=20)
    yield p
    await p.close()


@pytest.fixture
def anyio_backend() -> Iterator[str]:
    yield "asyncio"


class MovableClock:
    """Real time plus an offset tests may move (deadlines without sleeping)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, delta: timedelta) -> None:
        self.offset += delta


@pytest.fixture(scope="session")
def session_clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
def clock(session_clock: MovableClock) -> Iterator[MovableClock]:
    """The app's clock; whatever a test moves is reset afterwards."""
    yield session_clock
    session_clock.offset = timedelta(0)


@pytest.fixture(scope="session")
async def app(database_url: str, session_clock: MovableClock) -> AsyncIterator[Any]:
    """One application (with its projector) for the whole session, on the test database."""
    from litestar.testing import AsyncTestClient

    from infra.settings import Settings
    from services.app import create_app

    settings = Settings(
        database_url=database_url,
        jwt_secret="test-secret-" + "x" * 40,
        log_level="WARNING",
        pool_min=2,
        pool_max=20,
        # the tests read the English the code raises; test_contract_consistency.py
        # covers the zh-CN default and Accept-Language
        default_language="en",
        # the webhook tests' receivers listen on 127.0.0.1, which webhooks may not reach
        # otherwise; and the session's many 401 checks come from one client address
        # (tests of both limits run their own app).
        webhook_allow_hosts=("127.0.0.1",),
        anonymous_rate_limit_per_minute=0,
        metrics_token="test-metrics-token-" + "m" * 20,
    )
    application = create_app(settings, clock=session_clock)
    async with AsyncTestClient(application) as client:
        application.state.client = client
        yield application


@pytest.fixture(scope="session")
def client(app: Any) -> Any:
    return app.state.client


@pytest.fixture(scope="session")
def ctx(app: Any) -> Any:
    return app.state.ctx


@pytest.fixture(scope="session")
def jwt(ctx: Any) -> Any:
    return ctx.jwt
