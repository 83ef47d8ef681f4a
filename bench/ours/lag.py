"""Projection lag at half load: commit → read-model visibility of ``POST /v1/issues``.

The API runs as in ``bench/ours/http.py`` (uvicorn subprocess, one worker, its in-process
projector, rate limiting off) on the group's own scratch database, with the same county of
20 streets x 15 communities. Each run:

1. measures this server's max rate right now: a closed-loop burst of ``POST /v1/issues``
   with 32 keep-alive clients (like ``http.commands_32c``, shorter), then waits (bounded)
   until the issues projection has caught up with it;
2. drives an open-loop load at half that rate (fixed arrival schedule, at most 32 requests
   in flight) for the run's warm-up + duration;
3. meanwhile a poller on its own connection reads the ``issues`` row of
   ``projection_checkpoints`` every ~2 ms and keeps the time each new checkpoint was first
   seen.

A command is committed when its 201 arrives (the body carries the event's position). It is
visible once the issues checkpoint is ``>= position``: the runner writes the checkpoint in the
transaction that writes the read-model rows, and a checkpoint means "every settled event up
to here is applied" (``projections/runner.py``). Lag = (reply of the first poll that saw such
a checkpoint) − (arrival of the 201), 0 if it was visible before the 201 arrived; the poll
interval bounds the error, upwards only. Commands scheduled inside the warm-up are not
counted.

As a cross-check that the checkpoint tells what a client sees, a few commands per run are
also polled with ``GET /v1/issues/{id}`` from their 201 until it answers 200; the two times
go into the group's info (``get_check``) and a command whose GET never succeeds is an error.

The same poll reads ``civic_horizon()``, so the info also splits each lag into the time until
the horizon passed the position (``horizon_wait``) and the rest (``projector_wait``). The
horizon is ``pg_snapshot_xmin`` of the whole server: every open transaction with an xid holds
it, including other databases' and the projectors' own batches (the issues projector's open
batch counts there although it does not wait for itself), so read the split as a hint.
Also in the info: the burst's rate and how long the projection took to catch up after it.

Figure: achieved requests/s of the half load; ``.p50_ms``, ``.p99_ms``, ``.max_ms``: lag;
``.target_rps`` (half the burst's rate), ``.samples``, ``.errors`` (must be 0).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import asyncpg
import httpx

from bench.load import run_load
from bench.ours.http import api_with_county, issue_requests
from bench.registry import Context, benchmark, group_fixture
from bench.server import Server
from bench.timing import percentile

GROUP = "lag"
CLIENTS = 32
LOAD_SHARE = 0.5
PROJECTION = "issues"
POLL_INTERVAL = 0.002
GET_INTERVAL = 0.002
GET_SAMPLES = 8
CATCH_UP_TIMEOUT = 15.0
READ_CHECKPOINT = "SELECT position FROM projection_checkpoints WHERE name = $1"
POLL = "SELECT position, civic_horizon() FROM projection_checkpoints WHERE name = $1"


@group_fixture(GROUP)
async def _server(ctx: Context) -> AsyncIterator[None]:
    async with api_with_county(ctx, "371203000000"):
        ctx.state["info"] = {"runs": []}
        # Litestar's logging config (the anchor app, at import) puts the root logger at INFO:
        # one line per GET of the cross-check would drown the progress output.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        yield


@dataclass
class _Checkpoints:
    """Every distinct checkpoint the poller saw, with the time its reply arrived; likewise
    the transaction horizon (what ``projections/runner.py`` may read below), to tell waiting
    for the horizon apart from the projector's own delay."""

    times: list[float] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    horizon_times: list[float] = field(default_factory=list)
    horizons: list[int] = field(default_factory=list)
    polls: int = 0
    #: set by the poller once it sees a checkpoint ``>= wanted``
    wanted: int = sys.maxsize
    reached: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def last(self) -> int:
        return self.positions[-1] if self.positions else -1

    def visible(self, position: int) -> float | None:
        """When a checkpoint ``>= position`` was first seen (it only moves forward)."""
        i = bisect.bisect_left(self.positions, position)
        return self.times[i] if i < len(self.positions) else None

    def settled(self, position: int) -> float | None:
        """When the horizon first passed ``position`` (the runner reads ``< horizon``)."""
        i = bisect.bisect_right(self.horizons, position)
        return self.horizon_times[i] if i < len(self.horizons) else None


async def _poll(
    conn: asyncpg.Connection, seen: _Checkpoints, stop: asyncio.Event, deadline: float
) -> None:
    while not stop.is_set() and time.perf_counter() < deadline:
        row = await conn.fetchrow(POLL, PROJECTION)
        t = time.perf_counter()
        seen.polls += 1
        if row is None:
            raise RuntimeError(f"no checkpoint row for projection {PROJECTION!r}")
        position, horizon = row
        if position != seen.last:
            seen.times.append(t)
            seen.positions.append(position)
            if position >= seen.wanted:
                seen.reached.set()
        # kept monotonic, so that bisect works even if a snapshot's xmin ever stepped back
        if not seen.horizons or horizon > seen.horizons[-1]:
            seen.horizon_times.append(t)
            seen.horizons.append(horizon)
        await asyncio.sleep(POLL_INTERVAL)


async def _caught_up(conn: asyncpg.Connection, position: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (await conn.fetchval(READ_CHECKPOINT, PROJECTION) or 0) >= position:
            return True
        await asyncio.sleep(0.01)
    return False


async def _get_until_visible(
    client: httpx.AsyncClient, issue_id: str, deadline: float
) -> tuple[float | None, int]:
    """Poll ``GET /v1/issues/{id}`` until 200: (reply time of the first 200, GETs made)."""
    n = 0
    while time.perf_counter() < deadline:
        r = await client.get(f"/v1/issues/{issue_id}")
        n += 1
        if r.status_code == 200:
            return time.perf_counter(), n
        if r.status_code not in (404, 503):  # 503: recorded, not yet projected
            return None, n
        await asyncio.sleep(GET_INTERVAL)
    return None, n


def _requests(
    ctx: Context, run: str
) -> tuple[Callable[[int], dict[str, str]], Callable[[int], bytes]]:
    return issue_requests(ctx.state["communities"], ctx.state["token"], run)


@benchmark("projection.lag_half_load", GROUP, "req/s", higher_is_better=True)
async def lag_half_load(ctx: Context) -> float:
    """Commit → issues read-model visibility under an open-loop load at 50% of the max rate."""
    server: Server = ctx.state["server"]
    url = f"{server.url}/v1/issues"
    run = uuid.uuid4().hex[:8]
    errors = 0

    # 1. The max rate of this server in this run, so "half load" tracks a noisy machine.
    burst_max = 0

    def on_burst(_seq: int, status: int, body: bytes, _t0: float, _t1: float) -> None:
        nonlocal burst_max
        if status == 201:
            burst_max = max(burst_max, json.loads(body)["position"])

    headers, body = _requests(ctx, f"{run}b")
    burst = await run_load(
        url,
        method="POST",
        headers=headers,
        body=body,
        concurrency=CLIENTS,
        duration=ctx.scaled(2.0, 0.6),
        warmup=ctx.scaled(0.5, 0.15),
        on_response=on_burst,
    )
    errors += burst.errors
    if burst.rps <= 0:
        raise RuntimeError(f"burst completed nothing: {burst.error_samples[:2]}")
    target = burst.rps * LOAD_SHARE

    conn = await ctx.connect()
    try:
        # The burst outruns the projector; start the half load from a caught-up read model.
        t_burst_end = time.perf_counter()
        if not await _caught_up(conn, burst_max, CATCH_UP_TIMEOUT):
            raise RuntimeError(
                f"issues projection not caught up {CATCH_UP_TIMEOUT:.0f} s after the burst"
            )

        burst_catch_up = time.perf_counter() - t_burst_end

        # 2. + 3. Half load with the checkpoint poller and a few GET cross-checks.
        acks: list[tuple[int, int, float]] = []  # (seq, position, 201 arrival)
        first_counted = int(ctx.warmup * target + 0.999999)
        expected = int((ctx.warmup + ctx.duration) * target)
        step = max(1, (expected - first_counted) // GET_SAMPLES)
        sampled = set(range(first_counted + step // 2, expected, step))
        get_tasks: dict[int, asyncio.Task[tuple[float | None, int]]] = {}
        bad_bodies: list[str] = []
        seen = _Checkpoints()
        stop = asyncio.Event()
        horizon = time.perf_counter() + ctx.warmup + ctx.duration + 60.0
        poller = asyncio.create_task(_poll(conn, seen, stop, horizon))
        client = httpx.AsyncClient(
            base_url=server.url,
            headers={"Authorization": f"Bearer {ctx.state['token']}"},
            timeout=10,
            limits=httpx.Limits(max_connections=GET_SAMPLES),
        )
        try:

            def on_steady(seq: int, status: int, raw: bytes, _t0: float, t1: float) -> None:
                if status != 201:
                    return  # run_load counts it as an error
                try:
                    answer = json.loads(raw)
                    position = int(answer["position"])
                except (ValueError, KeyError, TypeError) as exc:
                    bad_bodies.append(f"{type(exc).__name__}: {raw[:100]!r}")
                    return
                acks.append((seq, position, t1))
                if seq in sampled:
                    get_tasks[seq] = asyncio.create_task(
                        _get_until_visible(client, answer["id"], t1 + CATCH_UP_TIMEOUT)
                    )

            headers, body = _requests(ctx, f"{run}s")
            res = await run_load(
                url,
                method="POST",
                headers=headers,
                body=body,
                concurrency=CLIENTS,
                duration=ctx.duration,
                warmup=ctx.warmup,
                rate=target,
                on_response=on_steady,
            )
            errors += res.errors + len(bad_bodies)
            seen.wanted = max((p for _, p, _ in acks), default=0)
            if seen.last < seen.wanted:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(seen.reached.wait(), CATCH_UP_TIMEOUT)
            gets = dict(zip(get_tasks, await asyncio.gather(*get_tasks.values()), strict=True))
        finally:
            stop.set()
            for t in get_tasks.values():
                t.cancel()
            await asyncio.gather(poller, *get_tasks.values(), return_exceptions=True)
            await client.aclose()
    finally:
        await conn.close()

    lags: list[float] = []
    unseen = 0
    before_ack = 0
    horizon_waits: list[float] = []
    projector_waits: list[float] = []
    ack_at = {seq: t1 for seq, _, t1 in acks}
    for seq, position, t1 in acks:
        if seq < first_counted:
            continue
        t_vis = seen.visible(position)
        if t_vis is None:
            unseen += 1
            continue
        if t_vis <= t1:
            before_ack += 1
        lags.append(max(0.0, t_vis - t1) * 1000.0)
        # split: until the horizon passed it, then until the checkpoint did
        t_settled = seen.settled(position)
        if t_settled is not None and t_settled <= t_vis:
            horizon_waits.append(max(0.0, t_settled - t1) * 1000.0)
            projector_waits.append((t_vis - max(t_settled, t1)) * 1000.0)
    errors += unseen

    get_check: list[dict[str, float | int | None]] = []
    for seq, (t_get, n) in gets.items():
        position = next(p for s, p, _ in acks if s == seq)
        t_vis = seen.visible(position)
        if t_get is None:
            errors += 1
        get_check.append(
            {
                "seq": seq,
                "gets": n,
                "get_ms": None if t_get is None else (t_get - ack_at[seq]) * 1000.0,
                "checkpoint_ms": None if t_vis is None else (t_vis - ack_at[seq]) * 1000.0,
            }
        )

    lags.sort()
    horizon_waits.sort()
    projector_waits.sort()
    span = seen.times[-1] - seen.times[0] if len(seen.times) > 1 else 0.0
    ctx.state["info"]["runs"].append(
        {
            "burst_rps": burst.rps,
            "burst_p99_ms": burst.p99_ms,
            "burst_catch_up_ms": burst_catch_up * 1000.0,
            "target_rps": target,
            "achieved_rps": res.rps,
            "request_p50_ms": res.p50_ms,
            "request_p99_ms": res.p99_ms,
            "visible_before_ack": before_ack,
            "unseen": unseen,
            "checkpoint_polls": seen.polls,
            "checkpoint_moves": len(seen.times),
            "checkpoint_move_interval_ms": (
                span / (len(seen.times) - 1) * 1000.0 if len(seen.times) > 1 else None
            ),
            "lag_mean_ms": statistics.fmean(lags) if lags else None,
            "horizon_wait_p50_p99_ms": [
                percentile(horizon_waits, 50),
                percentile(horizon_waits, 99),
            ],
            "projector_wait_p50_p99_ms": [
                percentile(projector_waits, 50),
                percentile(projector_waits, 99),
            ],
            "get_check": get_check,
            "error_samples": [*burst.error_samples, *res.error_samples, *bad_bodies][:5],
        }
    )
    ctx.report("p50_ms", percentile(lags, 50), "ms")
    ctx.report("p99_ms", percentile(lags, 99), "ms")
    ctx.report("max_ms", lags[-1] if lags else float("nan"), "ms")
    ctx.report("target_rps", target, "req/s")
    ctx.report("samples", len(lags), "count")
    ctx.report("errors", errors, "count")
    if errors:
        samples = [*burst.error_samples, *res.error_samples, *bad_bodies][:2]
        raise RuntimeError(f"{errors} errors ({unseen} never visible), e.g. {samples}")
    return res.rps
