"""Commands on issues / work orders (工单): the 12345 loop 受理→派单→签收→办理→办结→回访→归档,
with 退单, 延期, 重办 and 吹哨报到, and the deadline sweeps the clock runs.

Who may do what (docs/issues.md has the matrix):
* the dispatching side — operator or admin whose scope contains the issue's node — reports,
  assigns, escalates, evaluates, closes and reopens;
* the assignee side — additionally a principal (unit, operator or admin) whose scope contains
  the assigned unit — accepts, returns, extends, notes progress and resolves;
* a whistle (吹哨) is answered by the whistled level (a principal whose scope contains the
  street or county it was blown to) or by the assigned unit.
The routes' guards check the coarse role first; these handlers check the placement, which
needs the loaded issue. Every handler runs inside ``run_command`` (scope, idempotency,
If-Match, retries).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated
from uuid import UUID, uuid4

import asyncpg
import msgspec

from domain.errors import InvalidValue
from domain.issue import MAX_RESPOND_MINUTES, Issue
from infra.directory import DirectoryNode
from services.commands.lookup import node_in_root, node_in_scope
from services.commands.session import CommandSession, Saved
from services.deadline_sweep import DueItem
from services.fields import IssueSource, NodeCode, Satisfaction, Text, Title
from services.problems import forbidden, not_found
from services.roles import ASSIGNEES, WRITERS

#: stream_parties roles, each held by one node at a time: the assigned unit and the level
#: the current whistle is blown to. Unit principals see an issue while they hold one.
ASSIGNEE_ROLE = "assignee"
ESCALATION_ROLE = "escalation"

Authorize = Callable[[Issue], Awaitable[None]]

ExternalId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=200,
        description="The pushing platform's own work-order number (工单编号), kept for correlation.",
    ),
]
Deadline = Annotated[
    datetime,
    msgspec.Meta(
        description="RFC 3339 with offset, e.g. 2024-05-01T18:00:00+08:00",
        extra_json_schema={"format": "date-time"},
    ),
]


# -- the commands (request bodies, passed through as they were decoded) ----------------------


class IssueCreate(msgspec.Struct, forbid_unknown_fields=True):
    node_code: NodeCode
    title: Title
    category: Title
    source: IssueSource
    due_at: Deadline | None = None
    description: Text | None = None
    external_id: ExternalId | None = None


class IssueAssign(msgspec.Struct, forbid_unknown_fields=True):
    assignee_code: NodeCode
    due_at: Deadline


class IssueReturn(msgspec.Struct, forbid_unknown_fields=True):
    reason: Text


class IssueExtend(msgspec.Struct, forbid_unknown_fields=True):
    due_at: Deadline
    reason: Text


class IssueProgress(msgspec.Struct, forbid_unknown_fields=True):
    note: Text


class IssueEscalate(msgspec.Struct, forbid_unknown_fields=True):
    to_code: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=40,
            description="the street or county node the issue's node lies in",
        ),
    ]
    respond_within_minutes: Annotated[
        int, msgspec.Meta(description=f"1-{MAX_RESPOND_MINUTES}, e.g. 30")
    ]


class IssueAnswer(msgspec.Struct, forbid_unknown_fields=True):
    note: Text


class IssueResolve(msgspec.Struct, forbid_unknown_fields=True):
    result: Text


class IssueEvaluate(msgspec.Struct, forbid_unknown_fields=True):
    satisfaction: Satisfaction
    resolved: bool
    comment: Text | None = None


class IssueClose(msgspec.Struct, forbid_unknown_fields=True):
    override_reason: (
        Annotated[
            str,
            msgspec.Meta(
                min_length=1,
                max_length=2000,
                description="admin only: closes despite a dissatisfied or unresolved callback",
            ),
        ]
        | None
    ) = None


class IssueReopen(msgspec.Struct, forbid_unknown_fields=True):
    reason: Text
    due_at: (
        Annotated[
            datetime,
            msgspec.Meta(description="default: as much time as the latest assignment gave"),
        ]
        | None
    ) = None


class BatchItem(msgspec.Struct, forbid_unknown_fields=True):
    """One work order of ``POST /v1/issues:batch``: an ``IssueCreate`` with its own key.

    Its fields are listed (not inherited) so that the item's JSON, which an item's
    Idempotency-Key fingerprints, keeps the key first."""

    idempotency_key: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=200,
            description="unique per work order: a retried batch re-creates nothing",
        ),
    ]
    node_code: NodeCode
    title: Title
    category: Title
    source: IssueSource
    due_at: Deadline | None = None
    description: Text | None = None
    external_id: ExternalId | None = None

    def command(self) -> IssueCreate:
        """The report this item asks for."""
        return IssueCreate(
            node_code=self.node_code,
            title=self.title,
            category=self.category,
            source=self.source,
            due_at=self.due_at,
            description=self.description,
            external_id=self.external_id,
        )


# -- the answer ------------------------------------------------------------------------------


class IssueChanged(msgspec.Struct):
    id: UUID
    version: int
    position: int
    status: str

    @classmethod
    def of(cls, saved: Saved[Issue]) -> IssueChanged:
        return cls(saved.aggregate.id, saved.version, saved.position, saved.aggregate.status)


# -- placement ---------------------------------------------------------------------------------


async def _dispatching(session: CommandSession, issue: Issue, action: str) -> DirectoryNode:
    """Operator or admin over the issue's node; returns that node."""
    node = await session.node(issue.node_id)
    if node is None:
        raise not_found(f"issue {issue.id}")
    if not (session.principal.has_any(WRITERS) and session.in_scope(node)):
        raise forbidden(f"{action} needs the role operator or admin over the issue's node")
    return node


def _dispatcher(session: CommandSession, action: str) -> Authorize:
    async def authorize(issue: Issue) -> None:
        await _dispatching(session, issue, action)

    return authorize


def _assignee_side(session: CommandSession, action: str) -> Authorize:
    """The assigned unit (unit/operator/admin over it), or the dispatching side."""

    async def authorize(issue: Issue) -> None:
        principal = session.principal
        if principal.has_any(WRITERS) and session.in_scope(await session.node(issue.node_id)):
            return
        if issue.assignee_id is None:
            return  # nothing is assigned: the domain refuses the command with the current state
        if principal.has_any(ASSIGNEES) and session.in_scope(await session.node(issue.assignee_id)):
            return
        raise forbidden(
            f"{action} is for the assigned unit ({issue.assignee_code}) or the dispatcher"
        )

    return authorize


async def _changed(
    session: CommandSession,
    issue_id: UUID,
    act: Callable[[Issue], object],
    authorize: Authorize,
) -> tuple[int, IssueChanged]:
    """A command on an issue: ``session.update``, answered with the new version."""
    saved = await session.update(Issue, issue_id, act, authorize=authorize, what="issue")
    return 200, IssueChanged.of(saved)


# -- commands ----------------------------------------------------------------------------------


async def report(session: CommandSession, command: IssueCreate) -> tuple[int, IssueChanged]:
    """IssueReported (受理) at a node of the caller's subtree."""
    node = await node_in_scope(session, command.node_code, f"node {command.node_code}")
    issue = Issue.report(
        issue_id=uuid4(),
        node=node.ref(),
        title=command.title,
        category=command.category,
        source=command.source,
        due_at=command.due_at,
        description=command.description,
        external_id=command.external_id,
        at=session.now,
    )
    return 201, IssueChanged.of(await session.create(issue))


async def assign(
    session: CommandSession, issue_id: UUID, command: IssueAssign
) -> tuple[int, IssueChanged]:
    """IssueAssigned (派单) to a unit anywhere in the root tenant; the unit becomes a party."""
    unit: DirectoryNode | None = None

    async def authorize(issue: Issue) -> None:
        nonlocal unit
        await _dispatching(session, issue, "assigning an issue")
        code = command.assignee_code
        unit = await node_in_root(session, code, f"unit {code}")

    def act(issue: Issue) -> None:
        assert unit is not None
        issue.assign(assignee=unit.ref(), due_at=command.due_at, at=session.now)

    answer = await _changed(session, issue_id, act, authorize)
    assert unit is not None
    # one assignee at a time: a reassignment ends the former unit's view of the issue
    await session.set_party(issue_id, ASSIGNEE_ROLE, unit.id)
    return answer


async def return_(
    session: CommandSession, issue_id: UUID, command: IssueReturn
) -> tuple[int, IssueChanged]:
    """IssueReturned (退单): the assignee hands the issue back before signing for it."""
    answer = await _changed(
        session,
        issue_id,
        lambda i: i.return_(command.reason, session.now),
        _assignee_side(session, "returning an issue"),
    )
    await session.set_party(issue_id, ASSIGNEE_ROLE, None)
    return answer


async def accept(session: CommandSession, issue_id: UUID) -> tuple[int, IssueChanged]:
    """IssueAccepted (签收)."""
    return await _changed(
        session,
        issue_id,
        lambda i: i.accept(session.now),
        _assignee_side(session, "accepting an issue"),
    )


async def extend(
    session: CommandSession, issue_id: UUID, command: IssueExtend
) -> tuple[int, IssueChanged]:
    """IssueExtended (延期), asked before the deadline in force passes."""
    return await _changed(
        session,
        issue_id,
        lambda i: i.extend(due_at=command.due_at, reason=command.reason, at=session.now),
        _assignee_side(session, "extending an issue's deadline"),
    )


async def note_progress(
    session: CommandSession, issue_id: UUID, command: IssueProgress
) -> tuple[int, IssueChanged]:
    """IssueProgressNoted (办理情况)."""
    return await _changed(
        session,
        issue_id,
        lambda i: i.note_progress(command.note, session.now),
        _assignee_side(session, "noting progress"),
    )


async def escalate(
    session: CommandSession, issue_id: UUID, command: IssueEscalate
) -> tuple[int, IssueChanged]:
    """IssueEscalated (吹哨) to the street or county the issue's node lies in."""
    target: DirectoryNode | None = None

    async def authorize(issue: Issue) -> None:
        nonlocal target
        node = await _dispatching(session, issue, "blowing the whistle on an issue")
        code = command.to_code
        target = await node_in_root(session, code, f"node {code}")
        if not target.contains(node):
            raise InvalidValue(
                "to_code",
                f"{code} is not above the issue's node {node.code}: a whistle goes to the "
                "street or county the issue lies in",
            )

    def act(issue: Issue) -> None:
        assert target is not None
        issue.escalate(
            to=target.ref(),
            respond_within_minutes=command.respond_within_minutes,
            at=session.now,
        )

    answer = await _changed(session, issue_id, act, authorize)
    assert target is not None
    await session.set_party(issue_id, ESCALATION_ROLE, target.id)
    return answer


async def answer_escalation(
    session: CommandSession, issue_id: UUID, command: IssueAnswer
) -> tuple[int, IssueChanged]:
    """IssueEscalationAnswered (报到): the whistled level (or the assigned unit) reports in; the
    responder recorded is the caller's scope node."""
    responder: DirectoryNode | None = None

    async def authorize(issue: Issue) -> None:
        nonlocal responder
        escalation = issue.escalation
        if escalation is not None and not (
            session.principal.has_any(ASSIGNEES)
            and (
                session.in_scope(await session.node(escalation.to_id))
                or session.in_scope(await session.node(issue.assignee_id))
            )
        ):
            raise forbidden(
                f"answering the whistle is for the level it was blown to ({escalation.to_code}) "
                "or the assigned unit"
            )
        assert session.scope is not None
        responder = await session.node(session.scope.node_id)

    def act(issue: Issue) -> None:
        assert responder is not None
        issue.answer_escalation(responder=responder.ref(), note=command.note, at=session.now)

    return await _changed(session, issue_id, act, authorize)


async def resolve(
    session: CommandSession, issue_id: UUID, command: IssueResolve
) -> tuple[int, IssueChanged]:
    """IssueResolved (办结)."""
    return await _changed(
        session,
        issue_id,
        lambda i: i.resolve(command.result, session.now),
        _assignee_side(session, "resolving an issue"),
    )


async def evaluate(
    session: CommandSession, issue_id: UUID, command: IssueEvaluate
) -> tuple[int, IssueChanged]:
    """IssueEvaluated (回访)."""
    return await _changed(
        session,
        issue_id,
        lambda i: i.evaluate(
            satisfaction=command.satisfaction,
            resolved=command.resolved,
            comment=command.comment,
            at=session.now,
        ),
        _dispatcher(session, "recording the callback"),
    )


async def close(
    session: CommandSession, issue_id: UUID, command: IssueClose
) -> tuple[int, IssueChanged]:
    """IssueClosed (归档/销号); an admin may override a negative callback with a reason."""
    return await _changed(
        session,
        issue_id,
        lambda i: i.close(
            session.now,
            is_admin=session.principal.is_admin,
            override_reason=command.override_reason,
        ),
        _dispatcher(session, "closing an issue"),
    )


async def reopen(
    session: CommandSession, issue_id: UUID, command: IssueReopen
) -> tuple[int, IssueChanged]:
    """IssueReopened (重办): back to the same unit with a new deadline."""
    return await _changed(
        session,
        issue_id,
        lambda i: i.reopen(command.reason, session.now, due_at=command.due_at),
        _dispatcher(session, "reopening an issue"),
    )


# -- the deadline clock ------------------------------------------------------------------------

DUE_ISSUES = """
SELECT r.code AS root_code, i.id
FROM rm_issues i JOIN nodes r ON r.id = i.root_id
WHERE i.status IN ('assigned', 'accepted') AND i.due_at < $1
  AND i.overdue_recorded_due_at IS DISTINCT FROM i.due_at
  AND NOT r.closed AND NOT civic_subtree_closed(i.node_id)
ORDER BY i.due_at
LIMIT $2
"""

DUE_WHISTLES = """
SELECT r.code AS root_code, i.id
FROM rm_issues i JOIN nodes r ON r.id = i.root_id
WHERE i.escalation_answered_at IS NULL AND NOT i.escalation_overdue
  AND i.escalation_respond_by < $1
  AND i.status IN ('reported', 'assigned', 'accepted')
  AND NOT r.closed AND NOT civic_subtree_closed(i.node_id)
ORDER BY i.escalation_respond_by
LIMIT $2
"""


class IssueOverdueSweep:
    """IssueOverdue: an assigned or accepted issue passed its deadline unresolved."""

    name = "IssueOverdue"

    async def due(self, conn: asyncpg.Connection, now: datetime, limit: int) -> list[DueItem]:
        rows = await conn.fetch(DUE_ISSUES, now, limit)
        return [DueItem(root_code=r["root_code"], stream_id=r["id"]) for r in rows]

    async def fire(self, session: CommandSession, stream_id: UUID) -> bool:
        issue = await session.load(Issue, stream_id)
        if issue is None or not issue.is_past_due(session.now):
            return False  # resolved, extended or already recorded meanwhile
        issue.mark_overdue(session.now)
        await session.save(issue)
        return True


class EscalationOverdueSweep:
    """EscalationOverdue: a whistle (吹哨) was not answered within its limit."""

    name = "EscalationOverdue"

    async def due(self, conn: asyncpg.Connection, now: datetime, limit: int) -> list[DueItem]:
        rows = await conn.fetch(DUE_WHISTLES, now, limit)
        return [DueItem(root_code=r["root_code"], stream_id=r["id"]) for r in rows]

    async def fire(self, session: CommandSession, stream_id: UUID) -> bool:
        issue = await session.load(Issue, stream_id)
        if issue is None or not issue.is_escalation_past_due(session.now):
            return False
        issue.mark_escalation_overdue(session.now)
        await session.save(issue)
        return True
