"""Each county unit's record (考核): /v1/units/{code}/stats, its daily series, and the ranking
of a subtree's units (/v1/nodes/{code}/units and its XLSX/CSV export).

The figures (projection "unit_stats", ``projections/unit_stats.py``) count the work that
names the unit wherever it lives: its pairings, the issues assigned to it, the findings it is
responsible for, and its in-service members (home unit) wherever they serve. ``as_of``
answers as at the end of that China-local day. A ranking reads one row per unit of the
subtree (at most ``MAX_UNITS``), sorts by the chosen figure (units without a denominator —
a null rate — last, whichever the order; ties by code) and pages with a keyset cursor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Response, get
from litestar.params import FromPath, QueryParameter
from litestar.response import Stream

from domain.refs import business_date
from infra import directory
from infra.directory import DirectoryNode
from projections import unit_stats
from services import spreadsheets
from services.api.deps import (
    Caller,
    Ctx,
    MinPosition,
    read_scope,
)

# the ledger's OpenAPI operation: a file in one of two media types, by ``format``
from services.api.findings import SpreadsheetOperation as FileOperation
from services.api.guards import needs
from services.api.paging import Cursor, Limit, decode_cursor, encode_cursor, invalid_cursor
from services.api.periods import FromDay, ToDay, day_range
from services.api.stats import AsOf, MemberFigures, PairingFigures, RectificationFigures
from services.problems import invalid_value, not_found
from services.roles import READERS

PROJECTIONS = (unit_stats.NAME,)
MAX_DAYS = 366
DEFAULT_DAYS = 30
#: most units one ranking reads (a province has a few thousand county units).
MAX_UNITS = 20_000

SortKey = Literal[
    "fulfil_rate", "on_time_rate", "satisfaction_rate", "completion_rate", "service_hours"
]
Order = Literal["asc", "desc"]

UNITS_OF_SUBTREE = """
SELECT id, code, name FROM nodes
WHERE root_id = $1 AND kind = 'unit' AND path >= $2 AND path < $3
ORDER BY code
LIMIT $4
"""


class UnitIssueFigures(msgspec.Struct):
    #: assignments received (派单; a reassignment after a return counts again)
    assigned: int
    #: issues it holds now, not closed
    open: int
    closed: int
    overdue: int
    #: returns it made (退单)
    returned: int
    on_time_rate: float | None
    satisfaction_rate: float | None
    resolution_rate: float | None


class UnitStats(msgspec.Struct):
    code: str
    name: str
    as_of: str | None
    pairings: PairingFigures
    issues: UnitIssueFigures
    rectifications: RectificationFigures
    members: MemberFigures


class RankedUnit(msgspec.Struct):
    code: str
    name: str
    pairings: PairingFigures
    issues: UnitIssueFigures
    rectifications: RectificationFigures
    members: MemberFigures


class UnitRanking(msgspec.Struct):
    items: list[RankedUnit]
    next_cursor: str | None


class UnitDay(msgspec.Struct):
    date: str
    pairings: PairingFigures
    issues: UnitIssueFigures
    rectifications: RectificationFigures
    members: MemberFigures


class UnitDaily(msgspec.Struct):
    code: str
    from_: str = msgspec.field(name="from")
    to: str = ""
    items: list[UnitDay] = msgspec.field(default_factory=list)


def _groups(
    f: unit_stats.UnitFigures,
) -> tuple[PairingFigures, UnitIssueFigures, RectificationFigures, MemberFigures]:
    g = f.groups()
    return (
        PairingFigures(**g["pairings"]),
        UnitIssueFigures(**g["issues"]),
        RectificationFigures(**g["rectifications"]),
        MemberFigures(**g["members"]),
    )


def sort_value(figures: unit_stats.UnitFigures, sort: str) -> float | None:
    g = figures.groups()
    if sort == "service_hours":
        value: float | None = g["members"]["service_hours"]
    elif sort == "fulfil_rate":
        value = g["pairings"]["fulfil_rate"]
    elif sort == "completion_rate":
        value = g["rectifications"]["completion_rate"]
    else:
        value = g["issues"][sort]
    return value


def rank_key(value: float | None, code: str, order: str) -> tuple[bool, float, str]:
    """Nulls last in both orders, then the value, then the code."""
    if value is None:
        return (True, 0.0, code)
    return (False, -value if order == "desc" else value, code)


@dataclass(frozen=True)
class Ranked:
    code: str
    name: str
    figures: unit_stats.UnitFigures
    key: tuple[bool, float, str]


async def ranking(
    conn: Any, node: DirectoryNode, sort: str, order: str, as_of: date | None
) -> list[Ranked]:
    """Every unit of the node's subtree with its figures, in ranking order."""
    units = await conn.fetch(UNITS_OF_SUBTREE, node.root_id, *node.bounds, MAX_UNITS + 1)
    if len(units) > MAX_UNITS:
        raise invalid_value(
            "code", f"more than {MAX_UNITS} units under this node; rank a smaller one"
        )
    figures = await unit_stats.many_unit_figures(
        conn, node.root_id, [u["id"] for u in units], as_of
    )
    out = []
    for u in units:
        f = figures.get(u["id"], unit_stats.UnitFigures())
        out.append(Ranked(u["code"], u["name"], f, rank_key(sort_value(f, sort), u["code"], order)))
    out.sort(key=lambda r: r.key)
    return out


def _after(cursor: str | None) -> tuple[bool, float, str] | None:
    key = decode_cursor(cursor)
    if key is None:
        return None
    if (
        len(key) != 3
        or not isinstance(key[0], bool)
        or not isinstance(key[1], int | float)
        or isinstance(key[1], bool)
        or not isinstance(key[2], str)
    ):
        raise invalid_cursor()
    return (key[0], float(key[1]), key[2])


async def _unit_in_scope(conn: Any, scope: Any, code: str) -> DirectoryNode:
    found = await directory.find_by_code(conn, code)
    if found is None or found.kind != "unit" or not found.path.startswith(scope.path):
        raise not_found(f"unit {code}")
    return found


async def _node_in_scope(conn: Any, scope: Any, code: str) -> DirectoryNode:
    found = await directory.find_by_code(conn, code)
    if found is None or not found.path.startswith(scope.path):
        raise not_found(f"node {code}")
    return found


Sort = Annotated[
    SortKey,
    QueryParameter(required=False, description="the figure to rank by (default fulfil_rate)"),
]
OrderParam = Annotated[
    Order, QueryParameter(required=False, description="desc (default): best first")
]


class UnitStatsController(Controller):
    path = "/v1"
    tags = ["units"]

    @get(
        "/units/{code:str}/stats",
        summary="A unit's record (考核): pairings, assigned issues, rectifications, members",
        description=(
            "The work that names the unit wherever it lives: pairings it signed, issues "
            "assigned to it, findings it is responsible for, and its in-service members "
            "(home unit) wherever they serve. Rates are null when their denominator is 0. "
            "`as_of=YYYY-MM-DD`: at the end of that China-local day. Roles: every reader "
            "whose scope contains the unit (a unit principal: its own)."
        ),
        guards=[needs(READERS, "reading a unit's record")],
    )
    async def unit(
        self,
        code: FromPath[str],
        ctx: Ctx,
        principal: Caller,
        as_of: AsOf = None,
        min_position: MinPosition = None,
    ) -> UnitStats:
        async with read_scope(
            ctx, principal, min_position=min_position, projections=PROJECTIONS
        ) as (conn, scope):
            found = await _unit_in_scope(conn, scope, code)
            figures = await unit_stats.unit_figures(conn, found.root_id, found.id, as_of)
        body = UnitStats(
            found.code, found.name, as_of.isoformat() if as_of else None, *_groups(figures)
        )
        return body

    @get(
        "/units/{code:str}/stats/daily",
        summary="A unit's record at the end of each day of a range (trend charts)",
        description=(
            f"One item per China-local day from `from` to `to` (both included, at most "
            f"{MAX_DAYS} days; default: the {DEFAULT_DAYS} days up to today)."
        ),
        guards=[needs(READERS, "reading a unit's record")],
    )
    async def unit_daily(
        self,
        code: FromPath[str],
        ctx: Ctx,
        principal: Caller,
        from_: FromDay = None,
        to: ToDay = None,
        min_position: MinPosition = None,
    ) -> UnitDaily:
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
            found = await _unit_in_scope(conn, scope, code)
            series = await unit_stats.daily_unit_figures(conn, found.root_id, found.id, first, last)
        body = UnitDaily(
            found.code,
            first.isoformat(),
            last.isoformat(),
            [UnitDay(day.isoformat(), *_groups(f)) for day, f in series],
        )
        return body

    @get(
        "/nodes/{code:str}/units",
        summary="The units of a subtree ranked by a figure of their record (考核排名)",
        description=(
            "Every unit node under the node, with the groups of /v1/units/{code}/stats, "
            "sorted by `sort` (units whose rate has no denominator last), ties by code. "
            "Roles: every reader of the scope."
        ),
        guards=[needs(READERS, "ranking units")],
    )
    async def ranked(
        self,
        code: FromPath[str],
        ctx: Ctx,
        principal: Caller,
        sort: Sort = "fulfil_rate",
        order: OrderParam = "desc",
        as_of: AsOf = None,
        limit: Limit = 100,
        cursor: Cursor = None,
        min_position: MinPosition = None,
    ) -> UnitRanking:
        after = _after(cursor)
        async with read_scope(
            ctx, principal, min_position=min_position, projections=PROJECTIONS
        ) as (conn, scope):
            node = await _node_in_scope(conn, scope, code)
            ranked = await ranking(conn, node, sort, order, as_of)
        if after is not None:
            ranked = [r for r in ranked if r.key > after]
        page = ranked[:limit]
        more = len(ranked) > limit
        body = UnitRanking(
            [RankedUnit(r.code, r.name, *_groups(r.figures)) for r in page],
            encode_cursor(list(page[-1].key)) if more and page else None,
        )
        return body

    @get(
        "/nodes/{code:str}/units/export",
        operation_class=FileOperation,
        summary="Export the units' ranking (单位考核排名) as XLSX or CSV",
        description=(
            "The ranking of /v1/nodes/{code}/units, one row per unit with its rank, Chinese "
            "headers. XLSX: frozen header, A4 landscape; CSV: UTF-8 with BOM. Roles: every "
            "reader of the scope."
        ),
        response_description="the ranking file (XLSX or CSV), as an attachment",
        guards=[needs(READERS, "exporting the units' ranking")],
    )
    async def export_ranking(
        self,
        code: FromPath[str],
        ctx: Ctx,
        principal: Caller,
        fmt: Annotated[
            Literal["xlsx", "csv"], QueryParameter(name="format", required=False)
        ] = "xlsx",
        sort: Sort = "fulfil_rate",
        order: OrderParam = "desc",
        as_of: AsOf = None,
        min_position: MinPosition = None,
    ) -> Response[Any]:
        async with read_scope(
            ctx, principal, min_position=min_position, projections=PROJECTIONS
        ) as (conn, scope):
            node = await _node_in_scope(conn, scope, code)
            ranked = await ranking(conn, node, sort, order, as_of)
        today = as_of or business_date(ctx.clock())
        rows = [ranking_row(n, r) for n, r in enumerate(ranked, 1)]
        disposition = spreadsheets.content_disposition(
            f"unit-ranking-{node.code}-{today:%Y%m%d}.{fmt}",
            f"单位考核排名-{node.code}-{today:%Y%m%d}.{fmt}",
        )
        if fmt == "csv":
            return Response(
                content=spreadsheets.csv_chunk(rows, header=RANKING_HEADERS),
                media_type=spreadsheets.CSV_MEDIA_TYPE,
                headers={"Content-Disposition": disposition},
            )
        sheet = spreadsheets.XlsxSheet(
            sheet="单位考核排名",
            columns=RANKING_COLUMNS,
            title=f"{node.name}单位考核排名",
            info=f"统计范围：{node.name}（{node.code}）    排序：{SORT_LABELS[sort]}"
            f"{'从高到低' if order == 'desc' else '从低到高'}    截至：{today:%Y年%m月%d日}",
        )
        sheet.extend(rows)
        return Stream(
            sheet.stream(),
            media_type=spreadsheets.XLSX_MEDIA_TYPE,
            headers={"Content-Disposition": disposition},
        )


SORT_LABELS = {
    "fulfil_rate": "承诺履行率",
    "on_time_rate": "按时办结率",
    "satisfaction_rate": "满意率",
    "completion_rate": "整改完成率",
    "service_hours": "党员服务时长",
}

_C = spreadsheets.Column
RANKING_COLUMNS: tuple[spreadsheets.Column, ...] = (
    _C("排名", 6, "number", centered=True),
    _C("单位代码", 16),
    _C("单位名称", 24),
    _C("结对数", 8, "number", centered=True),
    _C("承诺数", 8, "number", centered=True),
    _C("已履行", 8, "number", centered=True),
    _C("承诺履行率", 10, "percent", centered=True),
    _C("派单数", 8, "number", centered=True),
    _C("在办", 8, "number", centered=True),
    _C("办结", 8, "number", centered=True),
    _C("超期", 8, "number", centered=True, alarm=True),
    _C("退单", 8, "number", centered=True),
    _C("按时办结率", 10, "percent", centered=True),
    _C("满意率", 10, "percent", centered=True),
    _C("整改任务", 8, "number", centered=True),
    _C("已销号", 8, "number", centered=True),
    _C("整改超期", 8, "number", centered=True, alarm=True),
    _C("整改完成率", 10, "percent", centered=True),
    _C("在职党员", 8, "number", centered=True),
    _C("服务时长", 10, "number", centered=True),
    _C("积分", 8, "number", centered=True),
)
RANKING_HEADERS = tuple(c.header for c in RANKING_COLUMNS)


def ranking_row(rank: int, r: Ranked) -> Sequence[Any]:
    g = r.figures.groups()
    p, i, f, m = g["pairings"], g["issues"], g["rectifications"], g["members"]
    return (
        rank,
        r.code,
        r.name,
        p["active"],
        p["commitments"],
        p["fulfilled"],
        p["fulfil_rate"],
        i["assigned"],
        i["open"],
        i["closed"],
        i["overdue"],
        i["returned"],
        i["on_time_rate"],
        i["satisfaction_rate"],
        f["total"],
        f["verified"],
        f["overdue"],
        f["completion_rate"],
        m["registered"],
        m["service_hours"],
        m["points"],
    )
