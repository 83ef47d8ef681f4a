"""Acknowledged means durable, through faults (issue 7).

The real server (``civic serve``) and a projector process (``civic project``) run against a
DEDICATED embedded PostgreSQL under the test's tmp dir (never the machine's shared server),
all on this machine only (HTTP on 127.0.0.1, PostgreSQL on a unix socket). N clients send
mixed commands for T seconds, each with an Idempotency-Key, retrying the same request with
the same key after a connection error, a timeout, a 429 or a 503. Meanwhile:

* the API process is killed with SIGKILL and restarted;
* the projector process is killed with SIGKILL while it applies batches, and restarted
  (the API's own runner takes the projections over meanwhile);
* PostgreSQL is stopped (fast shutdown) and started again on the same data directory:
  the API must answer 503 problem+json (never 500), ``/health/ready`` 503 then 200, and
  recover on its own; the recovery time is measured.

Afterwards: every acknowledged event is in the store exactly once at the position it was
acknowledged with; no request was recorded twice; a feed follower that ran through all of
it saw every position of its tenant in order, no gap, no repeat; read models equal a
recomputation from the events (and a ``civic projections rebuild`` when the CLI has it);
every hash chain verifies. The figures are printed (``-s`` shows them).

CI: 16 clients × 15 s; CIVIC_LONG_TESTS=1: 32 clients × 60 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from infra.chain import GENESIS, Sha256Chain, canonical_event
from infra.dsn import with_database
from infra.event_codec import decode_json
from services.auth import JwtConfig, issue_token
from tests.reliability import long_or, workflow_bodies, workflow_paths

pytestmark = [pytest.mark.fault, pytest.mark.load]

REPO = Path(__file__).resolve().parents[2]
CIVIC = Path(sys.executable).parent / "civic"
CLIENTS = long_or(16, 32)
SECONDS = long_or(15, 60)
RECOVERY_WINDOW = 5.0  # clients send at least this long after the database is back
SECRET = "durability-secret-" + "d" * 40
PROBLEM_JSON = "application/problem+json"
RETRYABLE = {429, 502, 503, 504}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the embedded PostgreSQL -----------------------------------------------------------------

_START_PG = (
    "import sys, pgserver; "
    "s = pgserver.get_server(sys.argv[1], cleanup_mode=None); print(s.get_uri())"
)


def start_postgres(pgdata: Path) -> str:
    """Start (or restart) the embedded server on ``pgdata``; it outlives the helper process."""
    out = subprocess.run(
        [sys.executable, "-c", _START_PG, str(pgdata)],
        check=True,
        capture_output=True,
        text=True,
        timeout=180,
    )
    return out.stdout.strip().splitlines()[-1]


def postmaster_pid(pgdata: Path) -> int | None:
    pidfile = pgdata / "postmaster.pid"
    if not pidfile.exists():
        return None
    try:
        return int(pidfile.read_text().splitlines()[0])
    except (ValueError, IndexError, OSError):
        return None


def stop_postgres(pgdata: Path, timeout: float = 30) -> None:
    """Fast shutdown (SIGINT to the postmaster), as tests/e2e/test_dev_server.py does."""
    pid = postmaster_pid(pgdata)
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


# -- the processes ---------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        self.starts += 1
        with self.log.open("ab") as log:
            log.write(f"\n--- start {self.starts} ---\n".encode())
            self.proc = subprocess.Popen(
                [str(CIVIC), *self.args],
                cwd=REPO,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=25)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def wait_ready(self, timeout: float = 90) -> float:
        started = time.monotonic()
        deadline = started + timeout
        url = f"http://127.0.0.1:{self.port}/health/ready"
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited:\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2).status_code == 200:
                    return time.monotonic() - started
            time.sleep(0.1)
        raise AssertionError(f"{self.name} never became ready:\n{self.tail()}")

    def tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@dataclass
class Stack:
    pgdata: Path
    url: str  # libpq URL of the test database
    api: Proc
    projector: Proc

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.api.port}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("durability")
    pgdata = root / "pg"
    server = start_postgres(pgdata)
    try:

        async def create() -> None:
            conn = await asyncpg.connect(server)
            try:
                await conn.execute('CREATE DATABASE "civic"')
            finally:
                await conn.close()

        asyncio.run(create())
        url = with_database(server, "civic")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CIVIC_")}
        env.update(
            DATABASE_URL=url,
            CIVIC_JWT_SECRET=SECRET,
            CIVIC_DATA_DIR=str(root / "data"),
            CIVIC_LOG_LEVEL="WARNING",
            CIVIC_RATE_LIMIT="0",  # one admin principal sends everything here
            CIVIC_DB_POOL_MAX="12",
            CIVIC_CLOCK_INTERVAL="1",
            PYTHONUNBUFFERED="1",
        )
        projector_port, api_port = free_port(), free_port()
        projector = Proc(
            "projector",
            ["project", "--host", "127.0.0.1", "--port", str(projector_port)],
            env,
            root / "projector.log",
            projector_port,
        )
        api = Proc(
            "api",
            ["serve", "--host", "127.0.0.1", "--port", str(api_port)],
            env,
            root / "api.log",
            api_port,
        )
        try:
            projector.start()
            projector.wait_ready()  # it migrates and takes the projections first
            api.start()
            api.wait_ready()
            yield Stack(pgdata, url, api, projector)
        finally:
            api.stop()
            projector.stop()
    finally:
        stop_postgres(pgdata)


# -- the workload ----------------------------------------------------------------------------


@dataclass
class Ack:
    key: str
    op: str
    status: int
    id: str
    version: int
    position: int
    at: float
    path: str
    body: dict[str, Any]
    scope: str
    response: bytes


@dataclass
class Tally:
    sent: int = 0  # logical requests (one Idempotency-Key each)
    attempts: int = 0  # HTTP attempts, retries included
    acked: list[Ack] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)  # final 4xx by op and status
    abandoned: list[str] = field(default_factory=list)  # no final answer before the deadline
    statuses: Counter[int] = field(default_factory=Counter)
    transport_errors: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)  # 500s, or a 5xx not problem+json
    keys: list[str] = field(default_factory=list)


@dataclass
class Tenant:
    county: str
    communities: list[str]
    units: list[str]
    headers: dict[str, str]
    terms: Counter[tuple[str, str]] = field(default_factory=Counter)


def admin_headers(scope: str) -> dict[str, str]:
    config = JwtConfig(verify_key=SECRET, signing_key=SECRET, algorithms=("HS256",))
    tok = issue_token(config, subject="load", scope=scope, roles=["admin"], ttl_seconds=3600)
    return {"Authorization": f"Bearer {tok}"}


async def bootstrap(client: httpx.AsyncClient, county: str) -> Tenant:
    headers = admin_headers(county)
    tenant = Tenant(county, [], [], headers)

    async def node(code: str, kind: str, parent: str | None) -> None:
        r = await client.post(
            "/v1/nodes",
            json={"code": code, "name": f"{kind}-{code[-5:]}", "kind": kind, "parent_code": parent},
            headers=headers,
        )
        assert r.status_code == 201, r.text

    await node(county, "county", None)
    for u in range(1, 3):
        unit = f"U{county[:6]}{u:03d}"
        await node(unit, "unit", county)
        tenant.units.append(unit)
    for s in range(1, 3):
        street = f"{county[:6]}{s:03d}000"
        await node(street, "street", county)
        for c in range(1, 4):
            community = f"{street[:9]}{c:03d}"
            await node(community, "community", street)
            tenant.communities.append(community)
    return tenant


def plan(
    tenant: Tenant, client_no: int, n: int, mine: list[str], workflows: list[str]
) -> tuple[str, str, dict[str, Any]]:
    """One command: (label, path, body). Codes are unique per client and request."""
    rng = random.Random(client_no * 100_003 + n)
    community = rng.choice(tenant.communities)
    roll = rng.random()
    if workflows and roll < 0.45:
        path = rng.choice(workflows)
        unit = rng.choice(tenant.units)
        # each pairing of a unit and a community gets the next free term (no overlaps)
        tenant.terms[(unit, community)] += 1
        body = workflow_bodies(community, unit, tenant.terms[(unit, community)])[path]
        return path.rsplit("/", 1)[-1], path, body
    if mine and roll < 0.65:
        code = rng.choice(mine)
        return "rename", f"/v1/nodes/{code}/rename", {"name": f"改名-{client_no}-{n}"}
    if roll < 0.85:
        code = f"G{community}-{client_no}-{n}"
        body = {"code": code, "name": f"网格{n}", "kind": "grid", "parent_code": community}
        return "grid", "/v1/nodes", body
    code = f"U{tenant.county[:6]}-{client_no}-{n}"
    body = {"code": code, "name": f"单位{n}", "kind": "unit", "parent_code": tenant.county}
    return "unit", "/v1/nodes", body


async def send_until_answered(
    client: httpx.AsyncClient,
    tally: Tally,
    label: str,
    path: str,
    body: dict[str, Any],
    headers: dict[str, str],
    deadline: float,
    scope: str,
) -> httpx.Response | None:
    """POST with one Idempotency-Key, retrying the identical request until a final answer."""
    key = uuid.uuid4().hex
    tally.sent += 1
    tally.keys.append(key)
    delay = 0.05
    while time.monotonic() < deadline:
        tally.attempts += 1
        try:
            r = await client.post(path, json=body, headers={**headers, "Idempotency-Key": key})
        except (httpx.TransportError, OSError) as exc:
            tally.transport_errors[type(exc).__name__] += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)
            continue
        tally.statuses[r.status_code] += 1
        if r.status_code >= 500:
            ctype = r.headers.get("content-type", "")
            if r.status_code not in RETRYABLE or not ctype.startswith(PROBLEM_JSON):
                tally.server_errors.append(f"{label} {r.status_code} {ctype} {r.text[:300]}")
        if r.status_code in RETRYABLE or r.status_code >= 500:
            retry_after = r.headers.get("retry-after", "")
            wait = min(float(retry_after), 1.0) if retry_after.isdigit() else delay
            await asyncio.sleep(wait * random.uniform(0.5, 1.0))
            delay = min(delay * 2, 0.5)
            continue
        if 200 <= r.status_code < 300:
            data = r.json()
            tally.acked.append(
                Ack(
                    key,
                    label,
                    r.status_code,
                    str(data["id"]),
                    int(data["version"]),
                    int(data["position"]),
                    time.monotonic(),
                    path,
                    body,
                    scope,
                    r.content,
                )
            )
        else:
            tally.rejected[f"{label} {r.status_code}"] += 1
        return r
    tally.abandoned.append(key)
    return None


async def load_client(
    client_no: int,
    base: str,
    tenant: Tenant,
    workflows: list[str],
    tally: Tally,
    window: Window,
    give_up_at: float,
) -> None:
    mine: list[str] = []
    async with httpx.AsyncClient(base_url=base, timeout=10.0) as client:
        n = 0
        while time.monotonic() < window.stop_at:
            n += 1
            label, path, body = plan(tenant, client_no, n, mine, workflows)
            r = await send_until_answered(
                client, tally, label, path, body, tenant.headers, give_up_at, tenant.county
            )
            if r is not None and r.status_code == 201 and label == "grid":
                mine.append(body["code"])


# -- watchers --------------------------------------------------------------------------------


@dataclass
class Watch:
    ready: list[tuple[float, int]] = field(default_factory=list)
    follower_positions: dict[str, list[int]] = field(default_factory=dict)
    follower_errors: Counter[str] = field(default_factory=Counter)


async def watch_ready(base: str, watch: Watch, stop: asyncio.Event) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=1.0) as client:
        while not stop.is_set():
            try:
                status = (await client.get("/health/ready")).status_code
            except httpx.HTTPError:
                status = 0  # the API process itself is down
            watch.ready.append((time.monotonic(), status))
            await asyncio.sleep(0.1)


async def follow_feed(
    base: str, tenant: Tenant, watch: Watch, stop: asyncio.Event, *, until_idle: bool = False
) -> None:
    """Page the tenant's feed like an integrator would, through every fault."""
    seen = watch.follower_positions.setdefault(tenant.county, [])
    after = seen[-1] if seen else 0
    async with httpx.AsyncClient(base_url=base, timeout=10.0) as client:
        while True:
            try:
                r = await client.get(
                    "/v1/feed", params={"after": after, "limit": 500}, headers=tenant.headers
                )
            except httpx.HTTPError as exc:
                watch.follower_errors[type(exc).__name__] += 1
                await asyncio.sleep(0.2)
                continue
            if r.status_code != 200:
                watch.follower_errors[str(r.status_code)] += 1
                await asyncio.sleep(0.2)
                continue
            page = r.json()
            seen.extend(int(item["position"]) for item in page["items"])
            after = int(page["next"])
            if stop.is_set() and (not until_idle or not page["items"]):
                return
            if not page["items"]:
                await asyncio.sleep(0.2)


# -- faults ----------------------------------------------------------------------------------


@dataclass
class Window:
    """How long the clients keep sending: ``SECONDS``, and longer if the faults run late (on a
    busy machine the restarts before it can push the database outage past ``SECONDS``, and a
    recovery with no client left to be acknowledged would read as no recovery at all)."""

    stop_at: float
    held_from: float | None = None

    def hold(self) -> None:
        """Keep the clients sending until ``release``: a fault is under way."""
        self.held_from = self.stop_at
        self.stop_at = float("inf")

    def release(self, at: float) -> None:
        """Stop at ``at`` or at the original end, whichever is later."""
        assert self.held_from is not None
        self.stop_at = max(self.held_from, at)


@dataclass
class Faults:
    api_restart_s: float = 0.0
    projector_restart_s: float = 0.0
    db_down_at: float = 0.0
    db_back_at: float = 0.0
    db_outage_s: float = 0.0
    killed_projector_behind: int | None = None
    log: list[str] = field(default_factory=list)


async def projector_backlog(stack: Stack) -> int | None:
    """Events the projections still have to apply (to kill the projector mid-batch)."""
    try:
        conn = await asyncpg.connect(stack.url, timeout=2)
    except (OSError, asyncpg.PostgresError):
        return None
    try:
        value: int = await conn.fetchval(
            "SELECT count(*) FROM events e, (SELECT min(position) AS p FROM"
            " projection_checkpoints) c WHERE e.position > c.p"
        )
        return value
    finally:
        await conn.close()


async def chaos(stack: Stack, faults: Faults, t0: float, window: Window) -> None:
    async def at(fraction: float) -> None:
        await asyncio.sleep(max(0.0, t0 + SECONDS * fraction - time.monotonic()))

    window.hold()
    await at(0.2)
    faults.log.append(f"{time.monotonic() - t0:.1f}s kill -9 api")
    stack.api.kill9()
    started = time.monotonic()
    stack.api.start()
    await asyncio.to_thread(stack.api.wait_ready)
    faults.api_restart_s = time.monotonic() - started

    await at(0.4)
    faults.killed_projector_behind = await projector_backlog(stack)
    faults.log.append(
        f"{time.monotonic() - t0:.1f}s kill -9 projector "
        f"({faults.killed_projector_behind} events behind)"
    )
    stack.projector.kill9()
    started = time.monotonic()
    stack.projector.start()
    await asyncio.to_thread(stack.projector.wait_ready)
    faults.projector_restart_s = time.monotonic() - started

    await at(0.6)
    faults.log.append(f"{time.monotonic() - t0:.1f}s PostgreSQL fast shutdown")
    faults.db_down_at = time.monotonic()
    await asyncio.to_thread(stop_postgres, stack.pgdata)
    await asyncio.sleep(1.5)  # let the API notice it is gone
    await asyncio.to_thread(start_postgres, stack.pgdata)
    faults.db_back_at = time.monotonic()
    faults.db_outage_s = faults.db_back_at - faults.db_down_at
    faults.log.append(f"{time.monotonic() - t0:.1f}s PostgreSQL accepting again")
    window.release(faults.db_back_at + RECOVERY_WINDOW)


# -- the checks ------------------------------------------------------------------------------


async def wait_projections(conn: asyncpg.Connection, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    top = await conn.fetchval("SELECT coalesce(max(position), 0) FROM events")
    while time.monotonic() < deadline:
        low = await conn.fetchval("SELECT min(position) FROM projection_checkpoints")
        if low is not None and low >= top:
            return
        await asyncio.sleep(0.2)
    rows = await conn.fetch("SELECT name, position, error FROM projection_checkpoints")
    raise AssertionError(f"projections did not catch up to {top}: {[dict(r) for r in rows]}")


async def check_chains(conn: asyncpg.Connection, root_ids: list[Any]) -> int:
    hasher = Sha256Chain()
    checked = 0
    nodes = await conn.fetch(
        "SELECT node_id, seq, hash FROM chain_heads WHERE root_id = ANY($1)", root_ids
    )
    for head in nodes:
        rows = await conn.fetch(
            "SELECT * FROM events WHERE node_id = $1 ORDER BY node_seq", head["node_id"]
        )
        prev = GENESIS
        for expected_seq, r in enumerate(rows, start=1):
            assert r["node_seq"] == expected_seq, ("chain gap", head["node_id"], expected_seq)
            assert bytes(r["prev_hash"]) == prev
            digest = hasher.digest(
                canonical_event(
                    root_id=r["root_id"],
                    node_id=r["node_id"],
                    stream_id=r["stream_id"],
                    stream_type=r["stream_type"],
                    version=r["version"],
                    event_id=r["event_id"],
                    type=r["type"],
                    schema_version=r["schema_version"],
                    data=decode_json(r["data"]),
                    occurred_at=r["occurred_at"],
                    recorded_at=r["recorded_at"],
                    actor=r["actor"],
                    correlation_id=r["correlation_id"],
                    causation_id=r["causation_id"],
                    idempotency_key=r["idempotency_key"],
                )
            )
            prev = hasher.link(prev, r["node_seq"], r["position"], digest)
            assert bytes(r["hash"]) == prev, ("hash mismatch", head["node_id"], r["node_seq"])
            checked += 1
        assert head["seq"] == len(rows) and bytes(head["hash"]) == prev
    return checked


class _Registered(msgspec.Struct):
    code: str
    name: str
    kind: str
    parent_id: uuid.UUID | None = None


async def expected_nodes(conn: asyncpg.Connection, root_ids: list[Any]) -> dict[Any, tuple]:
    """rm_nodes recomputed from the Node events alone (no projection code involved)."""
    rows = await conn.fetch(
        "SELECT stream_id, root_id, type, version, data::text AS data, occurred_at FROM events"
        " WHERE root_id = ANY($1) AND stream_type = 'node' ORDER BY position",
        root_ids,
    )
    nodes: dict[Any, dict[str, Any]] = {}
    for r in rows:
        data = msgspec.json.decode(r["data"])
        if r["type"] == "NodeRegistered":
            reg = msgspec.convert(data, _Registered)
            nodes[r["stream_id"]] = {
                "root_id": r["root_id"],
                "code": reg.code,
                "name": reg.name,
                "kind": reg.kind,
                "parent_id": reg.parent_id,
                "closed": False,
                "version": r["version"],
            }
        else:
            n = nodes[r["stream_id"]]
            n["version"] = r["version"]
            if r["type"] == "NodeRenamed":
                n["name"] = data["name"]
            elif r["type"] == "NodeClosed":
                n["closed"] = True
            elif r["type"] == "NodeMoved":
                n["parent_id"] = uuid.UUID(str(data["new_parent_id"]))
                n["code"] = data["new_code"]
    return {
        k: (
            v["root_id"],
            v["code"],
            v["name"],
            v["kind"],
            v["parent_id"],
            v["closed"],
            v["version"],
        )
        for k, v in nodes.items()
    }


async def read_models(conn: asyncpg.Connection) -> dict[str, list[str]]:
    """Every rm_* table as sorted JSON rows (for a before/after rebuild comparison)."""
    tables = [
        r[0]
        for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " AND tablename LIKE 'rm\\_%' ORDER BY 1"
        )
    ]
    out = {}
    for t in tables:
        rows = await conn.fetch(f'SELECT to_jsonb(x)::text AS j FROM "{t}" x')
        out[t] = sorted(r["j"] for r in rows)
    return out


def rebuild_available(env: dict[str, str]) -> bool:
    r = subprocess.run(
        [str(CIVIC), "projections", "rebuild", "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return r.returncode == 0


# -- the test --------------------------------------------------------------------------------


async def test_acknowledged_means_durable_through_faults(stack: Stack):
    async with httpx.AsyncClient(base_url=stack.base, timeout=30.0) as setup:
        doc = (await setup.get("/schema/openapi.json")).json()
        tenants = [
            await bootstrap(setup, f"{random.randint(100, 899)}{i:03d}000000") for i in range(1, 3)
        ]
    workflows = workflow_paths(doc)
    tally, watch, faults = Tally(), Watch(), Faults()
    stop = asyncio.Event()
    t0 = time.monotonic()
    window = Window(t0 + SECONDS)
    # clients keep retrying their last request this long (past any extended window)
    give_up_at = t0 + SECONDS + 120 + RECOVERY_WINDOW + 60
    clients = [
        asyncio.create_task(
            load_client(
                i, stack.base, tenants[i % len(tenants)], workflows, tally, window, give_up_at
            )
        )
        for i in range(CLIENTS)
    ]
    watchers = [asyncio.create_task(watch_ready(stack.base, watch, stop))]
    watchers += [asyncio.create_task(follow_feed(stack.base, t, watch, stop)) for t in tenants]
    try:
        await asyncio.wait_for(chaos(stack, faults, t0, window), SECONDS + 120)
        await asyncio.wait_for(asyncio.gather(*clients), give_up_at - time.monotonic() + 30)
    finally:
        stop.set()
        for task in clients:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
    elapsed = time.monotonic() - t0

    # recovery after the database restart: the first acknowledgement once it was back
    after = [a.at for a in tally.acked if a.at >= faults.db_back_at]
    recovery = (min(after) - faults.db_back_at) if after else float("inf")
    ready_after = [t for t, s in watch.ready if t >= faults.db_back_at and s == 200]
    ready_recovery = (min(ready_after) - faults.db_back_at) if ready_after else float("inf")
    ready_while_down = {
        s for t, s in watch.ready if faults.db_down_at + 0.5 <= t <= faults.db_back_at
    }

    conn = await asyncpg.connect(stack.url)
    try:
        await wait_projections(conn)
        root_ids = [
            r["id"]
            for r in await conn.fetch(
                "SELECT id FROM nodes WHERE code = ANY($1)", [t.county for t in tenants]
            )
        ]
        # 1. every acknowledged event exactly once, where it was acknowledged
        stored = {
            (str(r["stream_id"]), r["version"]): r["position"]
            for r in await conn.fetch(
                "SELECT stream_id, version, position FROM events WHERE root_id = ANY($1)",
                root_ids,
            )
        }
        # A command that appends several streams in one transaction (a survey that raises an
        # issue) answers with the transaction's last position: the acknowledged event must be
        # stored in that transaction (position >> 16), at or before the answered position.
        lost = [
            a
            for a in tally.acked
            if (p := stored.get((a.id, a.version))) is None
            or p >> 16 != a.position >> 16
            or p > a.position
        ]
        # 2. no request recorded twice: one transaction per Idempotency-Key
        dup_rows = await conn.fetch(
            "SELECT idempotency_key, count(DISTINCT position >> 16) AS txs FROM events"
            " WHERE idempotency_key = ANY($1) GROUP BY 1 HAVING count(DISTINCT position >> 16) > 1",
            tally.keys,
        )
        duplicated = len(dup_rows)
        acked_keys = {a.key for a in tally.acked}
        stored_keys = {
            r[0]
            for r in await conn.fetch(
                "SELECT DISTINCT idempotency_key FROM events WHERE idempotency_key = ANY($1)",
                tally.keys,
            )
        }
        stored_unacked = stored_keys - acked_keys
        # 3. the feed: the follower saw every position of its tenant, in order, once
        gaps = {}
        for tenant, root_id in zip(tenants, root_ids, strict=True):
            watch_stop = asyncio.Event()
            watch_stop.set()
            await follow_feed(stack.base, tenant, watch, watch_stop, until_idle=True)
            seen = watch.follower_positions[tenant.county]
            truth = [
                r[0]
                for r in await conn.fetch(
                    "SELECT position FROM events WHERE root_id = $1 ORDER BY position", root_id
                )
            ]
            assert all(a < b for a, b in itertools.pairwise(seen)), "feed not increasing"
            gaps[tenant.county] = sorted(set(truth) - set(seen))
            assert set(seen) <= set(truth), "feed served positions that are not events"
        acked_positions = {a.position for a in tally.acked}
        fed = {p for ps in watch.follower_positions.values() for p in ps}
        # 4. read models equal a recomputation from the events
        expected = await expected_nodes(conn, root_ids)
        actual = {
            r["id"]: (
                r["root_id"],
                r["code"],
                r["name"],
                r["kind"],
                r["parent_id"],
                r["closed"],
                r["version"],
            )
            for r in await conn.fetch(
                "SELECT id, root_id, code, name, kind, parent_id, closed, version FROM rm_nodes"
                " WHERE root_id = ANY($1)",
                root_ids,
            )
        }
        rm_diff = {k for k in expected.keys() | actual.keys() if expected.get(k) != actual.get(k)}
        # 5. chains verify
        chain_events = await check_chains(conn, root_ids)
        events_total = len(stored)
        before = await read_models(conn)
    finally:
        await conn.close()

    figures = (
        f"\ndurability: {CLIENTS} clients × {SECONDS} s (+ retries) in {elapsed:.1f} s; "
        f"workflows {workflows or 'none'}\n"
        f"  requests sent {tally.sent} (HTTP attempts {tally.attempts}), acknowledged "
        f"{len(tally.acked)}, rejected {sum(tally.rejected.values())} {dict(tally.rejected)}, "
        f"abandoned {len(tally.abandoned)}\n"
        f"  lost {len(lost)}, duplicated {duplicated}, stored but unacknowledged "
        f"{len(stored_unacked)}, events in store {events_total}, chain events verified "
        f"{chain_events}\n"
        f"  statuses {dict(sorted(tally.statuses.items()))}, transport errors "
        f"{dict(tally.transport_errors)}\n"
        f"  faults: {'; '.join(faults.log)}\n"
        f"  API restart {faults.api_restart_s:.1f} s, projector restart "
        f"{faults.projector_restart_s:.1f} s, DB outage {faults.db_outage_s:.1f} s, "
        f"recovery after DB back: first 2xx {recovery:.2f} s, /health/ready 200 "
        f"{ready_recovery:.2f} s (ready while down: {sorted(ready_while_down)})\n"
        f"  feed: {len(fed)} positions followed, gaps {sum(len(g) for g in gaps.values())}, "
        f"follower errors {dict(watch.follower_errors)}; rm_nodes vs events: "
        f"{len(rm_diff)} differ"
    )
    print(figures)
    assert tally.acked, figures
    assert not tally.server_errors, figures + "\n" + "\n".join(tally.server_errors[:20])
    assert not lost, figures + f"\nlost: {lost[:10]}"
    assert duplicated == 0, figures + f"\n{[dict(r) for r in dup_rows[:10]]}"
    assert not tally.abandoned, figures
    assert all(not g for g in gaps.values()), figures + f"\n{gaps}"
    assert acked_positions <= fed, figures
    assert not rm_diff, figures + f"\n{list(rm_diff)[:5]}"
    assert 503 in ready_while_down, figures  # the API said so while the database was away
    assert recovery < 15 and ready_recovery < 15, figures
    assert faults.killed_projector_behind is not None

    rebuilt: str = "not available"
    if rebuild_available(stack.api.env):
        done = await asyncio.to_thread(
            subprocess.run,
            [str(CIVIC), "projections", "rebuild", "--all", "--takeover-timeout", "20"],
            env=stack.api.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        conn = await asyncpg.connect(stack.url)
        try:
            await wait_projections(conn)
            after_rebuild = await read_models(conn)
        finally:
            await conn.close()
        differing = [t for t in before if before[t] != after_rebuild.get(t)]
        assert not differing, f"read models differ from a rebuild: {differing}"
        rebuilt = f"equal ({len(before)} tables)"

    verify = None
    async with httpx.AsyncClient(base_url=stack.base, timeout=60.0) as client:
        if "/v1/audit/verify" in doc.get("paths", {}):
            verify = []
            for tenant in tenants:
                r = await client.get(
                    "/v1/audit/verify", params={"node": tenant.county}, headers=tenant.headers
                )
                assert r.status_code == 200, r.text
                verify.append(r.json())
        # idempotent replays still answer the first response after all the restarts
        replays = await replay_some(client, tally)

    clock = await clock_survived(stack, tenants[0], workflows)
    print(
        f"  rebuild: {rebuilt}; audit verify: "
        f"{[v['ok'] for v in verify] if verify else 'n/a'}; replays: {replays}; "
        f"deadline clock after the restart: {clock}"
    )
    assert verify is None or all(v["ok"] for v in verify), verify
    for proc in (stack.api, stack.projector):  # both lived through the database restart
        assert proc.proc is not None and proc.proc.poll() is None, proc.tail()
        async with httpx.AsyncClient() as client:
            ready = await client.get(f"http://127.0.0.1:{proc.port}/health/ready")
        assert ready.status_code == 200, proc.tail()


async def clock_survived(stack: Stack, tenant: Tenant, workflows: list[str]) -> str:
    """A finding already past due gets its RectificationOverdue from the clock process,
    which has lived through the database restart (CIVIC_CLOCK_INTERVAL=1)."""
    if "/v1/findings" not in workflows:
        return "n/a (no findings endpoint)"
    body = workflow_bodies(tenant.communities[0], tenant.units[0], 0)["/v1/findings"]
    body["due_on"] = "2020-01-01"
    async with httpx.AsyncClient(base_url=stack.base, timeout=30.0) as client:
        r = await client.post("/v1/findings", json=body, headers=tenant.headers)
        assert r.status_code == 201, r.text
    finding = r.json()["id"]
    started = time.monotonic()
    conn = await asyncpg.connect(stack.url)
    try:
        while time.monotonic() - started < 30:
            fired = await conn.fetchval(
                "SELECT count(*) FROM events WHERE stream_id = $1 AND type = 'RectificationOverdue'",
                uuid.UUID(finding),
            )
            if fired:
                return f"fired after {time.monotonic() - started:.1f} s"
            await asyncio.sleep(0.2)
    finally:
        await conn.close()
    raise AssertionError("the deadline clock did not record RectificationOverdue within 30 s")


async def replay_some(client: httpx.AsyncClient, tally: Tally, n: int = 20) -> str:
    """Resend acknowledged requests with their keys: the first answer comes back, no event."""
    sample = random.Random(3).sample(tally.acked, min(n, len(tally.acked)))
    for ack in sample:
        r = await client.post(
            ack.path,
            json=ack.body,
            headers={**admin_headers(ack.scope), "Idempotency-Key": ack.key},
        )
        assert r.status_code == ack.status, (ack, r.status_code, r.text)
        assert r.content == ack.response, (ack, r.text)
        assert r.headers.get("idempotent-replayed") == "true", ack
    return f"{len(sample)} replayed identically"


async def test_chunked_body_over_the_limit_is_413_over_http(stack: Stack):
    """A real socket, Transfer-Encoding: chunked and no Content-Length: still 413."""
    county = f"{random.randint(100, 899)}999000000"
    headers = admin_headers(county)
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.api.port)
    try:
        head = (
            "POST /v1/nodes HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: {headers['Authorization']}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        writer.write(head.encode())
        chunk = b"9" * 65536
        with contextlib.suppress(ConnectionError):
            for _ in range(20):  # 1.25 MiB > the 1 MiB default
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        response = await asyncio.wait_for(reader.read(65536), 10)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    status_line, _, rest = response.partition(b"\r\n")
    assert b" 413 " in status_line, response[:500]
    assert PROBLEM_JSON.encode() in rest.lower(), response[:500]
