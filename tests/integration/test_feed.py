"""GET /v1/feed: CloudEvents, no repeats and no gaps under concurrent writers, scope, SSE."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import httpx
import msgspec
import uvicorn

from infra.event_codec import NewEvent
from infra.event_store import AppendContext, EventStore, TxAppender
from services.cloudevents import contract_name_of, event_type
from tests.support import auth, build_tree, post_ok

PROBLEM = "application/problem+json"
EXTENSION_NAME = re.compile(r"^[a-z0-9]{1,20}$")


# -- helpers ------------------------------------------------------------------------------


async def settled(pool: Any, position: int, timeout: float = 30.0) -> None:
    """Wait until ``position`` is below the horizon (every earlier transaction finished)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await pool.fetchval("SELECT civic_horizon()") > position:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"position {position} did not settle within {timeout} s")


async def events_in(pool: Any, code: str) -> list[tuple[int, str]]:
    """(position, event id) of every event in the subtree of ``code``, as the system sees it."""
    rows = await pool.fetch(
        """
        SELECT e.position, e.event_id::text AS id FROM events e
        JOIN nodes n ON n.id = e.node_id
        JOIN nodes s ON s.code = $1
        WHERE e.root_id = s.root_id AND n.path >= s.path AND n.path < left(s.path, -1) || '0'
        ORDER BY e.position
        """,
        code,
    )
    return [(r["position"], r["id"]) for r in rows]


async def read_feed(
    client: Any, headers: dict[str, str], after: int = 0, limit: int = 500, max_pages: int = 1000
) -> tuple[list[dict[str, Any]], int]:
    """Follow ``next`` until a short page; returns (items, last next)."""
    items: list[dict[str, Any]] = []
    for _ in range(max_pages):
        r = await client.get(f"/v1/feed?after={after}&limit={limit}", headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["next"] >= after
        items.extend(body["items"])
        after = body["next"]
        if len(body["items"]) < limit:
            return items, after
    raise AssertionError("the feed did not end")


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """Serve the (already started) session app over real HTTP on 127.0.0.1.

    The test client runs the app, its pool and its workers in a portal thread's event loop;
    uvicorn must run there too, so it is started through that portal.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, lifespan="off", log_level="warning", access_log=False, timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    running = app.state.client.blocking_portal.start_task_soon(server.serve, [sock])
    try:
        for _ in range(500):
            if server.started or running.done():
                break
            await asyncio.sleep(0.01)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.wrap_future(running), 10)
        sock.close()


class SSEReader:
    """Parses a text/event-stream response into messages; comments come as {"comment": ...}."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.aiter_lines()
        self.comments: list[str] = []

    async def next(self, timeout: float = 10.0, *, comments: bool = False) -> dict[str, str] | None:
        """The next dispatched message (fields id/event/data), or None at the end.

        A timeout fails the test (it is never used to poll: it would break the stream).
        """
        fields: dict[str, str] = {}
        async with asyncio.timeout(timeout):
            async for line in self._lines:
                if line == "":
                    if "data" in fields:
                        return fields
                    fields = {}
                    continue
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                    if comments:
                        return {"comment": line[1:].strip()}
                    continue
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "data" and name in fields:
                    value = fields[name] + "\n" + value
                fields[name] = value
        return None


# -- the paged feed -----------------------------------------------------------------------


async def test_feed_items_are_cloudevents(client, jwt, pool):
    tree = await build_tree(client, jwt, streets=1, communities=2, units=1)
    await settled(pool, tree.last_position)
    items, nxt = await read_feed(client, auth(jwt, tree.county, "integrator"))
    expected = await events_in(pool, tree.county)
    assert [(int(i["position"]), i["id"]) for i in items] == expected
    assert nxt >= expected[-1][0]

    street = tree.streets[0]
    community = tree.communities[street][1]
    ce = next(i for i in items if i["nodecode"] == community)
    assert ce["specversion"] == "1.0"
    assert ce["type"] == "cn.civic-ledger.node.registered.v1"
    assert ce["source"] == f"/civic-ledger/{tree.county}/{street}/{community}"
    assert ce["datacontenttype"] == "application/json"
    assert ce["streamtype"] == "node" and ce["streamversion"] == 1 and ce["nodeseq"] == 1
    assert ce["actor"] == f"tester@{tree.county}"
    assert ce["data"]["code"] == community and ce["data"]["name"] == "第2社区"
    assert ce["time"].endswith("Z") and ce["recordedat"].endswith("Z")
    assert ce["subject"] and ce["id"]
    core = {"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data"}
    for name in set(ce) - core:
        assert EXTENSION_NAME.match(name), name
    # positions only grow; the cursor after a page is the last position of a full page
    positions = [int(i["position"]) for i in items]
    assert positions == sorted(set(positions))
    r = await client.get("/v1/feed?after=0&limit=2", headers=auth(jwt, tree.county, "integrator"))
    assert r.json()["next"] == int(r.json()["items"][-1]["position"])
    # resuming after the last item gives the rest, nothing twice
    rest, _ = await read_feed(
        client, auth(jwt, tree.county, "admin"), after=int(items[1]["position"])
    )
    assert [i["id"] for i in rest] == [i["id"] for i in items[2:]]


def test_event_type_mapping_is_reversible():
    assert event_type("IssueReported", 1) == "cn.civic-ledger.issue.reported.v1"
    assert (
        event_type("RectificationProgressReported", 2)
        == "cn.civic-ledger.rectification.progress-reported.v2"
    )
    for name in ("IssueReported", "EscalationOverdue", "IssueEscalationAnswered", "Ping"):
        assert contract_name_of(event_type(name, 3)) == (name, 3)
    assert contract_name_of("com.example.thing.v1") is None


async def test_feed_roles_and_bad_input(client, jwt):
    tree = await build_tree(client, jwt, streets=1, communities=1, units=0)
    for role in ("viewer", "operator", "unit", "inspector"):
        r = await client.get("/v1/feed", headers=auth(jwt, tree.county, role))
        assert r.status_code == 403, (role, r.text)
        assert r.headers["content-type"].startswith(PROBLEM)
    assert (await client.get("/v1/feed")).status_code == 401
    integrator = auth(jwt, tree.county, "integrator")
    for query in ("after=-1", "limit=0", "limit=501", "after=x"):
        r = await client.get(f"/v1/feed?{query}", headers=integrator)
        assert r.status_code == 400, (query, r.text)
    # a cursor far ahead answers an empty page and never moves backwards
    far = 1 << 60
    r = await client.get(f"/v1/feed?after={far}", headers=integrator)
    assert r.status_code == 200 and r.json() == {"items": [], "next": far}


async def append_slowly(pool: Any, code: str, started: asyncio.Event, hold: float) -> int:
    """Append a NodeRenamed in a transaction that commits ``hold`` seconds later.

    Its position is taken early, so transactions that start after it commit greater
    positions first: a reader that did not wait for the horizon would skip this event.
    """
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT e.root_id, e.node_id, e.stream_id, max(e.version) OVER () AS version"
            " FROM events e JOIN nodes n ON n.id = e.node_id"
            " WHERE n.code = $1 AND e.stream_type = 'node' ORDER BY e.version DESC LIMIT 1",
            code,
        )
        result = await EventStore().append(
            TxAppender(conn),
            root_id=row["root_id"],
            node_id=row["node_id"],
            stream_id=row["stream_id"],
            stream_type="node",
            expected_version=row["version"],
            events=[
                NewEvent(
                    event_id=uuid4(),
                    type="NodeRenamed",
                    schema_version=1,
                    data=msgspec.json.encode({"name": "慢慢改名"}),
                    occurred_at=datetime.now(UTC),
                )
            ],
            context=AppendContext(actor="test:slow-writer"),
        )
        started.set()
        await asyncio.sleep(hold)
    return result.position


async def test_concurrent_writers_every_event_once_in_order(app, client, jwt, pool):
    tree = await build_tree(client, jwt, streets=2, communities=1, units=0)
    admin = auth(jwt, tree.county, "admin")
    integrator = auth(jwt, tree.county, "integrator")
    writers, per_writer = 4, 6
    done = asyncio.Event()
    last_positions: list[int] = []
    seen: list[dict[str, Any]] = []
    slow_started = asyncio.Event()

    async with serve(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:

        async def writer(w: int) -> None:
            street = tree.streets[w % 2]
            if w == 0:
                await slow_started.wait()  # the others start before and after the slow one
            for k in range(per_writer):
                code = f"{street[:9]}{10 + w * per_writer + k:03d}"
                body = {
                    "code": code,
                    "name": f"社区{w}-{k}",
                    "kind": "community",
                    "parent_code": street,
                }
                r = await http.post("/v1/nodes", json=body, headers=admin)
                assert r.status_code == 201, r.text
                last_positions.append(r.json()["position"])

        async def consumer() -> None:
            after = 0
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                r = await http.get(f"/v1/feed?after={after}&limit=5", headers=integrator)
                assert r.status_code == 200, r.text
                body = r.json()
                seen.extend(body["items"])
                assert body["next"] >= after
                after = body["next"]
                if done.is_set() and len(body["items"]) < 5 and after >= max(last_positions):
                    return
                await asyncio.sleep(0.005)
            raise AssertionError("the consumer did not catch up")

        consuming = asyncio.create_task(consumer())
        slow = asyncio.create_task(
            append_slowly(pool, tree.communities[tree.streets[0]][0], slow_started, 1.0)
        )
        await asyncio.gather(*(writer(w) for w in range(writers)))
        slow_position = await slow
        last_positions.append(slow_position)
        await settled(pool, max(last_positions))
        done.set()
        await asyncio.wait_for(consuming, 70)

    positions = [int(i["position"]) for i in seen]
    assert positions == sorted(positions), "out of order"
    assert len(positions) == len(set(positions)), "an event came twice"
    assert [(int(i["position"]), i["id"]) for i in seen] == await events_in(pool, tree.county)
    assert len(seen) == 1 + 2 + 2 + writers * per_writer + 1
    # the slow transaction's event committed after greater positions, and was not skipped
    assert slow_position in positions
    assert any(p > slow_position for p in positions)


async def test_feed_is_scoped_to_the_callers_subtree(client, jwt, pool):
    tree = await build_tree(client, jwt, streets=2, communities=2, units=1)
    other = await build_tree(client, jwt, streets=1, communities=1, units=0)
    await settled(pool, other.last_position)
    a, b = tree.streets
    items, _ = await read_feed(client, auth(jwt, a, "integrator"))
    assert [(int(i["position"]), i["id"]) for i in items] == await events_in(pool, a)
    assert {i["nodecode"] for i in items} == {a, *tree.communities[a]}
    assert all(i["source"].startswith(f"/civic-ledger/{tree.county}/{a}") for i in items)
    other_ids = {e for _, e in await events_in(pool, other.county)}
    b_ids = {e for _, e in await events_in(pool, b)}
    ids = {i["id"] for i in items}
    assert not ids & other_ids and not ids & b_ids
    # the other tenant's county sees none of this tenant, and vice versa
    theirs, _ = await read_feed(client, auth(jwt, other.county, "admin"))
    assert {i["id"] for i in theirs} == other_ids
    # a community's token sees only that community
    community = tree.communities[b][0]
    mine, _ = await read_feed(client, auth(jwt, community, "integrator"))
    assert {i["nodecode"] for i in mine} == {community}


# -- the live feed (Server-Sent Events) ---------------------------------------------------


async def test_sse_streams_live_heartbeats_and_resumes(app, client, jwt, pool):
    tree = await build_tree(client, jwt, streets=1, communities=2, units=0)
    await settled(pool, tree.last_position)
    expected = await events_in(pool, tree.county)
    config = app.state.feed_config
    saved = (config.heartbeat_seconds, config.max_stream_seconds)
    config.heartbeat_seconds = 0.3
    headers = {**auth(jwt, tree.county, "integrator"), "Accept": "text/event-stream"}
    street = tree.streets[0]
    try:
        async with (
            serve(app) as base,
            httpx.AsyncClient(base_url=base, timeout=20) as http,
        ):
            got: list[dict[str, str]] = []
            listeners = app.state.live.listeners
            async with http.stream("GET", "/v1/feed?after=0", headers=headers) as r:
                assert r.status_code == 200
                assert r.headers["content-type"].startswith("text/event-stream")
                sse = SSEReader(r)
                for _ in range(len(expected)):
                    message = await sse.next()
                    assert message is not None
                    got.append(message)
                assert app.state.live.listeners == listeners + 1
                # live: a new event arrives on the open stream
                created = await post_ok(
                    client,
                    "/v1/nodes",
                    {
                        "code": f"{street[:9]}050",
                        "name": "新社区",
                        "kind": "community",
                        "parent_code": street,
                    },
                    auth(jwt, tree.county, "admin"),
                )
                message = await sse.next(timeout=15)
                assert message is not None and int(message["id"]) == created["position"]
                got.append(message)
                # idle: heartbeats
                for _ in range(20):
                    if "keep-alive" in sse.comments:
                        break
                    message = await sse.next(timeout=5, comments=True)
                    assert message is not None and "comment" in message, message
                assert "keep-alive" in sse.comments
            # the client hung up: the server side of the stream stops
            for _ in range(250):
                if app.state.live.listeners <= listeners:
                    break
                await asyncio.sleep(0.02)
            assert app.state.live.listeners <= listeners, "the stream outlived its client"
            ids = [(int(m["id"]), json.loads(m["data"])["id"]) for m in got]
            assert ids == await events_in(pool, tree.county)
            for m in got:
                ce = json.loads(m["data"])
                assert m["event"] == ce["type"] and m["id"] == ce["position"]

            # resume from Last-Event-ID (it overrides after=)
            resume_at = 2
            async with http.stream(
                "GET",
                "/v1/feed?after=0",
                headers={**headers, "Last-Event-ID": got[resume_at]["id"]},
            ) as r:
                sse = SSEReader(r)
                again = []
                for _ in range(len(got) - resume_at - 1):
                    message = await sse.next()
                    assert message is not None
                    again.append(message["id"])
                assert again == [m["id"] for m in got[resume_at + 1 :]]

            # bounded: the stream ends by itself after the maximum duration
            config.max_stream_seconds = 0.5
            started = time.monotonic()
            async with http.stream("GET", "/v1/feed", headers=headers) as r:
                sse = SSEReader(r)
                while await sse.next(timeout=10) is not None:
                    pass
            assert time.monotonic() - started < 8

            # a bad Last-Event-ID is a 400, a viewer a 403 (as problem+json, not a stream)
            r = await http.get("/v1/feed", headers={**headers, "Last-Event-ID": "nope"})
            assert r.status_code == 400
            r = await http.get(
                "/v1/feed",
                headers={**auth(jwt, tree.county, "viewer"), "Accept": "text/event-stream"},
            )
            assert r.status_code == 403 and r.headers["content-type"].startswith(PROBLEM)
    finally:
        config.heartbeat_seconds, config.max_stream_seconds = saved


async def test_openapi_describes_the_integration_endpoints(client):
    r = await client.get("/schema/openapi.json")
    assert r.status_code == 200, r.text
    doc = r.json()
    paths = doc["paths"]
    assert "get" in paths["/v1/feed"]
    assert {"get", "post"} <= set(paths["/v1/webhooks"])
    assert {"get", "delete"} <= set(paths["/v1/webhooks/{webhook_id}"])
    assert "get" in paths["/v1/webhooks/{webhook_id}/deliveries"]
    assert "post" in paths["/v1/webhooks/{webhook_id}/redrive"]
    feed = paths["/v1/feed"]["get"]["responses"]["200"]["content"]["application/json"]
    assert feed["schema"]["$ref"].endswith("/FeedPageDoc")
    assert "secret" not in doc["components"]["schemas"]["WebhookView"]["properties"]
