"""Commands in one statement, deciding on cached state (services/commands/session.py).

Two application contexts on one database stand for two API processes: each has its own
caches, the database decides versions, scopes and closed subtrees for both.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import msgspec
import pytest

from domain.issue import Issue
from infra.database import ScopeCache, create_pool, scoped_transaction
from services.auth import Principal
from services.commands import issues, service_orders
from services.commands.aggregate_cache import AggregateCache
from services.commands.node_cache import NodeCache
from services.commands.session import CommandRequest, CommandSession, run_command
from services.problems import ProblemError
from services.roles import Role
from tests.support import Tree, auth, build_tree


class Noted(msgspec.Struct):
    version: int
    position: int


def other_process(ctx: Any, pool: Any, *, steady: bool = False) -> Any:
    """The same database, caches of its own (another API process), on this loop's pool;
    ``steady``: entries that outlast a slow test on a loaded machine."""
    return dataclasses.replace(
        ctx,
        pool=pool,
        scopes=ScopeCache(120.0) if steady else ScopeCache(),
        aggregates=AggregateCache(120.0) if steady else AggregateCache(),
        nodes=NodeCache(120.0) if steady else NodeCache(),
        after_commit=[],
    )


def operator(scope: str) -> Principal:
    return Principal("op-1", scope, frozenset({Role.OPERATOR}))


def request(key: str | None = None) -> CommandRequest:
    return CommandRequest("POST", "/test/command", b"{}", idempotency_key=key)


async def report(ctx: Any, principal: Principal, code: str, key: str | None = None) -> Any:
    command = issues.IssueCreate(
        node_code=code, title="楼道堆物", category="消防安全", source="grid"
    )

    async def decide(s: CommandSession) -> tuple[int, msgspec.Struct]:
        return await issues.report(s, command)

    return await run_command(ctx, principal, request(key), decide)


async def note(
    ctx: Any, principal: Principal, issue_id: uuid.UUID, text: str, modes: list[bool] | None = None
) -> Any:
    """IssueProgressNoted; ``modes`` collects whether each attempt ran as one statement."""

    async def decide(s: CommandSession) -> tuple[int, msgspec.Struct]:
        if modes is not None:
            modes.append(s.one_statement)
        issue = await s.load(Issue, issue_id)
        if issue is None:
            raise ProblemError(404, "Not Found", "no such issue")
        issue.note_progress(text, s.now)
        result = await s.save(issue)
        return 200, Noted(result.version, result.position)

    return await run_command(ctx, principal, request(), decide)


async def stream(pool: Any, stream_id: uuid.UUID) -> list[Any]:
    async with pool.acquire() as conn:
        return list(
            await conn.fetch(
                "SELECT version, position, type FROM events WHERE stream_id = $1 ORDER BY version",
                stream_id,
            )
        )


@pytest.fixture
async def tree(client: Any, jwt: Any) -> Tree:
    return await build_tree(client, jwt, streets=2, communities=1, units=2)


async def warm(ctx: Any, principal: Principal, code: str, unit: str) -> uuid.UUID:
    """An issue reported and assigned to ``unit``; the first command (a transaction) fills
    the process's scope and node caches."""
    outcome = await report(ctx, principal, code)
    issue_id = uuid.UUID(msgspec.json.decode(outcome.body)["id"])

    async def decide(s: CommandSession) -> tuple[int, msgspec.Struct]:
        issue = await s.load(Issue, issue_id)
        assignee = await s.node_by_code(unit)
        assert issue is not None and assignee is not None
        issue.assign(assignee=assignee.ref(), due_at=s.now + timedelta(days=1), at=s.now)
        result = await s.save(issue)
        return 200, Noted(result.version, result.position)

    await run_command(ctx, principal, request(), decide)
    return issue_id


async def test_a_cached_command_answers_and_stores_the_real_position(
    ctx: Any, pool: Any, tree: Tree
):
    community = tree.communities[tree.streets[0]][0]
    principal = operator(community)
    proc = other_process(ctx, pool)
    await warm(proc, principal, community, tree.units[0])
    key = uuid.uuid4().hex
    outcome = await report(proc, principal, community, key)
    body = msgspec.json.decode(outcome.body)
    events = await stream(pool, uuid.UUID(body["id"]))
    assert [e["version"] for e in events] == [1]
    assert body["position"] == events[0]["position"] == outcome.position
    # the Idempotency-Key record holds the same answer, with the real position
    replay = await report(proc, principal, community, key)
    assert replay.replayed and msgspec.json.decode(replay.body) == body


async def test_a_stale_cache_in_one_process_is_a_retried_conflict(ctx: Any, pool: Any, tree: Tree):
    community = tree.communities[tree.streets[0]][0]
    principal = operator(community)
    a, b = other_process(ctx, pool), other_process(ctx, pool)
    issue_id = await warm(a, principal, community, tree.units[0])
    await warm(b, principal, community, tree.units[0])
    modes: list[bool] = []
    await note(a, principal, issue_id, "一", modes)
    assert modes == [True]  # decided on a's cache, written in one statement
    # b appends twice (its first load is a transaction), a's cached version is now stale
    await note(b, principal, issue_id, "二")
    await note(b, principal, issue_id, "三")
    modes.clear()
    last = msgspec.json.decode((await note(a, principal, issue_id, "四", modes)).body)
    assert modes == [True, False]  # the stale decision conflicted; decided again, fresh
    events = await stream(pool, issue_id)
    assert [e["version"] for e in events] == [1, 2, 3, 4, 5, 6]
    assert last == {"version": 6, "position": events[-1]["position"]}


async def test_a_cached_aggregate_is_not_served_outside_the_loaders_scope(
    ctx: Any, pool: Any, tree: Tree
):
    street_a, street_b = tree.streets
    community_a = tree.communities[street_a][0]
    proc = other_process(ctx, pool)
    issue_id = await warm(proc, operator(community_a), community_a, tree.units[0])
    await note(proc, operator(community_a), issue_id, "一")  # cached now
    assert proc.aggregates.paths(issue_id)
    # an operator of the other street: row-level security hides the issue, the cache too
    outsider = operator(street_b)
    await warm(proc, outsider, tree.communities[street_b][0], tree.units[0])
    with pytest.raises(ProblemError) as refused:
        await note(proc, outsider, issue_id, "越权")
    assert refused.value.status == 404


async def test_a_node_closed_in_another_process_refuses_a_cached_command(
    ctx: Any, pool: Any, client: Any, jwt: Any, tree: Tree
):
    street = tree.streets[0]
    community = tree.communities[street][0]
    principal = operator(street)
    proc = other_process(ctx, pool)
    issue_id = await warm(proc, principal, community, tree.units[0])
    await note(proc, principal, issue_id, "一")
    r = await client.post(
        f"/v1/nodes/{community}/close",
        json={"reason": "撤并"},
        headers=auth(jwt, tree.county, "admin"),
    )
    assert r.status_code == 200, r.text
    with pytest.raises(ProblemError) as refused:
        await note(proc, principal, issue_id, "关闭后")
    assert refused.value.status == 409 and refused.value.slug == "node-closed"
    with pytest.raises(ProblemError) as refused:
        await report(proc, principal, community)
    assert refused.value.status == 409


# -- party writes ride with the one statement (migration 0047) ---------------------------------


@contextlib.asynccontextmanager
async def logged(
    database_url: str, **settings: Any
) -> AsyncIterator[tuple[asyncpg.Pool, list[str]]]:
    """A one-connection request pool and the statements its connection sends."""
    p = await create_pool(database_url, min_size=1, max_size=1, session_state=False, **settings)
    statements: list[str] = []
    async with p.acquire() as conn:
        conn.add_query_logger(lambda record: statements.append(record.query))
    try:
        yield p, statements
    finally:
        await p.close()


async def assign(
    ctx: Any, principal: Principal, issue_id: uuid.UUID, unit: str, modes: list[bool], key: str
) -> Any:
    command = issues.IssueAssign(assignee_code=unit, due_at=ctx.clock() + timedelta(days=3))

    async def decide(s: CommandSession) -> tuple[int, msgspec.Struct]:
        modes.append(s.one_statement)
        return await issues.assign(s, issue_id, command)

    return await run_command(ctx, principal, request(key), decide)


async def return_(ctx: Any, principal: Principal, issue_id: uuid.UUID, modes: list[bool]) -> Any:
    async def decide(s: CommandSession) -> tuple[int, msgspec.Struct]:
        modes.append(s.one_statement)
        return await issues.return_(s, issue_id, issues.IssueReturn(reason="不属本单位"))

    return await run_command(ctx, principal, request(), decide)


async def parties(pool: Any, stream_id: uuid.UUID) -> set[tuple[str, uuid.UUID]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT role, node_id FROM stream_parties WHERE stream_id = $1", stream_id
        )
    return {(r["role"], r["node_id"]) for r in rows}


async def seen_by(pool: Any, scope_code: str, stream_id: uuid.UUID) -> int:
    """How many of the stream's events a principal of ``scope_code`` sees (row-level security)."""
    async with pool.acquire() as conn, scoped_transaction(conn, scope_code):
        count: int = await conn.fetchval(
            "SELECT count(*) FROM events WHERE stream_id = $1", stream_id
        )
        return count


async def test_an_assignment_and_its_party_are_one_statement(
    ctx: Any, database_url: str, pool: Any, tree: Tree
):
    community = tree.communities[tree.streets[0]][0]
    first, second = tree.units
    principal = operator(community)
    async with logged(database_url) as (p, statements):
        proc = other_process(ctx, p, steady=True)
        await warm(proc, principal, community, second)  # the node cache knows both units
        issue_id = await warm(proc, principal, community, first)
        await return_(proc, principal, issue_id, [])
        unit_ids = {code: (await node_id(pool, code)) for code in tree.units}
        statements.clear()
        modes: list[bool] = []
        key = uuid.uuid4().hex
        outcome = await assign(proc, principal, issue_id, second, modes, key)
        # decided on the caches; the events, the party and the key: one statement
        assert modes == [True]
        assert len(statements) == 1 and "civic_command_append" in statements[0]
        assert await parties(pool, issue_id) == {("assignee", unit_ids[second])}
        events = await stream(pool, issue_id)
        assert events[-1]["type"] == "IssueAssigned"
        # the unit it names sees the issue now, by row-level security; the former one does not
        assert await seen_by(pool, second, issue_id) == len(events)
        assert await seen_by(pool, first, issue_id) == 0
        # a retry with the key: the first answer, nothing written again
        replay = await assign(proc, principal, issue_id, second, modes, key)
        assert replay.replayed and replay.body == outcome.body and replay.status == 200
        assert len(await stream(pool, issue_id)) == len(events)
        assert await parties(pool, issue_id) == {("assignee", unit_ids[second])}
        # 退单 ends the party in the same statement as its event
        modes.clear()
        statements.clear()
        await return_(proc, principal, issue_id, modes)
        assert modes == [True] and len(statements) == 1
        assert await parties(pool, issue_id) == set()
        assert await seen_by(pool, second, issue_id) == 0


async def test_a_party_first_lets_a_unit_append_outside_its_subtree(
    ctx: Any, pool: Any, tree: Tree
):
    """A unit's own offer at a community: the party, written before the events in the one
    statement, is what lets the unit's append through row-level security."""
    unit = tree.units[0]
    principal = Principal("unit-1", unit, frozenset({Role.UNIT}))
    proc = other_process(ctx, pool, steady=True)
    command = service_orders.OfferCreate(
        community_code=tree.communities[tree.streets[0]][0],
        title="义务理发",
        category="便民",
        provider_code=unit,
    )
    modes: list[bool] = []

    async def decide(s: CommandSession) -> tuple[int, msgspec.Struct]:
        modes.append(s.one_statement)
        return await service_orders.offer(s, command)

    await run_command(proc, principal, request(), decide)  # fills the caches
    modes.clear()
    outcome = await run_command(proc, principal, request(), decide)
    assert modes == [True]
    offer_id = uuid.UUID(msgspec.json.decode(outcome.body)["id"])
    assert await parties(pool, offer_id) == {("provider", await node_id(pool, unit))}
    assert await seen_by(pool, unit, offer_id) == 1


async def test_a_failing_party_write_takes_the_events_with_it(ctx: Any, pool: Any, tree: Tree):
    community = tree.communities[tree.streets[0]][0]
    principal = operator(community)
    proc = other_process(ctx, pool, steady=True)
    issue_id = await warm(proc, principal, community, tree.units[0])
    before = await stream(pool, issue_id)
    unit_id = await node_id(pool, tree.units[0])
    modes: list[bool] = []
    key = uuid.uuid4().hex

    async def decide(s: CommandSession) -> tuple[int, msgspec.Struct]:
        modes.append(s.one_statement)
        issue = await s.load(Issue, issue_id)
        assert issue is not None
        issue.note_progress("已到现场", s.now)
        result = await s.save(issue)
        await s.add_party(unit_id, issue_id, "refused-in-test")
        return 200, Noted(result.version, result.position)

    async with pool.acquire() as conn:
        await conn.execute(REFUSE_PARTY)
    try:
        with pytest.raises(asyncpg.RaiseError, match="party refused"):
            await run_command(proc, principal, request(key), decide)
    finally:
        async with pool.acquire() as conn:
            await conn.execute("DROP TRIGGER refuse_party_in_test ON stream_parties")
    assert modes == [True]
    assert await stream(pool, issue_id) == before
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM idempotency_keys WHERE key = $1", key) == 0


REFUSE_PARTY = """
CREATE OR REPLACE FUNCTION refuse_party_in_test() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'party refused';
END $$;
CREATE TRIGGER refuse_party_in_test BEFORE INSERT ON stream_parties
    FOR EACH ROW WHEN (NEW.role = 'refused-in-test') EXECUTE FUNCTION refuse_party_in_test();
"""


async def test_a_slow_one_statement_command_is_cancelled(
    ctx: Any, database_url: str, pool: Any, tree: Tree
):
    """The request pool's statement timeout bounds the autocommit command too."""
    community = tree.communities[tree.streets[0]][0]
    principal = operator(community)
    async with logged(database_url, statement_timeout_ms=300) as (p, _):
        proc = other_process(ctx, p, steady=True)
        issue_id = await warm(proc, principal, community, tree.units[0])
        modes: list[bool] = []
        async with pool.acquire() as holder, holder.transaction():
            # the chain head the append must lock, held longer than the timeout
            await holder.execute(
                "SELECT 1 FROM chain_heads WHERE node_id = $1 FOR UPDATE",
                await node_id(pool, community),
            )
            started = time.monotonic()
            with pytest.raises(asyncpg.QueryCanceledError):
                await asyncio.wait_for(note(proc, principal, issue_id, "一", modes), 10)
            assert time.monotonic() - started < 5
        assert modes == [True]
    assert [e["type"] for e in await stream(pool, issue_id)][-1] == "IssueAssigned"


async def node_id(pool: Any, code: str) -> uuid.UUID:
    async with pool.acquire() as conn:
        value: uuid.UUID = await conn.fetchval("SELECT id FROM nodes WHERE code = $1", code)
        return value
