"""Histories straight from the event store: one aggregate's events, a subtree's events.

These read the ledger itself, not read models: what an inspector compares with the chain
verification and the signed checkpoints. Event data may hold (encrypted) personal data of
members; it is returned to the auditing roles and never logged.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import asyncpg
import msgspec
from litestar import Controller, Response, get
from litestar.params import FromPath, QueryParameter

from infra import directory
from infra.database import Scope
from infra.directory import DirectoryNode
from infra.event_codec import decode_json
from services.api.deps import Caller, Ctx, read_scope
from services.api.guards import needs
from services.api.paging import MAX_LIMIT, Cursor, decode_cursor, encode_cursor
from services.api.responses import ETAG
from services.problems import FieldError, ProblemError, not_found
from services.roles import INSPECTORS, Role

#: who may read the ledger itself (histories, verification, checkpoints, proofs): inspectors
#: and admins, and operators for the subtree they run. Not viewers (read models are theirs),
#: not units, not integrators (they have the feed).
AUDITORS = INSPECTORS | frozenset({Role.OPERATOR})
#: positions, versions and ids are PostgreSQL bigints.
MAX_BIGINT = 2**63 - 1

_EVENT_COLUMNS = """
e.position, e.event_id, e.stream_id, e.stream_type, e.version, e.type, e.schema_version, e.data,
e.occurred_at, e.recorded_at, e.actor, e.correlation_id, e.causation_id, e.idempotency_key,
n.code AS node, e.node_seq, e.hash, e.prev_hash
"""

# Row-level security already limits events to the scope; the same condition is repeated
# here so that the application checks it too.
STREAM_EVENTS = f"""
SELECT {_EVENT_COLUMNS}
FROM events e LEFT JOIN nodes n ON n.id = e.node_id
WHERE e.root_id = $1 AND e.stream_id = $2 AND e.version > $3
  AND (e.node_id IN (SELECT civic_scope_nodes()) OR e.stream_id IN (SELECT civic_party_streams()))
ORDER BY e.version
LIMIT $4
"""

STREAM_VERSION = """
SELECT max(e.version) FROM events e
WHERE e.root_id = $1 AND e.stream_id = $2
  AND (e.node_id IN (SELECT civic_scope_nodes()) OR e.stream_id IN (SELECT civic_party_streams()))
"""

# Settled positions only (below the horizon): a client paging with next_cursor never skips
# an event whose transaction commits late.
SUBTREE_HISTORY = f"""
SELECT {_EVENT_COLUMNS}
FROM events e JOIN nodes n ON n.id = e.node_id
WHERE e.root_id = $1
  AND e.node_id IN (SELECT id FROM nodes WHERE root_id = $1 AND path >= $2 AND path < $3)
  AND e.position > $4 AND e.position < civic_horizon()
  AND ($5::text[] IS NULL OR e.type = ANY($5::text[]))
  AND e.recorded_at >= coalesce($6, '-infinity'::timestamptz)
  AND e.recorded_at <  coalesce($7, 'infinity'::timestamptz)
ORDER BY e.position
LIMIT $8
"""


class EventView(msgspec.Struct):
    position: int
    event_id: UUID
    stream_id: UUID
    stream_type: str
    version: int
    type: str
    schema_version: int
    data: Any
    occurred_at: datetime
    recorded_at: datetime
    actor: str
    correlation_id: UUID | None
    causation_id: UUID | None
    idempotency_key: str | None
    node: str | None
    node_seq: int
    hash: str
    prev_hash: str


class EventPage(msgspec.Struct):
    items: list[EventView]
    next_cursor: str | None


def event_view(r: asyncpg.Record) -> EventView:
    return EventView(
        position=r["position"],
        event_id=r["event_id"],
        stream_id=r["stream_id"],
        stream_type=r["stream_type"],
        version=r["version"],
        type=r["type"],
        schema_version=r["schema_version"],
        data=decode_json(r["data"]),
        occurred_at=r["occurred_at"],
        recorded_at=r["recorded_at"],
        actor=r["actor"],
        correlation_id=r["correlation_id"],
        causation_id=r["causation_id"],
        idempotency_key=r["idempotency_key"],
        node=r["node"],
        node_seq=r["node_seq"],
        hash=bytes(r["hash"]).hex(),
        prev_hash=bytes(r["prev_hash"]).hex(),
    )


def bad_request(field: str, message: str) -> ProblemError:
    return ProblemError(
        400,
        "Bad Request",
        f"{field}: {message}",
        slug="validation",
        errors=[FieldError(field=field, message=message)],
    )


async def subtree_node(conn: asyncpg.Connection, scope: Scope, code: str | None) -> DirectoryNode:
    """The node ``code`` (current or former; the scope's own node when omitted) if it lies in
    the caller's subtree; 404 otherwise, without revealing whether it exists."""
    found = await directory.find_by_code(conn, code or scope.code)
    if found is None or not found.path.startswith(scope.path):
        raise not_found(f"node {code}")
    return found


def aware(field: str, value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise bad_request(
            field, "give an RFC 3339 time with an offset, e.g. 2025-01-01T00:00:00+08:00"
        )
    return value


def cursor_position(cursor: str | None, after: int | None) -> int:
    key = decode_cursor(cursor)
    if key is not None:
        if len(key) != 1 or not isinstance(key[0], int) or not 0 <= key[0] <= MAX_BIGINT:
            raise bad_request("cursor", "invalid cursor")
        return int(key[0])
    return after or 0


Limit = Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT, description="Page size (1-500).")]
SettledPosition = Annotated[
    int | None,
    QueryParameter(
        ge=0,
        le=MAX_BIGINT,
        required=False,
        description="Wait (at most 5 s) until the ledger has settled past this position; 503 if not.",
    ),
]


async def wait_until_settled(conn: asyncpg.Connection, position: int, timeout: float = 5.0) -> None:
    """Wait until no transaction can still commit at or below ``position`` (503 on timeout).

    History pages hold settled positions only; right after a write, older transactions still
    running anywhere in the cluster keep the horizon back for a moment.
    """
    deadline = time.monotonic() + timeout
    delay = 0.005
    while await conn.fetchval("SELECT civic_horizon()") <= position:
        if time.monotonic() >= deadline:
            raise ProblemError(
                503,
                "Service Unavailable",
                f"the ledger has not settled past position {position} within {timeout:.0f} s; "
                "retry shortly",
                slug="not-caught-up",
                headers={"Retry-After": "1"},
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)


class HistoryController(Controller):
    path = "/v1"
    tags = ["audit"]

    @get(
        "/streams/{stream_id:uuid}/events",
        summary="One aggregate's history from the ledger, oldest first",
        description=(
            "Every stored event of the stream that the caller may see, with its chain fields "
            "(node, node_seq, hash, prev_hash). ETag: the stream's version. Roles: inspector, "
            "admin, operator."
        ),
        response_headers=ETAG,
        guards=[needs(AUDITORS, "reading the ledger")],
    )
    async def stream_events(
        self,
        stream_id: FromPath[UUID],
        ctx: Ctx,
        principal: Caller,
        limit: Limit = MAX_LIMIT,
        cursor: Cursor = None,
    ) -> Response[EventPage]:
        after_version = cursor_position(cursor, None)
        async with read_scope(ctx, principal) as (conn, scope):
            rows = await conn.fetch(
                STREAM_EVENTS, scope.root_id, stream_id, after_version, limit + 1
            )
            version = await conn.fetchval(STREAM_VERSION, scope.root_id, stream_id)
        if version is None:
            raise not_found(f"stream {stream_id}")
        items = [event_view(r) for r in rows[:limit]]
        more = len(rows) > limit
        return Response(
            EventPage(
                items=items, next_cursor=encode_cursor([items[-1].version]) if more else None
            ),
            headers={"ETag": f'"{version}"'},
        )

    @get(
        "/nodes/{code:str}/history",
        summary="The subtree's events from the ledger, oldest first, cursor-paged",
        description=(
            "Events of every node in the subtree, in feed (position) order. Filters: `type` "
            "(contract names, comma-separated) and recorded time `from` (inclusive) / `to` "
            "(exclusive). Continue with `cursor=<next_cursor>`, or start after a position with "
            "`after`. Only settled positions are listed; `min_position` waits (≤ 5 s) until "
            "the ledger has settled past a position just written. Roles: inspector, admin, "
            "operator."
        ),
        guards=[needs(AUDITORS, "reading the ledger")],
    )
    async def node_history(
        self,
        code: FromPath[str],
        ctx: Ctx,
        principal: Caller,
        limit: Limit = 100,
        cursor: Cursor = None,
        min_position: SettledPosition = None,
        after: Annotated[
            int | None,
            QueryParameter(
                ge=0, le=MAX_BIGINT, required=False, description="Start after this position."
            ),
        ] = None,
        type_: Annotated[
            str | None,
            QueryParameter(
                name="type",
                required=False,
                max_length=2000,
                description="Contract names, comma-separated (e.g. NodeRenamed,NodeMoved).",
            ),
        ] = None,
        from_: Annotated[
            datetime | None,
            QueryParameter(name="from", required=False, description="Recorded at or after."),
        ] = None,
        to: Annotated[
            datetime | None, QueryParameter(required=False, description="Recorded before.")
        ] = None,
    ) -> EventPage:
        position = cursor_position(cursor, after)
        types: list[str] | None = None
        if type_ is not None:
            types = sorted({t.strip() for t in type_.split(",") if t.strip()})
            unknown = [t for t in types if t not in ctx.codec.type_names]
            if not types or unknown:
                raise bad_request("type", f"unknown event types: {', '.join(unknown) or '(none)'}")
        since, until = aware("from", from_), aware("to", to)
        async with read_scope(ctx, principal) as (conn, scope):
            node = await subtree_node(conn, scope, code)
            if min_position is not None:
                await wait_until_settled(conn, min_position)
            rows = await conn.fetch(
                SUBTREE_HISTORY,
                scope.root_id,
                *node.bounds,
                position,
                types,
                since,
                until,
                limit + 1,
            )
        items = [event_view(r) for r in rows[:limit]]
        more = len(rows) > limit
        return EventPage(
            items=items, next_cursor=encode_cursor([items[-1].position]) if more else None
        )
