"""Signed checkpoints: taken on request, and periodically per root tenant and stored.

The periodic clock runs where the deadline clock runs (processes with projectors); an
advisory lock held during each pass keeps passes of several processes from overlapping. A
pass checkpoints every open root tenant whose newest stored checkpoint is older than the
interval, so restarts and extra processes do not multiply them. The heads are read in a transaction scoped to
the root (row-level security applies as for any request); the row is written as the system.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta

import asyncpg
import structlog

from infra.audit.checkpoints import Checkpoint, store_checkpoint, take_checkpoint
from infra.audit.signing import Signer, load_signer
from infra.database import ScopeNotFound, scoped_transaction, system_transaction
from infra.directory import DirectoryNode, find_by_code
from services.context import AppContext

log = structlog.get_logger("civic.checkpoints")

_LOCK = (0x6369, 0x63706B)  # "ci", "cpk"
#: how often the clock looks for tenants that are due (at most; never more often than needed).
MAX_POLL_SECONDS = 60.0

DUE_ROOTS = """
SELECT n.code FROM nodes n
WHERE n.parent_id IS NULL AND NOT n.closed
  AND NOT EXISTS (SELECT 1 FROM audit_checkpoints c
                  WHERE c.root_id = n.id AND c.node_id = n.id AND c.at > $1)
ORDER BY n.code
LIMIT $2
"""


class Checkpointer:
    def __init__(self, ctx: AppContext, signer: Signer, *, interval: float = 3600.0) -> None:
        self.ctx = ctx
        self.signer = signer
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, ctx: AppContext) -> Checkpointer:
        """Signing key from CIVIC_SIGNING_KEY (generated under the data dir in development)."""
        settings = ctx.settings
        signer = load_signer(
            configured_pem=settings.signing_key,
            production=settings.is_production,
            data_dir=settings.data_dir,
        )
        return cls(ctx, signer, interval=settings.checkpoint_interval_seconds)

    async def take(self, conn: asyncpg.Connection, node: DirectoryNode) -> Checkpoint:
        """A fresh checkpoint of ``node``'s subtree inside the caller's (scoped) transaction."""
        return await take_checkpoint(
            conn,
            node,
            self.ctx.clock(),
            self.signer,
            self.ctx.store.hasher,
            log_name=self.ctx.settings.log_name,
        )

    async def take_and_store(self, root_code: str) -> Checkpoint | None:
        """Checkpoint one root tenant and keep it; None when the root is gone or closed."""
        async with self.ctx.db.acquire() as conn:
            return await self._take_and_store(conn, root_code)

    async def _take_and_store(self, conn: asyncpg.Connection, root_code: str) -> Checkpoint | None:
        try:
            async with scoped_transaction(
                conn, root_code, statement_timeout_ms=self.ctx.settings.statement_timeout_ms
            ) as (_, scope):
                await conn.execute("SET TRANSACTION READ ONLY")
                node = await find_by_code(conn, scope.code)
                if node is None:
                    return None
                checkpoint = await self.take(conn, node)
        except ScopeNotFound:
            return None
        async with system_transaction(conn):
            return await store_checkpoint(conn, node.root_id, node.id, checkpoint)

    async def tick(self, batch: int = 100) -> int:
        """Checkpoint every root tenant that is due; returns how many were stored.

        One connection for the whole pass, holding the advisory lock only meanwhile: another
        process's clock skips the pass (and then finds nothing due), and no connection is
        kept from the pool between passes.
        """
        due_before: datetime = self.ctx.clock() - timedelta(seconds=self.interval)
        async with self.ctx.db.acquire() as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", *_LOCK):
                return 0
            try:
                codes = [r["code"] for r in await conn.fetch(DUE_ROOTS, due_before, batch)]
                stored = 0
                for code in codes:
                    try:
                        if await self._take_and_store(conn, code) is not None:
                            stored += 1
                    except Exception as exc:  # one tenant must not stop the others
                        log.error("checkpoint not taken", root=code, error=repr(exc))
                return stored
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1, $2)", *_LOCK)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="checkpoint-clock")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _run(self) -> None:
        poll = min(self.interval, MAX_POLL_SECONDS)
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("checkpoint clock interrupted", error=repr(exc))
            await asyncio.sleep(poll)
