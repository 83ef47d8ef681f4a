"""Projection "members": registered in-service party members (双报到) and the units that
reported to communities (rm_members, rm_unit_registrations).

A member's row follows the member: ``node_id`` is the current community (a transfer moves
it; the events stay chained where they happened). The personal-data field of
MemberRegistered is copied verbatim, never parsed here: only
``services/personal_data_view.py`` interprets it, so encrypting it changes one module.
MemberErased clears it. Updates are guarded by ``version < $v`` (re-applying is a no-op);
an update of a member the table does not hold raises (``projections.rows``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import asyncpg
import msgspec

from domain.member import Member, UnitRegistration
from infra.event_store import StoredEvent
from projections.rows import RowGuard
from projections.subscriptions import PerEvent, on

INSERT_MEMBER = """
INSERT INTO rm_members (root_id, id, node_id, community_code, home_unit_id, home_unit_code,
                        grid_id, grid_code, status, person, version, registered_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'active', $9::jsonb, $10, $11, $11)
ON CONFLICT (root_id, id) DO NOTHING
"""

SERVICE = """
UPDATE rm_members
SET service_hours = service_hours + $3, service_count = service_count + 1,
    version = $4, updated_at = $5
WHERE root_id = $1 AND id = $2 AND version < $4
"""

POINTS = """
UPDATE rm_members SET points = points + $3, version = $4, updated_at = $5
WHERE root_id = $1 AND id = $2 AND version < $4
"""

TRANSFER = """
UPDATE rm_members
SET former_community_ids = array_append(former_community_ids, node_id),
    node_id = $3, community_code = $4, grid_id = $5, grid_code = $6,
    transferred_at = $8, version = $7, updated_at = $8
WHERE root_id = $1 AND id = $2 AND version < $7
"""

DEREGISTER = """
UPDATE rm_members
SET status = 'deregistered', deregistered_at = $4, version = $3, updated_at = $4
WHERE root_id = $1 AND id = $2 AND version < $3
"""

ERASE = """
UPDATE rm_members
SET status = 'erased', person = NULL, erased_at = $4, version = $3, updated_at = $4
WHERE root_id = $1 AND id = $2 AND version < $3
"""

INSERT_UNIT_REGISTRATION = """
INSERT INTO rm_unit_registrations (root_id, id, node_id, unit_id, unit_code, community_code,
                                   registered_at, version)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (root_id, id) DO NOTHING
"""


def _raw_json(raw: msgspec.Raw) -> str | None:
    text = bytes(raw).decode()
    return None if text.strip() == "null" else text


MEMBERS = RowGuard("rm_members")


class MembersProjection(PerEvent):
    name = "members"
    tables: tuple[str, ...] = ("rm_members", "rm_unit_registrations")

    @on(Member.Registered)
    async def registered(self, conn: asyncpg.Connection, e: StoredEvent, r: Any) -> None:
        await conn.execute(
            INSERT_MEMBER,
            e.root_id,
            e.stream_id,
            r.community_id,
            r.community_code,
            r.home_unit_id,
            r.home_unit_code,
            r.grid_id,
            r.grid_code,
            _raw_json(r.person),  # opaque here: the sealed value (see infra/pii_crypto.py)
            e.version,
            e.occurred_at,
        )

    @on(Member.ServiceRecorded)
    async def service(self, conn: asyncpg.Connection, e: StoredEvent, s: Any) -> None:
        hours = Decimal(str(s.hours))
        await MEMBERS.update(conn, e, SERVICE, hours, e.version, e.occurred_at)

    @on(Member.PointsAwarded)
    async def awarded(self, conn: asyncpg.Connection, e: StoredEvent, p: Any) -> None:
        await MEMBERS.update(conn, e, POINTS, p.points, e.version, e.occurred_at)

    @on(Member.PointsDeducted)
    async def deducted(self, conn: asyncpg.Connection, e: StoredEvent, p: Any) -> None:
        await MEMBERS.update(conn, e, POINTS, -p.points, e.version, e.occurred_at)

    @on(Member.Transferred)
    async def transferred(self, conn: asyncpg.Connection, e: StoredEvent, t: Any) -> None:
        await MEMBERS.update(
            conn,
            e,
            TRANSFER,
            t.to_community_id,
            t.to_community_code,
            t.to_grid_id,
            t.to_grid_code,
            e.version,
            e.occurred_at,
        )

    @on(Member.Deregistered)
    async def deregistered(self, conn: asyncpg.Connection, e: StoredEvent, _: Any) -> None:
        await MEMBERS.update(conn, e, DEREGISTER, e.version, e.occurred_at)

    @on(Member.Erased)
    async def erased(self, conn: asyncpg.Connection, e: StoredEvent, _: Any) -> None:
        await MEMBERS.update(conn, e, ERASE, e.version, e.occurred_at)

    @on(UnitRegistration.Registered)
    async def unit_registered(self, conn: asyncpg.Connection, e: StoredEvent, u: Any) -> None:
        await conn.execute(
            INSERT_UNIT_REGISTRATION,
            e.root_id,
            e.stream_id,
            u.community_id,
            u.unit_id,
            u.unit_code,
            u.community_code,
            e.occurred_at,
            e.version,
        )
