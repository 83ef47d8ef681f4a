"""/v1/members — in-service party members reporting to their home community (双报到), and
/v1/units/{code}/registrations — a unit's party organisation reporting to a community.

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

Unit registration (an extension to the API spine): a unit principal reports its own unit
to a community of its root tenant, or an operator/admin records a unit reporting to a
community of its subtree. Once per unit and community (409 again).

A transfer's destination lies in the caller's scope like every node a command names (else
404, as for an unknown code): a member moves between streets by a principal whose scope holds
both, so no street learns who is registered in another, nor moves people into it.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import asyncpg
import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import Body, FromPath, JSONBody, QueryParameter

from domain.member import MAX_HOURS_PER_ENTRY, MAX_POINTS_PER_ENTRY
from domain.personal_data import MAX_NAME
from infra import directory
from infra.database import Scope
from services.api.deps import (
    Caller,
    Ctx,
    MinPosition,
    read_scope,
    require,
    run_and_respond,
)
from services.api.paging import Cursor, Limit, Page, decode_time_id_cursor, page_of
from services.api.responses import ETAG, documented
from services.auth import Principal
from services.commands import members as commands
from services.context import AppContext
from services.fields import MemberStatus, NodeCode, Text, Title
from services.personal_data_view import Reveal, may_reveal, person_view, record_reveals
from services.problems import not_caught_up, not_found
from services.roles import ASSIGNEES, READERS, WRITERS, Role

PROJECTIONS = ("members",)


class UnitRegister(msgspec.Struct, forbid_unknown_fields=True):
    community_code: Annotated[
        NodeCode, msgspec.Meta(description="the community (or village) the unit reports to")
    ]


class MemberRegister(msgspec.Struct, forbid_unknown_fields=True):
    community_code: Annotated[
        NodeCode, msgspec.Meta(description="the member's residential community, in your scope")
    ]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME)]
    phone: Annotated[
        str,
        msgspec.Meta(
            min_length=1, max_length=20, description="mainland mobile: 11 digits starting with 1"
        ),
    ]
    home_unit_code: Annotated[
        NodeCode, msgspec.Meta(description="the unit the member works at (same root tenant)")
    ]
    id_number: (
        Annotated[
            str,
            msgspec.Meta(
                max_length=20, description="18-character resident ID number (GB 11643 check digit)"
            ),
        ]
        | None
    ) = None
    grid_code: Annotated[NodeCode, msgspec.Meta(description="a grid of the community")] | None = (
        None
    )


class ServiceRecord(msgspec.Struct, forbid_unknown_fields=True):
    served_on: Annotated[date, msgspec.Meta(description="not in the future (China date)")]
    hours: Annotated[
        float, msgspec.Meta(description=f"more than 0, at most {MAX_HOURS_PER_ENTRY} per entry")
    ]
    kind: Annotated[Title, msgspec.Meta(description="e.g. 志愿服务, 文明劝导, 扫楼走访")]


class PointsAdjust(msgspec.Struct, forbid_unknown_fields=True):
    delta: Annotated[
        int,
        msgspec.Meta(
            description=f"positive awards (PointsAwarded), negative deducts (PointsDeducted); "
            f"not 0; |delta| ≤ {MAX_POINTS_PER_ENTRY}"
        ),
    ]
    reason: Text


class MemberTransfer(msgspec.Struct, forbid_unknown_fields=True):
    to_community_code: Annotated[
        NodeCode, msgspec.Meta(description="another community of the same root tenant")
    ]
    grid_code: (
        Annotated[NodeCode, msgspec.Meta(description="a grid of the new community")] | None
    ) = None


class MemberDeregister(msgspec.Struct, forbid_unknown_fields=True):
    reason: Text


class MemberErase(msgspec.Struct, forbid_unknown_fields=True):
    reason: Text | None = None


class MemberView(msgspec.Struct):
    id: UUID
    community_code: str
    home_unit_code: str
    grid_code: str | None
    status: MemberStatus
    name: str
    phone: str
    id_number: str | None
    #: name, phone and ID number are masked (the caller is not an admin)
    personal_data_masked: bool
    service_hours: float
    service_count: int
    points: int
    #: communities the member was registered at before (oldest first)
    former_community_codes: list[str]
    registered_at: datetime
    transferred_at: datetime | None
    deregistered_at: datetime | None
    erased_at: datetime | None
    updated_at: datetime
    version: int


class UnitRegistrationView(msgspec.Struct):
    id: UUID
    unit_code: str
    community_code: str
    registered_at: datetime
    version: int


# Codes are reissued on reorganisation: show the nodes' current codes.
_SELECT = """
SELECT m.id, coalesce(c.code, m.community_code) AS community_code,
       coalesce(u.code, m.home_unit_code) AS home_unit_code,
       coalesce(g.code, m.grid_code) AS grid_code, m.status, m.person, m.service_hours,
       m.service_count, m.points,
       ARRAY(SELECT f.code FROM unnest(m.former_community_ids) WITH ORDINALITY AS x(id, i)
             JOIN nodes f ON f.id = x.id ORDER BY x.i) AS former_community_codes,
       m.registered_at, m.transferred_at, m.deregistered_at, m.erased_at, m.updated_at,
       m.version, c.path AS community_path, u.path AS home_unit_path,
       m.node_id, k.key_id, k.wrapped_key
FROM rm_members m
LEFT JOIN nodes c ON c.id = m.node_id
LEFT JOIN nodes u ON u.id = m.home_unit_id
LEFT JOIN nodes g ON g.id = m.grid_id
LEFT JOIN person_keys k ON k.root_id = m.root_id AND k.member_id = m.id
"""

READ_MEMBER = _SELECT + "WHERE m.root_id = $1 AND m.id = $2"

# The members of a subtree: those whose current community lies in it, and those whose home
# unit does (row-level security shows the latter to unit principals only).
LIST_MEMBERS = (
    _SELECT
    + """
WHERE m.root_id = $1
  AND (m.node_id IN (SELECT id FROM nodes WHERE root_id = $1 AND path >= $2 AND path < $3)
       OR m.home_unit_id IN (SELECT id FROM nodes WHERE root_id = $1 AND path >= $2 AND path < $3))
  AND ($4::text IS NULL OR m.status = $4)
  AND ($5::timestamptz IS NULL OR (m.registered_at, m.id) > ($5, $6::uuid))
ORDER BY m.registered_at, m.id
LIMIT $7
"""
)

LIST_UNIT_REGISTRATIONS = """
SELECT r.id, coalesce(u.code, r.unit_code) AS unit_code,
       coalesce(c.code, r.community_code) AS community_code, r.registered_at, r.version
FROM rm_unit_registrations r
LEFT JOIN nodes u ON u.id = r.unit_id
LEFT JOIN nodes c ON c.id = r.node_id
WHERE r.root_id = $1 AND r.unit_id = $2
  AND (c.path >= $3 AND c.path < $4 OR u.path >= $3 AND u.path < $4)
  AND ($5::timestamptz IS NULL OR (r.registered_at, r.id) > ($5, $6::uuid))
ORDER BY r.registered_at, r.id
LIMIT $7
"""

# Recorded, with its current community in the subtree, but not yet in the read model.
RECORDED_HERE = """
SELECT EXISTS (SELECT 1 FROM member_identities mi JOIN nodes n ON n.id = mi.community_id
               WHERE mi.root_id = $1 AND mi.member_id = $2 AND n.path >= $3 AND n.path < $4)
"""


def _visible(scope: Scope, r: asyncpg.Record) -> bool:
    return any(
        p is not None and scope.contains_path(p) for p in (r["community_path"], r["home_unit_path"])
    )


def _view(
    r: asyncpg.Record, principal: Principal, ctx: AppContext, scope: Scope, reveals: list[Reveal]
) -> MemberView:
    person = person_view(
        r["person"],
        reveal=may_reveal(principal, scope, r["community_path"]),
        settings=ctx.settings,
        root_id=scope.root_id,
        member_id=r["id"],
        key_id=r["key_id"],
        wrapped_key=r["wrapped_key"],
    )
    if person.revealed:
        reveals.append(Reveal(member_id=r["id"], node_id=r["node_id"]))
    return MemberView(
        id=r["id"],
        community_code=r["community_code"],
        home_unit_code=r["home_unit_code"],
        grid_code=r["grid_code"],
        status=r["status"],
        name=person.name,
        phone=person.phone,
        id_number=person.id_number,
        personal_data_masked=person.masked,
        service_hours=float(r["service_hours"]),
        service_count=r["service_count"],
        points=r["points"],
        former_community_codes=list(r["former_community_codes"]),
        registered_at=r["registered_at"],
        transferred_at=r["transferred_at"],
        deregistered_at=r["deregistered_at"],
        erased_at=r["erased_at"],
        updated_at=r["updated_at"],
        version=r["version"],
    )


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
    )
    async def register(
        self,
        data: JSONBody[MemberRegister],
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
    ) -> Response[bytes]:
        require(principal, WRITERS, "registering a member")
        return await run_and_respond(
            request,
            ctx,
            principal,
            lambda s: commands.register(
                s,
                community_code=data.community_code,
                name=data.name,
                phone=data.phone,
                id_number=data.id_number,
                home_unit_code=data.home_unit_code,
                grid_code=data.grid_code,
            ),
        )

    @post(
        "/{member_id:uuid}/services",
        status_code=200,
        summary="Record service hours (ServiceRecorded)",
        responses=documented(200, commands.MemberChanged, "The member's new version"),
        description="Roles: operator, admin of the member's current community.",
    )
    async def record_service(
        self,
        member_id: FromPath[UUID],
        data: JSONBody[ServiceRecord],
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
    ) -> Response[bytes]:
        require(principal, WRITERS, "recording service")
        return await run_and_respond(
            request,
            ctx,
            principal,
            lambda s: commands.record_service(
                s, member_id=member_id, served_on=data.served_on, hours=data.hours, kind=data.kind
            ),
        )

    @post(
        "/{member_id:uuid}/points",
        status_code=200,
        summary="Award (delta > 0) or deduct (delta < 0) points (积分)",
        responses=documented(200, commands.MemberChanged, "The member's new version"),
        description="Roles: operator, admin of the member's current community. delta 0 → 422; "
        "the balance never goes below zero.",
    )
    async def adjust_points(
        self,
        member_id: FromPath[UUID],
        data: JSONBody[PointsAdjust],
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
    ) -> Response[bytes]:
        require(principal, WRITERS, "adjusting points")
        return await run_and_respond(
            request,
            ctx,
            principal,
            lambda s: commands.adjust_points(
                s, member_id=member_id, delta=data.delta, reason=data.reason
            ),
        )

    @post(
        "/{member_id:uuid}/transfer",
        status_code=200,
        summary="Transfer a member to another community (MemberTransferred)",
        responses=documented(200, commands.MemberChanged, "The member's new version"),
        description="Roles: operator, admin of the member's current community. The "
        "destination may be any community of the root tenant. Events so far stay on the old "
        "community's chain (so does MemberTransferred); later ones join the new one's.",
    )
    async def transfer(
        self,
        member_id: FromPath[UUID],
        data: JSONBody[MemberTransfer],
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
    ) -> Response[bytes]:
        require(principal, WRITERS, "transferring a member")
        return await run_and_respond(
            request,
            ctx,
            principal,
            lambda s: commands.transfer(
                s,
                member_id=member_id,
                to_community_code=data.to_community_code,
                grid_code=data.grid_code,
            ),
        )

    @post(
        "/{member_id:uuid}/deregister",
        status_code=200,
        summary="Deregister a member (MemberDeregistered)",
        responses=documented(200, commands.MemberChanged, "The member's new version"),
        description="Roles: operator, admin of the member's current community.",
    )
    async def deregister(
        self,
        member_id: FromPath[UUID],
        data: JSONBody[MemberDeregister],
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
    ) -> Response[bytes]:
        require(principal, WRITERS, "deregistering a member")
        return await run_and_respond(
            request,
            ctx,
            principal,
            lambda s: commands.deregister(s, member_id=member_id, reason=data.reason),
        )

    @post(
        "/{member_id:uuid}/erase",
        status_code=200,
        summary="Erase a member's personal data (MemberErased)",
        responses=documented(200, commands.MemberChanged, "The member's new version"),
        description='Role: admin. The body is optional ({"reason": ...}). Afterwards name, '
        "phone and ID number read as [erased].",
    )
    async def erase(
        self,
        member_id: FromPath[UUID],
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
        data: Annotated[MemberErase | None, Body()] = None,
    ) -> Response[bytes]:
        require(principal, frozenset({Role.ADMIN}), "erasing a member's personal data")
        reason = data.reason if data is not None else None
        return await run_and_respond(
            request, ctx, principal, lambda s: commands.erase(s, member_id=member_id, reason=reason)
        )

    @get("/{member_id:uuid}", summary="Read a member (ETag: its version)", response_headers=ETAG)
    async def read(
        self,
        member_id: FromPath[UUID],
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
        min_position: MinPosition = None,
    ) -> Response[MemberView]:
        require(principal, READERS, "reading members")
        async with read_scope(
            ctx, principal, min_position=min_position, projections=PROJECTIONS
        ) as (conn, scope):
            row = await conn.fetchrow(READ_MEMBER, scope.root_id, member_id)
            if row is None or not _visible(scope, row):
                recorded = row is None and await conn.fetchval(
                    RECORDED_HERE, scope.root_id, member_id, scope.path, scope.path[:-1] + "0"
                )
                if recorded:
                    raise not_caught_up("member")
                raise not_found(f"member {member_id}")
        reveals: list[Reveal] = []
        view = _view(row, principal, ctx, scope, reveals)
        await record_reveals(
            ctx, principal, reveals, endpoint="GET /v1/members/{id}", request=request
        )
        return Response(content=view, headers={"ETag": f'"{view.version}"'})

    @get("/", summary="List the members of a subtree (current community, or home unit)")
    async def list_members(
        self,
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
        node: Annotated[
            str | None,
            QueryParameter(
                required=False,
                max_length=40,
                description="a node code of your subtree (default: your scope node)",
            ),
        ] = None,
        status: Annotated[
            Literal["active", "deregistered", "erased"] | None, QueryParameter(required=False)
        ] = None,
        limit: Limit = 100,
        cursor: Cursor = None,
        min_position: MinPosition = None,
    ) -> Page[MemberView]:
        require(principal, READERS, "reading members")
        after = decode_time_id_cursor(cursor)
        async with read_scope(
            ctx, principal, min_position=min_position, projections=PROJECTIONS
        ) as (conn, scope):
            path = scope.path
            if node is not None:
                found = await directory.find_by_code(conn, node)
                if found is None or not scope.contains_path(found.path):
                    raise not_found(f"node {node}")
                path = found.path
            rows = await conn.fetch(
                LIST_MEMBERS,
                scope.root_id,
                path,
                path[:-1] + "0",
                status,
                after[0] if after else None,
                after[1] if after else None,
                limit + 1,
            )
        reveals: list[Reveal] = []
        items = [_view(r, principal, ctx, scope, reveals) for r in rows[:limit]]
        items += [_view(r, principal, ctx, scope, []) for r in rows[limit:]]
        await record_reveals(ctx, principal, reveals, endpoint="GET /v1/members", request=request)
        return page_of(items, limit, lambda v: [v.registered_at.isoformat(), str(v.id)])


class UnitRegistrationController(Controller):
    path = "/v1/units"
    tags = ["members"]

    @post(
        "/{unit_code:str}/registrations",
        status_code=201,
        summary="A unit reports to a community (UnitRegistered; an extension to the API spine)",
        responses=documented(201, commands.UnitRegistrationChanged, "The registration"),
        description="Roles: unit (scoped to that unit: any community of the root tenant), "
        "operator or admin (the community inside your scope). Once per unit and community.",
        operation_id="registerUnit",
    )
    async def register(
        self,
        unit_code: FromPath[str],
        data: JSONBody[UnitRegister],
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
    ) -> Response[bytes]:
        require(principal, ASSIGNEES, "registering a unit at a community")
        return await run_and_respond(
            request,
            ctx,
            principal,
            lambda s: commands.register_unit(
                s, unit_code=unit_code, community_code=data.community_code
            ),
        )

    @get(
        "/{unit_code:str}/registrations",
        summary="The communities a unit has reported to (those you may see)",
    )
    async def list_registrations(
        self,
        unit_code: FromPath[str],
        ctx: Ctx,
        principal: Caller,
        min_position: MinPosition = None,
        limit: Limit = 100,
        cursor: Cursor = None,
    ) -> Page[UnitRegistrationView]:
        require(principal, READERS, "reading unit registrations")
        after = decode_time_id_cursor(cursor)
        async with read_scope(
            ctx, principal, min_position=min_position, projections=PROJECTIONS
        ) as (conn, scope):
            unit = await directory.find_by_code(conn, unit_code)
            if unit is None or unit.kind != "unit":
                raise not_found(f"unit {unit_code}")
            rows = await conn.fetch(
                LIST_UNIT_REGISTRATIONS,
                scope.root_id,
                unit.id,
                scope.path,
                scope.path[:-1] + "0",
                after[0] if after else None,
                after[1] if after else None,
                limit + 1,
            )
            if not rows and not scope.contains_path(unit.path):
                # a unit outside the scope with nothing visible answers as an unknown code
                raise not_found(f"unit {unit_code}")
        items = [
            UnitRegistrationView(
                id=r["id"],
                unit_code=r["unit_code"],
                community_code=r["community_code"],
                registered_at=r["registered_at"],
                version=r["version"],
            )
            for r in rows
        ]
        return page_of(items, limit, lambda v: [v.registered_at.isoformat(), str(v.id)])
