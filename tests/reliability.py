"""Helpers of the reliability suite (issue 7): the served OpenAPI document, problem checks.

The suite discovers endpoints from ``/schema/openapi.json`` so that an endpoint added later
is covered without touching the tests.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from litestar.testing import AsyncTestClient

from infra.settings import Settings

PROBLEM_JSON = "application/problem+json"
LONG = os.environ.get("CIVIC_LONG_TESTS", "").strip() not in ("", "0", "false", "no")

_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def long_or(short: int, long: int) -> int:
    """``long`` with CIVIC_LONG_TESTS=1, else ``short``."""
    return long if LONG else short


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    params: tuple[dict[str, Any], ...] = ()
    has_body: bool = False
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def path_params(self) -> list[str]:
        return _PARAM.findall(self.path)

    def query(self, name: str) -> dict[str, Any] | None:
        for p in self.params:
            if p.get("in") == "query" and p.get("name") == name:
                return p
        return None

    def required_query(self) -> list[dict[str, Any]]:
        return [p for p in self.params if p.get("in") == "query" and p.get("required")]

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def operations(doc: dict[str, Any], method: str | None = None) -> list[Operation]:
    """Every operation of the document (optionally of one method), sorted."""
    out: list[Operation] = []
    for path, item in doc.get("paths", {}).items():
        shared = item.get("parameters", [])
        for m, op in item.items():
            if m not in ("get", "post", "put", "patch", "delete"):
                continue
            if method is not None and m != method.lower():
                continue
            params = tuple(shared) + tuple(op.get("parameters", []))
            out.append(
                Operation(
                    method=m.upper(),
                    path=path,
                    params=params,
                    has_body="requestBody" in op,
                    raw=op,
                )
            )
    return sorted(out, key=lambda o: (o.path, o.method))


def is_api(op: Operation) -> bool:
    return op.path.startswith("/v1/")


def fill_path(path: str, code: str, *, ident: str | None = None) -> str:
    """Substitute path parameters: codes get ``code``, ids a UUID, indexes 0."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if "code" in name or name in ("node", "scope"):
            return code
        if name == "index":
            return "0"
        return ident or str(uuid.uuid4())

    return _PARAM.sub(value, path)


def query_defaults(op: Operation, code: str) -> dict[str, str]:
    """Values for the operation's required query parameters."""
    out: dict[str, str] = {}
    for p in op.required_query():
        name = p["name"]
        schema = p.get("schema", {})
        if "code" in name or name in ("node", "scope"):
            out[name] = code
        elif schema.get("type") == "integer":
            out[name] = str(max(int(schema.get("minimum", 1)), 1))
        elif schema.get("format") == "date":
            out[name] = "2025-01-01"
        elif schema.get("format") == "uuid":
            out[name] = str(uuid.uuid4())
        else:
            enum = schema.get("enum")
            out[name] = str(enum[0]) if enum else code
    return out


def assert_problem(response: Any, *statuses: int, where: str = "") -> dict[str, Any]:
    """The response is RFC 9457 problem+json with one of ``statuses`` (any 4xx if none)."""
    label = f"{where}: " if where else ""
    status = response.status_code
    if statuses:
        assert status in statuses, f"{label}{status} not in {statuses}: {response.text[:500]}"
    else:
        assert 400 <= status < 500, f"{label}expected a 4xx, got {status}: {response.text[:500]}"
    ctype = response.headers.get("content-type", "")
    assert ctype.startswith(PROBLEM_JSON), f"{label}{status} with content-type {ctype!r}"
    body = response.json()
    for key in ("type", "title", "status", "detail"):
        assert key in body, f"{label}problem without {key}: {body}"
    assert body["status"] == status, f"{label}{body}"
    return dict(body)


def walk_strings(value: Any) -> Iterator[str]:
    """Every string in a decoded JSON document (keys included)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from walk_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from walk_strings(v)


def looks_like_uuid(value: str) -> bool:
    return bool(_UUID.match(value))


@asynccontextmanager
async def extra_app(ctx: Any, **overrides: Any) -> AsyncIterator[AsyncTestClient[Any]]:
    """A second application on the session's database with some settings changed."""
    from services.app import create_app

    base = ctx.settings
    values: dict[str, Any] = {
        "database_url": base.database_url,
        "jwt_secret": base.jwt_secret,
        "log_level": "WARNING",
        "pool_min": 1,
        "pool_max": 4,
        "run_projector": False,
        "migrate_on_start": False,
        "default_language": base.default_language,
    }
    values.update(overrides)
    async with AsyncTestClient(create_app(Settings(**values))) as client:
        yield client


# -- workflow aggregates, whichever endpoints exist ----------------------------------------


def workflow_bodies(community: str, unit: str, n: int) -> dict[str, dict[str, Any]]:
    """One valid body per workflow endpoint of API.md, for a community and a unit of a tree."""
    import datetime as dt

    today = dt.date.today()
    return {
        "/v1/pairings": {
            "unit_code": unit,
            "community_code": community,
            # one unit never pairs twice with one community in overlapping terms: a term of
            # two days per n keeps requests legal (dates must fall before 2101: n < 13,000)
            "starts_on": (today + dt.timedelta(days=2 * n)).isoformat(),
            "ends_on": (today + dt.timedelta(days=2 * n + 1)).isoformat(),
            "commitments": [
                {"title": "共建活动", "due_on": (today + dt.timedelta(days=2 * n)).isoformat()}
            ],
        },
        "/v1/issues": {
            "node_code": community,
            "title": f"路灯不亮 {n}",
            "category": "市政设施",
            "source": "grid",
        },
        "/v1/members": {
            "community_code": community,
            "name": "张三丰",
            "phone": f"138{uuid.uuid4().int % 10**8:08d}",
            "home_unit_code": unit,
        },
        "/v1/findings": {
            "node_code": community,
            "source": "区委第一巡察组",
            "description": f"台账不全 {n}",
            "responsible_unit_code": unit,
            "due_on": (today + dt.timedelta(days=20)).isoformat(),
            "measures": ["建立台账"],
        },
    }


def workflow_paths(doc: dict[str, Any]) -> list[str]:
    """The workflow creation endpoints the served document has (others are skipped)."""
    posts = {op.path for op in operations(doc, "POST")}
    return [p for p in ("/v1/pairings", "/v1/issues", "/v1/members", "/v1/findings") if p in posts]


# -- a scratch database for writes that may poison it ----------------------------------------


@asynccontextmanager
async def scratch_database(server_url: str) -> AsyncIterator[str]:
    """A fresh, migrated database on the test server, dropped afterwards.

    Hostile writes go here: a value the API accepts but a projection cannot apply stops that
    projection for everyone (the runner never skips an event), and must not take the
    session's database down with it.
    """
    import secrets

    import asyncpg

    from infra import migrator
    from infra.dsn import with_database

    name = f"civic_scratch_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = with_database(server_url, name)
    try:
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


async def stuck_projections(database_url: str, timeout: float = 15.0) -> list[str]:
    """Projections that have not caught up with the store within ``timeout`` (with why)."""
    import asyncio
    import time

    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        top = await conn.fetchval("SELECT coalesce(max(position), 0) FROM events")
        deadline = time.monotonic() + timeout
        while True:
            rows = await conn.fetch("SELECT name, position, error FROM projection_checkpoints")
            behind = [r for r in rows if r["position"] < top or r["error"]]
            if not behind or time.monotonic() > deadline:
                return [f"{r['name']} at {r['position']} < {top}: {r['error']}" for r in behind]
            await asyncio.sleep(0.2)
    finally:
        await conn.close()
