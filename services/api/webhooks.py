"""/v1/webhooks — subscriptions to the feed, delivered by the outbox worker.

A subscription sees the subtree of its creator's scope node (row-level security on the
subscription and on the events its worker reads). ``types`` filters by contract name
(``IssueReported``) or CloudEvent type (``cn.civic-ledger.issue.reported.v1``, matched by
its contract name); empty means every type. ``after`` (optional) starts delivery after
that position — 0 replays the scope's whole history; without it delivery starts at the
current end of the feed. The secret is write-only: no answer ever contains it, and the
runtime database role cannot read it. Deliveries are signed as described in
``services/webhooks/delivery.py``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit
from uuid import UUID, uuid4

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.params import FromPath, JSONBody, QueryParameter

from domain.clock import instant
from infra import outbox
from services.api.deps import (
    Caller,
    Command,
    Ctx,
    command_request,
    read_scope,
)
from services.api.guards import needs
from services.api.paging import Cursor, Page, decode_cursor, decode_time_id_cursor, page_of
from services.api.responses import documented
from services.cloudevents import contract_name_of
from services.commands.session import CommandSession, run_command
from services.problems import FieldError, ProblemError, invalid_value, not_found
from services.roles import ADMINS, INTEGRATORS
from services.webhooks.addresses import AddressPolicy

DELIVERY_STATUSES = ("delivered", "retrying", "dead", "queued")

Url = Annotated[str, msgspec.Meta(min_length=8, max_length=2000)]
Secret = Annotated[
    str, msgspec.Meta(min_length=16, max_length=512, description="HMAC key, at least 16 chars")
]
TypeName = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
ListLimit = Annotated[
    int, QueryParameter(ge=1, le=500, description="Page size (1-500, default 100).")
]


class WebhookCreate(msgspec.Struct, forbid_unknown_fields=True):
    url: Url
    secret: Secret
    types: Annotated[list[TypeName], msgspec.Meta(max_length=100)] | None = None
    after: Annotated[int, msgspec.Meta(ge=0)] | None = None


class WebhookView(msgspec.Struct):
    id: UUID
    url: str
    types: list[str]
    scope: str
    status: str
    position: int
    created_by: str
    created_at: str
    delivered: int
    dead: int
    pending: int
    last_delivered_at: str | None
    last_error: str | None
    last_error_at: str | None


class DeliveryItem(msgspec.Struct):
    position: int
    event_id: UUID
    type: str
    status: str
    attempts: int
    total_attempts: int
    redrives: int
    last_status: int | None
    last_error: str | None
    first_attempt_at: str | None
    last_attempt_at: str | None
    next_attempt_at: str | None
    delivered_at: str | None
    dead_at: str | None


class Redriven(msgspec.Struct):
    id: UUID
    requeued: int


def _iso(value: datetime | None) -> str | None:
    return instant(value) if value is not None else None


def view_of(s: outbox.SubscriptionView) -> WebhookView:
    return WebhookView(
        id=s.id,
        url=s.url,
        types=list(s.types),
        scope=s.scope_code,
        status=s.status,
        position=s.position,
        created_by=s.created_by,
        created_at=instant(s.created_at),
        delivered=s.delivered_count,
        dead=s.dead,
        pending=s.pending,
        last_delivered_at=_iso(s.last_delivered_at),
        last_error=s.last_error,
        last_error_at=_iso(s.last_error_at),
    )


def delivery_of(d: outbox.DeliveryView) -> DeliveryItem:
    return DeliveryItem(
        position=d.position,
        event_id=d.event_id,
        type=d.event_type,
        status=d.status,
        attempts=d.attempts,
        total_attempts=d.total_attempts,
        redrives=d.redrives,
        last_status=d.last_status,
        last_error=d.last_error,
        first_attempt_at=_iso(d.first_attempt_at),
        last_attempt_at=_iso(d.last_attempt_at),
        next_attempt_at=_iso(d.next_attempt_at),
        delivered_at=_iso(d.delivered_at),
        dead_at=_iso(d.dead_at),
    )


def validate_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise invalid_value("url", "not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise invalid_value("url", "must be an http:// or https:// URL")
    if not host:
        raise invalid_value("url", "must name a host")
    if parts.username is not None or parts.password is not None:
        raise invalid_value("url", "must not carry credentials; the secret signs every delivery")
    if parts.fragment:
        raise invalid_value("url", "must not have a fragment")
    if any(ch.isspace() for ch in url):
        raise invalid_value("url", "must not contain whitespace")
    return url


def normalise_types(requested: list[str] | None, known: frozenset[str]) -> list[str]:
    """Contract names (or CloudEvent types, by their contract name), sorted and unique."""
    names: set[str] = set()
    for raw in requested or []:
        parsed = contract_name_of(raw)
        name = parsed[0] if parsed is not None else raw
        if name not in known:
            raise invalid_value("types", f"unknown event type {raw!r}")
        names.add(name)
    return sorted(names)


async def _visible(session: CommandSession, id: UUID) -> outbox.SubscriptionView:
    assert session.scope is not None
    view = await outbox.read_subscription(session.conn, id, session.scope.path)
    if view is None:
        raise not_found(f"webhook {id}")
    return view


class WebhookController(Controller):
    path = "/v1/webhooks"
    tags = ["integration"]

    @post(
        "/",
        status_code=201,
        summary="Subscribe a URL to your subtree's events (signed, retried, dead-lettered)",
        responses=documented(
            201, WebhookView, "The subscription (its secret is never shown again)"
        ),
        guards=[needs(INTEGRATORS, "managing webhooks")],
    )
    async def create(
        self, data: JSONBody[WebhookCreate], ctx: Ctx, principal: Caller, command: Command
    ) -> Response[bytes]:
        url = validate_url(data.url)
        if not await AddressPolicy(ctx.settings.webhook_allow_hosts).check_url(url):
            raise invalid_value(
                "url",
                "must reach a public address (loopback, private and internal ones are refused)",
            )
        types = normalise_types(data.types, ctx.codec.type_names)

        async def decide(s: CommandSession) -> tuple[int, msgspec.Struct]:
            assert s.scope is not None
            end = await s.conn.fetchval("SELECT civic_horizon()") - 1
            start = end if data.after is None else min(data.after, end)
            view = await outbox.create_subscription(
                s.conn,
                id=uuid4(),
                root_id=s.scope.root_id,
                node_id=s.scope.node_id,
                url=url,
                secret=data.secret,
                types=types,
                position=start,
                created_by=principal.idempotency_owner,
                scope_path=s.scope.path,
            )
            return 201, view_of(view)

        return await command.run(decide)

    @get(
        "/",
        summary="Your subtree's webhook subscriptions (secrets are never shown)",
        operation_id="listWebhooks",
        guards=[needs(INTEGRATORS, "managing webhooks")],
    )
    async def list_all(
        self, ctx: Ctx, principal: Caller, limit: ListLimit = 100, cursor: Cursor = None
    ) -> Page[WebhookView]:
        after = decode_time_id_cursor(cursor)
        async with read_scope(ctx, principal) as (conn, scope):
            rows = await outbox.list_subscriptions(conn, scope.path, after, limit + 1)
        return page_of([view_of(r) for r in rows], limit, lambda v: [v.created_at, str(v.id)])

    @get(
        "/{webhook_id:uuid}",
        summary="One webhook subscription with its delivery counts",
        guards=[needs(INTEGRATORS, "managing webhooks")],
    )
    async def read(self, webhook_id: FromPath[UUID], ctx: Ctx, principal: Caller) -> WebhookView:
        async with read_scope(ctx, principal) as (conn, scope):
            view = await outbox.read_subscription(conn, webhook_id, scope.path)
        if view is None:
            raise not_found(f"webhook {webhook_id}")
        return view_of(view)

    @delete(
        "/{webhook_id:uuid}",
        summary="Stop and remove a webhook subscription",
        guards=[needs(INTEGRATORS, "managing webhooks")],
    )
    async def remove(
        self,
        webhook_id: FromPath[UUID],
        request: Request[Any, Any, Any],
        ctx: Ctx,
        principal: Caller,
    ) -> None:

        async def decide(s: CommandSession) -> tuple[int, msgspec.Struct]:
            assert s.scope is not None
            if not await outbox.delete_subscription(s.conn, webhook_id, s.scope.path):
                raise not_found(f"webhook {webhook_id}")
            return 204, Redriven(id=webhook_id, requeued=0)

        await run_command(ctx, principal, await command_request(request), decide)

    @get(
        "/{webhook_id:uuid}/deliveries",
        summary="Delivery records of a subscription (status=dead lists the dead letters); integrator or admin",
        operation_id="listDeliveries",
        guards=[needs(INTEGRATORS, "reading webhook deliveries")],
    )
    async def deliveries(
        self,
        webhook_id: FromPath[UUID],
        ctx: Ctx,
        principal: Caller,
        status: Annotated[
            str | None,
            QueryParameter(
                required=False, description="delivered, retrying, dead or queued (re-driven)"
            ),
        ] = None,
        limit: ListLimit = 100,
        cursor: Cursor = None,
    ) -> Page[DeliveryItem]:
        if status is not None and status not in DELIVERY_STATUSES:
            raise ProblemError(
                400,
                "Bad Request",
                f"status must be one of {', '.join(DELIVERY_STATUSES)}",
                slug="validation",
                errors=[FieldError(field="status", message="unknown status")],
            )
        key = decode_cursor(cursor)
        after = key[0] if key and isinstance(key[0], int) else 0
        async with read_scope(ctx, principal) as (conn, scope):
            if await outbox.read_subscription(conn, webhook_id, scope.path) is None:
                raise not_found(f"webhook {webhook_id}")
            rows = await outbox.list_deliveries(
                conn, webhook_id, [status] if status else [], after, limit + 1
            )
        return page_of([delivery_of(r) for r in rows], limit, lambda d: [d.position])

    @post(
        "/{webhook_id:uuid}/redrive",
        status_code=200,
        summary="Queue a subscription's dead letters again (delivered before newer events); admin",
        responses=documented(200, Redriven, "How many dead letters were queued again"),
        guards=[needs(ADMINS, "re-driving webhook dead letters")],
    )
    async def redrive(self, webhook_id: FromPath[UUID], command: Command) -> Response[bytes]:
        async def decide(s: CommandSession) -> tuple[int, msgspec.Struct]:
            await _visible(s, webhook_id)
            requeued = await outbox.redrive(s.conn, webhook_id)
            return 200, Redriven(id=webhook_id, requeued=requeued)

        return await command.run(decide)
