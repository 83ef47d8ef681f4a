"""Projection "members": registered in-service party members (双报到) and the units that
reported to communities (rm_members, rm_unit_registrations).

A member's row follows the member: ``node_id`` is the current community (a transfer moves
it; the events stay chained where they happened). The personal-data field of
MemberRegistered is copied verbatim, never parsed here: only
``services/personal_data_view.py`` interprets it, so encrypting it changes one module.
MemberErased clears it. Updates are guarded by ``version < $v`` (re-applying is a no-op).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from uuid import UUID

import asyncpg
import msgspec

from infra.event_store import StoredEvent

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


class _Registered(msgspec.Struct):
    #: opaque here: the sealed value the event stores (ciphertext, see infra/pii_crypto.py)
    person: msgspec.Raw
    home_unit_id: UUID
    home_unit_code: str
    community_id: UUID
    community_code: str
    grid_id: UUID | None
    grid_code: str | None


class _Service(msgspec.Struct):
    hours: float


class _Points(msgspec.Struct):
    points: int


class _Transferred(msgspec.Struct):
    to_community_id: UUID
    to_community_code: str
    to_grid_id: UUID | None
    to_grid_code: str | None


class _UnitRegistered(msgspec.Struct):
    unit_id: UUID
    unit_code: str
    community_id: UUID
    community_code: str


def _raw_json(raw: msgspec.Raw) -> str | None:
    text = bytes(raw).decode()
    return None if text.strip() == "null" else text


class MembersProjection:
    name = "members"
    handles = frozenset(
        {
            "UnitRegistered",
            "MemberRegistered",
            "ServiceRecorded",
            "PointsAwarded",
            "PointsDeducted",
            "MemberTransferred",
            "MemberDeregistered",
            "MemberErased",
        }
    )
    tables: tuple[str, ...] = ("rm_members", "rm_unit_registrations")

    async def apply(self, conn: asyncpg.Connection, events: Sequence[StoredEvent]) -> None:
        for e in events:
            key = (e.root_id, e.stream_id)
            if e.type == "MemberRegistered":
                r = msgspec.json.decode(e.data, type=_Registered)
                await conn.execute(
                    INSERT_MEMBER,
                    *key,
                    r.community_id,
                    r.community_code,
                    r.home_unit_id,
                    r.home_unit_code,
                    r.grid_id,
                    r.grid_code,
                    _raw_json(r.person),
                    e.version,
                    e.occurred_at,
                )
            elif e.type == "ServiceRecorded":
                s = msgspec.json.decode(e.data, type=_Service)
                await conn.execute(SERVICE, *key, Decimal(str(s.hours)), e.version, e.occurred_at)
            elif e.type in ("PointsAwarded", "PointsDeducted"):
                p = msgspec.json.decode(e.data, type=_Points)
                delta = p.points if e.type == "PointsAwarded" else -p.points
                await conn.execute(POINTS, *key, delta, e.version, e.occurred_at)
            elif e.type == "MemberTransferred":
                t = msgspec.json.decode(e.data, type=_Transferred)
                await conn.execute(
                    TRANSFER,
                    *key,
                    t.to_community_id,
                    t.to_community_code,
                    t.to_grid_id,
                    t.to_grid_code,
                    e.version,
                    e.occurred_at,
                )
            elif e.type == "MemberDeregistered":
                await conn.execute(DEREGISTER, *key, e.version, e.occurred_at)
            elif e.type == "MemberErased":
                await conn.execute(ERASE, *key, e.version, e.occurred_at)
            elif e.type == "UnitRegistered":
                u = msgspec.json.decode(e.data, type=_UnitRegistered)
                await conn.execute(
                    INSERT_UNIT_REGISTRATION,
                    *key,
                    u.community_id,
                    u.unit_id,
                    u.unit_code,
                    u.community_code,
                    e.occurred_at,
                    e.version,
                )
