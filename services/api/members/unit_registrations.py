"""/v1/units/{code}/registrations — a unit's party organisation reporting to a community
(双报到; an extension to the API spine).

A unit principal reports its own unit to a community of its root tenant, or an
operator/admin records a unit reporting to a community of its subtree. Once per unit and
community (409 again). Reads — every role: the registrations whose unit or community lies
in the caller's subtree.
"""

from __future__ import annotations

from litestar import Controller, Response, get, post
from litestar.params import FromPath, JSONBody

from infra import directory
from services.api.deps import Caller, Command, Ctx, MinPosition, read_scope
from services.api.guards import needs
from services.api.members.queries import LIST_UNIT_REGISTRATIONS, PROJECTIONS, registration_view
from services.api.members.schemas import UnitRegistrationView
from services.api.paging import Cursor, Limit, Page, decode_time_id_cursor, page_of
from services.api.responses import documented
from services.commands import members as commands
from services.commands.members import UnitRegister
from services.problems import not_found
from services.roles import ASSIGNEES, READERS


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
        guards=[needs(ASSIGNEES, "registering a unit at a community")],
    )
    async def register(
        self, unit_code: FromPath[str], data: JSONBody[UnitRegister], command: Command
    ) -> Response[bytes]:
        return await command.run(commands.register_unit, unit_code, data)

    @get(
        "/{unit_code:str}/registrations",
        summary="The communities a unit has reported to (those you may see)",
        guards=[needs(READERS, "reading unit registrations")],
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
                *scope.bounds,
                after[0] if after else None,
                after[1] if after else None,
                limit + 1,
            )
            if not rows and not scope.contains_path(unit.path):
                # a unit outside the scope with nothing visible answers as an unknown code
                raise not_found(f"unit {unit_code}")
        items = [registration_view(r) for r in rows]
        return page_of(items, limit, lambda v: [v.registered_at.isoformat(), str(v.id)])
