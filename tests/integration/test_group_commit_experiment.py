"""The group-commit experiment of bench/ours/group_commit.py keeps each item's guarantees.

The function is created in the connection's temporary schema, so the shared test database
keeps exactly the migrations' schema.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bench.ours.group_commit import GROUP_APPEND, GROUP_APPEND_SQL, Item, group_arguments
from infra.database import Scope, scoped_transaction
from infra.event_codec import NewEvent
from infra.event_store import AppendContext, EventStore, provisional_base
from tests.support import build_tree


async def scope_of(pool: Any, code: str) -> Scope:
    async with pool.acquire() as conn, scoped_transaction(conn, code) as (_, scope):
        return scope


def item(
    scope: Scope,
    node: uuid.UUID | None = None,
    stream: uuid.UUID | None = None,
    expected: int = 0,
    key: str | None = None,
) -> Item:
    placeholder = provisional_base()
    # an event type no projection handles: the test session's projectors skip it
    return Item(
        scope=scope,
        root_id=scope.root_id,
        node_id=scope.node_id if node is None else node,
        stream_id=uuid.uuid4() if stream is None else stream,
        stream_type="probe",
        expected_version=expected,
        event=NewEvent(uuid.uuid4(), "GroupProbe", 1, b"{}", datetime.now(UTC)),
        context=AppendContext(actor="group-test", idempotency_key=key or f"k-{uuid.uuid4()}"),
        principal="group-test",
        request_hash=b"h" * 32,
        status=201,
        response=b'{"position":%d}' % placeholder,
        placeholder=placeholder,
    )


async def test_each_item_fails_alone_and_runs_in_its_own_scope(client, jwt, pool, database_url):
    mine, theirs = await build_tree(client, jwt), await build_tree(client, jwt)
    a, b = mine.streets
    in_a = await scope_of(pool, mine.communities[a][0])
    in_b = await scope_of(pool, mine.communities[b][0])
    other_tenant = await scope_of(pool, theirs.communities[theirs.streets[0]][0])
    taken = f"k-{uuid.uuid4()}"
    moved = uuid.uuid4()
    items = [
        item(in_a, key=taken),  # 1 stored
        item(in_b, node=in_a.node_id),  # 2 B's principal on A's chain, right after A's item
        item(other_tenant),  # 3 another root tenant's item in the same transaction
        item(in_b, key=taken),  # 4 the Idempotency-Key of item 1
        item(in_a, stream=moved),  # 5 stored
        item(in_a, stream=moved),  # 6 stale: item 5 moved the stream to version 1
        item(in_b),  # 7 stored
    ]
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            GROUP_APPEND_SQL.replace("FUNCTION civic_group_append", "FUNCTION pg_temp.group_append")
        )
        rows = await conn.fetch(
            GROUP_APPEND.replace("civic_group_append", "pg_temp.group_append"),
            *group_arguments(EventStore(), items),
        )
        after = await conn.fetchrow(
            "SELECT current_user, current_setting('civic.root', true) AS root,"
            " current_setting('civic.scope_lo', true) AS lo"
        )
    finally:
        await conn.close()

    states = [r["error_state"] for r in rows]
    assert states == [None, "42501", None, "23505", None, "CV409", None]
    positions = [r["event_position"] for r in rows if r["error_state"] is None]
    assert positions == sorted(positions) and len(set(positions)) == 4
    assert len({p >> 16 for p in positions}) == 1  # one transaction, distinct indexes
    assert [r["event_version"] for r in rows if r["error_state"] is None] == [1, 1, 1, 1]
    # nothing of the last item's scope outlives the call
    assert after["current_user"] == "postgres" and not after["root"] and not after["lo"]

    async with pool.acquire() as c:
        stored = await c.fetch(
            "SELECT e.position, e.root_id, e.node_id, e.event_id, e.node_seq, k.key IS NOT NULL"
            " AS keyed, e.canonical_ok FROM events e LEFT JOIN idempotency_keys k"
            "   ON k.principal = 'group-test' AND k.key = e.idempotency_key"
            " WHERE e.event_id = ANY($1::uuid[]) ORDER BY e.position",
            [it.event.event_id for it in items],
        )
        answer = await c.fetchval(
            "SELECT convert_from(response, 'UTF8') FROM idempotency_keys"
            " WHERE principal = 'group-test' AND key = $1",
            taken,
        )
    assert [r["position"] for r in stored] == positions
    assert [r["event_id"] for r in stored] == [items[i].event.event_id for i in (0, 2, 4, 6)]
    assert all(r["keyed"] and r["canonical_ok"] for r in stored)
    assert stored[1]["root_id"] == other_tenant.root_id
    assert answer == f'{{"position":{positions[0]}}}'
    # items 1 and 5 share A's chain: consecutive links in one transaction
    on_a = [r["node_seq"] for r in stored if r["node_id"] == in_a.node_id]
    assert on_a == [on_a[0], on_a[0] + 1]
