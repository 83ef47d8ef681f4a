"""Group commit, an experiment: concurrent single-event appends batched into one transaction.

``store.group_single_8w`` / ``store.group_single_32w``: the writers of ``store.append_single_8w``
(8 or 32 of them) hand their command's write to a ``GroupWriter`` instead of sending it
themselves. The writer takes whatever requests are waiting when its connection is free (at most
``MAX_ITEMS``; no timer: requests queue up while the previous batch runs, so batching costs no
latency when the server keeps up) and sends them as one call of ``civic_group_append`` below,
one autocommit statement, so one transaction and one commit for the batch. Each item is what
``civic_command_append`` (migration 0036) does for one command, in a ``BEGIN … EXCEPTION``
block of its own: a failing item (version conflict, closed subtree, duplicate Idempotency-Key,
row-level security refusal) is rolled back to its block and reported alone; its neighbours
commit. ``store.append_single_32w`` is the one-statement path at 32 writers, to compare with.

What keeps each item's guarantees inside a shared transaction:

- positions: the transaction has one id, so item i takes the index range after the items
  before it (``xid << 16`` + the count of events appended so far in the transaction); an
  item rolled back leaves a hole, never a duplicate;
- scope: every item switches to the runtime role and sets all of its own scope settings right
  before its checked statements and resets them (role back to the caller, empty scope, which
  row-level security refuses) right after. A block that fails has its settings undone with its
  subtransaction. So no item's statement ever runs under another item's scope, even when the
  batch mixes principals of different tenants;
- chains: items are taken in node order, so two group writers lock chain heads in the same
  order (no deadlock); items on one node chain one after the other in the transaction;
- idempotency: each item's Idempotency-Key record is written in its block, a duplicate fails
  that item only.

Costs the single path does not have: one subtransaction per item (a writing subtransaction
takes a subtransaction id; more than 64 in one transaction overflow the per-backend cache and
every other backend's snapshots then consult pg_subtrans, hence ``MAX_ITEMS`` = 32); every
item's chain head stays locked until the whole batch commits; a failure of the batch itself
(commit, statement timeout, lost connection) fails all its items.

Why the product does not use it yet. On a loaded 2-core machine (``--quick``, four runs): at
8 writers the batches held ~2 items and the rate was 0.91-0.97x the one-statement path's; at
32 writers (batches of ~4) 1.8-3.6x. On a quiet one (2026-12-06, ``--quick``, median of 3):
4,728 against 3,727 ev/s at 8 writers (batches of ~7, 1.27x) and 6,200 against 2,544 at 32
(2.4x). Each item still runs the same statements inside the function, plus a subtransaction:
what a batch saves is the commits (the WAL flushes) and the round trips, so it cannot bring
an append near a raw insert (README, "Issue #20 at its close"). A second write path beside
the one-statement one, with latency and failure coupled across tenants' requests, for 1.3x
at the concurrency a 2-core API reaches, was not built; it is the next step if those costs
are accepted.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from bench.ours.store import GROUP, STREAMS_PER_WRITER
from bench.payload import EVENT_TYPE, event_json
from bench.registry import Context, benchmark
from bench.timing import async_rate
from infra.database import Scope, ScopeCache, create_pool, scoped_transaction
from infra.event_codec import NewEvent
from infra.event_store import AppendContext, EventStore, provisional_base

MAX_ITEMS = 32

GROUP_APPEND_SQL = """
CREATE OR REPLACE FUNCTION civic_group_append(
    p_scope_root uuid[], p_scope_path text[], p_scope_unit boolean[], p_check_node uuid[],
    p_root uuid[], p_node uuid[], p_stream uuid[], p_stream_type text[], p_expected integer[],
    p_event_id uuid[], p_type text[], p_schema_version smallint[], p_data jsonb[],
    p_occurred_at timestamptz[], p_recorded_at timestamptz[], p_actor text[],
    p_idempotency_key text[], p_digest bytea[], p_key_principal text[], p_request_hash bytea[],
    p_status smallint[], p_response bytea[], p_placeholder bigint[], p_canonical bytea[]
) RETURNS TABLE (item integer, event_position bigint, event_version integer, event_seq bigint,
                 error_state text, error_message text)
LANGUAGE plpgsql AS $$
DECLARE
    v_base     bigint := pg_current_xact_id()::text::bigint << 16;
    v_index    integer := 0;
    v_seq      bigint;
    v_hash     bytea;
    v_prev     bytea;
    v_current  integer;
    v_closed   boolean;
BEGIN
    IF cardinality(p_event_id) > 65536 THEN
        RAISE EXCEPTION 'a transaction appends at most 65536 events'
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    FOR i IN 1..coalesce(cardinality(p_event_id), 0) LOOP
        item := i;
        error_state := NULL;
        error_message := NULL;
        BEGIN
            LOOP
                SELECT h.seq, h.hash,
                       (SELECT coalesce(max(e.version), 0) FROM events e
                        WHERE e.root_id = p_root[i] AND e.stream_id = p_stream[i]),
                       EXISTS (
                           SELECT 1 FROM nodes a
                           WHERE a.id = ANY (ARRAY(
                                     SELECT unnest(civic_path_ids(c.path)) FROM nodes c
                                     WHERE c.id = p_check_node[i]))
                             AND a.closed)
                INTO v_seq, v_hash, v_current, v_closed
                FROM chain_heads h WHERE h.node_id = p_node[i] FOR UPDATE OF h;
                EXIT WHEN FOUND;
                INSERT INTO chain_heads (node_id, root_id, seq, hash)
                VALUES (p_node[i], p_root[i], 0, decode(repeat('00', 32), 'hex'))
                ON CONFLICT (node_id) DO NOTHING;
            END LOOP;
            IF v_closed THEN
                RAISE EXCEPTION 'the command names a node in a closed subtree'
                    USING ERRCODE = 'CV423';
            END IF;
            PERFORM set_config('role', 'civic_app', true),
                    set_config('civic.root', p_scope_root[i]::text, true),
                    set_config('civic.scope_lo', p_scope_path[i], true),
                    set_config('civic.scope_hi', left(p_scope_path[i], -1) || '0', true),
                    set_config('civic.unit', CASE WHEN p_scope_unit[i] THEN '1' ELSE '0' END,
                               true);
            IF v_current <> p_expected[i] THEN
                SELECT e.position, e.version, e.node_seq
                INTO event_position, event_version, event_seq
                FROM events e WHERE e.root_id = p_root[i] AND e.event_id = p_event_id[i];
                IF NOT FOUND THEN
                    RAISE EXCEPTION 'stream % is at version %, expected %', p_stream[i],
                        v_current, p_expected[i] USING ERRCODE = 'CV409', DETAIL = v_current::text;
                END IF;
            ELSE
                event_position := v_base + v_index;
                event_version := p_expected[i] + 1;
                event_seq := v_seq + 1;
                v_prev := v_hash;
                v_hash := sha256(v_prev || int8send(event_seq) || int8send(event_position)
                                 || p_digest[i]);
                WITH appended AS (
                    INSERT INTO events (
                        position, root_id, node_id, node_seq, prev_hash, hash, stream_id,
                        stream_type, version, event_id, type, schema_version, data,
                        occurred_at, recorded_at, actor, idempotency_key, canonical)
                    VALUES (event_position, p_root[i], p_node[i], event_seq, v_prev, v_hash,
                            p_stream[i], p_stream_type[i], event_version, p_event_id[i],
                            p_type[i], p_schema_version[i], p_data[i], p_occurred_at[i],
                            p_recorded_at[i], p_actor[i], p_idempotency_key[i], p_canonical[i])
                ), head AS (
                    UPDATE chain_heads SET seq = event_seq, hash = v_hash
                    WHERE node_id = p_node[i]
                )
                INSERT INTO idempotency_keys (principal, key, request_hash, status, response)
                SELECT p_key_principal[i], p_idempotency_key[i], p_request_hash[i], p_status[i],
                       convert_to(replace(convert_from(p_response[i], 'UTF8'),
                                          p_placeholder[i]::text, event_position::text), 'UTF8')
                WHERE p_key_principal[i] IS NOT NULL;
                v_index := v_index + 1;
            END IF;
            -- nothing of this item's scope is left for the next item
            PERFORM set_config('role', 'none', true),
                    set_config('civic.root', '', true),
                    set_config('civic.scope_lo', '', true),
                    set_config('civic.scope_hi', '', true),
                    set_config('civic.unit', '', true);
        EXCEPTION WHEN OTHERS THEN
            event_position := NULL;
            event_version := NULL;
            event_seq := NULL;
            error_state := SQLSTATE;
            error_message := SQLERRM;
        END;
        RETURN NEXT;
    END LOOP;
END $$;
"""

GROUP_APPEND = """
SELECT item, event_position, event_version, event_seq, error_state, error_message
FROM civic_group_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                        $17, $18, $19, $20, $21, $22, $23, $24)
"""


class ItemFailed(Exception):
    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(f"{sqlstate}: {message}")
        self.sqlstate = sqlstate


@dataclass(frozen=True)
class Item:
    """One command's single-event write, as ``civic_command_append`` takes it."""

    scope: Scope
    root_id: uuid.UUID
    node_id: uuid.UUID  # the chain the event joins
    stream_id: uuid.UUID
    stream_type: str
    expected_version: int
    event: NewEvent
    context: AppendContext
    principal: str
    request_hash: bytes
    status: int
    response: bytes
    placeholder: int


class GroupWriter:
    """Batches concurrent ``append`` calls into one ``civic_group_append`` call per connection."""

    def __init__(self, pool: asyncpg.Pool, connections: int, max_items: int = MAX_ITEMS) -> None:
        self.pool = pool
        self.max_items = max_items
        self.store = EventStore()
        self.queue: asyncio.Queue[tuple[Item, asyncio.Future[tuple[int, int, int]]]] = (
            asyncio.Queue()
        )
        self.batches = 0
        self.items = 0
        self._tasks = [asyncio.create_task(self._run()) for _ in range(connections)]

    async def append(self, item: Item) -> tuple[int, int, int]:
        """(position, version, node_seq) of the item's event, or ItemFailed."""
        future: asyncio.Future[tuple[int, int, int]] = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((item, future))
        return await future

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while len(batch) < self.max_items and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            # one lock order for every writer: no deadlock between two batches
            batch.sort(key=lambda entry: entry[0].node_id)
            try:
                rows = await self._send([item for item, _ in batch])
            except Exception as exc:  # the batch as a whole failed: so did each of its items
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.batches += 1
            self.items += len(batch)
            for row, (_, future) in zip(rows, batch, strict=True):
                if row["error_state"] is not None:
                    future.set_exception(ItemFailed(row["error_state"], row["error_message"]))
                else:
                    future.set_result(
                        (row["event_position"], row["event_version"], row["event_seq"])
                    )

    async def _send(self, items: list[Item]) -> list[asyncpg.Record]:
        async with self.pool.acquire() as conn:
            rows: list[asyncpg.Record] = await conn.fetch(
                GROUP_APPEND, *group_arguments(self.store, items)
            )
        return rows


def group_arguments(store: EventStore, items: list[Item]) -> list[object]:
    """``civic_group_append``'s arguments for ``items``, in order."""
    recorded_at = datetime.now(UTC)
    encoded = [
        store._canonical(
            it.root_id,
            it.node_id,
            it.stream_id,
            it.stream_type,
            it.expected_version,
            [it.event],
            recorded_at,
            it.context,
        )
        for it in items
    ]
    canonicals = [canonical[0] for canonical, _ in encoded]
    digests = [digest[0] for _, digest in encoded]
    return [
        [it.scope.root_id for it in items],
        [it.scope.path for it in items],
        [it.scope.is_unit for it in items],
        [it.scope.node_id for it in items],
        [it.root_id for it in items],
        [it.node_id for it in items],
        [it.stream_id for it in items],
        [it.stream_type for it in items],
        [it.expected_version for it in items],
        [it.event.event_id for it in items],
        [it.event.type for it in items],
        [it.event.schema_version for it in items],
        [it.event.data.decode() for it in items],
        [it.event.occurred_at.astimezone(UTC) for it in items],
        [recorded_at] * len(items),
        [it.context.actor for it in items],
        [it.context.idempotency_key for it in items],
        digests,
        [it.principal for it in items],
        [it.request_hash for it in items],
        [it.status for it in items],
        [it.response for it in items],
        [it.placeholder for it in items],
        canonicals,
    ]


async def group_rate(ctx: Context, writers: int, connections: int) -> float:
    """Single-event appends of ``writers`` writers through a GroupWriter of ``connections``."""
    communities: list[str] = ctx.state["communities"]
    setup = await ctx.connect()
    try:
        await setup.execute(GROUP_APPEND_SQL)
    finally:
        await setup.close()
    pool = await create_pool(
        ctx.database_url, min_size=connections, max_size=connections + 1, session_state=False
    )
    scopes = ScopeCache()
    group = GroupWriter(pool, connections)
    try:
        streams = [
            [
                (uuid.uuid4(), communities[(w * STREAMS_PER_WRITER + k) % len(communities)])
                for k in range(STREAMS_PER_WRITER)
            ]
            for w in range(writers)
        ]
        versions: dict[uuid.UUID, int] = {}
        payload = event_json(7).encode()

        async def op(w: int, i: int) -> int:
            stream, code = streams[w][i % STREAMS_PER_WRITER]
            scope = scopes.get(code)
            if scope is None:
                async with (
                    pool.acquire() as conn,
                    scoped_transaction(conn, code, cache=scopes) as (_, scope),
                ):
                    pass
            placeholder = provisional_base()
            key = f"bench-{uuid.uuid4()}"
            _, version, _ = await group.append(
                Item(
                    scope=scope,
                    root_id=scope.root_id,
                    node_id=scope.node_id,
                    stream_id=stream,
                    stream_type="issue",
                    expected_version=versions.get(stream, 0),
                    event=NewEvent(uuid.uuid4(), EVENT_TYPE, 1, payload, datetime.now(UTC)),
                    context=AppendContext(actor="bench@" + code, idempotency_key=key),
                    principal="bench",
                    request_hash=b"h" * 32,
                    status=201,
                    response=b'{"position":%d}' % placeholder,
                    placeholder=placeholder,
                )
            )
            versions[stream] = version
            return 1

        rate = await async_rate(writers, op, duration=ctx.duration, warmup=ctx.warmup)
        if group.batches:
            ctx.report("items_per_batch", group.items / group.batches, "items")
        return rate.per_second
    finally:
        await group.close()
        await pool.close()


@benchmark(
    "store.group_single_8w",
    GROUP,
    "events/s",
    description="experiment: 8 writers' single-event appends group-committed (2 connections)",
    compare=("store.append_single_8w",),
)
async def group_single_8(ctx: Context) -> float:
    return await group_rate(ctx, 8, connections=2)


@benchmark(
    "store.group_single_32w",
    GROUP,
    "events/s",
    description="experiment: 32 writers' single-event appends group-committed (4 connections)",
    compare=("store.append_single_32w",),
)
async def group_single_32(ctx: Context) -> float:
    return await group_rate(ctx, 32, connections=4)
