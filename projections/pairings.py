"""Projection "pairings": pairings (结对共建) as clients read them (rm_pairings).

One row per pairing, owned by the community (``node_id``); commitments are a jsonb array
in signing order, so a commitment's index is its position in the array. Every update is
guarded by ``version < $v``: re-applying an event changes nothing; an update of a
pairing the table does not hold raises (``projections.rows``).
"""

from __future__ import annotations

from datetime import date
from typing import Any

import asyncpg
import msgspec

from domain.pairing import Pairing
from infra.event_store import StoredEvent
from projections.rows import RowGuard
from projections.subscriptions import PerEvent, on

INSERT_PAIRING = """
INSERT INTO rm_pairings (root_id, id, node_id, unit_id, unit_code, community_code, starts_on,
                         ends_on, status, commitments, commitments_total, version, signed_at,
                         updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'active', $9::jsonb, $10, $11, $12, $12)
ON CONFLICT (root_id, id) DO NOTHING
"""

FULFIL = """
UPDATE rm_pairings
SET commitments = jsonb_set(
        commitments, ARRAY[$3::int::text],
        (commitments -> $3::int) || jsonb_build_object('fulfilled_at', $4::text, 'evidence', $5::text)),
    commitments_fulfilled = commitments_fulfilled + 1,
    version = $6, updated_at = $7
WHERE root_id = $1 AND id = $2 AND version < $6
"""

ACTIVITY = """
UPDATE rm_pairings
SET activity_count = activity_count + 1,
    participant_total = participant_total + $3,
    last_activity_on = greatest(last_activity_on, $4::date),
    version = $5, updated_at = $6
WHERE root_id = $1 AND id = $2 AND version < $5
"""

REVIEW = """
UPDATE rm_pairings
SET rating = $3, review_count = review_count + 1, version = $4, updated_at = $5
WHERE root_id = $1 AND id = $2 AND version < $4
"""

TERMINATE = """
UPDATE rm_pairings
SET status = 'terminated', terminated_at = $5, termination_reason = $3, version = $4,
    updated_at = $5
WHERE root_id = $1 AND id = $2 AND version < $4
"""


class _CommitmentRow(msgspec.Struct):
    title: str
    due_on: date
    fulfilled_at: str | None = None
    evidence: str | None = None


ROWS = RowGuard("rm_pairings")


class PairingsProjection(PerEvent):
    name = "pairings"
    tables: tuple[str, ...] = ("rm_pairings",)

    @on(Pairing.Signed)
    async def signed(self, conn: asyncpg.Connection, e: StoredEvent, s: Any) -> None:
        rows = [_CommitmentRow(title=c.title, due_on=c.due_on) for c in s.commitments]
        await conn.execute(
            INSERT_PAIRING,
            e.root_id,
            e.stream_id,
            s.community_id,
            s.unit_id,
            s.unit_code,
            s.community_code,
            s.starts_on,
            s.ends_on,
            msgspec.json.encode(rows).decode(),
            len(rows),
            e.version,
            e.occurred_at,
        )

    @on(Pairing.CommitmentFulfilled)
    async def fulfilled(self, conn: asyncpg.Connection, e: StoredEvent, f: Any) -> None:
        await ROWS.update(
            conn,
            e,
            FULFIL,
            f.index,
            e.occurred_at.isoformat(),
            f.evidence,
            e.version,
            e.occurred_at,
        )

    @on(Pairing.ActivityHeld)
    async def activity(self, conn: asyncpg.Connection, e: StoredEvent, a: Any) -> None:
        await ROWS.update(conn, e, ACTIVITY, a.participants, a.held_on, e.version, e.occurred_at)

    @on(Pairing.Reviewed)
    async def reviewed(self, conn: asyncpg.Connection, e: StoredEvent, r: Any) -> None:
        await ROWS.update(conn, e, REVIEW, r.rating, e.version, e.occurred_at)

    @on(Pairing.Terminated)
    async def terminated(self, conn: asyncpg.Connection, e: StoredEvent, t: Any) -> None:
        await ROWS.update(conn, e, TERMINATE, t.reason, e.version, e.occurred_at)
