"""/v1/members — in-service party members reporting to their home community (双报到).

Roles: register, record service, adjust points, transfer, deregister — operator or admin
whose scope holds the member's (current) community; erase — admin; reads — every role, for
members whose current community lies in the caller's subtree, and for a unit principal the
members whose home unit it is. Name, mobile and ID-card number are masked (``张*``,
``138****1234``, ``330106********1234``) unless the caller is an admin whose scope holds the
member's community (a unit's admin sees its members masked); once erased they
read ``[erased]``. Personal data is handled only through ``services.personal_data_view``:
stored sealed (per-person AES-GCM key, ``person_keys``), opened in memory per read; every
clear-text read by an admin is recorded in ``pii_reveals`` before it is answered (reason:
the ``X-Reveal-Reason`` header), see docs/privacy.md.

A transfer's destination lies in the caller's scope like every node a command names (else
404, as for an unknown code): a member moves between streets by a principal whose scope holds
both, so no street learns who is registered in another, nor moves people into it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.params import Body, FromPath, JSONBody, QueryParameter

from infra.paths import subtree_bounds
from services.api.code_filters import SubtreeCode, subtree_path
from services.api.deps import Caller, Command, Ctx, MinPosition, read_scope
from services.api.guards import needs
from services.api.members.queries import (
    LIST_MEMBERS,
    PROJECTIONS,
    READ_MEMBER,
    RECORDED_HERE,
    member_view,
    visible,
)
from services.api.members.schemas import MemberView
from services.api.paging import Cursor, Limit, Page, decode_time_id_cursor, page_of
from services.api.responses import ETAG, documented
from services.commands import members as commands
from services.commands.members import (
    MemberDeregister,
    MemberErase,
    MemberRegister,
    MemberTransfer,
    PointsAdjust,
    ServiceRecord,
)
from services.personal_data_view import Reveal, record_reveals
from services.problems import not_caught_up, not_found
from services.roles import ADMINS, READERS, WRITERS

CHANGED = documented(200, commands.MemberChanged, "The member's new version")


class MemberController(Controller):
    path = "/v1/members"
    tags = ["members"]

    @post(
        "/",
        status_code=201,
        summary="Register a member at their residential community (MemberRegistered)",
        responses=documented(
            201, commands.MemberChanged, "The registered member (never personal data)"
        ),
        description="Roles: operator, admin — the community inside your scope; the home "
        "unit anywhere in the root tenant. 409 when the same person (ID number, else mobile) "
        "is already registered there.",
        guards=[needs(WRITERS, "registering a member")],
    )
    async def register(self, data: JSONBody[MemberRegister], command: Command) -> Response[bytes]:
        return await command.run(commands.register, data)

    @post(
        "/{member_id:uuid}/services",
        status_code=200,
        summary="Record service hours (ServiceRecorded)",
        responses=CHANGED,
        description="Roles: operator, admin of the member's current community.",
        guards=[needs(WRITERS, "recording service")],
    )
    async def record_service(
        self, member_id: FromPath[UUID], data: JSONBody[ServiceRecord], command: Command
    ) -> Response[bytes]:
        return await command.run(commands.record_service, member_id, data)

    @post(
        "/{member_id:uuid}/points",
        status_code=200,
        summary="Award (delta > 0) or deduct (delta < 0) points (积分)",
        responses=CHANGED,
        description="Roles: operator, admin of the member's current community. delta 0 → 422; "
        "the balance never goes below zero.",
        guards=[needs(WRITERS, "adjusting points")],
    )
    async def adjust_points(
        self, member_id: FromPath[UUID], data: JSONBody[PointsAdjust], command: Command
    ) -> Response[bytes]:
        return await command.run(commands.adjust_points, member_id, data)

    @post(
        "/{member_id:uuid}/transfer",
        status_code=200,
        summary="Transfer a member to another community (MemberTransferred)",
        responses=CHANGED,
        description="Roles: operator, admin of the member's current community. The "
        "destination may be any community of the root tenant. Events so far stay on the old "
        "community's chain (so does MemberTransferred); later ones join the new one's.",
        guards=[needs(WRITERS, "transferring a member")],
    )
    async def transfer(
        self, member_id: FromPath[UUID], data: JSONBody[MemberTransfer], command: Command
    ) -> Response[bytes]:
        return await command.run(commands.transfer, member_id, data)

    @post(
        "/{member_id:uuid}/deregister",
        status_code=200,
        summary="Deregister a member (MemberDeregistered)",
        responses=CHANGED,
        description="Roles: operator, admin of the member's current community.",
        guards=[needs(WRITERS, "deregistering a member")],
    )
    async def deregister(
        self, member_id: FromPath[UUID], data: JSONBody[MemberDeregister], command: Command
    ) -> Response[bytes]:
        return await command.run(commands.deregister, member_id, data)

    @post(
        "/{member_id:uuid}/erase",
        status_code=200,
        summary="Erase a member's personal data (MemberErased)",
        responses=CHANGED,
        description='Role: admin. The body is optional ({"reason": ...}). Afterwards name, '
        "phone and ID number read as [erased].",
        guards=[needs(ADMINS, "erasing a member's personal data")],
    )
    async def erase(
        self,
        member_id: FromPath[UUID],
        command: Command,
        data: Annotated[MemberErase | None, Body()] = None,
    ) -> Response[bytes]:
        return await command.run(commands.erase, member_id, data or MemberErase())

    @get(
        "/{member_id:uuid}",
        summary="Read a member (ETag: its version)",
        response_headers=ETAG,
        guards=[needs(READERS, "reading members")],
    )
    async def read(
        self,
        member_id: FromPath[UUID],
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
        min_position: MinPosition = None,
    ) -> Response[MemberView]:
        async with read_scope(
            ctx, principal, min_position=min_position, projections=PROJECTIONS
        ) as (conn, scope):
            row = await conn.fetchrow(READ_MEMBER, scope.root_id, member_id)
            if row is None or not visible(scope, row):
                recorded = row is None and await conn.fetchval(
                    RECORDED_HERE, scope.root_id, member_id, *scope.bounds
                )
                if recorded:
                    raise not_caught_up("member")
                raise not_found(f"member {member_id}")
        reveals: list[Reveal] = []
        view = member_view(row, principal, ctx, scope, reveals)
        await record_reveals(
            ctx, principal, reveals, endpoint="GET /v1/members/{id}", request=request
        )
        return Response(content=view, headers={"ETag": f'"{view.version}"'})

    @get(
        "/",
        summary="List the members of a subtree (current community, or home unit)",
        guards=[needs(READERS, "reading members")],
    )
    async def list_members(
        self,
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
        node: SubtreeCode = None,
        status: Annotated[
            Literal["active", "deregistered", "erased"] | None, QueryParameter(required=False)
        ] = None,
        limit: Limit = 100,
        cursor: Cursor = None,
        min_position: MinPosition = None,
    ) -> Page[MemberView]:
        after = decode_time_id_cursor(cursor)
        async with read_scope(
            ctx, principal, min_position=min_position, projections=PROJECTIONS
        ) as (conn, scope):
            path = await subtree_path(conn, scope, node)
            rows = await conn.fetch(
                LIST_MEMBERS,
                scope.root_id,
                *subtree_bounds(path),
                status,
                after[0] if after else None,
                after[1] if after else None,
                limit + 1,
            )
        reveals: list[Reveal] = []
        items = [member_view(r, principal, ctx, scope, reveals) for r in rows[:limit]]
        items += [member_view(r, principal, ctx, scope, []) for r in rows[limit:]]
        await record_reveals(ctx, principal, reveals, endpoint="GET /v1/members", request=request)
        return page_of(items, limit, lambda v: [v.registered_at.isoformat(), str(v.id)])
