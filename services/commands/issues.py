"""Commands on issues / work orders (工单): the 12345 loop 受理→派单→签收→办理→办结→回访→归档,
with 退单, 延期, 重办 and 吹哨报到, and the deadline sweeps the clock runs.

Who may do what (docs/issues.md has the matrix):
* the dispatching side — operator or admin whose scope contains the issue's node — reports,
  assigns, escalates, evaluates, closes and reopens;
* the assignee side — additionally a principal (unit, operator or admin) whose scope contains
  the assigned unit — accepts, returns, extends, notes progress and resolves;
* a whistle (吹哨) is answered by the whistled level (a principal whose scope contains the
  street or county it was blown to) or by the assigned unit.
Controllers check the coarse role first; these handlers check the placement, which needs the
loaded issue. Every handler runs inside ``run_command`` (scope, idempotency, If-Match, retries).
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid4

import asyncpg
import msgspec

from domain.errors import InvalidValue
from domain.issue import Issue
from domain.refs import NodeRef
from infra import directory
from infra.database import scoped_transaction
from infra.directory import DirectoryNode
from services.auth import Principal
from services.commands.lookup import node_in_root, node_in_scope
from services.commands.session import FIND_KEY, CommandRequest, CommandSession, stored_answer
from services.context import AppContext
from services.deadline_sweep import DueItem
from services.problems import forbidden, not_found
from services.roles import ASSIGNEES, WRITERS

#: stream_parties roles, each held by one node at a time: the assigned unit and the level
#: the current whistle is blown to. Unit principals see an issue while they hold one.
ASSIGNEE_ROLE = "assignee"
ESCALATION_ROLE = "escalation"


class IssueChanged(msgspec.Struct):
    id: UUID
    version: int
    position: int
    status: str


def node_ref(node: DirectoryNode) -> NodeRef:
    return NodeRef(
        id=node.id,
        code=node.code,
        kind=node.kind,
        root_id=node.root_id,
        parent_id=node.parent_id,
        closed=node.closed,
    )


# -- placement checks --------------------------------------------------------------------------


async def _load(session: CommandSession, issue_id: UUID) -> Issue:
    issue = await session.load(Issue, issue_id)  # row-level security: invisible → None
    if issue is None:
        raise not_found(f"issue {issue_id}")
    return issue


async def _node(session: CommandSession, node_id: UUID | None) -> DirectoryNode | None:
    if node_id is None:
        return None
    return await directory.find_by_id(session.conn, node_id)


def _scope_contains(session: CommandSession, node: DirectoryNode | None) -> bool:
    return (
        node is not None and session.scope is not None and node.path.startswith(session.scope.path)
    )


async def _dispatcher(session: CommandSession, issue: Issue, action: str) -> DirectoryNode:
    """Operator or admin over the issue's node; returns that node."""
    node = await _node(session, issue.node_id)
    if node is None:
        raise not_found(f"issue {issue.id}")
    if not (session.principal.has_any(WRITERS) and _scope_contains(session, node)):
        raise forbidden(f"{action} needs the role operator or admin over the issue's node")
    return node


async def _assignee_side(session: CommandSession, issue: Issue, action: str) -> None:
    """The assigned unit (unit/operator/admin over it), or the dispatching side."""
    principal = session.principal
    if principal.has_any(WRITERS) and _scope_contains(session, await _node(session, issue.node_id)):
        return
    if issue.assignee_id is None:
        return  # nothing is assigned: the domain refuses the command with the current state
    assignee = await _node(session, issue.assignee_id)
    if principal.has_any(ASSIGNEES) and _scope_contains(session, assignee):
        return
    raise forbidden(f"{action} is for the assigned unit ({issue.assignee_code}) or the dispatcher")


async def _done(
    session: CommandSession, issue: Issue, status: int = 200
) -> tuple[int, IssueChanged]:
    result = await session.save(issue)
    return status, IssueChanged(issue.id, result.version, result.position, issue.status)


# -- commands ----------------------------------------------------------------------------------


async def report(
    session: CommandSession,
    *,
    node_code: str,
    title: str,
    category: str,
    source: str,
    due_at: datetime | None = None,
    description: str | None = None,
    external_id: str | None = None,
) -> tuple[int, IssueChanged]:
    """IssueReported (受理) at a node of the caller's subtree."""
    node = await node_in_scope(session, node_code, f"node {node_code}")
    issue = Issue.report(
        issue_id=uuid4(),
        node=node_ref(node),
        title=title,
        category=category,
        source=source,
        due_at=due_at,
        description=description,
        external_id=external_id,
        at=session.now,
    )
    return await _done(session, issue, 201)


async def assign(
    session: CommandSession, *, issue_id: UUID, assignee_code: str, due_at: datetime
) -> tuple[int, IssueChanged]:
    """IssueAssigned (派单) to a unit anywhere in the root tenant; the unit becomes a party."""
    issue = await _load(session, issue_id)
    await _dispatcher(session, issue, "assigning an issue")
    session.check_if_match(issue)
    unit = await node_in_root(session, assignee_code, f"unit {assignee_code}")
    issue.assign(assignee=node_ref(unit), due_at=due_at, at=session.now)
    answer = await _done(session, issue)
    # one assignee at a time: a reassignment ends the former unit's view of the issue
    await directory.set_party(session.conn, session.root_id, issue.id, ASSIGNEE_ROLE, unit.id)
    return answer


async def return_(
    session: CommandSession, *, issue_id: UUID, reason: str
) -> tuple[int, IssueChanged]:
    """IssueReturned (退单): the assignee hands the issue back before signing for it."""
    issue = await _load(session, issue_id)
    await _assignee_side(session, issue, "returning an issue")
    session.check_if_match(issue)
    issue.return_(reason, session.now)
    answer = await _done(session, issue)
    await directory.set_party(session.conn, session.root_id, issue.id, ASSIGNEE_ROLE, None)
    return answer


async def accept(session: CommandSession, *, issue_id: UUID) -> tuple[int, IssueChanged]:
    """IssueAccepted (签收)."""
    issue = await _load(session, issue_id)
    await _assignee_side(session, issue, "accepting an issue")
    session.check_if_match(issue)
    issue.accept(session.now)
    return await _done(session, issue)


async def extend(
    session: CommandSession, *, issue_id: UUID, due_at: datetime, reason: str
) -> tuple[int, IssueChanged]:
    """IssueExtended (延期), asked before the deadline in force passes."""
    issue = await _load(session, issue_id)
    await _assignee_side(session, issue, "extending an issue's deadline")
    session.check_if_match(issue)
    issue.extend(due_at=due_at, reason=reason, at=session.now)
    return await _done(session, issue)


async def note_progress(
    session: CommandSession, *, issue_id: UUID, note: str
) -> tuple[int, IssueChanged]:
    """IssueProgressNoted (办理情况)."""
    issue = await _load(session, issue_id)
    await _assignee_side(session, issue, "noting progress")
    session.check_if_match(issue)
    issue.note_progress(note, session.now)
    return await _done(session, issue)


async def escalate(
    session: CommandSession, *, issue_id: UUID, to_code: str, respond_within_minutes: int
) -> tuple[int, IssueChanged]:
    """IssueEscalated (吹哨) to the street or county the issue's node lies in."""
    issue = await _load(session, issue_id)
    node = await _dispatcher(session, issue, "blowing the whistle on an issue")
    session.check_if_match(issue)
    target = await node_in_root(session, to_code, f"node {to_code}")
    if not target.contains(node):
        raise InvalidValue(
            "to_code",
            f"{to_code} is not above the issue's node {node.code}: a whistle goes to the street "
            "or county the issue lies in",
        )
    issue.escalate(
        to=node_ref(target), respond_within_minutes=respond_within_minutes, at=session.now
    )
    answer = await _done(session, issue)
    await directory.set_party(session.conn, session.root_id, issue.id, ESCALATION_ROLE, target.id)
    return answer


async def answer_escalation(
    session: CommandSession, *, issue_id: UUID, note: str
) -> tuple[int, IssueChanged]:
    """IssueEscalationAnswered (报到): the whistled level (or the assigned unit) reports in; the
    responder recorded is the caller's scope node."""
    issue = await _load(session, issue_id)
    escalation = issue.escalation
    if escalation is not None:
        target = await _node(session, escalation.to_id)
        assignee = await _node(session, issue.assignee_id)
        if not (
            session.principal.has_any(ASSIGNEES)
            and (_scope_contains(session, target) or _scope_contains(session, assignee))
        ):
            raise forbidden(
                f"answering the whistle is for the level it was blown to ({escalation.to_code}) "
                "or the assigned unit"
            )
    session.check_if_match(issue)
    assert session.scope is not None
    responder = await _node(session, session.scope.node_id)
    assert responder is not None
    issue.answer_escalation(responder=node_ref(responder), note=note, at=session.now)
    return await _done(session, issue)


async def resolve(
    session: CommandSession, *, issue_id: UUID, result: str
) -> tuple[int, IssueChanged]:
    """IssueResolved (办结)."""
    issue = await _load(session, issue_id)
    await _assignee_side(session, issue, "resolving an issue")
    session.check_if_match(issue)
    issue.resolve(result, session.now)
    return await _done(session, issue)


async def evaluate(
    session: CommandSession,
    *,
    issue_id: UUID,
    satisfaction: str,
    resolved: bool,
    comment: str | None = None,
) -> tuple[int, IssueChanged]:
    """IssueEvaluated (回访)."""
    issue = await _load(session, issue_id)
    await _dispatcher(session, issue, "recording the callback")
    session.check_if_match(issue)
    issue.evaluate(satisfaction=satisfaction, resolved=resolved, comment=comment, at=session.now)
    return await _done(session, issue)


async def close(
    session: CommandSession, *, issue_id: UUID, override_reason: str | None = None
) -> tuple[int, IssueChanged]:
    """IssueClosed (归档/销号); an admin may override a negative callback with a reason."""
    issue = await _load(session, issue_id)
    await _dispatcher(session, issue, "closing an issue")
    session.check_if_match(issue)
    issue.close(session.now, is_admin=session.principal.is_admin, override_reason=override_reason)
    return await _done(session, issue)


async def reopen(
    session: CommandSession, *, issue_id: UUID, reason: str, due_at: datetime | None = None
) -> tuple[int, IssueChanged]:
    """IssueReopened (重办): back to the same unit with a new deadline."""
    issue = await _load(session, issue_id)
    await _dispatcher(session, issue, "reopening an issue")
    session.check_if_match(issue)
    issue.reopen(reason, session.now, due_at=due_at)
    return await _done(session, issue)


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


# -- the batch's own Idempotency-Key ------------------------------------------------------------
# Each batch item carries its own key and runs through ``run_command``; a key on the batch
# request itself replays the whole first answer, like any other POST.
#
# Twins racing with one key: the answer is stored only when the batch is done, so a twin
# that started meanwhile finds nothing to replay. Each batch therefore first *claims* its
# key: a row under a key of its own namespace, holding the request's fingerprint, committed
# before any item runs. Exactly one twin inserts it; the others read it and answer 422 when
# their body differs. A twin with the same body goes on: its items replay the winner's one
# by one (their own keys settle that), so nothing is created twice. The claim is never
# replayed as an answer (only this check reads it).

SAVE_BATCH_KEY = """
INSERT INTO idempotency_keys (principal, key, request_hash, status, response)
VALUES ($1, $2, $3, $4, $5)
"""
CLAIM_BATCH_KEY = """
INSERT INTO idempotency_keys (principal, key, request_hash, status, response)
VALUES ($1, $2, $3, 202, '') ON CONFLICT (principal, key) DO NOTHING
RETURNING true
"""
BATCH_CLAIM_PREFIX = "issues:batch-claim:"


async def batch_replay(
    ctx: AppContext, principal: Principal, request: CommandRequest
) -> tuple[int, bytes] | None:
    """The stored answer to this batch request's Idempotency-Key (422 if the body differs),
    else None, having claimed the key for this request (422 if a twin with another body
    claimed it first).

    Enters the caller's scope even without a key, so a token whose scope node does not exist
    is refused (401) once for the batch, not once per item.
    """
    async with (
        ctx.db.acquire() as conn,
        scoped_transaction(
            conn,
            principal.scope,
            statement_timeout_ms=ctx.settings.statement_timeout_ms,
            cache=ctx.scopes,
        ),
    ):
        if request.idempotency_key is None:
            return None
        owner = principal.idempotency_owner
        row = await conn.fetchrow(FIND_KEY, owner, request.idempotency_key)
        if row is None:
            claim = BATCH_CLAIM_PREFIX + request.idempotency_key
            # A concurrent twin's insert waits for ours to commit, then does nothing.
            if not await conn.fetchval(CLAIM_BATCH_KEY, owner, claim, request.fingerprint):
                claimed = await conn.fetchrow(FIND_KEY, owner, claim)
                if claimed is not None:
                    stored_answer(request, claimed)  # 422 for another body
                return None
    replay = stored_answer(request, row)
    return None if replay is None else (replay.status, replay.body)


async def batch_remember(
    ctx: AppContext, principal: Principal, request: CommandRequest, status: int, body: bytes
) -> None:
    """Keep the batch's answer under its Idempotency-Key (a racing twin's answer wins)."""
    if request.idempotency_key is None:
        return
    try:
        async with (
            ctx.db.acquire() as conn,
            scoped_transaction(
                conn,
                principal.scope,
                statement_timeout_ms=ctx.settings.statement_timeout_ms,
                cache=ctx.scopes,
            ),
        ):
            await conn.execute(
                SAVE_BATCH_KEY,
                principal.idempotency_owner,
                request.idempotency_key,
                request.fingerprint,
                status,
                body,
            )
    except asyncpg.UniqueViolationError:
        pass  # the twin's items replayed ours one by one; its answer is equivalent
