"""The request pool skips asyncpg's reset query on release (create_pool(session_state=False)):
what a request leaves behind must still never reach the next one."""

from __future__ import annotations

import asyncpg
import pytest

from infra import migrator
from infra.database import RUNTIME_ROLE, create_pool, scoped_transaction
from tests.support import fresh_county_code


async def _single(database_url: str) -> asyncpg.Pool:
    return await create_pool(database_url, min_size=1, max_size=1, session_state=False)


async def test_a_transaction_left_open_is_rolled_back_on_release(database_url: str) -> None:
    pool = await _single(database_url)
    try:
        async with pool.acquire() as conn:
            login = await conn.fetchval("SELECT current_user")
            await conn.execute(
                f"BEGIN; SET LOCAL ROLE {RUNTIME_ROLE};"
                " SELECT set_config('civic.root', '00000000-0000-0000-0000-000000000001', true)"
            )
            assert await conn.fetchval("SELECT current_user") == RUNTIME_ROLE
        async with pool.acquire() as conn:  # the same connection: the pool holds one
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT current_user") == login
            assert await conn.fetchval("SELECT current_setting('civic.root', true)") in (None, "")
    finally:
        await pool.close()


async def test_a_failed_request_transaction_leaves_no_scope_behind(
    database_url: str, pool: asyncpg.Pool
) -> None:
    code = fresh_county_code()
    async with pool.acquire() as setup:
        await setup.execute(
            "INSERT INTO nodes (id, root_id, code, name, kind, parent_id, path, depth, version)"
            " SELECT id, id, $1, '县', 'county', NULL, '/' || id || '/', 1, 1"
            " FROM (SELECT gen_random_uuid() AS id) g",
            code,
        )
    requests = await _single(database_url)
    try:
        async with requests.acquire() as conn:
            try:
                async with scoped_transaction(conn, code):
                    raise RuntimeError("the request fails")
            except RuntimeError:
                pass
        async with requests.acquire() as conn:
            assert not conn.is_in_transaction()
            scope = await conn.fetchrow(
                "SELECT current_user AS who, current_setting('civic.scope_lo', true) AS lo"
            )
            assert scope is not None
            assert scope["who"] != RUNTIME_ROLE and scope["lo"] in (None, "")
    finally:
        await requests.close()


async def test_a_request_pool_bounds_every_statement(database_url: str) -> None:
    """A one-statement command runs outside any transaction's SET LOCAL: the request pool's
    sessions carry the statement timeout themselves (the app passes its setting); the
    migrator's own lifting of it (SET LOCAL) ends with its transaction."""
    pool = await create_pool(
        database_url, min_size=1, max_size=1, session_state=False, statement_timeout_ms=1234
    )
    try:
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW statement_timeout") == "1234ms"
            with pytest.raises(asyncpg.QueryCanceledError):
                await conn.execute("SELECT pg_sleep(3)")
            await migrator.apply(conn)
            assert await conn.fetchval("SHOW statement_timeout") == "1234ms"
    finally:
        await pool.close()
