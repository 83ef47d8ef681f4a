"""Test helpers: tokens, fresh random tenant trees (each test gets its own root)."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from typing import Any

from litestar.testing import AsyncTestClient

from services.auth import JwtConfig, issue_token

_counter = itertools.count(1)


def fresh_county_code() -> str:
    """A 12-digit county code no other test in this run uses."""
    n = next(_counter)
    prefix = random.randint(100, 899) * 1000 + n % 1000
    return f"{prefix:06d}000000"


def token(jwt: JwtConfig, scope: str, *roles: str, sub: str = "tester", **kw: Any) -> str:
    return issue_token(jwt, subject=sub, scope=scope, roles=list(roles), **kw)


def auth(jwt: JwtConfig, scope: str, *roles: str, sub: str = "tester") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(jwt, scope, *roles, sub=sub)}"}


def metrics_auth(client: AsyncTestClient[Any]) -> dict[str, str]:
    """The scraper's header for ``GET /metrics`` of a test app (CIVIC_METRICS_TOKEN)."""
    return {"Authorization": f"Bearer {client.app.state.ctx.settings.metrics_token}"}


@dataclass
class Tree:
    """county → streets → communities (+ a unit under the county)."""

    county: str
    streets: list[str] = field(default_factory=list)
    communities: dict[str, list[str]] = field(default_factory=dict)
    units: list[str] = field(default_factory=list)
    last_position: int = 0


async def post_ok(
    client: AsyncTestClient[Any],
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    expect: int = 201,
) -> dict[str, Any]:
    r = await client.post(url, json=body, headers=headers)
    assert r.status_code == expect, (url, r.status_code, r.text)
    data: dict[str, Any] = r.json()
    return data


async def build_tree(
    client: AsyncTestClient[Any],
    jwt: JwtConfig,
    *,
    streets: int = 2,
    communities: int = 2,
    units: int = 1,
) -> Tree:
    county = fresh_county_code()
    admin = auth(jwt, county, "admin")
    tree = Tree(county=county)
    r = await post_ok(
        client,
        "/v1/nodes",
        {"code": county, "name": "测试区", "kind": "county", "parent_code": None},
        admin,
    )
    tree.last_position = r["position"]
    for s in range(1, streets + 1):
        street = f"{county[:6]}{s:03d}000"
        await post_ok(
            client,
            "/v1/nodes",
            {"code": street, "name": f"第{s}街道", "kind": "street", "parent_code": county},
            admin,
        )
        tree.streets.append(street)
        tree.communities[street] = []
        for c in range(1, communities + 1):
            community = f"{street[:9]}{c:03d}"
            r = await post_ok(
                client,
                "/v1/nodes",
                {
                    "code": community,
                    "name": f"第{c}社区",
                    "kind": "community",
                    "parent_code": street,
                },
                admin,
            )
            tree.communities[street].append(community)
            tree.last_position = r["position"]
    for u in range(1, units + 1):
        unit = f"U{county[:6]}{u:03d}"
        r = await post_ok(
            client,
            "/v1/nodes",
            {"code": unit, "name": f"县第{u}局", "kind": "unit", "parent_code": county},
            admin,
        )
        tree.units.append(unit)
        tree.last_position = r["position"]
    return tree
