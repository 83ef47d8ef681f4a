"""Helpers of the findings (巡视整改) tests: a pinned China date, recording and reading."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
from litestar.testing import AsyncTestClient

from domain.refs import CHINA_TZ
from services.auth import JwtConfig
from tests.support import Tree, auth, post_ok

PROBLEM = "application/problem+json"


def assert_problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["title"] and body["detail"] and body["type"]
    return body


def pin_china_noon(clock: Any) -> date:
    """Move the app clock to noon (China time) of the current China day, so that "today"
    cannot roll over between a command and the assertion; returns that date."""
    now: datetime = clock().astimezone(CHINA_TZ)
    noon = now.replace(hour=12, minute=0, second=0, microsecond=0)
    clock.advance(noon - now)
    return noon.date()


def advance_days(clock: Any, days: int) -> None:
    clock.advance(timedelta(days=days))


def finding_body(tree: Tree, due_on: date, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "node_code": tree.streets[0],
        "source": "省委第三巡视组",
        "round": "2024年第一轮",
        "description": "低保动态管理不到位，存在应退未退情况",
        "category": "deadline",
        "responsible_unit_code": tree.units[0],
        "due_on": due_on.isoformat(),
        "measures": ["建立困难群众动态监测台账", "每季度开展一次走访核查"],
    }
    body.update(overrides)
    return body


async def record_finding(
    client: AsyncTestClient[Any],
    jwt: JwtConfig,
    tree: Tree,
    due_on: date,
    *,
    headers: dict[str, str] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    h = headers or auth(jwt, tree.county, "operator")
    return await post_ok(client, "/v1/findings", finding_body(tree, due_on, **overrides), h)


async def read_finding(
    client: AsyncTestClient[Any], headers: dict[str, str], finding_id: str, position: int
) -> dict[str, Any]:
    r = await client.get(f"/v1/findings/{finding_id}?min_position={position}", headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert r.headers["etag"] == f'"{body["version"]}"'
    return body


async def event_types(pool: asyncpg.Pool, stream_id: str) -> list[str]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT type FROM events WHERE stream_id = $1 ORDER BY version", UUID(stream_id)
        )
    return [r["type"] for r in rows]


async def last_position(pool: asyncpg.Pool, stream_id: str) -> int:
    async with pool.acquire() as conn:
        position: int = await conn.fetchval(
            "SELECT max(position) FROM events WHERE stream_id = $1", UUID(stream_id)
        )
    return position


async def tick(app: Any) -> int:
    """One sweep of the app's deadline clock, run in the app's own event loop: the test client
    runs the app (its pool included) in a portal thread, and so must the clock."""
    fired: int = app.state.client.blocking_portal.call(app.state.deadline_clock.tick)
    return fired
