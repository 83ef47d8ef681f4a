"""Projection "pairings": pairings (结对共建) as clients read them (rm_pairings).

One row per pairing, owned by the community (``node_id``); commitments are a jsonb array
in signing order, so a commitment's index is its position in the array. Every update is
guarded by ``version < $v``: re-applying an event changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from uuid import UUID

import asyncpg
import msgspec

from infra.event_store import StoredEvent

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


class _Commitment(msgspec.Struct):
    title: str
    due_on: date


class _CommitmentRow(msgspec.Struct):
    title: str
    due_on: date
    fulfilled_at: str | None = None
    evidence: str | None = None


class _Signed(msgspec.Struct):
    unit_id: UUID
    unit_code: str
    community_id: UUID
    community_code: str
    starts_on: date
    ends_on: date
    commitments: list[_Commitment]


class _Fulfilled(msgspec.Struct):
    index: int
    evidence: str


class _Activity(msgspec.Struct):
    held_on: date
    participants: int


class _Reviewed(msgspec.Struct):
    rating: str


class _Terminated(msgspec.Struct):
    reason: str


class PairingsProjection:
    name = "pairings"
    handles = frozenset(
        {
            "PairingSigned",
            "CommitmentFulfilled",
            "PairingActivityHeld",
            "PairingReviewed",
            "PairingTerminated",
        }
    )
    tables: tuple[str, ...] = ("rm_pairings",)

    async def apply(self, conn: asyncpg.Connection, events: Sequence[StoredEvent]) -> None:
        for e in events:
            key = (e.root_id, e.stream_id)
            if e.type == "PairingSigned":
                s = msgspec.json.decode(e.data, type=_Signed)
                rows = [_CommitmentRow(title=c.title, due_on=c.due_on) for c in s.commitments]
                await conn.execute(
                    INSERT_PAIRING,
                    *key,
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
            elif e.type == "CommitmentFulfilled":
                f = msgspec.json.decode(e.data, type=_Fulfilled)
                await conn.execute(
                    FULFIL,
                    *key,
                    f.index,
                    e.occurred_at.isoformat(),
                    f.evidence,
                    e.version,
                    e.occurred_at,
                )
            elif e.type == "PairingActivityHeld":
                a = msgspec.json.decode(e.data, type=_Activity)
                await conn.execute(
                    ACTIVITY, *key, a.participants, a.held_on, e.version, e.occurred_at
                )
            elif e.type == "PairingReviewed":
                r = msgspec.json.decode(e.data, type=_Reviewed)
                await conn.execute(REVIEW, *key, r.rating, e.version, e.occurred_at)
            elif e.type == "PairingTerminated":
                t = msgspec.json.decode(e.data, type=_Terminated)
                await conn.execute(TERMINATE, *key, t.reason, e.version, e.occurred_at)
