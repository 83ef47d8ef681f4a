"""The member read models' SQL (``rm_members``, ``rm_unit_registrations``) and row → view.

A member's personal data is opened here, per row, through ``services.personal_data_view``:
masked unless the caller may see it in clear, and every clear-text row is noted in
``reveals`` for the caller to record before it answers.
"""

from __future__ import annotations

import asyncpg

from infra.database import Scope
from infra.settings import Settings
from services.api.members.schemas import MemberView, UnitRegistrationView
from services.auth import Principal
from services.context import AppContext
from services.personal_data_view import PersonView, Reveal, may_reveal, person_view

PROJECTIONS = ("members",)

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


def visible(scope: Scope, r: asyncpg.Record) -> bool:
    """The member's current community or its home unit lies in the caller's subtree."""
    return any(
        p is not None and scope.contains_path(p) for p in (r["community_path"], r["home_unit_path"])
    )


def member_person(
    r: asyncpg.Record, principal: Principal, settings: Settings, scope: Scope, reveals: list[Reveal]
) -> PersonView:
    """The caller's view of a member row's personal data (a row of ``READ_MEMBER`` or
    ``LIST_MEMBERS``); a clear-text view is added to ``reveals``, for the caller to record."""
    person = person_view(
        r["person"],
        reveal=may_reveal(principal, scope, r["community_path"]),
        settings=settings,
        root_id=scope.root_id,
        member_id=r["id"],
        key_id=r["key_id"],
        wrapped_key=r["wrapped_key"],
    )
    if person.revealed:
        reveals.append(Reveal(member_id=r["id"], node_id=r["node_id"]))
    return person


def member_view(
    r: asyncpg.Record, principal: Principal, ctx: AppContext, scope: Scope, reveals: list[Reveal]
) -> MemberView:
    person = member_person(r, principal, ctx.settings, scope, reveals)
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


def registration_view(r: asyncpg.Record) -> UnitRegistrationView:
    return UnitRegistrationView(
        id=r["id"],
        unit_code=r["unit_code"],
        community_code=r["community_code"],
        registered_at=r["registered_at"],
        version=r["version"],
    )
