"""The finding reads: their SQL, the filters every read applies, and a row as a view."""

from __future__ import annotations

from datetime import date
from uuid import UUID

import asyncpg
import msgspec

from domain.finding import GREEN_DAYS, YELLOW_DAYS
from domain.finding import warning as warning_of
from infra.database import Scope
from services.api.code_filters import visible_node
from services.api.findings import ledger_format as ledger
from services.api.findings.schemas import FindingView
from services.api.queries import Where

PROJECTIONS = ("findings",)

SELECT_FINDINGS = """
SELECT f.id, n.code AS node_code, n.name AS node_name, f.source, f.round, f.description,
       f.category, coalesce(u.code, f.responsible_unit_code) AS unit_code, u.name AS unit_name,
       f.measures, f.due_on, f.status, f.rework, f.overdue_recorded_due_on, f.recorded_at,
       f.completed_at, f.completion_summary, f.verified_at, f.verification_comment,
       f.rejected_count, f.last_rejection_reason, f.reopened_count, f.last_reopen_reason,
       f.progress_count, f.last_progress_note, f.last_progress_evidence, f.last_progress_at,
       f.version
FROM rm_findings f
JOIN nodes n ON n.id = f.node_id
LEFT JOIN nodes u ON u.id = f.responsible_unit_id
"""

#: the order of the list and of the ledger (the list's cursor is ``(recorded_at, id)``).
AS_RECORDED = "f.recorded_at, f.id"


#: the warning bands in SQL, relative to today's China date ($today), as domain.finding.warning.
_OPEN = "f.status <> 'verified' AND f.due_on IS NOT NULL"
WARNING_SQL = {
    "red": f"({_OPEN} AND f.due_on < {{t}})",
    "yellow": f"({_OPEN} AND f.due_on >= {{t}} AND f.due_on <= {{t}} + {{y}})",
    "green": f"({_OPEN} AND f.due_on > {{t}} + {{y}} AND f.due_on <= {{t}} + {{g}})",
    "none": "(f.status = 'verified' OR f.due_on IS NULL OR f.due_on > {t} + {g})",
}

#: a responsible unit outside the subtree may filter the list when a finding the caller sees
#: names it; any other code answers as an unknown one (services/api/code_filters.py).
_NAMED_BY_A_FINDING = """
SELECT EXISTS (SELECT 1 FROM rm_findings f
               WHERE f.root_id = civic_scope_root() AND f.responsible_unit_id = $1
                 AND (f.node_id IN (SELECT civic_scope_nodes())
                      OR f.id IN (SELECT civic_party_streams())))
"""


def _subtree(where: Where, scope: Scope, path: str) -> None:
    """Findings recorded in the subtree of ``path`` — and, for a unit principal, those whose
    responsible unit lies there (what row-level security allows, checked again here)."""
    lo, hi = where.subtree(path)
    clause = f"(n.path >= {lo} AND n.path < {hi}"
    if scope.is_unit:
        clause += f" OR (u.path >= {lo} AND u.path < {hi})"
    where.add(clause + ")")


def filters(
    where: Where,
    scope: Scope,
    path: str,
    *,
    today: date,
    status: str | None = None,
    warning: str | None = None,
    unit_id: UUID | None = None,
) -> None:
    """What every finding read applies: the root, the subtree, and the filters given."""
    where.add(f"f.root_id = {where.arg(scope.root_id, 'uuid')}")
    _subtree(where, scope, path)
    where.equals("f.status", status, "text")
    if warning is not None:
        template = WARNING_SQL[warning]
        where.add(
            template.format(
                t=where.arg(today, "date"),
                y=where.arg(YELLOW_DAYS, "int") if "{y}" in template else "",
                g=where.arg(GREEN_DAYS, "int") if "{g}" in template else "",
            )
        )
    where.equals("f.responsible_unit_id", unit_id, "uuid")


async def responsible_unit_id(
    conn: asyncpg.Connection, scope: Scope, code: str | None
) -> UUID | None:
    """The ``responsible_unit`` filter's node (404 for one the caller may not see)."""
    if code is None:
        return None
    unit = await visible_node(
        conn, scope, code, f"responsible unit {code}", named_by=_NAMED_BY_A_FINDING
    )
    return unit.id


def finding_view(r: asyncpg.Record, today: date) -> FindingView:
    due_on: date | None = r["due_on"]
    status: str = r["status"]
    days = ledger.overdue_days(due_on, status, today)
    return FindingView(
        id=r["id"],
        node_code=r["node_code"],
        node_name=r["node_name"],
        source=r["source"],
        round=r["round"],
        description=r["description"],
        category=r["category"],
        category_label=ledger.CATEGORY_LABELS.get(r["category"], r["category"]),
        responsible_unit_code=r["unit_code"],
        responsible_unit_name=r["unit_name"],
        measures=msgspec.json.decode(r["measures"], type=list[str]),
        due_on=due_on,
        status=status,
        status_label=ledger.status_label(status, r["rework"]),
        warning=warning_of(due_on, today, status) if due_on is not None else "none",
        overdue=days > 0,
        overdue_days=days,
        overdue_recorded_for=r["overdue_recorded_due_on"],
        recorded_at=r["recorded_at"],
        completed_at=r["completed_at"],
        completion_summary=r["completion_summary"],
        verified_at=r["verified_at"],
        verification_comment=r["verification_comment"],
        rejected_count=r["rejected_count"],
        last_rejection_reason=r["last_rejection_reason"],
        reopened_count=r["reopened_count"],
        last_reopen_reason=r["last_reopen_reason"],
        progress_count=r["progress_count"],
        last_progress_note=r["last_progress_note"],
        last_progress_evidence=r["last_progress_evidence"],
        last_progress_at=r["last_progress_at"],
        version=r["version"],
    )
