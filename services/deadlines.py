"""The deadline clock: records IssueOverdue, EscalationOverdue, RectificationOverdue,
ServiceOverdue.

Each workflow with deadlines has a ``DeadlineSweep`` (``services.deadline_sweep``): a query
for what is past due (from its read model) and a command that records the fact on the
aggregate if it still holds; ``services.app.deadline_sweeps`` lists them. The clock
runs in projector processes; an advisory lock keeps one instance active, and the
aggregates refuse to record the same deadline twice, so even two clocks racing fire each
deadline once (the loser's append hits the version check and re-decides: nothing to do).
Time comes from the application's injectable clock, so tests move time instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from uuid import UUID

import msgspec
import structlog

from services.auth import Principal
from services.commands.session import CommandRequest, CommandSession, run_command
from services.context import AppContext
from services.deadline_sweep import DeadlineSweep, DueItem
from services.roles import Role

log = structlog.get_logger("civic.clock")

_LOCK = (0x6369, 0x636C6B)  # "ci", "clk"


class Fired(msgspec.Struct):
    stream_id: UUID
    fired: bool


def system_principal(root_code: str) -> Principal:
    return Principal(subject="system:clock", scope=root_code, roles=frozenset({Role.ADMIN}))


class DeadlineClock:
    def __init__(
        self,
        ctx: AppContext,
        sweeps: Sequence[DeadlineSweep],
        *,
        interval: float = 5.0,
        batch: int = 200,
    ) -> None:
        self.ctx = ctx
        self.sweeps = list(sweeps)
        self.interval = interval
        self.batch = batch
        self._task: asyncio.Task[None] | None = None

    async def tick(self) -> int:
        """Fire everything past due now; returns how many facts were recorded."""
        now = self.ctx.clock()
        fired = 0
        for sweep in self.sweeps:
            async with self.ctx.db.acquire() as conn:
                items = await sweep.due(conn, now, self.batch)
            for item in items:
                fired += await self._fire(sweep, item)
        return fired

    async def _fire(self, sweep: DeadlineSweep, item: DueItem) -> int:
        async def decide(session: CommandSession) -> tuple[int, msgspec.Struct]:
            return 200, Fired(item.stream_id, await sweep.fire(session, item.stream_id))

        request = CommandRequest(
            method="CLOCK", path=f"/clock/{sweep.name}/{item.stream_id}", body=b""
        )
        try:
            outcome = await run_command(self.ctx, system_principal(item.root_code), request, decide)
        except Exception as exc:  # one bad item must not stop the others
            log.error(
                "deadline not recorded",
                sweep=sweep.name,
                stream=str(item.stream_id),
                error=repr(exc),
            )
            return 0
        return 1 if outcome.position is not None else 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="deadline-clock")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                async with self.ctx.db.acquire() as conn:
                    if await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", *_LOCK):
                        try:
                            while True:
                                await self.tick()
                                await asyncio.sleep(self.interval)
                        finally:
                            with contextlib.suppress(Exception):
                                await conn.execute("SELECT pg_advisory_unlock($1, $2)", *_LOCK)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("clock interrupted", error=repr(exc))
            await asyncio.sleep(self.interval)
