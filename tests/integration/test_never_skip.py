"""A projection never skips an event: an update whose row is missing stops it (it raises, the
batch rolls back), while an update already applied (the row is at its version or past it)
changes nothing and passes. Applied to scratch copies of the read-model tables, so nothing
here reaches the shared event log or the live projections."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest

from infra.event_store import StoredEvent
from projections.base import Projection
from projections.findings import FindingsProjection
from projections.issues import IssuesProjection
from projections.members import MembersProjection
from projections.nodes import NodesProjection
from projections.pairings import PairingsProjection
from projections.rows import RowMissing
from projections.service_orders import ServiceOrdersProjection
from projections.surveys import SurveysProjection
from tests.stored_events import stored_event

T0 = datetime(2031, 3, 1, 8, tzinfo=UTC)


def _event(stream: UUID, root: UUID, version: int, kind: str, data: dict[str, Any]) -> StoredEvent:
    at = T0 + timedelta(minutes=version)
    return stored_event(
        position=1000 + version,
        root=root,
        stream=stream,
        version=version,
        kind=kind,
        data=data,
        at=at,
    )


#: (projection, an update event of it and its data) for every projection with rows.
UPDATES: list[tuple[Projection, str, dict[str, Any]]] = [
    (NodesProjection(), "NodeRenamed", {"name": "改名"}),
    (PairingsProjection(), "CommitmentFulfilled", {"index": 0, "title": "t", "evidence": "e"}),
    (PairingsProjection(), "PairingTerminated", {"reason": "r"}),
    (MembersProjection(), "PointsAwarded", {"points": 5, "reason": "r"}),
    (MembersProjection(), "MemberErased", {"reason": None}),
    (FindingsProjection(), "RectificationCompleted", {"summary": "s"}),
    (ServiceOrdersProjection(), "ServiceCancelled", {"reason": "r", "from_status": "requested"}),
    (SurveysProjection(), "SurveyNoteErased", {"reason": None}),
    (IssuesProjection(), "IssueAccepted", {}),
]


@pytest.fixture
async def scratch(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A connection whose read-model tables are empty copies in a scratch schema."""
    schema = f"t_skip_{uuid4().hex[:8]}"
    tables = sorted({t for p, _, _ in UPDATES for t in p.tables})
    async with pool.acquire() as conn:
        await conn.execute(f"CREATE SCHEMA {schema}")
        for t in tables:
            await conn.execute(f"CREATE TABLE {schema}.{t} (LIKE public.{t} INCLUDING ALL)")
        await conn.execute(f"SET search_path = {schema}, public")
        try:
            yield conn
        finally:
            await conn.execute("RESET search_path")
            await conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.mark.parametrize(("projection", "kind", "data"), UPDATES, ids=lambda v: str(v)[:24])
async def test_an_update_of_a_missing_row_stops_the_projection(
    scratch: asyncpg.Connection, projection: Projection, kind: str, data: dict[str, Any]
) -> None:
    assert kind in projection.handles
    event = _event(uuid4(), uuid4(), 3, kind, data)
    with pytest.raises(RowMissing, match="not in the read model"):
        async with scratch.transaction():
            await projection.apply(scratch, [event])
    for table in projection.tables:
        assert await scratch.fetchval(f"SELECT count(*) FROM {table}") == 0


async def test_an_update_already_applied_passes_and_changes_nothing(
    scratch: asyncpg.Connection,
) -> None:
    root, pairing = uuid4(), uuid4()
    signed = _event(
        pairing,
        root,
        1,
        "PairingSigned",
        {
            "unit_id": str(uuid4()),
            "unit_code": "U1",
            "community_id": str(uuid4()),
            "community_code": "C1",
            "root_id": str(root),
            "starts_on": "2031-01-01",
            "ends_on": "2031-12-31",
            "commitments": [{"title": "图书角", "due_on": "2031-06-01"}],
        },
    )
    fulfilled = _event(
        pairing, root, 2, "CommitmentFulfilled", {"index": 0, "title": "图书角", "evidence": "e"}
    )
    projection = PairingsProjection()
    for batch in ([signed, fulfilled], [fulfilled], [signed, fulfilled]):
        async with scratch.transaction():
            await projection.apply(scratch, batch)
    row = await scratch.fetchrow("SELECT version, commitments_fulfilled FROM rm_pairings")
    assert (row["version"], row["commitments_fulfilled"]) == (2, 1)
