"""The event store against a real PostgreSQL: concurrency, order, idempotency, chains."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from uuid import UUID, uuid4

import asyncpg
import msgspec
import pytest

from infra.chain import GENESIS, Sha256Chain, canonical_event
from infra.database import system_transaction
from infra.event_codec import NewEvent, decode_json
from infra.event_store import AppendContext, ConcurrencyError, EventStore, TxAppender

store = EventStore()
CTX = AppendContext(actor="test@000000000000")


def new_event(i: int = 0, **data: object) -> NewEvent:
    body = {"n": i, "text": "北山社区 第" + str(i), **data}
    return NewEvent(uuid4(), "TestHappened", 1, msgspec.json.encode(body), datetime.now(UTC))


async def append(
    pool: asyncpg.Pool,
    root: UUID,
    node: UUID,
    stream: UUID,
    expected: int,
    events: list[NewEvent],
    *,
    hold: float = 0.0,
) -> list[int]:
    async with pool.acquire() as conn, system_transaction(conn):
        tx = TxAppender(conn)
        result = await store.append(
            tx,
            root_id=root,
            node_id=node,
            stream_id=stream,
            stream_type="test",
            expected_version=expected,
            events=events,
            context=CTX,
        )
        if hold:
            await asyncio.sleep(hold)  # keep the transaction open: commit order ≠ start order
        return list(result.positions)


async def test_concurrent_appends_to_one_stream_have_exactly_one_winner_per_version(pool):
    root, node, stream = uuid4(), uuid4(), uuid4()
    outcomes = await asyncio.gather(
        *(append(pool, root, node, stream, 0, [new_event(i)]) for i in range(16)),
        return_exceptions=True,
    )
    winners = [o for o in outcomes if isinstance(o, list)]
    losers = [o for o in outcomes if isinstance(o, ConcurrencyError)]
    assert len(winners) == 1
    assert len(losers) == 15

    # Writers that each retry on conflict: versions stay contiguous, nothing is lost.
    async def writer(i: int) -> None:
        for _ in range(50):
            async with pool.acquire() as conn:
                current = await conn.fetchval(
                    "SELECT coalesce(max(version), 0) FROM events WHERE root_id = $1 AND stream_id = $2",
                    root,
                    stream,
                )
            try:
                await append(pool, root, node, stream, current, [new_event(i)])
                return
            except ConcurrencyError:
                await asyncio.sleep(random.uniform(0, 0.005))
        raise AssertionError("writer never won")

    await asyncio.gather(*(writer(i) for i in range(10)))
    async with pool.acquire() as conn:
        versions = [r.version for r in await store.load(conn, root, stream)]
    assert versions == list(range(1, 12))


async def test_feed_has_no_gap_and_no_reordering_under_concurrent_writers(pool):
    root = uuid4()
    nodes = [uuid4() for _ in range(8)]
    appended: list[int] = []
    done = asyncio.Event()

    async def writer(w: int) -> None:
        for k in range(25):
            stream = uuid4()
            batch = [new_event(j) for j in range(random.choice([1, 1, 3]))]
            positions = await append(
                pool, root, nodes[w], stream, 0, batch, hold=random.uniform(0, 0.004)
            )
            appended.extend(positions)
            del k

    seen: list[int] = []

    async def reader() -> None:
        async with pool.acquire() as conn:
            cursor = await conn.fetchval("SELECT coalesce(max(position), 0) FROM events")
            # Read only this test's root but through the global settled order.
            while True:
                finished = done.is_set()
                rows = await store.read_settled(conn, cursor, 200)
                for e in rows:
                    if e.root_id == root:
                        seen.append(e.position)
                if rows:
                    cursor = rows[-1].position
                elif finished:
                    # One more pass after the writers finished, once the horizon passed them.
                    horizon = await store.horizon(conn)
                    if not appended or horizon > max(appended):
                        rows = await store.read_settled(conn, cursor, 10_000)
                        seen.extend(e.position for e in rows if e.root_id == root)
                        return
                await asyncio.sleep(0.002)

    reading = asyncio.create_task(reader())
    await asyncio.gather(*(writer(w) for w in range(8)))
    done.set()
    await asyncio.wait_for(reading, 30)
    assert seen == sorted(seen), "a consumer saw positions out of order"
    assert len(seen) == len(set(seen)), "a consumer saw an event twice"
    assert sorted(seen) == sorted(appended), "a consumer missed an event"


async def test_retried_append_with_same_event_ids_is_a_no_op(pool):
    root, node, stream = uuid4(), uuid4(), uuid4()
    events = [new_event(1), new_event(2)]
    first = await append(pool, root, node, stream, 0, events)
    again = await append(pool, root, node, stream, 0, events)
    assert again == first
    async with pool.acquire() as conn:
        assert len(await store.load(conn, root, stream)) == 2


async def test_stale_expected_version_is_a_concurrency_error(pool):
    root, node, stream = uuid4(), uuid4(), uuid4()
    await append(pool, root, node, stream, 0, [new_event(1)])
    with pytest.raises(ConcurrencyError) as info:
        await append(pool, root, node, stream, 0, [new_event(2)])
    assert info.value.actual == 1
    with pytest.raises(ConcurrencyError):
        await append(pool, root, node, stream, 5, [new_event(3)])  # a gap is refused too


async def test_batch_of_100_events_is_one_contiguous_run(pool):
    root, node, stream = uuid4(), uuid4(), uuid4()
    positions = await append(pool, root, node, stream, 0, [new_event(i) for i in range(100)])
    assert positions == list(range(positions[0], positions[0] + 100))
    async with pool.acquire() as conn:
        rows = await store.load(conn, root, stream)
    assert [r.version for r in rows] == list(range(1, 101))
    assert [r.node_seq for r in rows] == list(range(1, 101))


async def test_hash_chain_recomputes_from_stored_rows(pool):
    root, node = uuid4(), uuid4()
    for k in range(5):
        await append(pool, root, node, uuid4(), 0, [new_event(k), new_event(k + 10)])
    hasher = Sha256Chain()
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM events WHERE node_id = $1 ORDER BY node_seq", node)
        head = await conn.fetchrow("SELECT seq, hash FROM chain_heads WHERE node_id = $1", node)
    prev = GENESIS
    for expected_seq, r in enumerate(rows, start=1):
        assert r["node_seq"] == expected_seq
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
        assert bytes(r["hash"]) == prev
    assert head["seq"] == len(rows) and bytes(head["hash"]) == prev


async def test_update_and_delete_are_refused_even_for_the_owner(pool):
    root, node, stream = uuid4(), uuid4(), uuid4()
    await append(pool, root, node, stream, 0, [new_event(1)])
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute("UPDATE events SET actor = 'forger' WHERE stream_id = $1", stream)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute("DELETE FROM events WHERE stream_id = $1", stream)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute("TRUNCATE events")


async def test_runtime_role_has_no_update_or_delete_grant(pool):
    async with pool.acquire() as conn:
        grants = await conn.fetch(
            "SELECT privilege_type FROM information_schema.role_table_grants"
            " WHERE grantee = 'civic_app' AND table_name = 'events'"
        )
        attrs = await conn.fetchrow(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = 'civic_app'"
        )
    assert {g["privilege_type"] for g in grants} == {"SELECT", "INSERT"}
    assert not attrs["rolsuper"] and not attrs["rolbypassrls"]
