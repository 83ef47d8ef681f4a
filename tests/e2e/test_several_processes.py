"""Several processes on one database: two ``civic serve`` and two ``civic project`` (issue 20).

Four real subprocesses on this machine (HTTP on 127.0.0.1) share a database of their own on
the test server: the two API processes serve only the API (``--no-projector``), the two
projector processes race for every projection, the deadline clock and the webhook relay.
Clients send commands for a few seconds, each with an Idempotency-Key, to one API or the
other; a retry (after a transport error, a 429 or a 503) goes to the *other* API with the
same key, and some requests are sent to both at once (twins). Every command acknowledged by
one API is read back from the other with ``min_position`` (read-your-writes across
processes, through the projections run elsewhere). Meanwhile a webhook receiver on
127.0.0.1 counts deliveries and findings already past due wait for the clock.

Afterwards: every acknowledged event is stored once, where it was acknowledged (0 lost); no
Idempotency-Key was recorded in two transactions (0 duplicated); twins answered alike; every
event of the subscription's scope reached the receiver exactly once (no double delivery);
every overdue finding got exactly one RectificationOverdue (no double clock event); every
read-your-writes read answered 200 with the acknowledged version or later.

About 30-45 s (start-up of four processes included): 8 clients x 8 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn

from services.auth import JwtConfig, issue_token
from tests.reliability import scratch_database, stuck_projections, workflow_bodies

pytestmark = [pytest.mark.load, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[2]
CIVIC = Path(sys.executable).parent / "civic"
SECRET = "several-processes-" + "x" * 40
CLIENTS = 8
SECONDS = 8.0
RETRYABLE = {429, 503}
OVERDUE_FINDINGS = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def token(scope: str, role: str) -> dict[str, str]:
    config = JwtConfig(verify_key=SECRET, signing_key=SECRET, algorithms=("HS256",))
    tok = issue_token(config, subject=f"{role}-load", scope=scope, roles=[role], ttl_seconds=3600)
    return {"Authorization": f"Bearer {tok}"}


# -- the processes ---------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    args: list[str]
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, env: dict[str, str]) -> None:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(CIVIC), *self.args, "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                assert self.proc is not None and self.proc.poll() is None, self.tail()
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.base}/health/ready")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise AssertionError(f"{self.name} never became ready:\n{self.tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=25)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@pytest.fixture
async def own_database(server_url: str) -> AsyncIterator[str]:
    async with scratch_database(server_url) as url:
        yield url


@pytest.fixture
def processes(own_database: str, tmp_path: Path) -> Iterator[list[Proc]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIVIC_")}
    env.update(
        DATABASE_URL=own_database,
        CIVIC_JWT_SECRET=SECRET,
        CIVIC_DATA_DIR=str(tmp_path / "data"),
        CIVIC_LOG_LEVEL="WARNING",
        CIVIC_RATE_LIMIT="0",
        CIVIC_MAX_WAITS_PER_PRINCIPAL=str(CLIENTS),  # one principal sends everything here
        CIVIC_DB_POOL_MAX="4",
        CIVIC_CLOCK_INTERVAL="1",
        CIVIC_WEBHOOK_ALLOW_HOSTS="127.0.0.1",
        CIVIC_WEBHOOK_RETRY_BASE="0.1",
        PYTHONUNBUFFERED="1",
    )
    procs = [
        Proc("api-1", ["serve", "--no-projector"], free_port(), tmp_path / "api-1.log"),
        Proc("api-2", ["serve", "--no-projector"], free_port(), tmp_path / "api-2.log"),
        Proc("projector-1", ["project"], free_port(), tmp_path / "projector-1.log"),
        Proc("projector-2", ["project"], free_port(), tmp_path / "projector-2.log"),
    ]
    try:
        for p in procs:
            p.start(env)

        async def ready() -> None:
            await asyncio.gather(*(p.wait_ready() for p in procs))

        asyncio.run(ready())
        yield procs
    finally:
        for p in procs:
            p.stop()


# -- the webhook receiver ----------------------------------------------------------------------


@dataclass
class Receiver:
    """Answers 204 to everything and counts the deliveries of each event id."""

    deliveries: Counter[str] = field(default_factory=Counter)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        while (await receive()).get("more_body"):
            pass
        headers = dict(scope["headers"])
        self.deliveries[headers[b"x-civic-event-id"].decode()] += 1
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@contextlib.asynccontextmanager
async def serve_receiver(receiver: Receiver) -> AsyncIterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(receiver, lifespan="off", log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            assert not task.done()
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        sock.close()


# -- the load ----------------------------------------------------------------------------------


@dataclass
class Ack:
    key: str
    id: str
    version: int
    position: int


@dataclass
class Tally:
    keys: list[str] = field(default_factory=list)
    acked: list[Ack] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    twins: int = 0
    twin_mismatches: list[str] = field(default_factory=list)
    reads: int = 0
    stale_reads: list[str] = field(default_factory=list)


@dataclass
class Tenant:
    county: str
    communities: list[str]
    unit: str
    headers: dict[str, str]


async def bootstrap(client: httpx.AsyncClient, county: str) -> Tenant:
    headers = token(county, "admin")

    async def node(code: str, kind: str, parent: str | None) -> None:
        body = {"code": code, "name": f"{kind}-{code[-4:]}", "kind": kind, "parent_code": parent}
        r = await client.post("/v1/nodes", json=body, headers=headers)
        assert r.status_code == 201, r.text

    await node(county, "county", None)
    unit = f"U{county[:6]}001"
    await node(unit, "unit", county)
    communities = []
    for s in range(1, 3):
        street = f"{county[:6]}{s:03d}000"
        await node(street, "street", county)
        for c in range(1, 4):
            communities.append(f"{street[:9]}{c:03d}")
            await node(communities[-1], "community", street)
    return Tenant(county, communities, unit, headers)


def command(tenant: Tenant, client_no: int, n: int) -> tuple[str, dict[str, Any]]:
    rng = random.Random(client_no * 10_007 + n)
    community = rng.choice(tenant.communities)
    roll = rng.random()
    if roll < 0.5:
        return "/v1/issues", workflow_bodies(community, tenant.unit, n)["/v1/issues"]
    if roll < 0.7:
        return "/v1/findings", workflow_bodies(community, tenant.unit, n)["/v1/findings"]
    code = f"G{community}-{client_no}-{n}"
    return "/v1/nodes", {"code": code, "name": f"网格{n}", "kind": "grid", "parent_code": community}


async def post_until_answered(
    clients: list[httpx.AsyncClient],
    first: int,
    tally: Tally,
    path: str,
    body: dict[str, Any],
    headers: dict[str, str],
    key: str,
    give_up_at: float,
) -> tuple[int, httpx.Response | None]:
    """POST with one key until a final answer, the next attempt to the other API."""
    which = first
    while time.monotonic() < give_up_at:
        try:
            r = await clients[which].post(
                path, json=body, headers={**headers, "Idempotency-Key": key}
            )
        except (httpx.TransportError, OSError):
            which = 1 - which
            await asyncio.sleep(0.05)
            continue
        if r.status_code >= 500 and r.status_code not in RETRYABLE:
            tally.server_errors.append(f"{path} {r.status_code} {r.text[:300]}")
        if r.status_code in RETRYABLE or r.status_code >= 500:
            which = 1 - which
            await asyncio.sleep(0.05)
            continue
        return which, r
    return which, None


def acknowledge(tally: Tally, key: str, r: httpx.Response) -> Ack | None:
    if not 200 <= r.status_code < 300:
        tally.rejected[f"{r.request.url.path} {r.status_code}"] += 1
        return None
    data = r.json()
    ack = Ack(key, str(data["id"]), int(data["version"]), int(data["position"]))
    tally.acked.append(ack)
    return ack


async def read_back(
    reader: httpx.AsyncClient, tally: Tally, path: str, r: httpx.Response, ack: Ack, headers: Any
) -> None:
    """Read what one API acknowledged from the other one, with ``min_position``."""
    if path not in ("/v1/issues", "/v1/nodes"):
        return  # their item reads take min_position; the others are checked in the store
    where = r.headers["location"]
    tally.reads += 1
    got = await reader.get(where, params={"min_position": ack.position}, headers=headers)
    version = got.json().get("version") if got.status_code == 200 else None
    if version is None or int(version) < ack.version:
        tally.stale_reads.append(f"{where} at {ack.position}: {got.status_code} {got.text[:200]}")


async def load_client(
    client_no: int, procs: list[Proc], tenant: Tenant, tally: Tally, stop_at: float
) -> None:
    give_up_at = stop_at + 30
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=p.base, timeout=10))
            for p in procs[:2]
        ]
        n = 0
        while time.monotonic() < stop_at:
            n += 1
            path, body = command(tenant, client_no, n)
            key = uuid.uuid4().hex
            tally.keys.append(key)
            if n % 5 == 0:  # twins: the same request to both APIs at once
                tally.twins += 1
                answers = await asyncio.gather(
                    *(
                        post_until_answered(
                            clients, i, tally, path, body, tenant.headers, key, give_up_at
                        )
                        for i in (0, 1)
                    )
                )
                a, b = (r for _, r in answers)
                if (
                    a is None
                    or b is None
                    or (a.status_code, a.content) != (b.status_code, b.content)
                ):
                    tally.twin_mismatches.append(
                        f"{path}: {a and a.text[:200]} / {b and b.text[:200]}"
                    )
                    continue
                served_by, r = answers[0]
                assert r is not None
            else:
                served_by, r = await post_until_answered(
                    clients, n % 2, tally, path, body, tenant.headers, key, give_up_at
                )
                if r is None:
                    continue
            ack = acknowledge(tally, key, r)
            if ack is not None:
                await read_back(clients[1 - served_by], tally, path, r, ack, tenant.headers)


async def overdue_findings(base: str, tenant: Tenant) -> list[uuid.UUID]:
    """Findings already past due: the clock owes each one RectificationOverdue."""
    ids = []
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for i in range(OVERDUE_FINDINGS):
            body = workflow_bodies(tenant.communities[i], tenant.unit, 1000 + i)["/v1/findings"]
            body["due_on"] = (dt.date.today() - dt.timedelta(days=3)).isoformat()
            r = await client.post("/v1/findings", json=body, headers=tenant.headers)
            assert r.status_code == 201, r.text
            ids.append(uuid.UUID(r.json()["id"]))
    return ids


async def eventually(conn: asyncpg.Connection, sql: str, *args: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await conn.fetchval(sql, *args)
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.2)


async def test_two_apis_and_two_projectors_lose_nothing_and_do_nothing_twice(
    processes: list[Proc], own_database: str
) -> None:
    api_1, api_2 = processes[:2]
    receiver = Receiver()
    async with serve_receiver(receiver) as hook:
        async with httpx.AsyncClient(base_url=api_1.base, timeout=30) as setup:
            tenant = await bootstrap(setup, f"{random.randint(100, 899)}101000000")
        async with httpx.AsyncClient(base_url=api_2.base, timeout=30) as setup:
            r = await setup.post(
                "/v1/webhooks",
                json={"url": hook, "secret": "webhook-secret-0123456789"},
                headers=token(tenant.county, "integrator"),
            )
            assert r.status_code == 201, r.text
        conn = await asyncpg.connect(own_database)
        try:  # the subscription delivers what is appended after it was made
            subscribed_at = await conn.fetchval("SELECT coalesce(max(position), 0) FROM events")
        finally:
            await conn.close()
        findings = await overdue_findings(api_2.base, tenant)

        tally = Tally()
        stop_at = time.monotonic() + SECONDS
        await asyncio.wait_for(
            asyncio.gather(
                *(load_client(i, processes, tenant, tally, stop_at) for i in range(CLIENTS))
            ),
            SECONDS + 90,
        )

        conn = await asyncpg.connect(own_database)
        try:
            root_id = await conn.fetchval("SELECT id FROM nodes WHERE code = $1", tenant.county)
            # the clock: one RectificationOverdue per overdue finding, however many clocks run
            overdue_sql = (
                "SELECT count(*) FROM events WHERE type = 'RectificationOverdue'"
                " AND stream_id = ANY($1)"
            )
            fired = await eventually(
                conn, f"SELECT ({overdue_sql}) >= $2", findings, OVERDUE_FINDINGS
            )
            assert fired, "the clock did not fire for every overdue finding within 30 s"
            await asyncio.sleep(3)  # three more clock rounds in each of the two processes
            overdue = Counter(
                r[0]
                for r in await conn.fetch(
                    "SELECT stream_id FROM events WHERE type = 'RectificationOverdue'"
                    " AND stream_id = ANY($1)",
                    findings,
                )
            )
            assert stuck_projections_ok(await stuck_projections(own_database, timeout=30))

            # 0 lost: every acknowledged event stored, in the transaction it was answered from
            stored = {
                (str(r["stream_id"]), r["version"]): r["position"]
                for r in await conn.fetch(
                    "SELECT stream_id, version, position FROM events WHERE root_id = $1", root_id
                )
            }
            lost = [
                a
                for a in tally.acked
                if (p := stored.get((a.id, a.version))) is None
                or p >> 16 != a.position >> 16
                or p > a.position
            ]
            # 0 duplicated: one transaction per Idempotency-Key
            duplicated = await conn.fetch(
                "SELECT idempotency_key FROM events WHERE idempotency_key = ANY($1)"
                " GROUP BY 1 HAVING count(DISTINCT position >> 16) > 1",
                tally.keys,
            )
            # webhooks: every event of the scope after the subscription, each exactly once
            scope_events = {
                str(r[0])
                for r in await conn.fetch(
                    "SELECT event_id FROM events WHERE root_id = $1 AND position > $2",
                    root_id,
                    subscribed_at,
                )
            }
            deadline = time.monotonic() + 60
            while True:
                if scope_events <= set(receiver.deliveries) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(1)  # a second delivery would come now
        finally:
            await conn.close()

    twice = {e: n for e, n in receiver.deliveries.items() if n > 1}
    undelivered = scope_events - set(receiver.deliveries)
    figures = (
        f"\nseveral processes: {CLIENTS} clients x {SECONDS:g} s over 2 APIs + 2 projectors: "
        f"keys {len(tally.keys)}, acknowledged {len(tally.acked)}, rejected "
        f"{dict(tally.rejected)}, twins {tally.twins}; lost {len(lost)}, duplicated "
        f"{len(duplicated)}; read-your-writes across APIs {tally.reads}, stale "
        f"{len(tally.stale_reads)}; webhook events {len(scope_events)}, delivered "
        f"{len(receiver.deliveries)}, twice {len(twice)}, undelivered {len(undelivered)}; "
        f"overdue events {dict(Counter(overdue.values()))} for {OVERDUE_FINDINGS} findings"
    )
    print(figures)
    for p in processes:
        assert p.proc is not None and p.proc.poll() is None, p.tail()
    assert len(tally.acked) > 50, figures
    assert not tally.server_errors, figures + "\n" + "\n".join(tally.server_errors[:10])
    assert not lost, figures + f"\n{lost[:5]}"
    assert not duplicated, figures + f"\n{[dict(r) for r in duplicated[:5]]}"
    assert not tally.twin_mismatches, figures + "\n" + "\n".join(tally.twin_mismatches[:5])
    assert tally.reads > 20 and not tally.stale_reads, (
        figures + "\n" + "\n".join(tally.stale_reads[:5])
    )
    assert not twice, figures + f"\n{list(twice.items())[:5]}"
    assert not undelivered, figures
    assert sorted(overdue.values()) == [1] * OVERDUE_FINDINGS, figures


def stuck_projections_ok(stuck: list[str]) -> bool:
    assert not stuck, f"projections did not catch up: {stuck}"
    return True
