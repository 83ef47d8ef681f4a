"""Commands on inspection findings (巡视整改): the ledger 建账 → 更新 → 销号 with double review
and 回头看, plus the deadline sweep that records RectificationOverdue.

Who may do what (the routes' guards have checked the roles already; here the scope):
* record: operator/admin whose subtree holds the finding's node;
* progress, complete (the assignee side): operator/admin of the finding's subtree, or a
  principal whose scope holds the responsible unit (role unit, or operator/admin of the unit);
* verify, reopen (the review side): inspector/admin of the finding's subtree — never through
  the responsible unit's own scope, so a unit cannot sign off its own rectification.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Annotated, Literal
from uuid import UUID, uuid4

import asyncpg
import msgspec

from domain.finding import MAX_EVIDENCE, MAX_MEASURES, Finding
from domain.finding import warning as warning_of
from domain.refs import business_date
from services.commands.lookup import node_in_root, node_in_scope
from services.commands.session import CommandSession, Saved
from services.deadline_sweep import DueItem
from services.fields import NodeCode, Text, Title
from services.problems import forbidden
from services.roles import ASSIGNEES, WRITERS

#: the stream_parties role of the responsible unit.
PARTY_ROLE = "responsible_unit"

Authorize = Callable[[Finding], Awaitable[None]]
Category = Literal["immediate", "deadline", "long_term"]


# -- the commands (request bodies, passed through as they were decoded) ----------------------


class FindingCreate(msgspec.Struct, forbid_unknown_fields=True):
    node_code: Annotated[NodeCode, msgspec.Meta(description="the node the finding concerns")]
    source: Annotated[Title, msgspec.Meta(description="e.g. 省委第三巡视组")]
    description: Text
    responsible_unit_code: Annotated[
        NodeCode, msgspec.Meta(description="a unit node of the same root tenant")
    ]
    due_on: Annotated[date, msgspec.Meta(description="may lie in the past (imported ledgers)")]
    measures: Annotated[list[Text], msgspec.Meta(min_length=1, max_length=MAX_MEASURES)]
    category: Annotated[
        Category | None,
        msgspec.Meta(description="立行立改 / 限期整改 (default) / 长期坚持"),
    ] = None
    round: Annotated[Title | None, msgspec.Meta(description="巡视轮次, e.g. 2024年第一轮")] = None


class ProgressReport(msgspec.Struct, forbid_unknown_fields=True):
    note: Text
    evidence: (
        Annotated[
            str, msgspec.Meta(max_length=MAX_EVIDENCE, description="a reference to the evidence")
        ]
        | None
    ) = None


class Completion(msgspec.Struct, forbid_unknown_fields=True):
    summary: Text


class Verification(msgspec.Struct, forbid_unknown_fields=True):
    accepted: Annotated[bool, msgspec.Meta(description="true: 销号; false: back to work")]
    comment: Annotated[Text, msgspec.Meta(description="the reviewer's opinion or the reason")]


class Reopen(msgspec.Struct, forbid_unknown_fields=True):
    reason: Text
    due_on: Annotated[
        date | None, msgspec.Meta(description="default: 30 days from today (China date)")
    ] = None


# -- the answer ------------------------------------------------------------------------------


class FindingChanged(msgspec.Struct):
    id: UUID
    version: int
    position: int
    status: str
    due_on: date | None
    warning: str

    @classmethod
    def of(cls, saved: Saved[Finding], now: datetime) -> FindingChanged:
        """The answer, its warning band as of ``now``'s China date."""
        finding = saved.aggregate
        due_on = finding.due_on
        return cls(
            id=finding.id,
            version=saved.version,
            position=saved.position,
            status=finding.status,
            due_on=due_on,
            warning=warning_of(due_on, business_date(now), finding.status) if due_on else "none",
        )


# -- placement -------------------------------------------------------------------------------


async def _holds(session: CommandSession, node_id: UUID | None) -> bool:
    """Is the node inside the caller's subtree?"""
    return session.in_scope(await session.node(node_id))


def _assignee_side(session: CommandSession, action: str) -> Authorize:
    async def authorize(finding: Finding) -> None:
        principal = session.principal
        if principal.has_any(WRITERS) and await _holds(session, finding.scope_id):
            return
        if principal.has_any(ASSIGNEES) and await _holds(session, finding.responsible_unit_id):
            return
        raise forbidden(
            f"{action} is for the responsible unit {finding.responsible_unit_code} or an "
            "operator/admin of the finding's scope"
        )

    return authorize


def _review_side(session: CommandSession, action: str) -> Authorize:
    async def authorize(finding: Finding) -> None:
        if not await _holds(session, finding.scope_id):
            raise forbidden(
                f"{action} is for an inspector or admin whose scope holds the finding's node "
                f"{finding.scope_code}; the responsible unit cannot review its own rectification"
            )

    return authorize


async def _changed(
    session: CommandSession,
    finding_id: UUID,
    act: Callable[[Finding], object],
    authorize: Authorize,
) -> tuple[int, FindingChanged]:
    """A command on a finding: ``session.update``, answered with the new version."""
    saved = await session.update(Finding, finding_id, act, authorize=authorize, what="finding")
    return 200, FindingChanged.of(saved, session.now)


# -- commands --------------------------------------------------------------------------------


async def record(session: CommandSession, command: FindingCreate) -> tuple[int, FindingChanged]:
    """建账: FindingRecorded + RectificationAssigned in one append; the unit becomes a party."""
    scope = await node_in_scope(session, command.node_code, f"node {command.node_code}")
    code = command.responsible_unit_code
    unit = await node_in_root(session, code, f"responsible unit {code}")
    finding = Finding.record(
        finding_id=uuid4(),
        scope=scope.ref(),
        source=command.source,
        description=command.description,
        responsible_unit=unit.ref(),
        due_on=command.due_on,
        measures=list(command.measures),
        category=command.category,
        round=command.round,
        at=session.now,
    )
    saved = await session.create(finding)
    await session.add_party(unit.id, finding.id, PARTY_ROLE)
    return 201, FindingChanged.of(saved, session.now)


async def report_progress(
    session: CommandSession, finding_id: UUID, command: ProgressReport
) -> tuple[int, FindingChanged]:
    return await _changed(
        session,
        finding_id,
        lambda f: f.report_progress(note=command.note, evidence=command.evidence, at=session.now),
        _assignee_side(session, "reporting progress"),
    )


async def complete(
    session: CommandSession, finding_id: UUID, command: Completion
) -> tuple[int, FindingChanged]:
    return await _changed(
        session,
        finding_id,
        lambda f: f.complete(command.summary, session.now),
        _assignee_side(session, "completing a rectification"),
    )


async def verify(
    session: CommandSession, finding_id: UUID, command: Verification
) -> tuple[int, FindingChanged]:
    """销号 (accepted) or back to work (rejected, the comment is the reason)."""
    return await _changed(
        session,
        finding_id,
        lambda f: f.verify(accepted=command.accepted, comment=command.comment, at=session.now),
        _review_side(session, "verifying a rectification"),
    )


async def reopen(
    session: CommandSession, finding_id: UUID, command: Reopen
) -> tuple[int, FindingChanged]:
    """回头看 found a relapse after 销号: back to in_progress with a new due date."""
    return await _changed(
        session,
        finding_id,
        lambda f: f.reopen(command.reason, session.now, due_on=command.due_on),
        _review_side(session, "reopening a finding"),
    )


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
