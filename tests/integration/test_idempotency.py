"""Idempotency-Key under races: concurrent twins produce one command and one response."""

from __future__ import annotations

import asyncio

from infra.database import hex_bytea, hex_text
from tests.support import auth, build_tree


async def test_concurrent_requests_with_one_key_run_once(client, jwt, pool):
    tree = await build_tree(client, jwt, streets=1, communities=0, units=0)
    h = {**auth(jwt, tree.county, "admin"), "Idempotency-Key": "twin-street"}
    body = {
        "code": f"{tree.county[:6]}002000",
        "name": "二街道",
        "kind": "street",
        "parent_code": tree.county,
    }
    responses = await asyncio.gather(
        *(client.post("/v1/nodes", json=body, headers=h) for _ in range(6))
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.text for r in responses}) == 1
    async with pool.acquire() as conn:
        count = await conn.fetchval(
            "SELECT count(*) FROM events WHERE type = 'NodeRegistered' AND data->>'code' = $1",
            body["code"],
        )
    assert count == 1


async def test_hex_literals_survive_hostile_text(pool):
    hostile = '\'); DROP TABLE events; -- 北山 \\x00ff $$ "quoted"'
    async with pool.acquire() as conn:
        text = await conn.fetchval(f"SELECT {hex_text(hostile)}")
        blob = b"\x00\xff" + hostile.encode()
        raw = await conn.fetchval(f"SELECT {hex_bytea(blob)}")
    assert text == hostile
    assert raw == b"\x00\xff" + hostile.encode()
