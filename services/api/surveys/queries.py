"""The SQL of the survey reads (``rm_surveys``) and rows → views, the note masked or revealed.

The coverage query is the read model's own (``projections.surveys.COVERAGE``).
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

from infra.database import Scope
from services.api.queries import Where
from services.api.surveys.schemas import CoverageItem, SurveyView
from services.auth import Principal
from services.context import AppContext
from services.personal_data_view import Reveal, may_reveal, note_view

SELECT = """
SELECT s.*, coalesce(n.code, s.node_code) AS current_node_code, n.path AS node_path,
       k.key_id, k.wrapped_key
FROM rm_surveys s
LEFT JOIN nodes n ON n.id = s.node_id
LEFT JOIN person_keys k ON k.root_id = s.root_id AND k.member_id = s.id
"""
VISIBLE = "s.node_id IN (SELECT civic_scope_nodes())"
READ = f"{SELECT} WHERE s.root_id = $1 AND s.id = $2 AND {VISIBLE}"


def list_surveys(
    scope: Scope, path: str, flag: str | None, after: tuple[datetime, UUID] | None, limit: int
) -> tuple[str, list[object]]:
    """The visits recorded in the subtree ``path``, newest first (``limit + 1`` rows)."""
    where = Where()
    where.add(f"s.root_id = {where.arg(scope.root_id, 'uuid')}")
    where.add(VISIBLE)
    where.recorded_in_subtree("s", path)
    if flag is not None:
        where.add(f"{where.arg(flag, 'text')} = ANY(s.flags)")
    if after is not None:
        where.before(("s.visited_at", "s.id"), after, ("timestamptz", "uuid"))
    return where.page(SELECT, "s.visited_at DESC, s.id DESC", limit), where.args


def survey_view(
    r: asyncpg.Record, principal: Principal, ctx: AppContext, scope: Scope, reveals: list[Reveal]
) -> SurveyView:
    """The visit as the caller may see it; a note shown in clear is added to ``reveals``."""
    shown = note_view(
        r["note"],
        # an admin whose scope holds the survey's grid or community (never a unit's scope)
        reveal=may_reveal(principal, scope, r["node_path"]),
        settings=ctx.settings,
        root_id=scope.root_id,
        survey_id=r["id"],
        key_id=r["key_id"],
        wrapped_key=r["wrapped_key"],
        erased=r["status"] == "erased",
    )
    if shown.revealed:
        reveals.append(Reveal(member_id=r["id"], node_id=r["node_id"]))
    return SurveyView(
        id=r["id"],
        node_code=r["current_node_code"],
        building=r["building"],
        room=r["room"],
        visited_on=r["visited_on"],
        residents=r["residents"],
        flags=list(r["flags"]),
        note=shown.note,
        note_masked=shown.masked,
        issue_id=r["issue_id"],
        status=r["status"],
        visited_at=r["visited_at"],
        version=r["version"],
    )


def coverage_item(r: asyncpg.Record) -> CoverageItem:
    return CoverageItem(
        code=r["code"],
        name=r["name"],
        kind=r["kind"],
        households=r["households"],
        visits=r["visits"],
        flagged=r["flagged"],
        group_rentals=r["group_rentals"],
        issues_raised=r["issues_raised"],
        last_visited_on=r["last_visited_on"],
    )
