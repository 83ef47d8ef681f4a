"""The asyncpg pool and the two kinds of transaction the application runs.

* ``scoped``: a request's transaction. It switches to the runtime role ``civic_app`` (no
  ownership, no BYPASSRLS) and sets the principal's scope, so row-level security filters
  every statement even if a query forgets its WHERE clause.
* ``system``: projectors, the clock and migrations, as the login role.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from uuid import UUID

import asyncpg

RUNTIME_ROLE = "civic_app"


class ScopeNotFound(LookupError):
    """The principal's scope node does not exist (or is closed)."""


class DatabaseUnavailable(RuntimeError):
    """PostgreSQL cannot be reached right now; the API answers 503."""


@dataclass(frozen=True)
class Scope:
    node_id: UUID
    root_id: UUID
    code: str
    kind: str
    path: str

    @property
    def is_unit(self) -> bool:
        return self.kind == "unit"

    def contains_path(self, path: str) -> bool:
        return path.startswith(self.path)


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb travels as text; msgspec does the (de)coding where it is needed.
    await conn.set_type_codec("jsonb", encoder=str, decoder=str, schema="pg_catalog")


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        command_timeout=60,
        max_inactive_connection_lifetime=300,
    )
    assert pool is not None
    return pool


@asynccontextmanager
async def _transaction(conn: asyncpg.Connection, begin: str) -> AsyncIterator[asyncpg.Connection]:
    await conn.execute(begin)
    try:
        yield conn
    except BaseException:
        if not conn.is_closed():
            await conn.execute("ROLLBACK")
        raise
    else:
        await conn.execute("COMMIT")


@asynccontextmanager
async def scoped_transaction(
    conn: asyncpg.Connection, scope_code: str, *, statement_timeout_ms: int = 30_000
) -> AsyncIterator[tuple[asyncpg.Connection, Scope]]:
    """Begin a transaction as ``civic_app`` inside the scope of the node ``scope_code``."""
    begin = (
        f"BEGIN; SET LOCAL ROLE {RUNTIME_ROLE}; "
        f"SET LOCAL statement_timeout = {int(statement_timeout_ms)}"
    )
    async with _transaction(conn, begin):
        row = await conn.fetchrow("SELECT * FROM civic_enter_scope($1)", scope_code)
        if row is None:
            raise ScopeNotFound(scope_code)
        yield conn, Scope(row["node_id"], row["root_id"], row["code"], row["kind"], row["path"])


@asynccontextmanager
async def bootstrap_transaction(
    conn: asyncpg.Connection, root_id: UUID
) -> AsyncIterator[asyncpg.Connection]:
    """A transaction as ``civic_app`` scoped to a root tenant that does not exist yet."""
    async with _transaction(conn, f"BEGIN; SET LOCAL ROLE {RUNTIME_ROLE}"):
        path = f"/{root_id}/"
        await conn.execute(
            "SELECT set_config('civic.root', $1, true), set_config('civic.scope_lo', $2, true),"
            " set_config('civic.scope_hi', $3, true), set_config('civic.unit', '0', true)",
            str(root_id),
            path,
            path[:-1] + "0",
        )
        yield conn


@asynccontextmanager
async def system_transaction(conn: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    async with _transaction(conn, "BEGIN"):
        yield conn
