"""Webhooks: signed, ordered, retried, dead-lettered and re-driven deliveries to a real
receiver on 127.0.0.1; subscription management, scope and the write-only secret."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
import uvicorn

from services.live import LiveSignal
from services.webhooks.delivery import RetryPolicy, WebhookWorker, verify_signature
from tests.support import auth, build_tree, post_ok

SECRET = "s3cret-webhook-key-0123456789"


# -- a receiver that fails on purpose -----------------------------------------------------


@dataclass
class Hit:
    path: str
    event: dict[str, Any]
    headers: dict[str, str]
    status: int
    signature_ok: bool


@dataclass
class Receiver:
    """An ASGI app: fails the first ``fail_first`` attempts of every event, and every
    attempt of the types in ``poison``; checks each signature independently."""

    secret: str = SECRET
    fail_first: int = 2
    poison: set[str] = field(default_factory=set)
    hits: list[Hit] = field(default_factory=list)
    attempts: Counter[tuple[str, str]] = field(default_factory=Counter)

    def acked(self, path: str = "/hook") -> list[dict[str, Any]]:
        return [h.event for h in self.hits if h.path == path and 200 <= h.status < 300]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        timestamp = headers.get("x-civic-timestamp", "")
        expected = hmac.new(
            self.secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256
        ).hexdigest()
        plain = hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        signature_ok = (
            hmac.compare_digest("sha256=" + plain, headers.get("x-civic-signature", ""))
            and hmac.compare_digest(
                "sha256=" + expected, headers.get("x-civic-timestamped-signature", "")
            )
            and abs(time.time() - int(timestamp)) < 300
        )
        event = json.loads(body)
        key = (scope["path"], headers["x-civic-event-id"])
        self.attempts[key] += 1
        if not signature_ok:
            status = 401
        elif event["type"] in self.poison or self.attempts[key] <= self.fail_first:
            status = 500
        else:
            status = 204
        self.hits.append(Hit(scope["path"], event, headers, status, signature_ok))
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@contextlib.asynccontextmanager
async def serve_receiver(receiver: Receiver) -> AsyncIterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            receiver,
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        assert server.started
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        sock.close()


@pytest.fixture
def fast_retries(app: Any) -> Any:
    """Retry in milliseconds, at most 4 attempts; restored afterwards."""
    worker = app.state.webhooks
    saved = (worker.config.policy, worker.config.poll_seconds, worker.config.refresh_seconds)
    worker.config.policy = RetryPolicy(base_seconds=0.01, cap_seconds=0.05, max_attempts=4)
    worker.config.poll_seconds = 0.2
    worker.config.refresh_seconds = 0.2
    yield worker
    worker.config.policy, worker.config.poll_seconds, worker.config.refresh_seconds = saved


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def scope_events(pool: Any, code: str, after: int) -> list[tuple[int, str, str]]:
    rows = await pool.fetch(
        """
        SELECT e.position, e.event_id::text AS id, e.type FROM events e
        JOIN nodes n ON n.id = e.node_id
        JOIN nodes s ON s.code = $1
        WHERE e.root_id = s.root_id AND n.path >= s.path AND n.path < left(s.path, -1) || '0'
          AND e.position > $2
        ORDER BY e.position
        """,
        code,
        after,
    )
    return [(r["position"], r["id"], r["type"]) for r in rows]


async def community(client: Any, jwt: Any, county: str, street: str, n: int) -> int:
    code = f"{street[:9]}{n:03d}"
    body = {"code": code, "name": f"社区{n}", "kind": "community", "parent_code": street}
    r = await post_ok(client, "/v1/nodes", body, auth(jwt, county, "admin"))
    position: int = r["position"]
    return position


# -- delivery -----------------------------------------------------------------------------


async def test_every_event_arrives_once_in_order_signed(app, client, jwt, pool, fast_retries):
    tree = await build_tree(client, jwt, streets=2, communities=1, units=0)
    a, b = tree.streets
    receiver = Receiver(fail_first=2)
    async with serve_receiver(receiver) as base:
        integrator = auth(jwt, a, "integrator")
        sub = await post_ok(
            client, "/v1/webhooks", {"url": f"{base}/hook", "secret": SECRET}, integrator
        )
        renamed_only = await post_ok(
            client,
            "/v1/webhooks",
            {
                "url": f"{base}/renamed",
                "secret": SECRET,
                "types": ["cn.civic-ledger.node.renamed.v1"],
            },
            integrator,
        )
        assert renamed_only["types"] == ["NodeRenamed"]
        assert "secret" not in sub and SECRET not in json.dumps(sub)
        assert sub["scope"] == a and sub["status"] == "active"

        for n in range(10, 16):
            await community(client, jwt, tree.county, a, n)
        await community(client, jwt, tree.county, b, 10)  # another street: not delivered
        await post_ok(
            client,
            f"/v1/nodes/{a[:9]}010/rename",
            {"name": "改名社区"},
            auth(jwt, tree.county, "admin"),
            expect=200,
        )
        last = await community(client, jwt, tree.county, a, 16)

        # Delivery starts at the settled end of the feed when the subscription was made: events
        # committed just before may come too (the horizon can lag), none after is missed.
        expected = await scope_events(pool, a, sub["position"])
        assert len(expected) >= 8 and expected[-1][0] == last

        async def all_acked() -> bool:
            return len(receiver.acked()) >= len(expected) and len(receiver.acked("/renamed")) >= 1

        await eventually(all_acked)
        await asyncio.sleep(0.5)  # nothing more may come

    acked = receiver.acked()
    assert [(int(e["position"]), e["id"], e["type"]) for e in acked] == [
        (p, i, f"cn.civic-ledger.node.{t[4:].lower()}.v1") for p, i, t in expected
    ]
    assert all(h.signature_ok for h in receiver.hits)
    # each event: two failures, then the acknowledged third attempt — never again after it
    for pos, event_id, _ in expected:
        hits = [h for h in receiver.hits if h.path == "/hook" and h.event["id"] == event_id]
        assert [h.headers["x-civic-delivery-attempt"] for h in hits] == ["1", "2", "3"]
        assert [h.status for h in hits] == [500, 500, 204]
        assert all(h.headers["x-civic-position"] == str(pos) for h in hits)
        assert all(h.headers["x-civic-webhook-id"] == sub["id"] for h in hits)
        assert all(
            h.headers["content-type"].startswith("application/cloudevents+json") for h in hits
        )
    # the type filter: only the rename went to the second subscription
    assert [e["type"] for e in receiver.acked("/renamed")] == ["cn.civic-ledger.node.renamed.v1"]

    r = await client.get(f"/v1/webhooks/{sub['id']}", headers=auth(jwt, a, "integrator"))
    view = r.json()
    assert view["delivered"] == len(expected) and view["dead"] == 0 and view["pending"] == 0
    assert view["position"] >= last
    r = await client.get(
        f"/v1/webhooks/{sub['id']}/deliveries?status=delivered&limit=3",
        headers=auth(jwt, a, "admin"),
    )
    page = r.json()
    assert [d["position"] for d in page["items"]] == [p for p, _, _ in expected[:3]]
    assert all(d["attempts"] == 3 and d["status"] == "delivered" for d in page["items"])
    r = await client.get(
        f"/v1/webhooks/{sub['id']}/deliveries?status=delivered&cursor={page['next_cursor']}",
        headers=auth(jwt, a, "admin"),
    )
    assert [d["position"] for d in r.json()["items"]] == [p for p, _, _ in expected[3:]]
    for s in (sub, renamed_only):
        r = await client.delete(f"/v1/webhooks/{s['id']}", headers=integrator)
        assert r.status_code == 204


async def test_poison_event_is_dead_lettered_then_redriven(app, client, jwt, pool, fast_retries):
    tree = await build_tree(client, jwt, streets=1, communities=1, units=0)
    street = tree.streets[0]
    receiver = Receiver(fail_first=0, poison={"cn.civic-ledger.node.renamed.v1"})
    admin = auth(jwt, tree.county, "admin")
    async with serve_receiver(receiver) as base:
        sub = await post_ok(
            client, "/v1/webhooks", {"url": f"{base}/hook", "secret": SECRET}, admin
        )
        await community(client, jwt, tree.county, street, 20)
        await post_ok(
            client, f"/v1/nodes/{street[:9]}020/rename", {"name": "毒"}, admin, expect=200
        )
        await community(client, jwt, tree.county, street, 21)
        in_scope = await scope_events(pool, tree.county, sub["position"])
        # (events committed just before the subscription may be delivered too)
        before, expected = [i for _, i, _ in in_scope[:-3]], in_scope[-3:]
        assert [t for _, _, t in expected] == ["NodeRegistered", "NodeRenamed", "NodeRegistered"]

        # the poison event dies after 4 attempts; the one after it is not held up
        async def two_acked() -> bool:
            return len(receiver.acked()) >= len(before) + 2

        await eventually(two_acked)
        assert [e["id"] for e in receiver.acked()] == [*before, expected[0][1], expected[2][1]]
        renamed_id = expected[1][1]
        assert receiver.attempts[("/hook", renamed_id)] == 4

        r = await client.get(f"/v1/webhooks/{sub['id']}/deliveries?status=dead", headers=admin)
        assert r.status_code == 200
        dead = r.json()["items"]
        assert [(d["event_id"], d["type"], d["attempts"], d["last_status"]) for d in dead] == [
            (renamed_id, "NodeRenamed", 4, 500)
        ]
        # the receiver acknowledges before the worker records the delivery: wait for the record
        async def recorded() -> bool:
            view = (await client.get(f"/v1/webhooks/{sub['id']}", headers=admin)).json()
            return bool(view["delivered"] >= len(before) + 2)

        await eventually(recorded)
        view = (await client.get(f"/v1/webhooks/{sub['id']}", headers=admin)).json()
        assert view["dead"] == 1 and view["delivered"] == len(before) + 2
        assert view["last_error"] == "HTTP 500"

        # integrators manage subscriptions and read their deliveries; re-drives are for admins
        integrator = auth(jwt, tree.county, "integrator")
        r = await client.get(f"/v1/webhooks/{sub['id']}/deliveries?status=dead", headers=integrator)
        assert r.status_code == 200, r.text
        assert [d["status"] for d in r.json()["items"]] == ["dead"]
        assert (
            await client.post(f"/v1/webhooks/{sub['id']}/redrive", headers=integrator)
        ).status_code == 403

        receiver.poison.clear()
        r = await client.post(f"/v1/webhooks/{sub['id']}/redrive", headers=admin)
        assert r.status_code == 200 and r.json() == {"id": sub["id"], "requeued": 1}

        async def three_acked() -> bool:
            return len(receiver.acked()) >= len(before) + 3

        await eventually(three_acked)
        await asyncio.sleep(0.3)
    assert [e["id"] for e in receiver.acked()] == [
        *before,
        expected[0][1],
        expected[2][1],
        renamed_id,
    ]
    r = await client.get(f"/v1/webhooks/{sub['id']}/deliveries?status=dead", headers=admin)
    assert r.json()["items"] == []
    r = await client.get(f"/v1/webhooks/{sub['id']}/deliveries", headers=admin)
    rows = {d["event_id"]: d for d in r.json()["items"]}
    assert rows[renamed_id]["status"] == "delivered" and rows[renamed_id]["redrives"] == 1
    assert rows[renamed_id]["total_attempts"] == 5
    r = await client.post(f"/v1/webhooks/{sub['id']}/redrive", headers=admin)
    assert r.json()["requeued"] == 0
    assert (await client.delete(f"/v1/webhooks/{sub['id']}", headers=admin)).status_code == 204


async def test_one_worker_owns_a_subscription(app, client, jwt, pool, fast_retries):
    """A second worker (another replica, on its own pool) does not take a subscription
    the first one delivers (an advisory lock per subscription)."""
    tree = await build_tree(client, jwt, streets=1, communities=1, units=0)
    receiver = Receiver(fail_first=0)
    admin = auth(jwt, tree.county, "admin")
    async with serve_receiver(receiver) as base:
        sub = await post_ok(
            client, "/v1/webhooks", {"url": f"{base}/hook", "secret": SECRET}, admin
        )

        async def owned_by_app() -> bool:
            return any(str(s) == sub["id"] for s in app.state.webhooks.owned)

        await eventually(owned_by_app)
        other = WebhookWorker(LiveSignal(), fast_retries.config)
        other.start(pool)
        try:
            await asyncio.sleep(1.0)
            assert not any(str(s) == sub["id"] for s in other.owned)
            await community(client, jwt, tree.county, tree.streets[0], 30)

            async def one_acked() -> bool:
                return len(receiver.acked()) == 1

            await eventually(one_acked)
        finally:
            await other.stop()
        assert (await client.delete(f"/v1/webhooks/{sub['id']}", headers=admin)).status_code == 204

        async def released() -> bool:
            return not any(str(s) == sub["id"] for s in app.state.webhooks.owned)

        await eventually(released)


# -- management -----------------------------------------------------------------------------


async def test_subscription_management_scope_and_validation(client, jwt, database_url):
    tree = await build_tree(client, jwt, streets=2, communities=1, units=0)
    other = await build_tree(client, jwt, streets=1, communities=1, units=0)
    a, b = tree.streets
    # nothing listens on port 9 of 127.0.0.1: deliveries fail fast and stay local
    good = {"url": "http://127.0.0.1:9/civic/hook", "secret": SECRET}

    for role in ("viewer", "operator", "unit", "inspector"):
        r = await client.post("/v1/webhooks", json=good, headers=auth(jwt, a, role))
        assert r.status_code == 403, role
    assert (await client.get("/v1/webhooks")).status_code == 401
    integrator_a = auth(jwt, a, "integrator")
    for body, status in (
        ({**good, "url": "ftp://example.org/x"}, 422),
        ({**good, "url": "not a url"}, 422),
        ({**good, "url": "https://user:pw@example.org/x"}, 422),
        ({**good, "secret": "short"}, 400),
        ({**good, "types": ["NoSuchEvent"]}, 422),
        ({**good, "surprise": 1}, 400),
        ({"url": good["url"]}, 400),
    ):
        r = await client.post("/v1/webhooks", json=body, headers=integrator_a)
        assert r.status_code == status, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")

    created_a = await post_ok(
        client, "/v1/webhooks", {**good, "types": ["NodeRegistered"], "after": 0}, integrator_a
    )
    assert created_a["position"] == 0 and created_a["types"] == ["NodeRegistered"]
    created_b = await post_ok(client, "/v1/webhooks", good, auth(jwt, b, "admin"))
    replay = await client.post(
        "/v1/webhooks", json=good, headers={**integrator_a, "Idempotency-Key": "wh-1"}
    )
    again = await client.post(
        "/v1/webhooks", json=good, headers={**integrator_a, "Idempotency-Key": "wh-1"}
    )
    assert replay.status_code == 201 and again.status_code == 201
    assert again.json()["id"] == replay.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"

    def ids(r: Any) -> set[str]:
        assert r.status_code == 200, r.text
        return {w["id"] for w in r.json()["items"]}

    county = auth(jwt, tree.county, "admin")
    assert ids(await client.get("/v1/webhooks", headers=integrator_a)) == {
        created_a["id"],
        replay.json()["id"],
    }
    assert ids(await client.get("/v1/webhooks", headers=auth(jwt, b, "integrator"))) == {
        created_b["id"]
    }
    assert ids(await client.get("/v1/webhooks", headers=county)) == {
        created_a["id"],
        created_b["id"],
        replay.json()["id"],
    }
    page = await client.get("/v1/webhooks?limit=2", headers=county)
    rest = await client.get(f"/v1/webhooks?cursor={page.json()['next_cursor']}", headers=county)
    assert len(ids(page) | ids(rest)) == 3
    # another street, another tenant: 404
    r = await client.get(f"/v1/webhooks/{created_b['id']}", headers=integrator_a)
    assert r.status_code == 404
    foreign = auth(jwt, other.county, "admin")
    assert (await client.get(f"/v1/webhooks/{created_a['id']}", headers=foreign)).status_code == 404
    assert (
        await client.delete(f"/v1/webhooks/{created_a['id']}", headers=foreign)
    ).status_code == 404
    assert ids(await client.get("/v1/webhooks", headers=foreign)) == set()

    # the secret never comes back, and the runtime role cannot read it at all
    for url in ("/v1/webhooks", f"/v1/webhooks/{created_a['id']}"):
        assert SECRET not in (await client.get(url, headers=county)).text
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL ROLE civic_app")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetch("SELECT secret FROM webhook_subscriptions")
    finally:
        await conn.close()

    # delete: gone from reads and lists; a second delete is a 404
    assert (
        await client.delete(f"/v1/webhooks/{created_a['id']}", headers=integrator_a)
    ).status_code == 204
    assert (
        await client.get(f"/v1/webhooks/{created_a['id']}", headers=integrator_a)
    ).status_code == 404
    assert (
        await client.delete(f"/v1/webhooks/{created_a['id']}", headers=integrator_a)
    ).status_code == 404
    for w in (created_b, replay.json()):
        assert (await client.delete(f"/v1/webhooks/{w['id']}", headers=county)).status_code == 204


def test_signature_scheme_matches_the_documentation():
    body = b'{"id":"x"}'
    ts = 1_700_000_000
    mac = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    header = "sha256=" + mac
    assert verify_signature(SECRET, body, str(ts), header, now=ts + 10)
    assert not verify_signature(SECRET, body, str(ts), header, now=ts + 301)  # too old
    assert not verify_signature(SECRET, body + b" ", str(ts), header, now=ts)
    assert not verify_signature("another-secret-000000", body, str(ts), header, now=ts)
    assert not verify_signature(SECRET, body, None, header, now=ts)
