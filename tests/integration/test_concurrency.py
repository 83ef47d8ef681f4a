"""64 concurrent commands on one aggregate: exactly the legal ones succeed (issue 7).

Versions stay contiguous, every success is recorded at the version it answered, nothing
that succeeded is overwritten by a later writer that did not see it (no lost update).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import msgspec
import pytest

from infra.database import system_transaction
from infra.event_codec import NewEvent
from infra.event_store import AppendContext, ConcurrencyError, EventStore, TxAppender
from tests.reliability import assert_problem
from tests.support import Tree, auth, build_tree

pytestmark = pytest.mark.load

N = 64


@pytest.fixture
async def tree(client: Any, jwt: Any) -> Tree:
    return await build_tree(client, jwt, streets=2, communities=2, units=0)


async def node_events(pool: Any, code: str) -> list[dict[str, Any]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT e.version, e.type, e.data::text AS data, e.position, e.idempotency_key"
            " FROM events e WHERE e.stream_id = (SELECT id FROM nodes WHERE code = $1)"
            " ORDER BY e.version",
            code,
        )
    return [dict(r) for r in rows]


def contiguous(events: list[dict[str, Any]]) -> None:
    assert [e["version"] for e in events] == list(range(1, len(events) + 1)), events
    positions = [e["position"] for e in events]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)


async def test_64_renames_with_one_if_match_have_exactly_one_winner(
    client: Any, jwt: Any, pool: Any, tree: Tree
):
    street = tree.streets[0]
    admin = auth(jwt, tree.county, "admin")

    async def rename(i: int) -> Any:
        return await client.post(
            f"/v1/nodes/{street}/rename",
            json={"name": f"街道{i}"},
            headers={**admin, "if-match": '"1"', "idempotency-key": uuid.uuid4().hex},
        )

    results = await asyncio.gather(*(rename(i) for i in range(N)))
    ok = [r for r in results if r.status_code == 200]
    assert len(ok) == 1, [r.status_code for r in results]
    for r in results:
        if r.status_code != 200:
            assert_problem(r, 412)
    events = await node_events(pool, street)
    contiguous(events)
    assert [e["type"] for e in events] == ["NodeRegistered", "NodeRenamed"]
    winner = ok[0].json()
    assert winner["version"] == 2 and winner["position"] == events[1]["position"]
    assert msgspec.json.decode(events[1]["data"])["name"] in {f"街道{i}" for i in range(N)}


async def test_64_renames_without_if_match_lose_no_update(
    client: Any, jwt: Any, pool: Any, tree: Tree
):
    street = tree.streets[1]
    admin = auth(jwt, tree.county, "admin")
    names = [f"第{i}号街道" for i in range(N)]

    async def rename(name: str) -> Any:
        return await client.post(
            f"/v1/nodes/{street}/rename",
            json={"name": name},
            headers={**admin, "idempotency-key": uuid.uuid4().hex},
        )

    results = await asyncio.gather(*(rename(n) for n in names))
    ok = {}
    for name, r in zip(names, results, strict=True):
        if r.status_code == 200:
            ok[r.json()["version"]] = (name, r.json()["position"])
        else:
            # conflicts past the retry budget are refused, never half-applied
            assert_problem(r, 409, 503)
    assert ok, "no rename succeeded"
    events = await node_events(pool, street)
    contiguous(events)
    renamed = events[1:]
    assert len(renamed) == len(ok), (len(renamed), len(ok))
    for e in renamed:  # every success is recorded at the version and position it answered
        name, position = ok[e["version"]]
        assert msgspec.json.decode(e["data"])["name"] == name
        assert e["position"] == position
    last_name = ok[max(ok)][0]
    r = await client.get(
        f"/v1/nodes/{street}?min_position={max(p for _, p in ok.values())}", headers=admin
    )
    assert r.status_code == 200 and r.json()["name"] == last_name, r.text
    assert r.headers["etag"] == f'"{len(events)}"'


async def test_64_closes_of_one_node_close_it_once(client: Any, jwt: Any, pool: Any, tree: Tree):
    community = tree.communities[tree.streets[0]][0]
    admin = auth(jwt, tree.county, "admin")

    async def close(i: int) -> Any:
        return await client.post(
            f"/v1/nodes/{community}/close",
            json={"reason": f"撤并{i}"},
            headers={**admin, "idempotency-key": uuid.uuid4().hex},
        )

    results = await asyncio.gather(*(close(i) for i in range(N)))
    statuses = [r.status_code for r in results]
    assert statuses.count(200) == 1, statuses
    for r in results:
        if r.status_code != 200:
            assert_problem(r, 409)
    events = await node_events(pool, community)
    contiguous(events)
    assert [e["type"] for e in events] == ["NodeRegistered", "NodeClosed"]


async def test_64_registrations_of_one_code_create_it_once(
    client: Any, jwt: Any, pool: Any, tree: Tree
):
    community = tree.communities[tree.streets[0]][1]
    code = f"G{community}-777"
    admin = auth(jwt, tree.county, "admin")

    async def register(i: int) -> Any:
        return await client.post(
            "/v1/nodes",
            json={"code": code, "name": f"网格{i}", "kind": "grid", "parent_code": community},
            headers={**admin, "idempotency-key": uuid.uuid4().hex},
        )

    results = await asyncio.gather(*(register(i) for i in range(N)))
    statuses = [r.status_code for r in results]
    assert statuses.count(201) == 1, statuses
    for r in results:
        if r.status_code != 201:
            assert_problem(r, 409)
    async with pool.acquire() as conn:
        streams = await conn.fetchval(
            "SELECT count(*) FROM events WHERE type = 'NodeRegistered' AND data->>'code' = $1",
            code,
        )
    assert streams == 1


async def test_64_twins_with_one_idempotency_key_get_one_answer(
    client: Any, jwt: Any, pool: Any, tree: Tree
):
    community = tree.communities[tree.streets[1]][1]
    code = f"G{community}-778"
    admin = auth(jwt, tree.county, "admin")
    key = uuid.uuid4().hex
    body = {"code": code, "name": "网格", "kind": "grid", "parent_code": community}

    results = await asyncio.gather(
        *(
            client.post("/v1/nodes", json=body, headers={**admin, "idempotency-key": key})
            for _ in range(N)
        )
    )
    statuses = [r.status_code for r in results]
    assert set(statuses) == {201}, statuses
    assert len({r.content for r in results}) == 1  # the one first answer, replayed
    async with pool.acquire() as conn:
        stored = await conn.fetchval("SELECT count(*) FROM events WHERE idempotency_key = $1", key)
    assert stored == 1


async def test_64_concurrent_store_appends_at_one_version(pool: Any):
    """The store alone: 64 writers expecting version 3 of one stream, one wins."""
    store = EventStore()
    root, node, stream = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    ctx = AppendContext(actor="test@concurrency")

    def event(i: int) -> NewEvent:
        from datetime import UTC, datetime

        return NewEvent(
            uuid.uuid4(), "TestHappened", 1, msgspec.json.encode({"i": i}), datetime.now(UTC)
        )

    async def append(expected: int, i: int) -> int | None:
        async with pool.acquire() as conn, system_transaction(conn):
            try:
                result = await store.append(
                    TxAppender(conn),
                    root_id=root,
                    node_id=node,
                    stream_id=stream,
                    stream_type="test",
                    expected_version=expected,
                    events=[event(i)],
                    context=ctx,
                )
            except ConcurrencyError:
                return None
            return result.version

    assert await append(0, -2) == 1 and await append(1, -1) == 2
    outcomes = await asyncio.gather(*(append(2, i) for i in range(N)))
    winners = [v for v in outcomes if v is not None]
    assert winners == [3], outcomes
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT version, node_seq FROM events WHERE stream_id = $1 ORDER BY version", stream
        )
    assert [r["version"] for r in rows] == [1, 2, 3]
    assert [r["node_seq"] for r in rows] == [1, 2, 3]
