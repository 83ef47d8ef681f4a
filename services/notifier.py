"""Wakes projectors after a commit: at once in this process, by NOTIFY in the others.

NOTIFY is sent outside the command's transaction and coalesced (one in flight at a time),
so it never serialises appends on PostgreSQL's notification queue lock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import asyncpg

from projections.runner import NOTIFY_CHANNEL


class CommitNotifier:
    def __init__(self, pool: asyncpg.Pool, local: Callable[[], None] | None = None) -> None:
        self._pool = pool
        self._local = local
        self._in_flight: asyncio.Task[None] | None = None
        self._again = False

    def __call__(self, _outcome: Any = None) -> None:
        if self._local is not None:
            self._local()
        if self._in_flight is not None and not self._in_flight.done():
            self._again = True
            return
        self._in_flight = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        while True:
            self._again = False
            with contextlib.suppress(Exception):
                await self._pool.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
            if not self._again:
                return

    async def close(self) -> None:
        if self._in_flight is not None:
            with contextlib.suppress(Exception):
                await self._in_flight
