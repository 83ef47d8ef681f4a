"""The Idempotency-Key of ``POST /v1/issues:batch`` itself (each item has its own as well).

Each batch item carries its own key and runs through ``run_command``; a key on the batch
request itself replays the whole first answer, like any other POST.

Twins racing with one key: the answer is stored only when the batch is done, so a twin
that started meanwhile finds nothing to replay. Each batch therefore first *claims* its
key: a row under a key of its own namespace, holding the request's fingerprint, committed
before any item runs. Exactly one twin inserts it; the others read it and answer 422 when
their body differs. A twin with the same body goes on: its items replay the winner's one
by one (their own keys settle that), so nothing is created twice. The claim is never
replayed as an answer (only this check reads it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from infra.database import scoped_transaction
from services.auth import Principal
from services.commands.session import FIND_KEY, CommandRequest, stored_answer
from services.context import AppContext

SAVE_BATCH_KEY = """
INSERT INTO idempotency_keys (principal, key, request_hash, status, response)
VALUES ($1, $2, $3, $4, $5)
"""
CLAIM_BATCH_KEY = """
INSERT INTO idempotency_keys (principal, key, request_hash, status, response)
VALUES ($1, $2, $3, 202, '') ON CONFLICT (principal, key) DO NOTHING
RETURNING true
"""
BATCH_CLAIM_PREFIX = "issues:batch-claim:"


@asynccontextmanager
async def _in_scope(ctx: AppContext, principal: Principal) -> AsyncIterator[asyncpg.Connection]:
    """A transaction in the caller's scope (the keys table is guarded by it too)."""
    async with (
        ctx.db.acquire() as conn,
        scoped_transaction(
            conn,
            principal.scope,
            statement_timeout_ms=ctx.settings.statement_timeout_ms,
            cache=ctx.scopes,
        ),
    ):
        yield conn


async def batch_replay(
    ctx: AppContext, principal: Principal, request: CommandRequest
) -> tuple[int, bytes] | None:
    """The stored answer to this batch request's Idempotency-Key (422 if the body differs),
    else None, having claimed the key for this request (422 if a twin with another body
    claimed it first).

    Enters the caller's scope even without a key, so a token whose scope node does not exist
    is refused (401) once for the batch, not once per item.
    """
    async with _in_scope(ctx, principal) as conn:
        if request.idempotency_key is None:
            return None
        owner = principal.idempotency_owner
        row = await conn.fetchrow(FIND_KEY, owner, request.idempotency_key)
        if row is None:
            claim = BATCH_CLAIM_PREFIX + request.idempotency_key
            # A concurrent twin's insert waits for ours to commit, then does nothing.
            if not await conn.fetchval(CLAIM_BATCH_KEY, owner, claim, request.fingerprint):
                claimed = await conn.fetchrow(FIND_KEY, owner, claim)
                if claimed is not None:
                    stored_answer(request, claimed)  # 422 for another body
                return None
    replay = stored_answer(request, row)
    return None if replay is None else (replay.status, replay.body)


async def batch_remember(
    ctx: AppContext, principal: Principal, request: CommandRequest, status: int, body: bytes
) -> None:
    """Keep the batch's answer under its Idempotency-Key (a racing twin's answer wins)."""
    if request.idempotency_key is None:
        return
    try:
        async with _in_scope(ctx, principal) as conn:
            await conn.execute(
                SAVE_BATCH_KEY,
                principal.idempotency_owner,
                request.idempotency_key,
                request.fingerprint,
                status,
                body,
            )
    except asyncpg.UniqueViolationError:
        pass  # the twin's items replayed ours one by one; its answer is equivalent
