"""Commands on inspection findings (巡视整改): the ledger 建账 → 更新 → 销号 with double review
and 回头看, plus the deadline sweep that records RectificationOverdue.

Who may do what (the controller has checked the roles already; here the scope):
* record: operator/admin whose subtree holds the finding's node;
* progress, complete (the assignee side): operator/admin of the finding's subtree, or a
  principal whose scope holds the responsible unit (role unit, or operator/admin of the unit);
* verify, reopen (the review side): inspector/admin of the finding's subtree — never through
  the responsible unit's own scope, so a unit cannot sign off its own rectification.
"""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID, uuid4

import asyncpg
import msgspec

from domain.finding import Finding
from domain.finding import warning as warning_of
from domain.refs import NodeRef, business_date
from infra import directory
from infra.directory import DirectoryNode
from infra.event_store import AppendResult
from services.commands.lookup import node_in_root, node_in_scope
from services.commands.session import CommandSession
from services.deadline_sweep import DueItem
from services.problems import forbidden, not_found
from services.roles import ASSIGNEES, WRITERS

#: the stream_parties role of the responsible unit.
PARTY_ROLE = "responsible_unit"


class FindingChanged(msgspec.Struct):
    id: UUID
    version: int
    position: int
    status: str
    due_on: date | None
    warning: str


def node_ref(node: DirectoryNode) -> NodeRef:
    return NodeRef(
        id=node.id,
        code=node.code,
        kind=node.kind,
        root_id=node.root_id,
        parent_id=node.parent_id,
        closed=node.closed,
    )


def _changed(finding: Finding, result: AppendResult, now: datetime) -> FindingChanged:
    due_on = finding.due_on
    return FindingChanged(
        id=finding.id,
        version=result.version,
        position=result.position,
        status=finding.status,
        due_on=due_on,
        warning=warning_of(due_on, business_date(now), finding.status) if due_on else "none",
    )


async def _load(session: CommandSession, finding_id: UUID) -> Finding:
    finding = await session.load(Finding, finding_id)  # RLS: invisible → None
    if finding is None:
        raise not_found(f"finding {finding_id}")
    return finding


async def _holds(session: CommandSession, node_id: UUID | None) -> bool:
    """Is the node inside the caller's subtree?"""
    if node_id is None or session.scope is None:
        return False
    node = await directory.find_by_id(session.conn, node_id)
    return node is not None and node.path.startswith(session.scope.path)


async def _require_assignee_side(session: CommandSession, finding: Finding, action: str) -> None:
    principal = session.principal
    if principal.has_any(WRITERS) and await _holds(session, finding.scope_id):
        return
    if principal.has_any(ASSIGNEES) and await _holds(session, finding.responsible_unit_id):
        return
    raise forbidden(
        f"{action} is for the responsible unit {finding.responsible_unit_code} or an "
        "operator/admin of the finding's scope"
    )


async def _require_review_side(session: CommandSession, finding: Finding, action: str) -> None:
    if not await _holds(session, finding.scope_id):
        raise forbidden(
            f"{action} is for an inspector or admin whose scope holds the finding's node "
            f"{finding.scope_code}; the responsible unit cannot review its own rectification"
        )


async def record(
    session: CommandSession,
    *,
    node_code: str,
    source: str,
    description: str,
    responsible_unit_code: str,
    due_on: date,
    measures: list[str],
    category: str | None,
    round: str | None,
) -> tuple[int, FindingChanged]:
    """建账: FindingRecorded + RectificationAssigned in one append; the unit becomes a party."""
    scope = await node_in_scope(session, node_code, f"node {node_code}")
    unit = await node_in_root(
        session, responsible_unit_code, f"responsible unit {responsible_unit_code}"
    )
    finding = Finding.record(
        finding_id=uuid4(),
        scope=node_ref(scope),
        source=source,
        description=description,
        responsible_unit=node_ref(unit),
        due_on=due_on,
        measures=measures,
        category=category,
        round=round,
        at=session.now,
    )
    result = await session.save(finding)
    await directory.add_party(session.conn, session.root_id, unit.id, finding.id, PARTY_ROLE)
    return 201, _changed(finding, result, session.now)


async def report_progress(
    session: CommandSession, *, finding_id: UUID, note: str, evidence: str | None
) -> tuple[int, FindingChanged]:
    finding = await _load(session, finding_id)
    await _require_assignee_side(session, finding, "reporting progress")
    session.check_if_match(finding)
    finding.report_progress(note=note, evidence=evidence, at=session.now)
    result = await session.save(finding)
    return 200, _changed(finding, result, session.now)


async def complete(
    session: CommandSession, *, finding_id: UUID, summary: str
) -> tuple[int, FindingChanged]:
    finding = await _load(session, finding_id)
    await _require_assignee_side(session, finding, "completing a rectification")
    session.check_if_match(finding)
    finding.complete(summary, session.now)
    result = await session.save(finding)
    return 200, _changed(finding, result, session.now)


async def verify(
    session: CommandSession, *, finding_id: UUID, accepted: bool, comment: str | None
) -> tuple[int, FindingChanged]:
    """销号 (accepted) or back to work (rejected, the comment is the reason)."""
    finding = await _load(session, finding_id)
    await _require_review_side(session, finding, "verifying a rectification")
    session.check_if_match(finding)
    finding.verify(accepted=accepted, comment=comment, at=session.now)
    result = await session.save(finding)
    return 200, _changed(finding, result, session.now)


async def reopen(
    session: CommandSession, *, finding_id: UUID, reason: str, due_on: date | None
) -> tuple[int, FindingChanged]:
    """回头看 found a relapse after 销号: back to in_progress with a new due date."""
    finding = await _load(session, finding_id)
    await _require_review_side(session, finding, "reopening a finding")
    session.check_if_match(finding)
    finding.reopen(reason, session.now, due_on=due_on)
    result = await session.save(finding)
    return 200, _changed(finding, result, session.now)


# -- the clock ------------------------------------------------------------------------------

DUE_FOR_OVERDUE = """
SELECT r.code AS root_code, f.id
FROM rm_findings f
JOIN nodes r ON r.id = f.root_id
WHERE f.status IN ('assigned', 'in_progress', 'completed')
  AND f.due_on < $1
  AND f.overdue_recorded_due_on IS DISTINCT FROM f.due_on
  AND NOT r.closed AND NOT civic_subtree_closed(f.node_id)
ORDER BY f.due_on, f.id
LIMIT $2
"""


class RectificationOverdueSweep:
    """Records RectificationOverdue for findings past their due date (a China calendar day)
    and not verified, once per due date (a reopen's new due date can fire again)."""

    name = "RectificationOverdue"

    async def due(self, conn: asyncpg.Connection, now: datetime, limit: int) -> list[DueItem]:
        rows = await conn.fetch(DUE_FOR_OVERDUE, business_date(now), limit)
        return [DueItem(root_code=r["root_code"], stream_id=r["id"]) for r in rows]

    async def fire(self, session: CommandSession, stream_id: UUID) -> bool:
        finding = await session.load(Finding, stream_id)
        if finding is None or not finding.is_past_due(session.now):
            return False
        finding.mark_overdue(session.now)
        await session.save(finding)
        return True
