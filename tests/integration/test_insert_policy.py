"""The events insert policy on the one-statement path (civic_command_append).

The command pipeline checks scopes before it appends; these tests skip it and send the
statement with a scope that does not cover the row, so only row-level security stands
between the row and the table.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from infra.database import Scope, scoped_transaction
from infra.event_codec import NewEvent
from infra.event_store import AppendContext, AppendResult, EventStore
from tests.support import build_tree

REFUSED = "row-level security"


async def scope_of(pool: Any, code: str) -> Scope:
    async with pool.acquire() as conn, scoped_transaction(conn, code) as (_, scope):
        return scope


async def node_id(pool: Any, code: str) -> uuid.UUID:
    async with pool.acquire() as conn:
        found: uuid.UUID = await conn.fetchval("SELECT id FROM nodes WHERE code = $1", code)
        return found


async def append(
    pool: Any, scope: Scope, node: uuid.UUID, stream: uuid.UUID, root: uuid.UUID | None = None
) -> AppendResult:
    """One event on ``node``'s chain, sent as ``scope``'s principal through one statement.

    Of a type no projection handles: the test session's projectors skip it.
    """
    event = NewEvent(uuid.uuid4(), "PolicyProbe", 1, b"{}", datetime.now(UTC))
    async with pool.acquire() as conn:
        return await EventStore().append_statement(
            conn,
            scope,
            root_id=scope.root_id if root is None else root,
            node_id=node,
            stream_id=stream,
            stream_type="probe",
            expected_version=0,
            events=[event],
            context=AppendContext(actor="policy-test"),
            check_nodes=(scope.node_id,),
        )


async def stored(pool: Any, stream: uuid.UUID) -> int:
    async with pool.acquire() as conn:
        count: int = await conn.fetchval("SELECT count(*) FROM events WHERE stream_id = $1", stream)
        return count


async def test_an_append_outside_the_scope_is_refused_by_the_policy(client, jwt, pool):
    tree = await build_tree(client, jwt)
    a, b = tree.streets
    scope = await scope_of(pool, tree.communities[a][0])
    elsewhere = await node_id(pool, tree.communities[b][0])
    stream = uuid.uuid4()
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match=REFUSED):
        await append(pool, scope, elsewhere, stream)
    assert await stored(pool, stream) == 0
    # the same statement inside the scope is stored
    await append(pool, scope, scope.node_id, stream)
    assert await stored(pool, stream) == 1


async def test_an_append_to_another_root_tenant_is_refused(client, jwt, pool):
    mine, theirs = await build_tree(client, jwt), await build_tree(client, jwt)
    scope = await scope_of(pool, mine.county)
    their_node = await node_id(pool, theirs.communities[theirs.streets[0]][0])
    their_root = await node_id(pool, theirs.county)
    stream = uuid.uuid4()
    for root in (scope.root_id, their_root):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match=REFUSED):
            await append(pool, scope, their_node, stream, root=root)
    assert await stored(pool, stream) == 0


async def test_a_unit_appends_outside_its_subtree_only_to_streams_it_takes_part_in(
    client, jwt, pool
):
    tree = await build_tree(client, jwt, units=2)
    unit, other_unit = tree.units
    scope = await scope_of(pool, unit)
    assert scope.is_unit
    community = await node_id(pool, tree.communities[tree.streets[0]][0])
    stream = uuid.uuid4()
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match=REFUSED):
        await append(pool, scope, community, stream)
    async with pool.acquire() as conn:
        # another unit's part in the stream does not let this one write it
        await conn.execute(
            "INSERT INTO stream_parties (root_id, node_id, stream_id, role)"
            " VALUES ($1, $2, $3, 'assignee')",
            scope.root_id,
            await node_id(pool, other_unit),
            stream,
        )
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match=REFUSED):
        await append(pool, scope, community, stream)
    assert await stored(pool, stream) == 0
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO stream_parties (root_id, node_id, stream_id, role)"
            " VALUES ($1, $2, $3, 'assignee')",
            scope.root_id,
            scope.node_id,
            stream,
        )
    await append(pool, scope, community, stream)
    assert await stored(pool, stream) == 1
    # a party stream does not open the unit's other streams at that node
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match=REFUSED):
        await append(pool, scope, community, uuid.uuid4())


async def test_a_community_scope_is_not_a_unit_even_when_its_node_is_a_party(client, jwt, pool):
    tree = await build_tree(client, jwt)
    a, b = tree.streets
    scope = await scope_of(pool, tree.communities[a][0])
    elsewhere = await node_id(pool, tree.communities[b][0])
    stream = uuid.uuid4()
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO stream_parties (root_id, node_id, stream_id, role)"
            " VALUES ($1, $2, $3, 'responsible')",
            scope.root_id,
            scope.node_id,
            stream,
        )
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match=REFUSED):
        await append(pool, scope, elsewhere, stream)
    assert await stored(pool, stream) == 0
