"""The asyncpg pool and the two kinds of transaction the application runs.

* ``scoped``: a request's transaction. It switches to the runtime role ``civic_app`` (no
  ownership, no BYPASSRLS) and sets the principal's scope, so row-level security filters
  every statement even if a query forgets its WHERE clause.
* ``system``: projectors, the clock and migrations, as the login role.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from infra.paths import subtree_bounds

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

    @property
    def bounds(self) -> tuple[str, str]:
        """The scope's subtree as a path range (``infra.paths``)."""
        return subtree_bounds(self.path)


# Paths and ids are what we interpolate into the one-round-trip BEGIN: check their shape.
_SAFE_PATH = re.compile(r"^(/[0-9a-f-]{36})+/$")


class ScopeCache:
    """Resolved scopes for a few seconds, so a request enters its scope in its BEGIN.

    Staleness is bounded by ``ttl`` (and cleared at once in-process after hierarchy changes).
    A stale entry can only see less, never more: paths are made of stable node ids, so a
    moved scope's old path no longer covers any node. A closed scope stays usable for at most
    ``ttl`` seconds in other processes.
    """

    def __init__(self, ttl: float = 2.0, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, Scope]] = {}

    def get(self, code: str) -> Scope | None:
        hit = self._entries.get(code)
        if hit is None:
            return None
        if hit[0] < time.monotonic():
            self._entries.pop(code, None)
            return None
        return hit[1]

    def put(self, code: str, scope: Scope) -> None:
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        if _SAFE_PATH.match(scope.path):
            self._entries[code] = (time.monotonic() + self.ttl, scope)

    def clear(self) -> None:
        self._entries.clear()


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb travels as text; msgspec does the (de)coding where it is needed.
    await conn.set_type_codec("jsonb", encoder=str, decoder=str, schema="pg_catalog")


async def _end_open_transaction(conn: asyncpg.Connection) -> None:
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def create_pool(
    dsn: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    session_state: bool = True,
    statement_timeout_ms: int | None = None,
    idle_seconds: float = 300.0,
) -> asyncpg.Pool:
    """An asyncpg pool whose connections decode jsonb as text.

    ``session_state=False``: the pool's users leave nothing in the session (transactions set
    their role and scope with SET LOCAL; a session advisory lock is released in a ``finally``),
    so a released connection needs no reset round trip (asyncpg's default runs
    ``RESET ALL``, ``UNLISTEN *``, ``pg_advisory_unlock_all()``... on every release, one round
    trip of the few a command makes). A transaction left open is still rolled back.

    ``statement_timeout_ms``: every statement of the pool's sessions is cancelled after that
    long (sent with the connection's start-up, so it costs no round trip), the autocommit
    ones too, which no transaction's ``SET LOCAL`` bounds (a one-statement command).

    ``idle_seconds``: a released connection unused for that long is closed (and opened again
    when next needed), so a burst's connections go back to the server's ``max_connections``.
    """
    settings = (
        {} if statement_timeout_ms is None else {"statement_timeout": str(statement_timeout_ms)}
    )
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=None if session_state else _end_open_transaction,
        command_timeout=60,
        max_inactive_connection_lifetime=idle_seconds,
        server_settings=settings,
    )
    assert pool is not None
    return pool


# Statements that ride along with the COMMIT message (one round trip fewer per command).
_deferred: ContextVar[list[str] | None] = ContextVar("civic_deferred_sql", default=None)


def hex_text(value: str) -> str:
    """A text literal no input can break out of: hex-encoded UTF-8, decoded by PostgreSQL."""
    return f"convert_from('\\x{value.encode().hex()}'::bytea, 'UTF8')"


def hex_bytea(value: bytes) -> str:
    return f"'\\x{value.hex()}'::bytea"


def defer_until_commit(statement: str) -> None:
    """Run ``statement`` (built only from ``hex_text``/``hex_bytea`` literals and ints) in the
    same message as this transaction's COMMIT."""
    pending = _deferred.get()
    if pending is None:
        raise RuntimeError("defer_until_commit outside a transaction")
    pending.append(statement)


@asynccontextmanager
async def _transaction(conn: asyncpg.Connection, begin: str) -> AsyncIterator[asyncpg.Connection]:
    pending: list[str] = []
    token = _deferred.set(pending)
    try:
        await conn.execute(begin)
        try:
            yield conn
        except BaseException:
            if not conn.is_closed():
                await conn.execute("ROLLBACK")
            raise
        try:
            await conn.execute("; ".join([*pending, "COMMIT"]))
        except BaseException:
            # A deferred statement failed: the rest of the message was skipped and the
            # transaction is aborted; end it before the connection goes back to the pool.
            if not conn.is_closed() and conn.is_in_transaction():
                await conn.execute("ROLLBACK")
            raise
    finally:
        _deferred.reset(token)


@asynccontextmanager
async def scoped_transaction(
    conn: asyncpg.Connection,
    scope_code: str,
    *,
    statement_timeout_ms: int = 30_000,
    cache: ScopeCache | None = None,
) -> AsyncIterator[tuple[asyncpg.Connection, Scope]]:
    """Begin a transaction as ``civic_app`` inside the scope of the node ``scope_code``."""
    begin = (
        f"BEGIN; SET LOCAL ROLE {RUNTIME_ROLE}; "
        f"SET LOCAL statement_timeout = {int(statement_timeout_ms)}"
    )
    cached = cache.get(scope_code) if cache is not None else None
    if cached is not None:
        # One round trip: the scope's settings ride along with BEGIN.
        path = cached.path
        begin += (
            f"; SELECT set_config('civic.root', '{cached.root_id}', true),"
            f" set_config('civic.scope_lo', '{path}', true),"
            f" set_config('civic.scope_hi', '{path[:-1]}0', true),"
            f" set_config('civic.unit', '{1 if cached.is_unit else 0}', true)"
        )
        async with _transaction(conn, begin):
            yield conn, cached
        return
    async with _transaction(conn, begin):
        row = await conn.fetchrow("SELECT * FROM civic_enter_scope($1)", scope_code)
        if row is None:
            raise ScopeNotFound(scope_code)
        scope = Scope(row["node_id"], row["root_id"], row["code"], row["kind"], row["path"])
        if cache is not None:
            cache.put(scope_code, scope)
        yield conn, scope


@asynccontextmanager
async def bootstrap_transaction(
    conn: asyncpg.Connection, root_id: UUID
) -> AsyncIterator[asyncpg.Connection]:
    """A transaction as ``civic_app`` scoped to a root tenant that does not exist yet."""
    async with _transaction(conn, f"BEGIN; SET LOCAL ROLE {RUNTIME_ROLE}"):
        await conn.execute(
            "SELECT set_config('civic.root', $1, true), set_config('civic.scope_lo', $2, true),"
            " set_config('civic.scope_hi', $3, true), set_config('civic.unit', '0', true)",
            str(root_id),
            *subtree_bounds(f"/{root_id}/"),
        )
        yield conn


@asynccontextmanager
async def system_transaction(conn: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    async with _transaction(conn, "BEGIN"):
        yield conn
