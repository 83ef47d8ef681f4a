"""The issues projection applies a batch set-based: the result must be that of applying its
events one by one, whatever the batch boundaries and however the events of one issue
interleave with others'."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest

from infra.event_store import StoredEvent
from projections.issues import IssuesProjection
from tests.stored_events import stored_event

T0 = datetime(2031, 3, 1, 8, tzinfo=UTC)


def _event(
    position: int, root: UUID, issue: UUID, version: int, kind: str, data: dict[str, Any]
) -> StoredEvent:
    at = T0 + timedelta(minutes=position)
    return stored_event(
        position=position,
        root=root,
        stream=issue,
        version=version,
        kind=kind,
        data=data,
        at=at,
        stream_type="issue",
    )


def _update(rng: random.Random, n: int) -> tuple[str, dict[str, Any]]:
    """Any update event with plausible data: the projection does not check transitions, so
    the order is free, and order-sensitive statements (counters, responders, the closed-on-
    time flag, coalesce) show whether the batch kept it."""
    due = (T0 + timedelta(hours=rng.randint(1, 500))).isoformat()
    choices: list[tuple[str, dict[str, Any]]] = [
        ("IssueAssigned", {"assignee_id": str(uuid4()), "assignee_code": f"u{n}", "due_at": due}),
        ("IssueReturned", {"reason": f"return {n}"}),
        ("IssueAccepted", {}),
        ("IssueExtended", {"due_at": due, "reason": f"extend {n}"}),
        ("IssueProgressNoted", {"note": f"note {n}"}),
        (
            "IssueEscalated",
            {"to_id": str(uuid4()), "to_code": f"t{n}", "level": "street", "respond_by": due},
        ),
        ("IssueEscalationAnswered", {"responder_code": rng.choice(["a", "b", "c"])}),
        ("IssueResolved", {"result": f"result {n}"}),
        (
            "IssueEvaluated",
            {"satisfaction": "satisfied", "resolved": rng.random() < 0.5, "comment": None},
        ),
        ("IssueClosed", {"override_reason": rng.choice([None, "why"])}),
        ("IssueReopened", {"reason": f"reopen {n}", "due_at": due}),
        ("IssueOverdue", {"due_at": due}),
        ("EscalationOverdue", {}),
    ]
    return rng.choice(choices)


def _history(seed: int, issues: int = 6, events: int = 160) -> list[StoredEvent]:
    rng = random.Random(seed)
    root = uuid4()
    versions: dict[UUID, int] = {}
    out: list[StoredEvent] = []
    ids = [uuid4() for _ in range(issues)]
    for n in range(events):
        issue = rng.choice(ids)
        version = versions.get(issue, 0) + 1
        versions[issue] = version
        if version == 1:
            kind, data = (
                "IssueReported",
                {
                    "node_id": str(root),
                    "node_code": "c1",
                    "title": f"issue {n}",
                    "category": "x",
                    "source": "grid",
                    "description": rng.choice([None, "d"]),
                    "due_at": rng.choice([None, (T0 + timedelta(hours=30)).isoformat()]),
                },
            )
        else:
            kind, data = _update(rng, n)
        out.append(_event(n + 1, root, issue, version, kind, data))
    return out


@pytest.fixture
async def schemas(pool: asyncpg.Pool) -> AsyncIterator[list[str]]:
    names = [f"t_issues_{uuid4().hex[:8]}" for _ in range(3)]
    async with pool.acquire() as conn:
        for s in names:
            await conn.execute(f"CREATE SCHEMA {s}")
            await conn.execute(f"CREATE TABLE {s}.rm_issues (LIKE public.rm_issues INCLUDING ALL)")
    try:
        yield names
    finally:
        async with pool.acquire() as conn:
            for s in names:
                await conn.execute(f"DROP SCHEMA {s} CASCADE")


async def _apply(conn: asyncpg.Connection, schema: str, batches: Sequence[Sequence[StoredEvent]]):
    projection = IssuesProjection()
    for batch in batches:
        async with conn.transaction():
            await conn.execute(f"SET LOCAL search_path = {schema}, public")
            await projection.apply(conn, batch)


async def _rows(conn: asyncpg.Connection, schema: str) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(f"SELECT * FROM {schema}.rm_issues ORDER BY id")]


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_batch_equals_its_events_one_by_one(pool, schemas, seed):
    events = _history(seed)
    rng = random.Random(seed)
    one_by_one, whole, chunked = schemas
    cuts = sorted(rng.sample(range(1, len(events)), 12))
    chunks = [events[a:b] for a, b in zip([0, *cuts], [*cuts, len(events)], strict=True)]
    async with pool.acquire() as conn:
        await _apply(conn, one_by_one, [[e] for e in events])
        await _apply(conn, whole, [events])
        await _apply(conn, chunked, chunks)
        expected = await _rows(conn, one_by_one)
        assert len(expected) == len({e.stream_id for e in events})
        assert await _rows(conn, whole) == expected
        assert await _rows(conn, chunked) == expected
        # applied again (version guards): nothing changes
        await _apply(conn, whole, [events])
        assert await _rows(conn, whole) == expected


async def test_an_update_of_an_unknown_issue_stops_the_batch(pool, schemas):
    events = _history(7, issues=2, events=10)
    stranger = _event(99, events[0].root_id, uuid4(), 2, "IssueAccepted", {})
    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError, match="not in the read model"):
            await _apply(conn, schemas[0], [[*events, stranger]])
        assert await _rows(conn, schemas[0]) == []  # the transaction rolled back
