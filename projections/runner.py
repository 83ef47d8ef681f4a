"""Runs projections: catch up from the store, then follow it live.

* One owner per projection across processes: a session-level advisory lock held on the
  connection that also writes the projection's rows. If the owner dies, its connection
  closes, the lock is released, and another process's runner takes over.
* Exactly once: a batch's read-model writes and the checkpoint commit together.
* Cheap when idle: the settled events are read outside any transaction (one statement that
  also returns the horizon); a batch that applies nothing writes nothing, its checkpoint
  kept in memory and stored at most every ``checkpoint_interval`` (see ``wait_for_position``
  for what readers make of a checkpoint that lags behind positions it has no events at).
* Live: woken by in-process pokes and by NOTIFY from other processes; polls as a fallback.
  A projection that has been idle for ``quiet_after`` polls at most every ``quiet_poll_gap``.
* Only settled positions are read (below the transaction horizon), so nothing appears
  behind a checkpoint later.
* A failing projection stops and reports (log, metric, ``projection_checkpoints.error``);
  it never skips an event. It retries with backoff, so a transient fault heals.
* An owner yields on request (``NOTIFY civic_projection_control, 'yield:<name>'``): it
  finishes its batch, releases the lock and tries to take it again later. A rebuild
  (``projections/rebuild.py``) queues for the lock, asks, and so takes over between batches.
* Lag (``civic_projection_lag_seconds``): seconds since the oldest settled event the
  projection has not processed was recorded, 0 when caught up; measured from the database
  after every batch and, for every projection whoever owns it, every ``lag_interval``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
import structlog

from infra.event_store import EVENT_COLUMNS, StoredEvent
from infra.metrics import Metrics
from projections.base import Projection

log = structlog.get_logger("civic.projections")

NOTIFY_CHANNEL = "civic_events"
#: payload ``yield:<projection name>``: the owner releases the projection (see rebuild.py).
CONTROL_CHANNEL = "civic_projection_control"
_LOCK_CLASS = 0x6369  # advisory-lock namespace "ci"

# The horizon first, then the events (NULLs when there are none): one statement, so one
# snapshot and one round trip, and no transaction held open while the batch is prepared.
READ_BATCH = f"""
SELECT h.horizon, e.*
FROM (SELECT civic_horizon() AS horizon) h
LEFT JOIN LATERAL (
    SELECT {EVENT_COLUMNS} FROM events
    WHERE position > $1 AND position < h.horizon AND type = ANY($2::text[])
    ORDER BY position
    LIMIT $3
) e ON true
"""

ENSURE_CHECKPOINT = """
INSERT INTO projection_checkpoints (name, position) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING
"""
READ_CHECKPOINT = "SELECT position FROM projection_checkpoints WHERE name = $1"


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"  # standard_conforming_strings: the default


def begin_batch(name: str, checkpoint: int) -> str:
    """Opens a batch's transaction and moves the checkpoint in one round trip (the simple
    protocol takes several statements, not parameters: hence the literals). Moved first, so
    the batch's statements follow without waiting in between; should one fail, all of it
    rolls back.

    Asynchronous commit: the rows and the checkpoint still commit atomically, so a server
    crash can only lose the last few batches *together with* their checkpoint, and those
    are replayed from the events (committed synchronously, and earlier in the WAL than any
    batch derived from them). What it saves is a WAL flush per batch, which the commit
    would otherwise wait for while the API's transactions queue behind it.
    """
    return (
        "BEGIN; SET LOCAL synchronous_commit TO off; "
        f"UPDATE projection_checkpoints SET position = {int(checkpoint)}, updated_at = now(),"
        f" error = NULL WHERE name = {_literal(name)}"
    )


SAVE_ERROR = "UPDATE projection_checkpoints SET error = $2, updated_at = now() WHERE name = $1"

# The oldest settled event a projection has still to process, and how long ago it was recorded.
OLDEST_UNPROCESSED = """
SELECT greatest(0, extract(epoch FROM clock_timestamp() - e.recorded_at))::float8
FROM events e
WHERE e.position > $1 AND e.position < civic_horizon() AND e.type = ANY($2::text[])
ORDER BY e.position
LIMIT 1
"""


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
    #: everything settled up to here is applied (in memory; may be ahead of ``stored``).
    checkpoint: int = 0
    #: the checkpoint as stored in ``projection_checkpoints``, and when it was written.
    stored: int = 0
    stored_at: float = 0.0
    #: when a batch last applied events (monotonic clock).
    active_at: float = 0.0
    owned: bool = False
    applied: int = 0
    #: another process (a rebuild) asked the owner to release the projection.
    yield_requested: bool = False


async def read_batch(
    conn: asyncpg.Connection, projection: Projection, after: int, batch_size: int
) -> tuple[int, list[StoredEvent]]:
    """The horizon and the first ``batch_size`` settled events ``projection`` handles after
    ``after``."""
    rows = await conn.fetch(READ_BATCH, after, list(projection.handles), batch_size)
    horizon: int = rows[0][0]
    if rows[0][1] is None:
        return horizon, []
    return horizon, [StoredEvent(*tuple(r)[1:]) for r in rows]


def stores(events: Sequence[StoredEvent], checkpoint: int, stored: int, store_idle: bool) -> bool:
    """Whether a batch writes its checkpoint: always with events, else when ``store_idle``
    and it moves past the stored one."""
    return bool(events) or (store_idle and checkpoint > stored)


async def apply_batch(
    conn: asyncpg.Connection,
    projection: Projection,
    checkpoint: int,
    batch_size: int,
    *,
    stored: int | None = None,
    store_idle: bool = True,
) -> tuple[int, int, Sequence[StoredEvent]]:
    """One step: read what is settled after ``checkpoint``, apply it, move the checkpoint.

    Returns (new checkpoint, horizon, events applied). The events are read before the write
    transaction opens, so it stays as short as the writes: an open transaction holds back
    the horizon of every reader. A batch without events writes the checkpoint only when
    ``store_idle`` and it is ahead of ``stored`` (the stored checkpoint, by default
    ``checkpoint``).
    """
    horizon, events = await read_batch(conn, projection, checkpoint, batch_size)
    # A short batch means everything below the horizon has been seen.
    new_checkpoint = events[-1].position if len(events) == batch_size else horizon - 1
    new_checkpoint = max(new_checkpoint, checkpoint)
    stored = checkpoint if stored is None else stored
    if not stores(events, new_checkpoint, stored, store_idle):
        return new_checkpoint, horizon, events
    await conn.execute(begin_batch(projection.name, new_checkpoint))
    try:
        if events:
            await projection.apply(conn, events)
        await conn.execute("COMMIT")
    except BaseException:
        if conn.is_in_transaction():
            with contextlib.suppress(Exception):
                await conn.execute("ROLLBACK")
        raise
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
        lag_interval: float = 5.0,
        checkpoint_interval: float = 1.0,
        quiet_after: float = 0.5,
        quiet_poll_gap: float = 0.02,
    ) -> None:
        self.pool = pool
        self.states = {p.name: ProjectionState(p) for p in projections}
        self.metrics = metrics
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.acquire_interval = acquire_interval
        self.lag_interval = lag_interval
        self.checkpoint_interval = checkpoint_interval
        self.quiet_after = quiet_after
        self.quiet_poll_gap = quiet_poll_gap
        self._tasks: list[asyncio.Task[None]] = []
        #: called after a batch moved a checkpoint (wakes reads waiting for a position).
        self.on_progress: list[Callable[[], None]] = []
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
        if self.metrics is not None:
            self._tasks.append(asyncio.create_task(self._sample_lag(), name="projection-lag"))
        self._tasks.append(asyncio.create_task(self._keep_listening(), name="projection-listen"))

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
        if self._listener is not None:
            listener, self._listener = self._listener, None
            # Give the connection back: a pool only closes once every connection is released.
            with contextlib.suppress(Exception):
                await listener.remove_listener(NOTIFY_CHANNEL, self._on_notify)
                await listener.remove_listener(CONTROL_CHANNEL, self._on_control)
            with contextlib.suppress(Exception):
                await self.pool.release(listener)

    def poke(self) -> None:
        for state in self.states.values():
            state.wakeup.poke()

    def _on_notify(self, *_: object) -> None:
        self.poke()

    async def _listen(self) -> None:
        conn: asyncpg.Connection = await self.pool.acquire()
        try:
            await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
            await conn.add_listener(CONTROL_CHANNEL, self._on_control)
        except BaseException:
            await self.pool.release(conn)
            raise
        self._listener = conn

    async def _keep_listening(self) -> None:
        """LISTEN again once the listener's connection is gone (a database restart).

        Without it, wake-ups from other processes and yield requests stop arriving for good:
        the runner still polls, but a rebuild waits in vain for the owner to yield.
        """
        while not self._stopping.is_set():
            await asyncio.sleep(self.acquire_interval)
            listener = self._listener
            try:
                if listener is not None and not listener.is_closed():
                    continue
            except asyncpg.InterfaceError:
                pass  # the pool already took the dead connection back
            if listener is not None:
                self._listener = None
                with contextlib.suppress(Exception):
                    await self.pool.release(listener)
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await self._listen()
            if self._listener is not None:
                self.poke()  # whatever was notified meanwhile is picked up now

    def _on_control(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        verb, _, name = payload.partition(":")
        state = self.states.get(name)
        if verb == "yield" and state is not None and state.owned:
            state.yield_requested = True
            state.wakeup.poke()

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
                            state.yield_requested = False
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
        state.stored, state.stored_at = state.checkpoint, time.monotonic()
        backoff = 0.5
        quick_polls = 0
        while not self._stopping.is_set():
            if state.yield_requested:
                log.info("projection yielded on request", projection=projection.name)
                return  # the caller releases the lock; someone else may take it now
            try:
                started = time.perf_counter()
                polled_at = time.monotonic()
                # Every commit wakes every projection: storing the checkpoint of a batch
                # that applied nothing would cost each of them a write transaction per
                # commit. Stored now and then instead, so that a restart does not rescan
                # long and ``projection_status`` stays meaningful.
                store_idle = time.monotonic() - state.stored_at >= self.checkpoint_interval
                new_cp, _horizon, events = await apply_batch(
                    conn,
                    projection,
                    state.checkpoint,
                    self.batch_size,
                    stored=state.stored,
                    store_idle=store_idle,
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
            if stores(events, new_cp, state.stored, store_idle):
                state.stored, state.stored_at = new_cp, time.monotonic()
            moved = new_cp > state.checkpoint
            state.checkpoint = new_cp
            state.applied += len(events)
            if moved:
                for hook in self.on_progress:
                    hook()
            if self.metrics:
                behind = len(events) == self.batch_size
                self.metrics.observe_projection(
                    projection.name,
                    new_cp,
                    len(events),
                    time.perf_counter() - started,
                    await lag_seconds(conn, projection, new_cp) if behind else 0.0,
                )
            if len(events) == self.batch_size:
                continue  # behind: keep going without waiting
            # Caught up to the horizon. A transaction still in flight can hold the horizon
            # back after a wake-up, so re-poll quickly a few times before waiting long.
            if events:
                quick_polls = 5
                state.active_at = time.monotonic()
            if quick_polls > 0:
                quick_polls -= 1
                timeout = 0.005 * (6 - quick_polls)
            else:
                timeout = self.poll_interval
            if await state.wakeup.wait(timeout):
                quick_polls = 5
            # Every commit pokes every projection. One that has had nothing to apply for a
            # while (the load is not its events) re-polls at most every ``quiet_poll_gap``
            # however often it is poked: its polls would cost the API's event loop and the
            # database a query per commit. The price: its next event may wait that long.
            if time.monotonic() - state.active_at > self.quiet_after:
                gap = self.quiet_poll_gap - (time.monotonic() - polled_at)
                if gap > 0:
                    await asyncio.sleep(gap)

    async def _sample_lag(self) -> None:
        """Every ``lag_interval``: every projection's lag from the database, owned here or
        not (a stuck or ownerless projection shows its lag growing)."""
        assert self.metrics is not None
        while not self._stopping.is_set():
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                async with self.pool.acquire() as conn:
                    for name, state in self.states.items():
                        position = await conn.fetchval(READ_CHECKPOINT, name) or 0
                        lag = await lag_seconds(conn, state.projection, position)
                        self.metrics.projection_lag.labels(name).set(lag)
            await asyncio.sleep(self.lag_interval)


async def lag_seconds(conn: asyncpg.Connection, projection: Projection, checkpoint: int) -> float:
    """Seconds since the oldest settled event after ``checkpoint`` that ``projection``
    handles was recorded; 0 when there is none (caught up)."""
    lag: float | None = await conn.fetchval(
        OLDEST_UNPROCESSED, checkpoint, list(projection.handles)
    )
    return lag or 0.0


# Reached when the stored checkpoint is at ``position``, or when ``position`` is settled and
# the projection has no event in (stored checkpoint, position]: its read model then already
# says what it will say as of ``position``. The runner stores a checkpoint only with a batch
# that applied events (and now and then), so without the second branch a reader would wait
# for a projection that had nothing to do. Only for the projections whose events are known
# (``$3`` names, ``$4`` / ``$5`` their (name, type) pairs); others need the checkpoint.
REACHED = """
SELECT count(*) = cardinality($1::text[]) AND coalesce(bool_and(
    c.position >= $2 OR (
        c.name = ANY($3::text[]) AND $2 < civic_horizon() AND NOT EXISTS (
            SELECT 1 FROM events e
            WHERE e.position > c.position AND e.position <= $2
              AND e.type IN (SELECT h.type FROM unnest($4::text[], $5::text[]) AS h(name, type)
                             WHERE h.name = c.name)))), true)
FROM projection_checkpoints c WHERE c.name = ANY($1::text[])
"""


def _handles_by_name() -> dict[str, frozenset[str]]:
    from projections.registry import all_projections  # the registry imports every module

    return {p.name: p.handles for p in all_projections()}


_HANDLES: dict[str, frozenset[str]] = {}


def handles_by_name() -> Mapping[str, frozenset[str]]:
    """The events of each registered projection, by its name (computed once)."""
    if not _HANDLES:
        _HANDLES.update(_handles_by_name())
    return _HANDLES


async def wait_for_position(
    conn: asyncpg.Connection,
    names: Sequence[str],
    position: int,
    *,
    timeout: float = 5.0,
    handles: Mapping[str, frozenset[str]] | None = None,
) -> bool:
    """Wait until every named projection has processed ``position``; False on timeout.

    ``handles``: the events of each projection, by default those of the registry's."""
    if handles is None:
        handles = handles_by_name()
    known = [n for n in names if n in handles]
    pairs = [(n, t) for n in known for t in sorted(handles[n])]
    args = (
        list(names),
        position,
        known,
        [n for n, _ in pairs],
        [t for _, t in pairs],
    )
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        if await conn.fetchval(REACHED, *args):
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    position: int
    #: settled events of the projection's types after its checkpoint.
    behind: int
    #: see ``lag_seconds``.
    lag_seconds: float
    updated_at: datetime | None
    error: str | None
    #: backend pid of the connection holding the projection's lock (None: nobody runs it).
    owner_pid: int | None


STATUS = """
SELECT coalesce(c.position, 0) AS position, c.updated_at, c.error,
       (SELECT count(*) FROM events e WHERE e.position > coalesce(c.position, 0)
          AND e.position < civic_horizon() AND e.type = ANY($2::text[])) AS behind,
       (SELECT l.pid FROM pg_locks l
        WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $3::oid
          AND l.objid = $4::oid AND l.objsubid = 2
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        LIMIT 1) AS owner_pid
FROM (SELECT $1::text AS name) k LEFT JOIN projection_checkpoints c ON c.name = k.name
"""


async def projection_status(
    conn: asyncpg.Connection, projections: Sequence[Projection]
) -> list[ProjectionStatus]:
    """Position, backlog, lag and owner of each projection, from the database."""
    out = []
    for p in projections:
        row = await conn.fetchrow(STATUS, p.name, list(p.handles), _LOCK_CLASS, lock_key(p.name))
        out.append(
            ProjectionStatus(
                name=p.name,
                position=row["position"],
                behind=row["behind"],
                lag_seconds=await lag_seconds(conn, p, row["position"]),
                updated_at=row["updated_at"],
                error=row["error"],
                owner_pid=row["owner_pid"],
            )
        )
    return out
