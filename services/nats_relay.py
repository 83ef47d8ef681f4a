"""Optional NATS JetStream publisher: every tenant's events, in position order.

Enabled by ``CIVIC_NATS_URL``. Runs in projector processes; an advisory lock keeps one
relay active per cursor name. It reads settled events after its cursor (table
``relay_cursors``), publishes each as a CloudEvent (JSON, structured mode) on subject
``<prefix>.<root code>.<ContractName>`` (``civic.330106000000.IssueReported``) with the
header ``Nats-Msg-Id`` = event id, waits for the stream's acknowledgement, and moves its
cursor after each published batch. A crash between publishing and saving the cursor
publishes the tail again; JetStream drops those as duplicates of the same ``Nats-Msg-Id``
(within the stream's duplicate window, two minutes by default). The stream (``CIVIC``,
subjects ``civic.>``) is created when missing. A new relay starts from the beginning of
the store, so the stream holds the whole history.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import zlib
from typing import Any

import asyncpg
import structlog

from infra import outbox
from infra.feed import FeedEvent, read_all
from services import cloudevents
from services.live import LiveSignal

log = structlog.get_logger("civic.nats")

_LOCK_CLASS = 0x636E  # advisory-lock namespace "cn"
_SUBJECT_TOKEN = re.compile(r"[^A-Za-z0-9_-]")


def subject_for(prefix: str, item: FeedEvent) -> str:
    """``<prefix>.<root code>.<ContractName>``; characters NATS gives meaning to become ``_``."""
    root = item.root_code or str(item.event.root_id)
    return f"{prefix}.{_SUBJECT_TOKEN.sub('_', root)}.{_SUBJECT_TOKEN.sub('_', item.event.type)}"


class NatsRelay:
    def __init__(
        self,
        live: LiveSignal,
        *,
        url: str,
        stream: str = "CIVIC",
        subject_prefix: str = "civic",
        batch_size: int = 200,
        poll_seconds: float = 1.0,
        retry_seconds: float = 5.0,
        idle_save_seconds: float = 10.0,
        publish_timeout: float = 5.0,
        schema_base: str = "http://127.0.0.1:8000",
    ) -> None:
        self.live = live
        self.url = url
        self.schema_base = schema_base
        self.stream = stream
        self.subject_prefix = subject_prefix
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.retry_seconds = retry_seconds
        self.idle_save_seconds = idle_save_seconds
        self.publish_timeout = publish_timeout
        self.name = f"nats:{stream}"
        self.published = 0
        self.duplicates = 0
        self.position = 0
        self._pool: asyncpg.Pool | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def start(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name=f"relay:{self.name}")

    async def stop(self) -> None:
        self._stopping.set()
        self.live.poke()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), max(0.0, seconds))

    async def _run(self) -> None:
        assert self._pool is not None
        key = zlib.crc32(self.name.encode()) & 0x7FFFFFFF
        while not self._stopping.is_set():
            try:
                async with self._pool.acquire() as conn:
                    if await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", _LOCK_CLASS, key):
                        try:
                            await self._relay(conn)
                        finally:
                            with contextlib.suppress(Exception):
                                await conn.execute(
                                    "SELECT pg_advisory_unlock($1, $2)", _LOCK_CLASS, key
                                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("nats relay interrupted", relay=self.name, error=repr(exc))
                with contextlib.suppress(Exception):
                    async with self._pool.acquire() as conn:
                        await outbox.save_relay_error(conn, self.name, repr(exc))
            await self._pause(self.retry_seconds)

    async def _relay(self, conn: asyncpg.Connection) -> None:
        import nats  # optional dependency: pip install 'civic-ledger[nats]'

        client = await nats.connect(
            self.url, connect_timeout=2, max_reconnect_attempts=3, reconnect_time_wait=1
        )
        try:
            js = client.jetstream()
            await ensure_stream(js, self.stream, self.subject_prefix)
            persisted = await outbox.relay_position(conn, self.name)
            cursor = persisted
            saved_at = time.monotonic()
            with self.live.subscribe() as wakeup:
                while not self._stopping.is_set():
                    async with conn.transaction():
                        page = await read_all(conn, cursor, self.batch_size)
                    fresh = 0
                    for item in page.events:
                        ack = await js.publish(
                            subject_for(self.subject_prefix, item),
                            cloudevents.encode(cloudevents.to_cloudevent(item, self.schema_base)),
                            timeout=self.publish_timeout,
                            stream=self.stream,
                            headers={
                                "Nats-Msg-Id": str(item.event.event_id),
                                "Content-Type": cloudevents.CONTENT_TYPE,
                            },
                        )
                        if ack.duplicate:
                            self.duplicates += 1
                        else:
                            fresh += 1
                    cursor = page.next
                    self.position = cursor
                    self.published += fresh
                    idle_due = time.monotonic() - saved_at >= self.idle_save_seconds
                    if cursor > persisted and (page.events or idle_due):
                        await outbox.save_relay(conn, self.name, cursor, fresh)
                        persisted = cursor
                        saved_at = time.monotonic()
                    if page.full:
                        continue
                    await wakeup.wait(self.poll_seconds)
        finally:
            with contextlib.suppress(Exception):
                await client.close()


async def ensure_stream(js: Any, stream: str, subject_prefix: str) -> None:
    """Create the stream (subjects ``<prefix>.>``) unless it exists."""
    from nats.js.errors import NotFoundError

    try:
        await js.stream_info(stream)
    except NotFoundError:
        await js.add_stream(name=stream, subjects=[f"{subject_prefix}.>"])
