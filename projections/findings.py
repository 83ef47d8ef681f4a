"""Projection "findings": inspection findings and their rectification (rm_findings).

One row per finding, kept at the state the ledger (整改台账) shows: status, due date, the
responsible unit, measures, completion and verification, the last progress note, how often it
was sent back (退回重改) or reopened (回头看), and the due date the clock recorded overdue for.
Every update is guarded by the stream version, so a re-applied batch changes nothing; an
update of a finding the table does not hold raises (``projections.rows``).
"""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

from domain.finding import Finding
from infra.event_store import StoredEvent
from projections.rows import RowGuard
from projections.subscriptions import PerEvent, on

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

ROWS = RowGuard("rm_findings")


class FindingsProjection(PerEvent):
    name = "findings"
    tables: tuple[str, ...] = ("rm_findings",)

    @on(Finding.Recorded)
    async def recorded(self, conn: asyncpg.Connection, e: StoredEvent, r: Any) -> None:
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

    @staticmethod
    async def _update(conn: asyncpg.Connection, e: StoredEvent, sql: str, *fields: Any) -> None:
        await ROWS.update(conn, e, sql, e.version, e.occurred_at, *fields)

    @on(Finding.Assigned)
    async def assigned(self, conn: asyncpg.Connection, e: StoredEvent, a: Any) -> None:
        measures = msgspec.json.encode(a.measures).decode()
        await self._update(
            conn, e, ASSIGNED, a.responsible_unit_id, a.responsible_unit_code, measures, a.due_on
        )

    @on(Finding.ProgressReported)
    async def progress(self, conn: asyncpg.Connection, e: StoredEvent, p: Any) -> None:
        await self._update(conn, e, PROGRESS, p.note, p.evidence)

    @on(Finding.Completed)
    async def completed(self, conn: asyncpg.Connection, e: StoredEvent, c: Any) -> None:
        await self._update(conn, e, COMPLETED, c.summary)

    @on(Finding.Verified)
    async def verified(self, conn: asyncpg.Connection, e: StoredEvent, v: Any) -> None:
        await self._update(conn, e, VERIFIED, v.comment)

    @on(Finding.Rejected)
    async def rejected(self, conn: asyncpg.Connection, e: StoredEvent, r: Any) -> None:
        await self._update(conn, e, REJECTED, r.reason)

    @on(Finding.Reopened)
    async def reopened(self, conn: asyncpg.Connection, e: StoredEvent, o: Any) -> None:
        await self._update(conn, e, REOPENED, o.reason, o.due_on)

    @on(Finding.Overdue)
    async def overdue(self, conn: asyncpg.Connection, e: StoredEvent, o: Any) -> None:
        await self._update(conn, e, OVERDUE, o.due_on)
