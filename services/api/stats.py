"""/v1/nodes/{code}/stats — roll-ups up the hierarchy (projection "stats").

Every figure counts the node's whole subtree; ``children`` lists each direct child with the
same groups. ``as_of`` answers with the figures as they stood at the end of that China-local
day (the tree as it stood then, too); ``/stats/daily`` gives one such row per day.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

import msgspec
from litestar import Controller, Response, get
from litestar.params import FromPath, QueryParameter

from domain.refs import business_date
from infra import directory
from projections import stats as rollups
from projections import unit_stats
from services.api.deps import (
    Caller,
    Ctx,
    MinPosition,
    read_scope,
)
from services.api.guards import needs
from services.api.periods import FromDay, ToDay, day_range
from services.api.responses import documented
from services.problems import not_found
from services.roles import READERS

#: the projections a stats read waits for with ``min_position``.
PROJECTIONS = (rollups.NAME, unit_stats.NAME)
#: longest daily series one request may ask for (days, both ends included).
MAX_DAYS = 366
#: the series length when ``from`` is omitted.
DEFAULT_DAYS = 30


class PairingFigures(msgspec.Struct):
    active: int
    commitments: int
    fulfilled: int
    fulfil_rate: float | None


class MemberFigures(msgspec.Struct):
    registered: int
    service_hours: float
    points: int


class IssueFigures(msgspec.Struct):
    reported: int
    open: int
    closed: int
    overdue: int
    on_time_rate: float | None
    satisfaction_rate: float | None
    resolution_rate: float | None


class RectificationFigures(msgspec.Struct):
    total: int
    verified: int
    overdue: int
    completion_rate: float | None


class ServiceOrderFigures(msgspec.Struct):
    requested: int
    completed: int
    evaluated: int
    #: mean 评单 rating (1-5) over evaluated orders; null when none
    average_rating: float | None


class SurveyFigures(msgspec.Struct):
    #: household visits recorded (a household visited twice counts twice; distinct households
    #: per grid: GET /v1/surveys/coverage)
    households_visited: int
    flagged: int
    group_rentals: int
    issues_raised: int


class ChildStats(msgspec.Struct):
    code: str
    name: str
    pairings: PairingFigures
    members: MemberFigures
    issues: IssueFigures
    rectifications: RectificationFigures
    service_orders: ServiceOrderFigures
    surveys: SurveyFigures
    #: the child's kind; a unit's entry carries its own record (see ``_child``)
    kind: str | None = None


class NodeStats(msgspec.Struct):
    code: str
    name: str
    as_of: str | None
    pairings: PairingFigures
    members: MemberFigures
    issues: IssueFigures
    rectifications: RectificationFigures
    service_orders: ServiceOrderFigures
    surveys: SurveyFigures
    children: list[ChildStats]


class DayStats(msgspec.Struct):
    date: str
    pairings: PairingFigures
    members: MemberFigures
    issues: IssueFigures
    rectifications: RectificationFigures
    service_orders: ServiceOrderFigures
    surveys: SurveyFigures


class DailyStats(msgspec.Struct):
    code: str
    from_: str = msgspec.field(name="from")
    to: str = ""
    items: list[DayStats] = msgspec.field(default_factory=list)


def _groups(
    figures: rollups.Figures,
) -> tuple[
    PairingFigures,
    MemberFigures,
    IssueFigures,
    RectificationFigures,
    ServiceOrderFigures,
    SurveyFigures,
]:
    g = figures.groups()
    return (
        PairingFigures(**g["pairings"]),
        MemberFigures(**g["members"]),
        IssueFigures(**g["issues"]),
        RectificationFigures(**g["rectifications"]),
        ServiceOrderFigures(**g["service_orders"]),
        SurveyFigures(**g["surveys"]),
    )


def _child(
    c: rollups.NodeFigures, record: tuple[str, unit_stats.UnitFigures | None] | None
) -> ChildStats:
    """A child's entry. A unit owns no subtree work (pairings, issues and findings count
    under communities), so its entry shows its own record (考核: the work that names it,
    ``UnitFigures.node_groups``) instead of zeros."""
    kind, unit = record if record is not None else (None, None)
    if unit is None:
        return ChildStats(c.code or "", c.name or "", *_groups(c.figures), kind=kind)
    g = unit.node_groups()
    return ChildStats(
        c.code or "",
        c.name or "",
        PairingFigures(**g["pairings"]),
        MemberFigures(**g["members"]),
        IssueFigures(**g["issues"]),
        RectificationFigures(**g["rectifications"]),
        *_groups(c.figures)[4:],  # 五单 and 扫楼 count under communities: the node's own
        kind=kind,
    )


AsOf = Annotated[
    date | None,
    QueryParameter(
        required=False,
        description="Figures as they stood at the end of this China-local day (YYYY-MM-DD); "
        "default: now.",
    ),
]


class StatsController(Controller):
    path = "/v1/nodes"
    tags = ["stats"]

    @get(
        "/{code:str}/stats",
        summary="A node's indicators over its whole subtree, and each child's",
        responses=documented(200, NodeStats, "The node's indicators"),
        description=(
            "Pairings, members, issues and rectifications counted over the node's subtree "
            "(formulas in the README's Roll-ups section; rates are null when their "
            "denominator is 0). `as_of=YYYY-MM-DD`: at the end of that China-local day, with "
            "the children as the tree stood then. Roles: every reader of the scope."
        ),
        operation_id="readStats",
        guards=[needs(READERS, "reading statistics")],
    )
    async def stats(
        self,
        code: FromPath[str],
        ctx: Ctx,
        principal: Caller,
        as_of: AsOf = None,
        min_position: MinPosition = None,
    ) -> Response[bytes]:
        async with read_scope(
            ctx, principal, min_position=min_position, projections=PROJECTIONS
        ) as (conn, scope):
            found = await directory.find_by_code(conn, code)
            if found is None or not found.path.startswith(scope.path):
                raise not_found(f"node {code}")
            own, children = await rollups.node_figures(conn, found.root_id, found.id, as_of)
            records = await unit_stats.children_records(
                conn, found.root_id, [c.node_id for c in children], as_of
            )
        body = NodeStats(
            found.code,
            found.name,
            as_of.isoformat() if as_of else None,
            *_groups(own.figures),
            children=[_child(c, records.get(c.node_id)) for c in children],
        )
        return Response(content=msgspec.json.encode(body), media_type="application/json")

    @get(
        "/{code:str}/stats/daily",
        summary="A node's indicators at the end of each day of a range (trend charts)",
        responses=documented(200, DailyStats, "One entry per day of the range"),
        description=(
            f"One item per China-local day from `from` to `to` (both included, at most "
            f"{MAX_DAYS} days; default: the {DEFAULT_DAYS} days up to today), each with the "
            "figures of `/stats` as they stood at the end of that day. Roles: every reader "
            "of the scope."
        ),
        operation_id="readDailyStats",
        guards=[needs(READERS, "reading statistics")],
    )
    async def daily(
        self,
        code: FromPath[str],
        ctx: Ctx,
        principal: Caller,
        from_: FromDay = None,
        to: ToDay = None,
        min_position: MinPosition = None,
    ) -> Response[bytes]:
        first, last = day_range(
            from_,
            to,
            today=business_date(ctx.clock()),
            default_days=DEFAULT_DAYS,
            max_days=MAX_DAYS,
        )
        async with read_scope(
            ctx, principal, min_position=min_position, projections=PROJECTIONS
        ) as (conn, scope):
            found = await directory.find_by_code(conn, code)
            if found is None or not found.path.startswith(scope.path):
                raise not_found(f"node {code}")
            series = await rollups.daily_figures(conn, found.root_id, found.id, first, last)
        body = DailyStats(
            found.code,
            first.isoformat(),
            last.isoformat(),
            [DayStats(day.isoformat(), *_groups(f)) for day, f in series],
        )
        return Response(content=msgspec.json.encode(body), media_type="application/json")
