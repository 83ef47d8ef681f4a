"""The projection runner: one owner per projection, takeover, exactly-once application."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from uuid import uuid4

import asyncpg
import msgspec

from infra.database import system_transaction
from infra.event_codec import NewEvent
from infra.event_store import AppendContext, EventStore, StoredEvent, TxAppender
from projections.runner import ProjectionRunner, apply_batch, wait_for_position

store = EventStore()


class Recorder:
    """Records every applied position; the primary key makes a double application fail."""

    handles = frozenset({"RunnerProbe"})
    tables: tuple[str, ...] = ()

    def __init__(self, name: str, table: str) -> None:
        self.name = name
        self.table = table

    async def apply(self, conn: asyncpg.Connection, events: Sequence[StoredEvent]) -> None:
        await conn.executemany(
            f"INSERT INTO {self.table} (position) VALUES ($1)", [(e.position,) for e in events]
        )


async def _probe_events(pool: asyncpg.Pool, n: int, kind: str = "RunnerProbe") -> list[int]:
    root, node = uuid4(), uuid4()
    positions: list[int] = []
    for _ in range(n):
        async with pool.acquire() as conn, system_transaction(conn):
            data = msgspec.json.encode({"k": 1})
            result = await store.append(
                TxAppender(conn),
                root_id=root,
                node_id=node,
                stream_id=uuid4(),
                stream_type="probe",
                expected_version=0,
                events=[NewEvent(uuid4(), kind, 1, data, datetime.now(UTC))],
                context=AppendContext(actor="test"),
            )
            positions.extend(result.positions)
    return positions


async def _setup(pool: asyncpg.Pool) -> Recorder:
    name = f"probe_{uuid4().hex[:8]}"
    table = f"tmp_{name}"
    async with pool.acquire() as conn:
        await conn.execute(f"CREATE TABLE {table} (position bigint PRIMARY KEY)")
        # start after everything already in the store: only this test's probes count
        horizon = await conn.fetchval("SELECT civic_horizon()")
        await conn.execute(
            "INSERT INTO projection_checkpoints (name, position) VALUES ($1, $2)", name, horizon - 1
        )
    return Recorder(name, table)


async def _wait_for(pool: asyncpg.Pool, table: str, count: int, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        async with pool.acquire() as conn:
            if await conn.fetchval(f"SELECT count(*) FROM {table}") >= count:
                return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{table} never reached {count} rows")


async def test_one_owner_applies_each_event_once_and_a_standby_takes_over(pool):
    projection = await _setup(pool)
    first = ProjectionRunner(pool, [projection], poll_interval=0.05, acquire_interval=0.1)
    second = ProjectionRunner(pool, [projection], poll_interval=0.05, acquire_interval=0.1)
    await first.start()
    await second.start()
    try:
        positions = await _probe_events(pool, 20)
        await _wait_for(pool, projection.table, 20)
        owners = [r for r in (first, second) if r.states[projection.name].owned]
        assert len(owners) == 1, "exactly one runner owns the projection"
        owner, standby = (first, second) if owners[0] is first else (second, first)
        await owner.stop()  # its lock goes with its connection
        more = await _probe_events(pool, 15)
        await _wait_for(pool, projection.table, 35)
        assert standby.states[projection.name].owned
        async with pool.acquire() as conn:
            applied = [
                r["position"]
                for r in await conn.fetch(
                    f"SELECT position FROM {projection.table} ORDER BY position"
                )
            ]
            checkpoint = await conn.fetchval(
                "SELECT position FROM projection_checkpoints WHERE name = $1", projection.name
            )
        assert applied == sorted(positions + more)
        assert checkpoint >= max(applied)
    finally:
        await first.stop()
        await second.stop()


async def test_a_failed_batch_moves_nothing(pool):
    projection = await _setup(pool)
    positions = await _probe_events(pool, 3)
    async with pool.acquire() as conn:
        start = await conn.fetchval(
            "SELECT position FROM projection_checkpoints WHERE name = $1", projection.name
        )
        # Snapshots are cluster-wide: another session's open transaction can hold the
        # horizon back for a moment. Wait (bounded) until the probes are settled.
        for _ in range(500):
            if await conn.fetchval("SELECT civic_horizon()") > positions[-1]:
                break
            await asyncio.sleep(0.01)
        # a row already present makes the batch fail half-way: nothing may stick
        await conn.execute(f"INSERT INTO {projection.table} VALUES ($1)", positions[1])
        try:
            await apply_batch(conn, projection, start, 100)
        except asyncpg.UniqueViolationError:
            pass
        else:
            raise AssertionError("the batch should have failed")
        assert (
            await conn.fetchval(
                "SELECT position FROM projection_checkpoints WHERE name = $1", projection.name
            )
            == start
        )
        assert await conn.fetchval(f"SELECT count(*) FROM {projection.table}") == 1
        await conn.execute(f"DELETE FROM {projection.table}")
        new_checkpoint, _, events = await apply_batch(conn, projection, start, 100)
        assert [e.position for e in events] == positions
        assert new_checkpoint >= positions[-1]


async def _stored(pool: asyncpg.Pool, name: str) -> int:
    async with pool.acquire() as conn:
        value: int = await conn.fetchval(
            "SELECT position FROM projection_checkpoints WHERE name = $1", name
        )
    return value


async def _until(predicate: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition never met"
        await asyncio.sleep(0.02)


async def test_batches_without_events_store_no_checkpoint_yet_readers_are_not_kept_waiting(pool):
    projection = await _setup(pool)
    handles = {projection.name: projection.handles}
    runner = ProjectionRunner(
        pool, [projection], poll_interval=0.05, acquire_interval=0.1, checkpoint_interval=3600
    )
    await runner.start()
    state = runner.states[projection.name]
    try:
        [applied] = await _probe_events(pool, 1)
        await _wait_for(pool, projection.table, 1)
        assert await _stored(pool, projection.name) >= applied  # stored with the rows

        others = await _probe_events(pool, 3, kind="OtherProbe")
        runner.poke()

        async def passed_others() -> bool:
            return state.checkpoint >= others[-1]

        await _until(passed_others)
        # the runner moved past them in memory only ...
        assert await _stored(pool, projection.name) < others[0]
        async with pool.acquire() as conn:
            # ... and a reader waiting for them is not kept waiting: nothing to apply there
            assert await wait_for_position(
                conn, [projection.name], others[-1], timeout=2, handles=handles
            )
            # without knowing the projection's events, only the stored checkpoint counts
            assert not await wait_for_position(
                conn, [projection.name], others[-1], timeout=0.1, handles={}
            )
    finally:
        await runner.stop()

    # an event it handles, not applied (nobody runs it): a reader must wait for it
    [pending] = await _probe_events(pool, 1)
    async with pool.acquire() as conn:
        for _ in range(500):
            if await conn.fetchval("SELECT civic_horizon()") > pending:
                break
            await asyncio.sleep(0.01)
        assert not await wait_for_position(
            conn, [projection.name], pending, timeout=0.2, handles=handles
        )
        assert not await wait_for_position(
            conn, [projection.name], pending + 1, timeout=0.2, handles=handles
        )


async def test_an_idle_checkpoint_is_stored_after_the_interval(pool):
    projection = await _setup(pool)
    runner = ProjectionRunner(
        pool, [projection], poll_interval=0.05, acquire_interval=0.1, checkpoint_interval=0.2
    )
    await runner.start()
    try:
        others = await _probe_events(pool, 2, kind="OtherProbe")
        runner.poke()

        async def stored() -> bool:
            return await _stored(pool, projection.name) >= others[-1]

        await _until(stored)
        async with pool.acquire() as conn:
            assert await conn.fetchval(f"SELECT count(*) FROM {projection.table}") == 0
    finally:
        await runner.stop()
