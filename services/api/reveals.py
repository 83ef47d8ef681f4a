"""/v1/audit/reveals — the audit of clear-text reads of personal information (PIPL).

Every time an admin is shown a member's name, mobile or ID-card number unmasked, the read
records who (subject@scope), when, whose (member id, and the member's community), through
which endpoint and why (``X-Reveal-Reason``) in ``pii_reveals`` before it answers (see
``services/personal_data_view.record_reveals``). Masked reads record nothing. Inspectors and
admins read the records of their subtree here, oldest first, filtered by node (subtree),
member and time (``from`` inclusive, ``to`` exclusive). The records hold no personal data.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import msgspec
from litestar import Controller, get
from litestar.params import QueryParameter

from infra.paths import subtree_bounds
from services.api.code_filters import subtree_path
from services.api.deps import Caller, Ctx, read_scope
from services.api.guards import needs
from services.api.paging import Cursor, Limit, Page, decode_cursor, invalid_cursor, page_of
from services.roles import INSPECTORS

LIST_REVEALS = """
SELECT r.id, r.member_id, n.code AS node, r.revealed_at, r.actor, r.endpoint, r.reason,
       r.request_id
FROM pii_reveals r LEFT JOIN nodes n ON n.id = r.node_id
WHERE r.root_id = $1
  AND r.node_id IN (SELECT id FROM nodes WHERE root_id = $1 AND path >= $2 AND path < $3)
  AND ($4::uuid IS NULL OR r.member_id = $4)
  AND r.revealed_at >= coalesce($5::timestamptz, '-infinity'::timestamptz)
  AND r.revealed_at <  coalesce($6::timestamptz, 'infinity'::timestamptz)
  AND r.id > $7
ORDER BY r.id
LIMIT $8
"""


class RevealView(msgspec.Struct):
    id: int
    member_id: UUID
    #: the member's community when it was read (current code)
    node: str | None
    revealed_at: datetime
    #: subject@scope of the token that read it
    actor: str
    endpoint: str
    reason: str | None
    request_id: str | None


def _after(cursor: str | None) -> int:
    key = decode_cursor(cursor)
    if key is None:
        return 0
    if len(key) != 1 or not isinstance(key[0], int) or isinstance(key[0], bool):
        raise invalid_cursor()
    return key[0]


class RevealAuditController(Controller):
    path = "/v1/audit/reveals"
    tags = ["audit"]

    @get(
        "/",
        summary="Clear-text reads of personal data (who, when, whose, where, why)",
        description="Roles: inspector, admin. Reveals of members whose community lies in "
        "your subtree (or in ?node=), oldest first.",
        guards=[needs(INSPECTORS, "reading the audit of personal-data reveals")],
    )
    async def list_reveals(
        self,
        ctx: Ctx,
        principal: Caller,
        node: Annotated[
            str | None,
            QueryParameter(
                required=False, max_length=40, description="a node code of your subtree"
            ),
        ] = None,
        member: Annotated[
            UUID | None, QueryParameter(required=False, description="one member's reveals")
        ] = None,
        from_: Annotated[
            datetime | None,
            QueryParameter(name="from", required=False, description="Revealed at or after."),
        ] = None,
        to: Annotated[
            datetime | None, QueryParameter(required=False, description="Revealed before.")
        ] = None,
        limit: Limit = 100,
        cursor: Cursor = None,
    ) -> Page[RevealView]:
        after = _after(cursor)
        async with read_scope(ctx, principal) as (conn, scope):
            path = await subtree_path(conn, scope, node)
            rows = await conn.fetch(
                LIST_REVEALS,
                scope.root_id,
                *subtree_bounds(path),
                member,
                from_,
                to,
                after,
                limit + 1,
            )
        items = [
            RevealView(
                id=r["id"],
                member_id=r["member_id"],
                node=r["node"],
                revealed_at=r["revealed_at"],
                actor=r["actor"],
                endpoint=r["endpoint"],
                reason=r["reason"],
                request_id=r["request_id"],
            )
            for r in rows
        ]
        return page_of(items, limit, lambda v: [v.id])
