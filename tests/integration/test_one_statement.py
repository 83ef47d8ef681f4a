"""Commands in one statement, deciding on cached state (services/commands/session.py).

Two application contexts on one database stand for two API processes: each has its own
caches, the database decides versions, scopes and closed subtrees for both.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta
from typing import Any

import msgspec
import pytest

from domain.issue import Issue
from infra.database import ScopeCache
from services.auth import Principal
from services.commands import issues
from services.commands.aggregate_cache import AggregateCache
from services.commands.node_cache import NodeCache
from services.commands.session import CommandRequest, CommandSession, run_command
from services.problems import ProblemError
from services.roles import Role
from tests.support import Tree, auth, build_tree


class Noted(msgspec.Struct):
    version: int
    position: int


def other_process(ctx: Any, pool: Any) -> Any:
    """The same database, caches of its own (another API process), on this loop's pool."""
    return dataclasses.replace(
        ctx,
        pool=pool,
        scopes=ScopeCache(),
        aggregates=AggregateCache(),
        nodes=NodeCache(),
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
    return await build_tree(client, jwt, streets=2, communities=1, units=1)


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
