"""/v1/feed — the caller's subtree's events as CloudEvents, paged or live (Server-Sent Events).

Paged: ``GET /v1/feed?after=P&limit=N`` answers ``{"items": [CloudEvent...], "next": Q}``,
events with ``P < position``, oldest first. Pass ``next`` as ``after`` to continue: a full
page's ``next`` is its last position; a short page's is ``horizon - 1`` (every event below
the horizon has been seen, so positions of other scopes are skipped, but never one that a
transaction still in flight could take). Nothing is repeated and nothing is skipped.

Live: the same URL with ``Accept: text/event-stream`` streams each event as
``id: <position>`` / ``event: <CloudEvent type>`` / ``data: <CloudEvent JSON>``, starting
after ``Last-Event-ID`` when the client sends one (else ``after``). A ``: keep-alive``
comment comes every ``CIVIC_FEED_HEARTBEAT`` seconds (15) when idle, and the stream ends
after ``CIVIC_FEED_MAX_STREAM`` seconds (300); the client reconnects with its
``Last-Event-ID``. Each poll is its own short scoped transaction; between polls the stream
waits for a commit in this process (or NOTIFY from another), polling as a fallback.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import msgspec
import structlog
from litestar import Controller, Request, Response, get
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import QueryParameter
from litestar.response import ServerSentEvent
from litestar.response.sse import ServerSentEventMessage

from infra.feed import FeedPage, current_end, read_scoped
from services import cloudevents
from services.api.deps import Caller, Ctx, read_scope
from services.api.guards import needs
from services.api.paging import MAX_LIMIT
from services.auth import Principal
from services.cloudevents import CloudEvent, CloudEventDoc
from services.context import AppContext
from services.live import FeedConfig, LiveSignal
from services.problems import FieldError, ProblemError
from services.roles import INTEGRATORS

log = structlog.get_logger("civic.feed")

EVENT_STREAM = "text/event-stream"

After = Annotated[
    int,
    QueryParameter(
        ge=0, description="Return events after this position (the previous answer's next)."
    ),
]
FeedLimit = Annotated[
    int, QueryParameter(ge=1, le=MAX_LIMIT, description="Page size (1-500, default 100).")
]


class FeedBody(msgspec.Struct):
    items: list[CloudEvent]
    next: int


class FeedPageDoc(msgspec.Struct):
    """``next``: pass it as ``after`` to continue (no repeats, no gaps)."""

    items: list[CloudEventDoc]
    next: int


def wants_event_stream(accept: str | None) -> bool:
    return accept is not None and EVENT_STREAM in accept.lower()


def parse_last_event_id(raw: str | None) -> int | None:
    if raw is None or not raw.strip():
        return None
    value = raw.strip()
    if not value.isdigit():
        raise ProblemError(
            400,
            "Bad Request",
            "Last-Event-ID must be a position this feed sent",
            slug="validation",
            errors=[FieldError(field="Last-Event-ID", message="not a position")],
        )
    return int(value)


async def read_page(ctx: AppContext, principal: Principal, after: int, limit: int) -> FeedPage:
    """One page in its own short read-only scoped transaction."""
    async with read_scope(ctx, principal) as (conn, scope):
        return await read_scoped(conn, scope, after, limit)


def encode_page(page: FeedPage, schema_base: str) -> bytes:
    body = FeedBody(
        items=[cloudevents.to_cloudevent(e, schema_base) for e in page.events], next=page.next
    )
    return msgspec.json.encode(body)


async def live_stream(
    ctx: AppContext,
    principal: Principal,
    first: FeedPage,
    config: FeedConfig,
    live: LiveSignal,
) -> AsyncIterator[ServerSentEventMessage]:
    """Events as SSE messages from ``first`` on, with heartbeats, for a bounded time."""
    now = time.monotonic()
    deadline = now + config.max_stream_seconds
    next_beat = now + config.heartbeat_seconds
    yield ServerSentEventMessage(data=None, comment="civic-ledger feed", retry=2000)
    page = first
    quick_polls = 0
    with live.subscribe() as wakeup:
        while True:
            for item in page.events:
                event = cloudevents.to_cloudevent(item, ctx.settings.base_url)
                yield ServerSentEventMessage(
                    id=item.position, event=event.type, data=cloudevents.encode(event).decode()
                )
            cursor = page.next
            now = time.monotonic()
            if now >= deadline:
                return
            if now >= next_beat:
                yield ServerSentEventMessage(data=None, comment="keep-alive")
                next_beat = now + config.heartbeat_seconds
            if not page.full:
                # Caught up. A commit wakes us; a transaction still in flight can hold the
                # horizon back right after a wake-up, so re-poll quickly a few times.
                if page.events:
                    quick_polls = 5
                if quick_polls > 0:
                    quick_polls -= 1
                    timeout = 0.005 * (6 - quick_polls)
                else:
                    timeout = config.poll_seconds
                timeout = min(timeout, next_beat - now, deadline - now)
                waited_from = time.monotonic()
                if await wakeup.wait(max(0.0, timeout)):
                    quick_polls = 5
                # at most one read per min_poll_seconds, however often commits poke
                rest = config.min_poll_seconds - (time.monotonic() - waited_from)
                if rest > 0:
                    await asyncio.sleep(rest)
            try:
                page = await read_page(ctx, principal, cursor, config.page_size)
            except Exception as exc:  # the client reconnects with its Last-Event-ID
                log.warning("feed stream ended by an error", error=repr(exc))
                return


class FeedController(Controller):
    path = "/v1/feed"
    tags = ["integration"]

    @get(
        "/",
        summary="Events of your subtree after a position, as CloudEvents 1.0 (JSON or SSE)",
        description=(
            "Roles integrator or admin. Ordered by the global position; only settled "
            "positions are served, so following `next` never skips or repeats an event. "
            "With `Accept: text/event-stream` the answer is a live Server-Sent Events stream "
            "(`id:` position, `event:` CloudEvent type, `data:` CloudEvent JSON) that resumes "
            "after `Last-Event-ID`, with `: keep-alive` heartbeats."
        ),
        responses={
            200: ResponseSpec(
                data_container=FeedPageDoc,
                description="A page of CloudEvents, or a text/event-stream",
                generate_examples=False,
            )
        },
        operation_id="readFeed",
        guards=[needs(INTEGRATORS, "following the feed")],
    )
    async def feed(
        self,
        request: Request[Any, Any, Any],
        state: State,
        ctx: Ctx,
        principal: Caller,
        after: After = 0,
        limit: FeedLimit = 100,
        tail: Annotated[
            bool,
            QueryParameter(
                required=False,
                description="Start at the settled end of the log (what is recorded from now "
                "on, plus at most what was committing at that instant) instead of after; a "
                "stream's Last-Event-ID still wins. The console follows the feed this way.",
            ),
        ] = False,
    ) -> Response[Any]:
        if tail:
            async with read_scope(ctx, principal) as (conn, _):
                after = await current_end(conn)
        if not wants_event_stream(request.headers.get("accept")):
            page = await read_page(ctx, principal, after, limit)
            return Response(
                content=encode_page(page, ctx.settings.base_url),
                media_type="application/json",
                headers={"Cache-Control": "no-store"},
            )
        resume = parse_last_event_id(request.headers.get("last-event-id"))
        if resume is not None:
            after = resume
        config: FeedConfig = state.feed_config
        # A live stream holds memory and a wake-up for minutes: a principal has at most
        # CIVIC_MAX_STREAMS_PER_PRINCIPAL of them (429 beyond), released when it ends.
        slot = ctx.stream_slots.try_take(principal)
        try:
            # The first page is read before streaming, so a bad scope is still a 401 answer.
            first = await read_page(ctx, principal, after, min(limit, config.page_size))
        except BaseException:
            ctx.stream_slots.give_back(slot)
            raise
        return ServerSentEvent(
            _releasing(
                live_stream(ctx, principal, first, config, state.live),
                lambda: ctx.stream_slots.give_back(slot),
            ),
            headers={"Cache-Control": "no-store"},
        )


async def _releasing(
    stream: AsyncIterator[ServerSentEventMessage], release: Callable[[], None]
) -> AsyncIterator[ServerSentEventMessage]:
    try:
        async for message in stream:
            yield message
    finally:
        release()
