"""Webhook delivery: the outbox worker that POSTs each subscription's events, in order.

Outbox. The events table is the outbox: events are written in their command's
transaction, and each subscription keeps a cursor (a feed position) into it.

Ownership. The worker runs in projector processes. It holds one pool connection for its
whole life, takes a session advisory lock per subscription on it (so exactly one replica
delivers a subscription), and LISTENs there for commit notifications from other
processes. If that connection is lost, every lock is gone and the worker cancels its
delivery tasks before trying again. A cursor only moves from the value the task read
(``UPDATE ... WHERE position = $old``), so a task that lost its lock cannot move it.

Order. One task per owned subscription reads settled events after the cursor in the
subscription's scope (a scoped transaction: row-level security enforces the scope),
filtered by type, and delivers them one at a time in position order. An acknowledged
(2xx) delivery is recorded and the cursor moved in one transaction, so nothing is sent
again after it was acknowledged (a crash between the receiver's 2xx and that commit
re-sends the event once: receivers de-duplicate by ``X-Civic-Event-Id``).

Retries. Any other answer (or a timeout, or a refused connection) is retried after
``base * factor^(attempt-1)`` seconds, capped, with jitter (a ``Retry-After`` of a 429 or
503 is honoured up to the cap). Attempts are recorded, so a restart resumes the count.
After ``max_attempts`` the event becomes a dead letter (``webhook_deliveries.status =
'dead'``), the cursor moves on and the rest are not held up by one poison event.

Re-drive. ``POST /v1/webhooks/{id}/redrive`` turns the subscription's dead letters into
``queued`` rows. The task delivers queued rows (oldest position first, with a fresh round
of attempts) before any newer event, so re-driven events arrive after the events that
passed them while they were dead: receivers that need strict order key on ``position``.

Signature. Each attempt is signed afresh::

    X-Civic-Signature: sha256=<hex HMAC-SHA256(key=secret as UTF-8, msg=body)>
    X-Civic-Timestamp: <unix seconds>
    X-Civic-Timestamped-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.".encode() + body)>

where ``body`` is the exact request body (the CloudEvent JSON). ``X-Civic-Signature`` is the
contract's (API.md); the timestamped one adds replay protection: receivers recompute it over
the raw body, compare in constant time, and reject timestamps older than a few minutes
(``verify_signature``). ``X-Civic-Event-Id`` (the CloudEvent id),
``X-Civic-Delivery-Attempt`` (1, 2, ... within a round), ``X-Civic-Webhook-Id`` and
``X-Civic-Position`` come with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import random
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg
import httpx
import structlog

from infra import outbox
from infra.database import ScopeNotFound, scoped_transaction
from infra.feed import FeedEvent, FeedPage, read_one_scoped, read_scoped
from projections.runner import NOTIFY_CHANNEL
from services import cloudevents
from services.live import LiveSignal
from services.webhooks.addresses import AddressPolicy, guarded_transport, redacted, refused

log = structlog.get_logger("civic.webhooks")

_LOCK_CLASS = 0x6377  # advisory-lock namespace "cw"
USER_AGENT = "civic-ledger-webhooks/1"
SIGNATURE_TOLERANCE_SECONDS = 300
MIN_POLL_SECONDS = 0.02
NO_ANSWER = "no HTTP answer (could not connect, or the connection failed or timed out)"
REFUSED_ADDRESS = "not delivered: the host resolves to an address webhooks may not reach"


def lock_key(subscription_id: UUID) -> int:
    return zlib.crc32(subscription_id.bytes) & 0x7FFFFFFF


# -- signing ------------------------------------------------------------------------------


def body_signature(secret: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256(secret, body)>``: the ``X-Civic-Signature`` of API.md."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``."""
    mac = hmac.new(secret.encode(), f"{int(timestamp)}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str,
    body: bytes,
    timestamp_header: str | None,
    signature_header: str | None,
    *,
    tolerance_seconds: int = SIGNATURE_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """What a receiver does: a fresh timestamp and a matching signature over the raw body."""
    if not timestamp_header or not signature_header or not timestamp_header.isdigit():
        return False
    timestamp = int(timestamp_header)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), signature_header)


# -- configuration ------------------------------------------------------------------------


@dataclass
class RetryPolicy:
    base_seconds: float = 1.0
    factor: float = 2.0
    cap_seconds: float = 300.0
    max_attempts: int = 8
    #: the random share of each delay (0.5: between half and all of it)
    jitter: float = 0.5

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        full = min(self.cap_seconds, self.base_seconds * self.factor ** max(0, attempt - 1))
        wait = full * (1 - self.jitter) + random.uniform(0, full * self.jitter)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.cap_seconds))
        return wait


@dataclass
class WebhookConfig:
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_seconds: float = 5.0
    #: fallback poll when no wake-up comes
    poll_seconds: float = 2.0
    #: how often the worker looks for new (or orphaned) subscriptions
    refresh_seconds: float = 2.0
    batch_size: int = 50
    #: how often an idle cursor is written when it only skipped filtered-out positions
    idle_save_seconds: float = 10.0
    #: the API's public URL, for each CloudEvent's dataschema
    schema_base: str = "http://127.0.0.1:8000"
    #: which addresses deliveries may connect to (checked on the address connected)
    addresses: AddressPolicy = field(default_factory=AddressPolicy)


class _Stop(Exception):
    """The task must stop: shutting down, subscription gone, or ownership lost."""


@dataclass
class _Result:
    status: int | None
    error: str | None
    retry_after: float | None

    @property
    def acknowledged(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


# -- the worker ---------------------------------------------------------------------------


class WebhookWorker:
    def __init__(self, live: LiveSignal, config: WebhookConfig | None = None) -> None:
        self.live = live
        self.config = config or WebhookConfig()
        self._pool: asyncpg.Pool | None = None
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._tasks: dict[UUID, asyncio.Task[None]] = {}

    @property
    def owned(self) -> frozenset[UUID]:
        return frozenset(self._tasks)

    def start(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._stopping.clear()
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.config.timeout_seconds, connect=2.0),
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
            transport=guarded_transport(self.config.addresses),
        )
        self._task = asyncio.create_task(self._run(), name="webhook-worker")

    async def stop(self) -> None:
        self._stopping.set()
        self.live.poke()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "the worker has not started"
        return self._pool

    async def _pause(self, seconds: float) -> None:
        """Sleep, but return at once when stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), max(0.0, seconds))

    # -- ownership -----------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                async with self.pool.acquire() as conn:
                    await conn.add_listener(NOTIFY_CHANNEL, self.live.poke)
                    try:
                        await self._dispatch(conn)
                    finally:
                        await self._drop_all()
                        with contextlib.suppress(Exception):
                            await conn.remove_listener(NOTIFY_CHANNEL, self.live.poke)
                            await conn.execute("SELECT pg_advisory_unlock_all()")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("webhook worker interrupted", error=repr(exc))
            await self._pause(self.config.refresh_seconds)

    async def _drop_all(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _dispatch(self, conn: asyncpg.Connection) -> None:
        with self.live.subscribe() as wakeup:
            while not self._stopping.is_set():
                await self._claim(conn)
                await wakeup.wait(self.config.refresh_seconds)
                await self._pause(0.25)  # coalesce bursts of commits

    async def _claim(self, conn: asyncpg.Connection) -> None:
        # Forget finished tasks (the subscription was deleted, or the task gave up).
        for sub_id, task in list(self._tasks.items()):
            if task.done():
                del self._tasks[sub_id]
                key = lock_key(sub_id)
                if all(lock_key(s) != key for s in self._tasks):
                    await conn.execute("SELECT pg_advisory_unlock($1, $2)", _LOCK_CLASS, key)
        active = await outbox.active_subscription_ids(conn)
        wanted = [s for s in active if s not in self._tasks]
        if not wanted:
            return
        # Keys may collide: whoever holds a key delivers every subscription that has it.
        by_key: dict[int, list[UUID]] = {}
        for sub_id in wanted:
            by_key.setdefault(lock_key(sub_id), []).append(sub_id)
        held = {lock_key(s) for s in self._tasks}
        fresh = [k for k in by_key if k not in held]
        got = await conn.fetch(
            "SELECT k FROM unnest($2::int[]) AS k WHERE pg_try_advisory_lock($1, k)",
            _LOCK_CLASS,
            fresh,
        )
        for key in [r["k"] for r in got] + [k for k in by_key if k in held]:
            for sub_id in by_key[key]:
                self._tasks[sub_id] = asyncio.create_task(
                    self._own(sub_id), name=f"webhook:{sub_id}"
                )

    # -- one subscription ----------------------------------------------------------------

    async def _own(self, sub_id: UUID) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                await self._deliver_subscription(sub_id)
                return
            except _Stop:
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "webhook delivery interrupted", subscription=str(sub_id), error=repr(exc)
                )
                with contextlib.suppress(Exception):
                    async with self.pool.acquire() as conn:
                        await outbox.note_error(conn, sub_id, f"worker: {exc!r}")
                await self._pause(backoff)
                backoff = min(backoff * 2, 30.0)

    async def _target(self, sub_id: UUID) -> outbox.DeliveryTarget:
        async with self.pool.acquire() as conn:
            target = await outbox.load_target(conn, sub_id)
        if target is None or not target.active:
            raise _Stop
        return target

    async def _deliver_subscription(self, sub_id: UUID) -> None:
        config = self.config
        with self.live.subscribe() as wakeup:
            target = await self._target(sub_id)
            persisted = target.position
            cursor = persisted
            saved_at = time.monotonic()
            quick_polls = 0
            while not self._stopping.is_set():
                target = await self._target(sub_id)
                if target.position != persisted:
                    raise _Stop  # someone else moved the cursor: not ours any more
                # Re-driven dead letters go first, oldest first.
                async with self.pool.acquire() as conn:
                    queued = await outbox.next_queued(conn, sub_id)
                if queued is not None:
                    await self._redeliver(target, queued)
                    continue
                try:
                    page = await self._read(target, cursor)
                except ScopeNotFound:
                    async with self.pool.acquire() as conn:
                        await outbox.note_error(
                            conn, sub_id, f"scope node {target.scope_code} is closed or gone"
                        )
                    await self._pause(config.poll_seconds * 10)
                    continue
                for item in page.events:
                    await self._deliver(target, item, advance_from=persisted)
                    persisted = cursor = item.position
                    target = await self._target(sub_id)
                if page.full:
                    continue
                cursor = max(cursor, page.next)
                if cursor > persisted and time.monotonic() - saved_at >= config.idle_save_seconds:
                    async with self.pool.acquire() as conn:
                        if not await outbox.advance_cursor(conn, sub_id, persisted, cursor):
                            raise _Stop
                    persisted = cursor
                    saved_at = time.monotonic()
                if page.events:
                    quick_polls = 5
                if quick_polls > 0:
                    quick_polls -= 1
                    timeout = 0.005 * (6 - quick_polls)
                else:
                    timeout = config.poll_seconds
                polled = time.monotonic()
                if await wakeup.wait(timeout):
                    quick_polls = 5
                # at most one read per MIN_POLL_SECONDS, however often commits poke
                await self._pause(MIN_POLL_SECONDS - (time.monotonic() - polled))

    async def _read(self, target: outbox.DeliveryTarget, cursor: int) -> FeedPage:
        assert target.scope_code is not None
        async with (
            self.pool.acquire() as conn,
            scoped_transaction(conn, target.scope_code) as (_, scope),
        ):
            await conn.execute("SET TRANSACTION READ ONLY")
            return await read_scoped(
                conn, scope, cursor, self.config.batch_size, types=target.types
            )

    async def _redeliver(self, target: outbox.DeliveryTarget, position: int) -> None:
        assert target.scope_code is not None
        try:
            async with (
                self.pool.acquire() as conn,
                scoped_transaction(conn, target.scope_code) as (_, scope),
            ):
                item = await read_one_scoped(conn, scope, position)
        except ScopeNotFound:
            item = None
        if item is not None:
            await self._deliver(target, item, advance_from=None)
            return
        # The event left the subscription's scope (a node moved away): dead again.
        async with self.pool.acquire() as conn:
            state = await outbox.read_delivery(conn, target.id, position)
            if state is None:
                return
            await outbox.record_attempt(
                conn,
                target,
                outbox.Attempt(
                    position=position,
                    event_id=state.event_id,
                    event_type=state.event_type,
                    attempts=state.attempts,
                    status="dead",
                    error="the event is no longer in the subscription's scope",
                ),
                advance_from=None,
            )

    async def _deliver(
        self, target: outbox.DeliveryTarget, item: FeedEvent, *, advance_from: int | None
    ) -> None:
        """Deliver one event until acknowledged or dead; record the outcome."""
        policy = self.config.policy
        async with self.pool.acquire() as conn:
            state = await outbox.read_delivery(conn, target.id, item.position)
        attempts = 0
        if state is not None and state.status == "retrying":
            attempts = state.attempts  # resume the count after a restart
            if state.next_attempt_at is not None:
                wait = (state.next_attempt_at - datetime.now(UTC)).total_seconds()
                await self._pause(min(wait, policy.cap_seconds))
        body = cloudevents.encode(cloudevents.to_cloudevent(item, self.config.schema_base))
        event = item.event
        while True:
            if self._stopping.is_set():
                raise _Stop
            attempts += 1
            result = await self._post(target, item, body, attempts)
            if result.acknowledged:
                status = "delivered"
            elif attempts >= policy.max_attempts:
                status = "dead"
            else:
                status = "retrying"
            delay = policy.delay(attempts, result.retry_after) if status == "retrying" else 0.0
            attempt = outbox.Attempt(
                position=item.position,
                event_id=event.event_id,
                event_type=event.type,
                attempts=attempts,
                status=status,
                http_status=result.status,
                error=result.error,
                next_attempt_at=(
                    datetime.now(UTC) + timedelta(seconds=delay) if status == "retrying" else None
                ),
            )
            async with self.pool.acquire() as conn:
                if not await outbox.record_attempt(
                    conn, target, attempt, advance_from=advance_from
                ):
                    raise _Stop
            if status != "retrying":
                if status == "dead":
                    log.warning(
                        "webhook dead letter",
                        subscription=str(target.id),
                        url=redacted(target.url),
                        position=item.position,
                        attempts=attempts,
                    )
                return
            await self._pause(delay)
            target = await self._target(target.id)  # deleted meanwhile? stop

    async def _post(
        self, target: outbox.DeliveryTarget, item: FeedEvent, body: bytes, attempt: int
    ) -> _Result:
        assert self._client is not None
        timestamp = int(time.time())
        headers = {
            "Content-Type": cloudevents.CONTENT_TYPE,
            "X-Civic-Signature": body_signature(target.secret, body),
            "X-Civic-Timestamp": str(timestamp),
            "X-Civic-Timestamped-Signature": signature(target.secret, timestamp, body),
            "X-Civic-Event-Id": str(item.event.event_id),
            "X-Civic-Delivery-Attempt": str(attempt),
            "X-Civic-Webhook-Id": str(target.id),
            "X-Civic-Position": str(item.position),
        }
        try:
            async with self._client.stream(
                "POST", target.url, content=body, headers=headers
            ) as response:
                status = response.status_code
                retry_after = _retry_after(response.headers.get("retry-after"))
        except httpx.HTTPError as exc:
            # One text for refused, reset, timed out and unresolvable alike: the errors are
            # shown to the subscriber, who must not learn port states from them.
            if refused(exc):
                return _Result(None, REFUSED_ADDRESS, None)
            return _Result(None, NO_ANSWER, None)
        if 200 <= status < 300:
            return _Result(status, None, None)
        return _Result(status, f"HTTP {status}", retry_after if status in (429, 503) else None)


def _retry_after(raw: str | None) -> float | None:
    if raw is None or not raw.strip().isdigit():
        return None
    return float(raw.strip())
