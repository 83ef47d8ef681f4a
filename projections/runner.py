"""Runs projections: catch up from the store, then follow it live.

* One owner per projection across processes: a session-level advisory lock held on the
  connection that also writes the projection's rows. If the owner dies, its connection
  closes, the lock is released, and another process's runner takes over.
* Exactly once: a batch's read-model writes and the checkpoint commit together.
* Live: woken by in-process pokes and by NOTIFY from other processes; polls as a fallback.
* Only settled positions are read (below the transaction horizon), so nothing appears
  behind a checkpoint later.
* A failing projection stops and reports (log, metric, ``projection_checkpoints.error``);
  it never skips an event. It retries with backoff, so a transient fault heals.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
import structlog

from infra.event_store import EVENT_COLUMNS, StoredEvent
from infra.metrics import Metrics
from projections.base import Projection

log = structlog.get_logger("civic.projections")

NOTIFY_CHANNEL = "civic_events"
_LOCK_CLASS = 0x6369  # advisory-lock namespace "ci"

READ_BATCH = f"""
SELECT {EVENT_COLUMNS} FROM events
WHERE position > $1 AND position < $2 AND type = ANY($3::text[])
ORDER BY position
LIMIT $4
"""

ENSURE_CHECKPOINT = """
INSERT INTO projection_checkpoints (name, position) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING
"""
READ_CHECKPOINT = "SELECT position FROM projection_checkpoints WHERE name = $1"
SAVE_CHECKPOINT = """
UPDATE projection_checkpoints SET position = $2, updated_at = now(), error = NULL WHERE name = $1
"""
SAVE_ERROR = "UPDATE projection_checkpoints SET error = $2, updated_at = now() WHERE name = $1"


def lock_key(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


class Wakeup:
    """Coalesces wake-ups: anyone may poke; runners wait on it with a timeout."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def poke(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        """Wait for a poke or the timeout; True when poked."""
        poked = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
            poked = True
        self._event.clear()
        return poked


@dataclass
class ProjectionState:
    projection: Projection
    wakeup: Wakeup = field(default_factory=Wakeup)
    checkpoint: int = 0
    owned: bool = False
    applied: int = 0


async def apply_batch(
    conn: asyncpg.Connection, projection: Projection, checkpoint: int, batch_size: int
) -> tuple[int, int, Sequence[StoredEvent]]:
    """One step: read what is settled after ``checkpoint``, apply it, move the checkpoint.

    Returns (new checkpoint, horizon, events applied). Runs in its own transaction.
    """
    async with conn.transaction():
        horizon: int = await conn.fetchval("SELECT civic_horizon()")
        rows = await conn.fetch(
            READ_BATCH, checkpoint, horizon, list(projection.handles), batch_size
        )
        events = [StoredEvent.from_record(r) for r in rows]
        if events:
            await projection.apply(conn, events)
        # A short batch means everything below the horizon has been seen.
        new_checkpoint = events[-1].position if len(events) == batch_size else horizon - 1
        if new_checkpoint > checkpoint:
            await conn.execute(SAVE_CHECKPOINT, projection.name, new_checkpoint)
        else:
            new_checkpoint = checkpoint
    return new_checkpoint, horizon, events


class ProjectionRunner:
    def __init__(
        self,
        pool: asyncpg.Pool,
        projections: Sequence[Projection],
        *,
        metrics: Metrics | None = None,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        acquire_interval: float = 2.0,
    ) -> None:
        self.pool = pool
        self.states = {p.name: ProjectionState(p) for p in projections}
        self.metrics = metrics
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.acquire_interval = acquire_interval
        self._tasks: list[asyncio.Task[None]] = []
        self._listener: asyncpg.Connection | None = None
        self._stopping = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        async with self.pool.acquire() as conn:
            for name in self.states:
                await conn.execute(ENSURE_CHECKPOINT, name)
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            await self._listen()
        for state in self.states.values():
            self._tasks.append(
                asyncio.create_task(self._own(state), name=f"projection:{state.projection.name}")
            )

    async def stop(self) -> None:
        self._stopping.set()
        for state in self.states.values():
            state.wakeup.poke()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._listener is not None and not self._listener.is_closed():
            with contextlib.suppress(Exception):
                await self._listener.close()

    def poke(self) -> None:
        for state in self.states.values():
            state.wakeup.poke()

    async def _listen(self) -> None:
        conn: asyncpg.Connection = await self.pool.acquire()
        try:
            await conn.add_listener(NOTIFY_CHANNEL, lambda *_: self.poke())
        except BaseException:
            await self.pool.release(conn)
            raise
        self._listener = conn

    # -- one projection --------------------------------------------------------------------

    async def _own(self, state: ProjectionState) -> None:
        """Acquire the projection's lock (waiting for another owner to go), then run it."""
        name = state.projection.name
        while not self._stopping.is_set():
            try:
                async with self.pool.acquire() as conn:
                    got = await conn.fetchval(
                        "SELECT pg_try_advisory_lock($1, $2)", _LOCK_CLASS, lock_key(name)
                    )
                    if got:
                        try:
                            state.owned = True
                            await self._run(conn, state)
                        finally:
                            state.owned = False
                            with contextlib.suppress(Exception):
                                await conn.execute(
                                    "SELECT pg_advisory_unlock($1, $2)", _LOCK_CLASS, lock_key(name)
                                )
            except asyncio.CancelledError:
                raise
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("projection connection lost", projection=name, error=str(exc))
            await asyncio.sleep(self.acquire_interval)

    async def _run(self, conn: asyncpg.Connection, state: ProjectionState) -> None:
        projection = state.projection
        state.checkpoint = await conn.fetchval(READ_CHECKPOINT, projection.name) or 0
        backoff = 0.5
        quick_polls = 0
        while not self._stopping.is_set():
            try:
                started = time.perf_counter()
                new_cp, _horizon, events = await apply_batch(
                    conn, projection, state.checkpoint, self.batch_size
                )
            except (OSError, asyncpg.InterfaceError, asyncpg.ConnectionDoesNotExistError):
                raise
            except Exception as exc:
                log.error("projection failed", projection=projection.name, error=repr(exc))
                if self.metrics:
                    self.metrics.projection_errors.labels(projection.name).inc()
                with contextlib.suppress(Exception):
                    await conn.execute(SAVE_ERROR, projection.name, repr(exc)[:2000])
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            backoff = 0.5
            state.checkpoint = new_cp
            state.applied += len(events)
            if self.metrics:
                self.metrics.observe_projection(
                    projection.name,
                    new_cp,
                    len(events),
                    time.perf_counter() - started,
                    _lag_seconds(events, self.batch_size),
                )
            if len(events) == self.batch_size:
                continue  # behind: keep going without waiting
            # Caught up to the horizon. A transaction still in flight can hold the horizon
            # back after a wake-up, so re-poll quickly a few times before waiting long.
            if events:
                quick_polls = 5
            if quick_polls > 0:
                quick_polls -= 1
                timeout = 0.005 * (6 - quick_polls)
            else:
                timeout = self.poll_interval
            if await state.wakeup.wait(timeout):
                quick_polls = 5


def _lag_seconds(events: Sequence[StoredEvent], batch_size: int) -> float:
    if len(events) < batch_size or not events:
        return 0.0
    return max(0.0, (datetime.now(UTC) - events[-1].recorded_at).total_seconds())


async def wait_for_position(
    conn: asyncpg.Connection, names: Sequence[str], position: int, *, timeout: float = 5.0
) -> bool:
    """Wait until every named projection has processed ``position``; False on timeout."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        reached = await conn.fetchval(
            "SELECT coalesce(min(position), 0) >= $2 AND count(*) = cardinality($1::text[])"
            " FROM projection_checkpoints WHERE name = ANY($1::text[])",
            list(names),
            position,
        )
        if reached:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)
