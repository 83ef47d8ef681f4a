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
from domain.member import Member
from infra.database import ScopeCache, create_pool, scoped_transaction
from services.auth import Principal
from services.commands import issues, service_orders
from services.commands.aggregate_cache import AggregateCache
from services.commands.node_cache import NodeCache
from services.commands.session import CommandRequest, CommandSession, run_command
from services.problems import ProblemError
from services.roles import Role
from tests.reliability import workflow_bodies
from tests.support import Tree, auth, build_tree, post_ok


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


# -- cold commands: one read statement, then the append (migration 0053) -----------------------


def cold(ctx: Any, pool: Any, principal: Principal, *, reads: bool = True) -> Any:
    """Another process that knows the principal's scope (as after any command of it) but
    has no aggregate or node cached; ``reads``: its cold reads on (the default) or off."""
    proc = other_process(ctx, pool, steady=True)
    proc.settings = msgspec.structs.replace(ctx.settings, cold_reads=reads)
    return proc


async def enter_scope(proc: Any, code: str) -> None:
    """Fill ``proc``'s scope cache the way a first command does, and nothing else."""
    async with proc.pool.acquire() as conn, scoped_transaction(conn, code, cache=proc.scopes):
        pass


async def noted(
    ctx: Any,
    principal: Principal,
    issue_id: uuid.UUID,
    text: str,
    modes: list[bool],
    key: str | None = None,
    meanwhile: Any = None,
) -> Any:
    """IssueProgressNoted through its handler (which looks up the issue's node and assignee
    after the load); ``meanwhile`` runs once, between the cold read and the append."""
    command = issues.IssueProgress(note=text)

    async def decide(s: CommandSession) -> tuple[int, msgspec.Struct]:
        nonlocal meanwhile
        modes.append(s.one_statement)
        answer = await issues.note_progress(s, issue_id, command)
        if meanwhile is not None and s.one_statement:
            await meanwhile()
            meanwhile = None
        return answer

    body = msgspec.json.encode(command)  # what the Idempotency-Key's fingerprint covers
    sent = CommandRequest("POST", f"/test/{issue_id}/progress", body, idempotency_key=key)
    return await run_command(ctx, principal, sent, decide)


async def test_a_cold_command_is_a_read_and_an_append(
    ctx: Any, database_url: str, pool: Any, tree: Tree
):
    community = tree.communities[tree.streets[0]][0]
    principal = operator(community)
    writer = other_process(ctx, pool)
    issue_id = await warm(writer, principal, community, tree.units[0])
    async with logged(database_url) as (p, statements):
        # the connection's first cold command prepares its statements (asyncpg's type
        # look-ups), on an issue of its own
        first = cold(ctx, p, principal)
        await enter_scope(first, community)
        spare = await warm(writer, principal, community, tree.units[0])
        await noted(first, principal, spare, "预备", [])
        proc = cold(ctx, p, principal)
        await enter_scope(proc, community)
        statements.clear()
        modes: list[bool] = []
        outcome = await noted(proc, principal, issue_id, "已到现场", modes)
        # the issue, its node and its assignee unit read in one statement, then the append
        assert len(statements) == 2, statements
        assert "civic_command_read" in statements[0]
        assert "civic_command_append" in statements[1]
        assert modes == [True, True]  # missed, read, decided on what was read
        events = await stream(pool, issue_id)
        assert [e["type"] for e in events][-1] == "IssueProgressNoted"
        assert msgspec.json.decode(outcome.body)["version"] == len(events)
        assert outcome.position == events[-1]["position"]
        # it is cached now: the next command is the one statement
        statements.clear()
        await noted(proc, principal, issue_id, "继续办理", modes)
        assert len(statements) == 1 and "civic_command_append" in statements[0]
        # with the cold reads off, the same command runs in a transaction, as before
        off = cold(ctx, p, principal, reads=False)
        await enter_scope(off, community)
        statements.clear()
        await noted(off, principal, issue_id, "关闭冷读", [])
        assert len(statements) >= 4 and not any("civic_command_read" in s for s in statements)
    assert len(await stream(pool, issue_id)) == len(events) + 2


async def test_a_cold_command_outside_the_principals_scope_is_refused_as_before(
    ctx: Any, database_url: str, pool: Any, tree: Tree
):
    street_a, street_b = tree.streets
    community_a = tree.communities[street_a][0]
    issue_id = await warm(
        other_process(ctx, pool), operator(community_a), community_a, tree.units[0]
    )
    before = await stream(pool, issue_id)
    outsider = operator(street_b)
    refusals = []
    async with logged(database_url) as (p, statements):
        for reads in (True, False):
            proc = cold(ctx, p, outsider, reads=reads)
            await enter_scope(proc, street_b)
            statements.clear()
            with pytest.raises(ProblemError) as refused:
                await noted(proc, outsider, issue_id, "越权", [])
            refusals.append(refused.value)
            # row-level security showed the read nothing: nothing cached, nothing appended
            assert proc.aggregates.paths(issue_id) is None
            assert any("civic_command_read" in s for s in statements) == reads
    cold_refusal, as_before = refusals
    assert cold_refusal.status == as_before.status == 404
    assert (cold_refusal.title, cold_refusal.detail) == (as_before.title, as_before.detail)
    assert await stream(pool, issue_id) == before


async def test_a_write_between_the_cold_read_and_the_append_is_retried(
    ctx: Any, database_url: str, pool: Any, tree: Tree
):
    community = tree.communities[tree.streets[0]][0]
    principal = operator(community)
    other = other_process(ctx, pool)
    issue_id = await warm(other, principal, community, tree.units[0])
    async with logged(database_url) as (p, statements):
        proc = cold(ctx, p, principal)
        await enter_scope(proc, community)
        modes: list[bool] = []

        async def meanwhile() -> None:  # another process notes progress on the same issue
            await noted(other, principal, issue_id, "插队", [])

        statements.clear()
        outcome = await noted(proc, principal, issue_id, "本次", modes, meanwhile=meanwhile)
    # read, decided, the append refused as a version conflict; decided again in a transaction
    assert modes == [True, True, False]
    calls = [s for s in statements if "civic_command_" in s]  # not asyncpg's type look-ups
    assert "civic_command_read" in calls[0] and "civic_command_append" in calls[1]
    events = await stream(pool, issue_id)
    assert [e["version"] for e in events] == list(range(1, len(events) + 1))
    assert [e["type"] for e in events][-2:] == ["IssueProgressNoted", "IssueProgressNoted"]
    body = msgspec.json.decode(outcome.body)
    assert body["version"] == len(events) and body["position"] == events[-1]["position"]


async def test_a_retry_of_a_cold_command_replays_its_first_answer(
    ctx: Any, database_url: str, pool: Any, tree: Tree
):
    community = tree.communities[tree.streets[0]][0]
    principal = operator(community)
    issue_id = await warm(other_process(ctx, pool), principal, community, tree.units[0])
    key = uuid.uuid4().hex
    async with logged(database_url) as (p, statements):
        first = cold(ctx, p, principal)
        await enter_scope(first, community)
        statements.clear()
        modes: list[bool] = []
        outcome = await noted(first, principal, issue_id, "已到现场", modes, key)
        assert modes == [True, True]
        calls = [s for s in statements if "civic_command_" in s]  # not asyncpg's type look-ups
        assert len(calls) == 2 and "civic_command_read" in calls[0]
        events = await stream(pool, issue_id)
        # the retry reaches a process that has not seen the issue either
        again = cold(ctx, p, principal)
        await enter_scope(again, community)
        replay = await noted(again, principal, issue_id, "已到现场", [], key)
        assert replay.replayed and replay.status == outcome.status
        assert replay.body == outcome.body
        # and the process that answered it first, the issue cached there
        replay = await noted(first, principal, issue_id, "已到现场", [], key)
        assert replay.replayed and replay.body == outcome.body
        # the key with another body is refused
        with pytest.raises(ProblemError) as reused:
            await noted(again, principal, issue_id, "另一条", [], key)
        assert reused.value.status == 422
    assert await stream(pool, issue_id) == events


async def test_a_stream_with_personal_data_stays_on_the_transaction_path(
    ctx: Any, client: Any, jwt: Any, database_url: str, pool: Any, tree: Tree
):
    """A member's stream is read cold like any other, but it holds personal data: its state
    is never kept in a process (it must go with the person's key), and decrypting and
    sealing need the key, so the command runs in a transaction."""
    community = tree.communities[tree.streets[0]][0]
    admin = auth(jwt, tree.county, "admin")
    body = workflow_bodies(community, tree.units[0], 0)["/v1/members"]
    member_id = uuid.UUID((await post_ok(client, "/v1/members", body, admin))["id"])
    principal = operator(community)
    modes: list[bool] = []

    async def decide(s: CommandSession) -> tuple[int, msgspec.Struct]:
        modes.append(s.one_statement)
        member = await s.load(Member, member_id)
        assert member is not None and member.person is not None
        member.record_service(served_on=s.now.date(), hours=1.5, kind="志愿服务", at=s.now)
        result = await s.save(member)
        return 200, Noted(result.version, result.position)

    async with logged(database_url) as (p, statements):
        proc = cold(ctx, p, principal)
        await enter_scope(proc, community)
        statements.clear()
        await run_command(proc, principal, request(), decide)
        assert modes == [True, False]  # read cold, then decided in a transaction
        calls = [s for s in statements if "civic_command_" in s]  # not asyncpg's type look-ups
        assert len(calls) == 1 and "civic_command_read" in calls[0]
        assert proc.aggregates.paths(member_id) is None
    assert [e["type"] for e in await stream(pool, member_id)][-1] == "ServiceRecorded"
