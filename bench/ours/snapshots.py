"""Cold loads of long streams, with and without a snapshot, side by side in one run.

A member (双报到) with a sealed registration and then 1,000 or 10,000 ServiceRecorded events,
on one community of the ``store`` group's county. One operation is what a command's cold
load costs (``CommandSession.load`` in a transaction, as ``infra.snapshots.load_stream``
runs it): a pooled connection, a scoped transaction (runtime role, row-level security on),
the snapshot look-up, the events after it with their node paths, the person's data key,
decoding and replaying. Two streams of the same length: one has a snapshot 50 events behind
its head (half the default ``snapshot_every``: what a long stream has on average), the other
none (every event is read, as before snapshots). The figure is loads/s with the snapshot;
``.without`` is loads/s without, ``.ratio`` with over without, ``.ms``/``.without_ms`` the
mean load time (loads of the two alternate in one window); ``.snapshot_bytes`` and
``.encode_us`` are the size of the snapshot and the time to encode (and seal) it, what a
command that writes one adds before its COMMIT (the row itself goes with the COMMIT);
``.tx_ms`` and ``.tx_with_write_ms`` (1k only) the mean time of a scoped transaction of one
insert (an Idempotency-Key row) without and with the snapshot's row written with its COMMIT.

``store.load_short`` is the price for the streams most commands load (a few events, never
snapshotted): the load as it is now (the snapshot look-up finds nothing, then every event)
over the load as it was before snapshots (events only), as ``.before`` and ``.ratio``.
"""

from __future__ import annotations

import gc
import os
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from bench.registry import Context, benchmark
from bench.timing import async_rate
from domain.member import Member
from domain.personal_data import personal_data
from domain.refs import NodeRef
from domain.registry import AGGREGATES, event_classes
from infra import snapshots
from infra.database import ScopeCache, create_pool, defer_until_commit, scoped_transaction
from infra.event_codec import EventCodec
from infra.event_store import AppendContext, EventStore, TxAppender
from infra.pii_crypto import PersonKeyring

GROUP = "store"
#: how far behind its head a stream's snapshot is
TAIL = 50
CHUNK = 2_000

_codec = EventCodec(event_classes(), AGGREGATES, require_cipher=True)
_store = EventStore()


@dataclass(frozen=True)
class _Streams:
    code: str
    root_id: uuid.UUID
    with_snapshot: uuid.UUID
    without: uuid.UUID
    snapshot_bytes: int
    encode_us: float


async def _member(
    ctx: Context, master: bytes, code: str, events: int, snapshot: bool
) -> tuple[uuid.UUID, uuid.UUID, int, float]:
    """A member stream of ``events`` events (and its snapshot ``TAIL`` events behind)."""
    conn = await ctx.connect()
    try:
        row = await conn.fetchrow("SELECT id, root_id FROM nodes WHERE code = $1", code)
        community = NodeRef(row["id"], code, "community", row["root_id"])
        unit = NodeRef(uuid.uuid4(), "U" + code[:9], "unit", row["root_id"])
        at = datetime.now(UTC) - timedelta(days=1)
        member = Member.register(
            member_id=uuid.uuid4(),
            person=personal_data("张三丰", f"138{uuid.uuid4().int % 10**8:08d}"),
            community=community,
            home_unit=unit,
            at=at,
        )
        for _ in range(events - 1):
            member.record_service(served_on=date(2024, 1, 1), hours=1.5, kind="志愿服务", at=at)
        pending = member.collect_events()
        ring = PersonKeyring(master)
        size, encode_us = 0, 0.0
        async with scoped_transaction(conn, code) as (_, scope):
            await ring.ensure(conn, scope.root_id, member.id)
            encoded = [_codec.encode(e, cipher=ring) for e in pending]
            tx = TxAppender(conn)
            for start in range(0, len(encoded), CHUNK):
                await _store.append(
                    tx,
                    root_id=scope.root_id,
                    node_id=community.id,
                    stream_id=member.id,
                    stream_type=Member.STREAM_TYPE,
                    expected_version=start,
                    events=encoded[start : start + CHUNK],
                    context=AppendContext(actor="bench@" + code),
                )
        if snapshot:
            version = events - TAIL
            async with scoped_transaction(conn, code) as (_, scope):
                stored = await _store.load(conn, scope.root_id, member.id)
                await ring.load(conn, scope.root_id, member.id)
                state = snapshots.replay(_codec, ring, stored[:version], None)
                t0 = time.perf_counter()
                for _ in range(100):
                    data = snapshots.encode_state(state, ring)
                encode_us = (time.perf_counter() - t0) * 1e4  # µs per encoding
                assert data is not None
                size = len(data)
                await conn.execute(
                    snapshots.put_statement(
                        root_id=scope.root_id,
                        stream_id=member.id,
                        stream_type=Member.STREAM_TYPE,
                        version=version,
                        event_id=stored[version - 1].event_id,
                        state_version=Member.STATE_VERSION,
                        state=data,
                        node_ids={community.id},
                    )
                )
        return member.id, row["root_id"], size, encode_us
    finally:
        await conn.close()


async def _streams(ctx: Context, events: int) -> _Streams:
    key = f"snapshot-streams-{events}"
    if key not in ctx.state:
        master = ctx.state.setdefault("snapshot-master", os.urandom(32))
        communities: list[str] = ctx.state["communities"]
        code = communities[events % len(communities)]
        with_snapshot, root, size, encode_us = await _member(ctx, master, code, events, True)
        without, _, _, _ = await _member(ctx, master, code, events, False)
        ctx.state[key] = _Streams(code, root, with_snapshot, without, size, encode_us)
    streams: _Streams = ctx.state[key]
    return streams


async def _load_rates(
    ctx: Context,
    code: str,
    streams: tuple[uuid.UUID, uuid.UUID],
    *,
    before: bool = False,
    collect: bool = False,
) -> tuple[tuple[float, float], tuple[int, int]]:
    """Cold loads/s of two streams (one at a time, alternating, so drift on a shared
    machine hits both alike) and the events each one's last load read. ``before``: the
    second is loaded as before snapshots (events only)."""
    pool = await create_pool(ctx.database_url, min_size=1, max_size=1, session_state=False)
    scopes = ScopeCache()
    master: bytes = ctx.state["snapshot-master"]
    spent, done, read = [0.0, 0.0], [0, 0], [0, 0]
    try:

        async def op(w: int, i: int) -> int:
            k = i % 2
            stream_id = streams[k]
            ring = PersonKeyring(master)
            if collect:  # the garbage of a 10,000-event load is not the next load's cost
                gc.collect()
            t0 = time.perf_counter()
            async with (
                pool.acquire() as conn,
                scoped_transaction(conn, code, cache=scopes) as (_, scope),
            ):
                if before and k == 1:
                    stored, _ = await _store.load_with_paths(conn, scope.root_id, stream_id)
                    await ring.load(conn, scope.root_id, stream_id)
                    aggregate: Any = snapshots.replay(_codec, ring, stored, None)
                    read[k] = len(stored)
                else:
                    loaded = await snapshots.load_stream(
                        conn, _store, _codec, ring, Member, scope.root_id, stream_id
                    )
                    assert loaded is not None
                    aggregate, read[k] = loaded.aggregate, loaded.read
            spent[k] += time.perf_counter() - t0
            done[k] += 1
            assert aggregate.person is not None
            return 1

        await async_rate(1, op, duration=ctx.duration, warmup=ctx.warmup)
        rates = (done[0] / spent[0] if spent[0] else 0.0, done[1] / spent[1] if spent[1] else 0.0)
        return rates, (read[0], read[1])
    finally:
        await pool.close()


async def _write_cost(ctx: Context, streams: _Streams) -> tuple[float, float]:
    """The mean time of a scoped transaction (one insert, then COMMIT) without and with a
    snapshot written with its COMMIT (the stream's own snapshot, rewritten), alternating."""
    conn = await ctx.connect()
    try:
        row = await conn.fetchrow(
            "SELECT * FROM snapshots WHERE stream_id = $1", streams.with_snapshot
        )
        put = snapshots.put_statement(
            root_id=row["root_id"],
            stream_id=row["stream_id"],
            stream_type=row["stream_type"],
            version=row["version"],
            event_id=row["event_id"],
            state_version=row["state_version"],
            state=row["state"].encode(),
            node_ids=row["node_ids"],
        )
        spent = [0.0, 0.0]
        pairs = ctx.scaled(100, 40)
        for i in range(2 * pairs):
            t0 = time.perf_counter()
            async with scoped_transaction(conn, streams.code):
                # a write, as every command's transaction has (its COMMIT flushes the WAL)
                await conn.execute(
                    "INSERT INTO idempotency_keys (principal, key, request_hash, status,"
                    " response) VALUES ('bench', $1, '\\x00', 201, '\\x00')",
                    uuid.uuid4().hex,
                )
                if i % 2:
                    defer_until_commit(put)
            spent[i % 2] += time.perf_counter() - t0
        return spent[0] / pairs * 1000, spent[1] / pairs * 1000
    finally:
        await conn.close()


async def _load_long(ctx: Context, events: int) -> float:
    streams = await _streams(ctx, events)
    (with_rate, without_rate), (with_read, without_read) = await _load_rates(
        ctx, streams.code, (streams.with_snapshot, streams.without), collect=True
    )
    assert with_read == TAIL and without_read == events, (with_read, without_read)
    ctx.report("without", without_rate, "loads/s")
    ctx.report("ratio", with_rate / without_rate if without_rate else 0.0, "x")
    ctx.report("ms", 1000 / with_rate if with_rate else 0.0, "ms")
    ctx.report("without_ms", 1000 / without_rate if without_rate else 0.0, "ms")
    ctx.report("snapshot_bytes", streams.snapshot_bytes, "bytes")
    ctx.report("encode_us", streams.encode_us, "us")
    if events == 1_000:
        plain, with_write = await _write_cost(ctx, streams)
        ctx.report("tx_ms", plain, "ms")
        ctx.report("tx_with_write_ms", with_write, "ms")
    return with_rate


@benchmark(
    "store.load_long_1k",
    GROUP,
    "loads/s",
    description="cold load of a 1,000-event member stream, snapshot 50 behind (.without: none)",
)
async def load_long_1k(ctx: Context) -> float:
    return await _load_long(ctx, 1_000)


@benchmark(
    "store.load_long_10k",
    GROUP,
    "loads/s",
    description="cold load of a 10,000-event member stream, snapshot 50 behind (.without: none)",
)
async def load_long_10k(ctx: Context) -> float:
    return await _load_long(ctx, 10_000)


@benchmark(
    "store.load_short",
    GROUP,
    "loads/s",
    description="cold load of a 3-event member stream with the snapshot look-up (.before: without)",
)
async def load_short(ctx: Context) -> float:
    code: str = ctx.state["communities"][0]
    key = "snapshot-short"
    if key not in ctx.state:
        master = ctx.state.setdefault("snapshot-master", os.urandom(32))
        ctx.state[key], _, _, _ = await _member(ctx, master, code, 3, False)
    short: uuid.UUID = ctx.state[key]
    (now, before), _ = await _load_rates(ctx, code, (short, short), before=True)
    ctx.report("before", before, "loads/s")
    ctx.report("ratio", now / before if before else 0.0, "x")
    return now
