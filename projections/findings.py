"""Projection "findings": inspection findings and their rectification (rm_findings).

One row per finding, kept at the state the ledger (整改台账) shows: status, due date, the
responsible unit, measures, completion and verification, the last progress note, how often it
was sent back (退回重改) or reopened (回头看), and the due date the clock recorded overdue for.
Every update is guarded by the stream version, so a re-applied batch changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from uuid import UUID

import asyncpg
import msgspec

from infra.event_store import StoredEvent

INSERT_FINDING = """
INSERT INTO rm_findings (root_id, id, node_id, node_code, source, round, description, category,
                         status, recorded_at, version, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'recorded', $9, $10, $9)
ON CONFLICT (root_id, id) DO NOTHING
"""

# $1 root, $2 id, $3 version, $4 occurred_at; then the event's own fields.
_GUARD = "WHERE root_id = $1 AND id = $2 AND version < $3"

ASSIGNED = f"""
UPDATE rm_findings
SET status = 'assigned', responsible_unit_id = $5, responsible_unit_code = $6,
    measures = $7::jsonb, due_on = $8, version = $3, updated_at = $4
{_GUARD}
"""

PROGRESS = f"""
UPDATE rm_findings
SET status = 'in_progress', progress_count = progress_count + 1, last_progress_note = $5,
    last_progress_evidence = $6, last_progress_at = $4, version = $3, updated_at = $4
{_GUARD}
"""

COMPLETED = f"""
UPDATE rm_findings
SET status = 'completed', completed_at = $4, completion_summary = $5, version = $3,
    updated_at = $4
{_GUARD}
"""

VERIFIED = f"""
UPDATE rm_findings
SET status = 'verified', verified_at = $4, verification_comment = $5, rework = NULL,
    version = $3, updated_at = $4
{_GUARD}
"""

REJECTED = f"""
UPDATE rm_findings
SET status = 'in_progress', rework = 'rejected', completed_at = NULL, completion_summary = NULL,
    rejected_count = rejected_count + 1, last_rejection_reason = $5, version = $3,
    updated_at = $4
{_GUARD}
"""

REOPENED = f"""
UPDATE rm_findings
SET status = 'in_progress', rework = 'reopened', due_on = $6, completed_at = NULL,
    completion_summary = NULL, verified_at = NULL, verification_comment = NULL,
    overdue_recorded_due_on = NULL, reopened_count = reopened_count + 1,
    last_reopen_reason = $5, version = $3, updated_at = $4
{_GUARD}
"""

OVERDUE = f"""
UPDATE rm_findings SET overdue_recorded_due_on = $5, version = $3, updated_at = $4
{_GUARD}
"""

EXISTS = "SELECT version FROM rm_findings WHERE root_id = $1 AND id = $2"


class _Recorded(msgspec.Struct):
    scope_id: UUID
    scope_code: str
    source: str
    description: str
    category: str
    round: str | None = None


class _Assigned(msgspec.Struct):
    responsible_unit_id: UUID
    responsible_unit_code: str
    measures: list[str]
    due_on: date


class _Progress(msgspec.Struct):
    note: str
    evidence: str | None = None


class _Completed(msgspec.Struct):
    summary: str


class _Verified(msgspec.Struct):
    comment: str | None = None


class _Rejected(msgspec.Struct):
    reason: str


class _Reopened(msgspec.Struct):
    reason: str
    due_on: date


class _Overdue(msgspec.Struct):
    due_on: date


class FindingsProjection:
    name = "findings"
    handles = frozenset(
        {
            "FindingRecorded",
            "RectificationAssigned",
            "RectificationProgressReported",
            "RectificationCompleted",
            "RectificationVerified",
            "RectificationRejected",
            "FindingReopened",
            "RectificationOverdue",
        }
    )
    tables: tuple[str, ...] = ("rm_findings",)

    async def apply(self, conn: asyncpg.Connection, events: Sequence[StoredEvent]) -> None:
        for e in events:
            if e.type == "FindingRecorded":
                r = msgspec.json.decode(e.data, type=_Recorded)
                await conn.execute(
                    INSERT_FINDING,
                    e.root_id,
                    e.stream_id,
                    r.scope_id,
                    r.scope_code,
                    r.source,
                    r.round,
                    r.description,
                    r.category,
                    e.occurred_at,
                    e.version,
                )
                continue
            sql, fields = self._update(e)
            status = await conn.execute(
                sql, e.root_id, e.stream_id, e.version, e.occurred_at, *fields
            )
            if status == "UPDATE 0":
                await self._check_applied(conn, e)

    @staticmethod
    def _update(e: StoredEvent) -> tuple[str, tuple[object, ...]]:
        if e.type == "RectificationAssigned":
            a = msgspec.json.decode(e.data, type=_Assigned)
            measures = msgspec.json.encode(a.measures).decode()
            return ASSIGNED, (a.responsible_unit_id, a.responsible_unit_code, measures, a.due_on)
        if e.type == "RectificationProgressReported":
            p = msgspec.json.decode(e.data, type=_Progress)
            return PROGRESS, (p.note, p.evidence)
        if e.type == "RectificationCompleted":
            return COMPLETED, (msgspec.json.decode(e.data, type=_Completed).summary,)
        if e.type == "RectificationVerified":
            return VERIFIED, (msgspec.json.decode(e.data, type=_Verified).comment,)
        if e.type == "RectificationRejected":
            return REJECTED, (msgspec.json.decode(e.data, type=_Rejected).reason,)
        if e.type == "FindingReopened":
            o = msgspec.json.decode(e.data, type=_Reopened)
            return REOPENED, (o.reason, o.due_on)
        if e.type == "RectificationOverdue":
            return OVERDUE, (msgspec.json.decode(e.data, type=_Overdue).due_on,)
        raise ValueError(f"findings projection cannot apply {e.type}")

    @staticmethod
    async def _check_applied(conn: asyncpg.Connection, e: StoredEvent) -> None:
        """An update that touched nothing is fine when the row is already at or past the
        event's version (a re-applied batch); a missing row means an event was lost."""
        version = await conn.fetchval(EXISTS, e.root_id, e.stream_id)
        if version is None:
            raise RuntimeError(
                f"findings: {e.type} at position {e.position} for unknown finding {e.stream_id}"
            )
