"""The three lists as files: their columns (Chinese headers), how a row reads, and the list
endpoint's own query each one exports (so a file shows what the list shows the caller)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import asyncpg
import msgspec

from infra.database import Scope
from infra.directory import DirectoryNode
from services.api import issues as issue_api
from services.api import members as member_api
from services.api import pairings as pairing_api
from services.api.exports.stream import Export, Rows
from services.api.queries import Where
from services.auth import Principal
from services.context import AppContext
from services.personal_data_view import Reveal, may_reveal, person_view
from services.spreadsheets import Column

#: "no limit" for the list statements that take one
ALL_ROWS = 2**62

STATUS_LABELS = {
    "reported": "已受理",
    "assigned": "已派单",
    "accepted": "已签收",
    "resolved": "已办结",
    "closed": "已销号",
}
SOURCE_LABELS = {
    "grid": "网格上报",
    "hotline": "12345热线",
    "survey": "入户走访",
    "inspection": "巡查发现",
    "resident": "居民反映",
}
SATISFACTION_LABELS = {
    "satisfied": "满意",
    "basically_satisfied": "基本满意",
    "dissatisfied": "不满意",
}
PAIRING_STATUS_LABELS = {"active": "履行中", "terminated": "已终止"}
MEMBER_STATUS_LABELS = {"active": "在册", "deregistered": "已注销", "erased": "已删除"}
RATING_LABELS = {"excellent": "优秀", "good": "良好", "fair": "一般", "poor": "较差"}

_C = Column


def _numbered(id_header: str, *columns: Column) -> tuple[Column, ...]:
    """A ledger's columns: the serial number (序号) and the record's id first."""
    return (_C("序号", 7, "number", centered=True), _C(id_header, 38), *columns)


ISSUE_COLUMNS = _numbered(
    "工单编号",
    _C("外部编号", 16),
    _C("标题", 30),
    _C("类别", 10, centered=True),
    _C("来源", 10, centered=True),
    _C("上报节点", 16),
    _C("状态", 8, centered=True),
    _C("超期", 6, centered=True, alarm=True),
    _C("上报时间", 17, "datetime", centered=True),
    _C("承办单位", 16),
    _C("派单时间", 17, "datetime", centered=True),
    _C("办理时限", 17, "datetime", centered=True),
    _C("签收时间", 17, "datetime", centered=True),
    _C("办结时间", 17, "datetime", centered=True),
    _C("销号时间", 17, "datetime", centered=True),
    _C("按时办结", 8, centered=True),
    _C("满意度", 9, centered=True),
    _C("退单次数", 8, "number", centered=True),
    _C("重办次数", 8, "number", centered=True),
    _C("办理结果", 30),
    _C("最新进展", 30),
)


def _yes_no(value: bool | None) -> str:
    return "" if value is None else ("是" if value else "否")


def issue_row(serial: int, r: asyncpg.Record) -> tuple[Any, ...]:
    return (
        serial,
        str(r["id"]),
        r["external_id"],
        r["title"],
        r["category"],
        SOURCE_LABELS.get(r["source"], r["source"]),
        r["current_node_code"],
        STATUS_LABELS.get(r["status"], r["status"]),
        "是" if r["overdue"] else "",
        r["reported_at"],
        r["current_assignee_code"] if r["assignee_id"] is not None else None,
        r["assigned_at"],
        r["due_at"],
        r["accepted_at"],
        r["resolved_at"],
        r["closed_at"],
        _yes_no(r["closed_on_time"]),
        SATISFACTION_LABELS.get(r["evaluation_satisfaction"] or "", ""),
        r["return_count"],
        r["reopen_count"],
        r["result"],
        r["last_note"],
    )


PAIRING_COLUMNS = _numbered(
    "结对编号",
    _C("共建单位", 16),
    _C("结对社区", 16),
    _C("开始日期", 12, "date", centered=True),
    _C("结束日期", 12, "date", centered=True),
    _C("状态", 8, centered=True),
    _C("承诺事项", 40),
    _C("承诺数", 8, "number", centered=True),
    _C("已履行", 8, "number", centered=True),
    _C("活动次数", 8, "number", centered=True),
    _C("参与人次", 8, "number", centered=True),
    _C("最近活动", 12, "date", centered=True),
    _C("评议", 8, centered=True),
    _C("签订时间", 17, "datetime", centered=True),
    _C("终止原因", 24),
)


def _commitments(raw: Any) -> str:
    items = msgspec.json.decode(raw) if isinstance(raw, str | bytes) else raw
    lines = []
    for n, c in enumerate(items or [], 1):
        done = "（已履行）" if c.get("fulfilled_at") else ""
        lines.append(f"{n}. {c.get('title', '')}（{c.get('due_on', '')}）{done}")
    return "\n".join(lines)


def pairing_row(serial: int, r: asyncpg.Record) -> tuple[Any, ...]:
    return (
        serial,
        str(r["id"]),
        r["unit_code"],
        r["community_code"],
        r["starts_on"],
        r["ends_on"],
        PAIRING_STATUS_LABELS.get(r["status"], r["status"]),
        _commitments(r["commitments"]),
        r["commitments_total"],
        r["commitments_fulfilled"],
        r["activity_count"],
        r["participant_total"],
        r["last_activity_on"],
        RATING_LABELS.get(r["rating"] or "", r["rating"] or ""),
        r["signed_at"],
        r["termination_reason"],
    )


MEMBER_COLUMNS = _numbered(
    "党员编号",
    _C("姓名", 10),
    _C("手机号码", 14),
    _C("身份证号", 21),
    _C("报到社区", 16),
    _C("所在单位", 16),
    _C("网格", 16),
    _C("状态", 8, centered=True),
    _C("服务时长", 9, "number", centered=True),
    _C("服务次数", 8, "number", centered=True),
    _C("积分", 8, "number", centered=True),
    _C("报到时间", 17, "datetime", centered=True),
)


def _simple(row: Callable[[int, asyncpg.Record], Sequence[Any]]) -> Rows:
    def rows(
        ctx: AppContext,
        principal: Principal,
        scope: Scope,
        first: int,
        chunk: Sequence[asyncpg.Record],
        reveals: list[Reveal],
    ) -> list[Sequence[Any]]:
        return [row(n, r) for n, r in enumerate(chunk, first)]

    return rows


def member_rows(
    ctx: AppContext,
    principal: Principal,
    scope: Scope,
    first: int,
    chunk: Sequence[asyncpg.Record],
    reveals: list[Reveal],
) -> list[Sequence[Any]]:
    out: list[Sequence[Any]] = []
    for n, r in enumerate(chunk, first):
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
        out.append(
            (
                n,
                str(r["id"]),
                person.name,
                person.phone,
                person.id_number,
                r["community_code"],
                r["home_unit_code"],
                r["grid_code"],
                MEMBER_STATUS_LABELS.get(r["status"], r["status"]),
                float(r["service_hours"]),
                r["service_count"],
                r["points"],
                r["registered_at"],
            )
        )
    return out


# -- the list endpoints' queries --------------------------------------------------------------


async def issues_query(
    ctx: AppContext, conn: asyncpg.Connection, scope: Scope, target: DirectoryNode
) -> tuple[str, Sequence[Any]]:
    where = Where(ctx.clock())
    # the list endpoint's own subtree rule (a unit principal: the issues naming its unit)
    await issue_api.subtree(conn, scope, where, target.code)
    sql = f"{issue_api.SELECT_ISSUES} WHERE {where.sql()} ORDER BY i.reported_at, i.id"
    return sql, where.args


async def pairings_query(
    ctx: AppContext, conn: asyncpg.Connection, scope: Scope, target: DirectoryNode
) -> tuple[str, Sequence[Any]]:
    args = (scope.root_id, *target.bounds, None, None, None, ALL_ROWS)
    return pairing_api.LIST_PAIRINGS, args


async def members_query(
    ctx: AppContext, conn: asyncpg.Connection, scope: Scope, target: DirectoryNode
) -> tuple[str, Sequence[Any]]:
    args = (scope.root_id, *target.bounds, None, None, None, ALL_ROWS)
    return member_api.LIST_MEMBERS, args


# the ASCII stem is also the list's path: /v1/issues/export
ISSUES = Export(
    "工单台账", "issues", ISSUE_COLUMNS, issues_query, _simple(issue_row), issue_api.PROJECTIONS
)
PAIRINGS = Export(
    "结对共建台账",
    "pairings",
    PAIRING_COLUMNS,
    pairings_query,
    _simple(pairing_row),
    pairing_api.PROJECTIONS,
)
MEMBERS = Export(
    "双报到党员名册", "members", MEMBER_COLUMNS, members_query, member_rows, member_api.PROJECTIONS
)
