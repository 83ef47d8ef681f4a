"""/v1/pairings — county units paired with communities (结对共建).

Roles: sign, review and terminate — operator or admin whose scope holds both the unit and
the community; fulfil a commitment and record an activity — operator or admin, or the unit
side (a principal scoped to the pairing's unit, e.g. role ``unit``); reads — every role,
for pairings whose community lies in the caller's subtree, and for a unit principal the
pairings naming its unit.

Commitments are addressed by their 0-based index in the order they were signed
(``POST /v1/pairings/{id}/commitments/0/fulfil`` fulfils the first one).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal
from uuid import UUID

import asyncpg
import msgspec
from litestar import Controller, Response, get, post
from litestar.params import FromPath, JSONBody, QueryParameter

from domain.pairing import ACTIVE, RATINGS, Pairing
from domain.refs import business_date
from infra.database import Scope
from infra.paths import subtree_bounds
from services.api.code_filters import SubtreeCode, subtree_path
from services.api.deps import Caller, Command, Ctx, MinPosition, read_scope
from services.api.guards import needs
from services.api.missing import missing
from services.api.paging import Cursor, Limit, Page, decode_time_id_cursor, page_of
from services.api.responses import ETAG, documented
from services.commands import pairings as commands
from services.commands.pairings import (
    ActivityHold,
    CommitmentFulfil,
    PairingReview,
    PairingSign,
    PairingTerminate,
)
from services.fields import PairingRating, PairingStatus
from services.problems import not_found
from services.roles import ASSIGNEES, READERS, WRITERS

PROJECTIONS = ("pairings",)


class CommitmentView(msgspec.Struct):
    index: int
    title: str
    due_on: date
    fulfilled: bool
    fulfilled_at: str | None
    evidence: str | None
    #: not fulfilled and the due day has passed (China calendar day)
    overdue: bool


class PairingView(msgspec.Struct):
    id: UUID
    unit_code: str
    community_code: str
    starts_on: date
    ends_on: date
    status: PairingStatus
    #: active and today lies within the term
    in_force: bool
    commitments: list[CommitmentView]
    commitments_total: int
    commitments_fulfilled: int
    activity_count: int
    participant_total: int
    last_activity_on: date | None
    rating: PairingRating | None
    review_count: int
    terminated_at: datetime | None
    termination_reason: str | None
    version: int
    signed_at: datetime
    updated_at: datetime


class _StoredCommitment(msgspec.Struct):
    title: str
    due_on: date
    fulfilled_at: str | None = None
    evidence: str | None = None


# Codes are reissued on reorganisation: show the nodes' current codes.
_SELECT = """
SELECT p.id, coalesce(u.code, p.unit_code) AS unit_code,
       coalesce(c.code, p.community_code) AS community_code, p.starts_on, p.ends_on, p.status,
       p.commitments, p.commitments_total, p.commitments_fulfilled, p.activity_count,
       p.participant_total, p.last_activity_on, p.rating, p.review_count, p.terminated_at,
       p.termination_reason, p.version, p.signed_at, p.updated_at,
       u.path AS unit_path, c.path AS community_path
FROM rm_pairings p
LEFT JOIN nodes u ON u.id = p.unit_id
LEFT JOIN nodes c ON c.id = p.node_id
"""

READ_PAIRING = _SELECT + "WHERE p.root_id = $1 AND p.id = $2"

# The pairings of a subtree: its communities' pairings, and those of its units.
LIST_PAIRINGS = (
    _SELECT
    + """
WHERE p.root_id = $1
  AND (p.node_id IN (SELECT id FROM nodes WHERE root_id = $1 AND path >= $2 AND path < $3)
       OR p.unit_id IN (SELECT id FROM nodes WHERE root_id = $1 AND path >= $2 AND path < $3))
  AND ($4::text IS NULL OR p.status = $4)
  AND ($5::timestamptz IS NULL OR (p.signed_at, p.id) > ($5, $6::uuid))
ORDER BY p.signed_at, p.id
LIMIT $7
"""
)


def _visible(scope: Scope, r: asyncpg.Record) -> bool:
    return any(
        p is not None and scope.contains_path(p) for p in (r["unit_path"], r["community_path"])
    )


def _view(r: asyncpg.Record, today: date) -> PairingView:
    stored = msgspec.json.decode(r["commitments"], type=list[_StoredCommitment])
    commitments = [
        CommitmentView(
            index=i,
            title=c.title,
            due_on=c.due_on,
            fulfilled=c.fulfilled_at is not None,
            fulfilled_at=c.fulfilled_at,
            evidence=c.evidence,
            overdue=c.fulfilled_at is None and c.due_on < today,
        )
        for i, c in enumerate(stored)
    ]
    return PairingView(
        id=r["id"],
        unit_code=r["unit_code"],
        community_code=r["community_code"],
        starts_on=r["starts_on"],
        ends_on=r["ends_on"],
        status=r["status"],
        in_force=r["status"] == ACTIVE and r["starts_on"] <= today <= r["ends_on"],
        commitments=commitments,
        commitments_total=r["commitments_total"],
        commitments_fulfilled=r["commitments_fulfilled"],
        activity_count=r["activity_count"],
        participant_total=r["participant_total"],
        last_activity_on=r["last_activity_on"],
        rating=r["rating"],
        review_count=r["review_count"],
        terminated_at=r["terminated_at"],
        termination_reason=r["termination_reason"],
        version=r["version"],
        signed_at=r["signed_at"],
        updated_at=r["updated_at"],
    )


class PairingController(Controller):
    path = "/v1/pairings"
    tags = ["pairings"]

    @post(
        "/",
        status_code=201,
        summary="Sign a pairing (PairingSigned)",
        responses=documented(201, commands.PairingChanged, "The signed pairing"),
        description="Roles: operator, admin — the unit and the community both inside your "
        "scope. 409 when the unit already has an active pairing with the community whose "
        "term overlaps; 422 when the term does not end after it starts.",
        guards=[needs(WRITERS, "signing a pairing")],
    )
    async def sign(self, data: JSONBody[PairingSign], command: Command) -> Response[bytes]:
        return await command.run(commands.sign, data)

    @post(
        "/{pairing_id:uuid}/commitments/{index:int}/fulfil",
        status_code=200,
        summary="Fulfil a commitment (CommitmentFulfilled); index is 0-based, in signing order",
        responses=documented(200, commands.PairingChanged, "The pairing's new version"),
        description="Roles: operator, admin, or the pairing's unit (role unit). A commitment "
        "is fulfilled once: again → 409 with current_state 'fulfilled'.",
        guards=[needs(ASSIGNEES, "fulfilling a commitment")],
    )
    async def fulfil(
        self,
        pairing_id: FromPath[UUID],
        index: FromPath[int],
        data: JSONBody[CommitmentFulfil],
        command: Command,
    ) -> Response[bytes]:
        return await command.run(commands.fulfil, pairing_id, index, data)

    @post(
        "/{pairing_id:uuid}/activities",
        status_code=200,
        summary="Record a joint activity (PairingActivityHeld)",
        responses=documented(200, commands.PairingChanged, "The pairing's new version"),
        description="Roles: operator, admin, or the pairing's unit (role unit).",
        guards=[needs(ASSIGNEES, "recording an activity")],
    )
    async def hold_activity(
        self, pairing_id: FromPath[UUID], data: JSONBody[ActivityHold], command: Command
    ) -> Response[bytes]:
        return await command.run(commands.hold_activity, pairing_id, data)

    @post(
        "/{pairing_id:uuid}/review",
        status_code=200,
        summary="Review a pairing (PairingReviewed; an extension to the API spine)",
        responses=documented(200, commands.PairingChanged, "The pairing's new version"),
        description="Roles: operator, admin — the unit and the community inside your scope. "
        f"rating: {', '.join(RATINGS)}.",
        guards=[needs(WRITERS, "reviewing a pairing")],
    )
    async def review(
        self, pairing_id: FromPath[UUID], data: JSONBody[PairingReview], command: Command
    ) -> Response[bytes]:
        return await command.run(commands.review, pairing_id, data)

    @post(
        "/{pairing_id:uuid}/terminate",
        status_code=200,
        summary="Terminate a pairing early (PairingTerminated)",
        responses=documented(200, commands.PairingChanged, "The pairing's new version"),
        description="Roles: operator, admin — the unit and the community inside your scope.",
        guards=[needs(WRITERS, "terminating a pairing")],
    )
    async def terminate(
        self, pairing_id: FromPath[UUID], data: JSONBody[PairingTerminate], command: Command
    ) -> Response[bytes]:
        return await command.run(commands.terminate, pairing_id, data)

    @get(
        "/{pairing_id:uuid}",
        summary="Read a pairing (ETag: its version)",
        response_headers=ETAG,
        guards=[needs(READERS, "reading pairings")],
    )
    async def read(
        self,
        pairing_id: FromPath[UUID],
        ctx: Ctx,
        principal: Caller,
        min_position: MinPosition = None,
    ) -> Response[PairingView]:
        async with read_scope(
            ctx, principal, min_position=min_position, projections=PROJECTIONS
        ) as (conn, scope):
            row = await conn.fetchrow(READ_PAIRING, scope.root_id, pairing_id)
            if row is None:
                raise await missing(conn, scope.root_id, pairing_id, Pairing)
            if not _visible(scope, row):
                raise not_found(f"pairing {pairing_id}")
        view = _view(row, business_date(ctx.clock()))
        return Response(content=view, headers={"ETag": f'"{view.version}"'})

    @get(
        "/",
        summary="List the pairings of a subtree (its communities' and its units')",
        guards=[needs(READERS, "reading pairings")],
    )
    async def list_pairings(
        self,
        ctx: Ctx,
        principal: Caller,
        node: SubtreeCode = None,
        status: Annotated[
            Literal["active", "terminated"] | None, QueryParameter(required=False)
        ] = None,
        limit: Limit = 100,
        cursor: Cursor = None,
        min_position: MinPosition = None,
    ) -> Page[PairingView]:
        after = decode_time_id_cursor(cursor)
        async with read_scope(
            ctx, principal, min_position=min_position, projections=PROJECTIONS
        ) as (conn, scope):
            path = await subtree_path(conn, scope, node)
            rows = await conn.fetch(
                LIST_PAIRINGS,
                scope.root_id,
                *subtree_bounds(path),
                status,
                after[0] if after else None,
                after[1] if after else None,
                limit + 1,
            )
        today = business_date(ctx.clock())
        items = [_view(r, today) for r in rows]
        return page_of(items, limit, lambda v: [v.signed_at.isoformat(), str(v.id)])
