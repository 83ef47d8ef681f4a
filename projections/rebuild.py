"""Rebuild a projection beside the live one, then swap it in atomically.

For every projection of ``projections/registry.py`` (each declares its ``tables``):

1. A scratch schema ``civic_rebuild_<name>`` gets an empty copy of each table: columns,
   defaults, identity, statistics targets, constraints and indexes under their live names
   (copied from the catalogue, so a later migration can still name them); unlogged while
   it fills, unless the replica says it writes each row once (``writes_once``).
2. Every settled event the projection handles is replayed into the copies on a connection
   whose ``search_path`` puts the scratch schema first (projection SQL uses unqualified
   names), in short transactions: a long write transaction would hold back every reader's
   horizon (see migration 0001). The live projection keeps running meanwhile.
3. The rebuild takes over the projection's advisory lock: it queues for it and asks the live
   owner to yield (``NOTIFY civic_projection_control, 'yield:<name>'``; the runner finishes
   its batch and releases it). Holding it, it replays the tail.
4. One transaction locks the live tables, moves them to a trash schema, moves the copies into
   ``public``, re-creates row-level security, policies, grants and ownership from the live
   tables, sets the checkpoint to the replayed position and drops the old tables. Readers
   wait for the lock for the duration of the swap (a few milliseconds) and then read the
   new tables; the live runner re-acquires the lock and continues from the new checkpoint.
   The new tables are analysed at once (fresh tables have no planner statistics).

A failed or interrupted rebuild leaves the live projection untouched; the next rebuild
drops the leftovers. Not supported (refused up front, with a message): serial columns
(use identity), triggers, views over the tables, foreign keys to or from them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import asyncpg

from infra.event_store import EVENT_COLUMNS, StoredEvent
from projections.base import REPLAY_COLUMNS, Projection, ReplayEvent
from projections.runner import _LOCK_CLASS, CONTROL_CHANNEL, ENSURE_CHECKPOINT, lock_key

#: (events replayed so far, events to replay as far as known)
Progress = Callable[[int, int], None]

_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")

_READ_BATCH = """
SELECT {} FROM events
WHERE position > $1 AND position < $2 AND type = ANY($3::text[])
ORDER BY position
LIMIT $4
"""
READ_BATCH = _READ_BATCH.format(EVENT_COLUMNS)
READ_LIGHT_BATCH = _READ_BATCH.format(REPLAY_COLUMNS)

COUNT_EVENTS = """
SELECT count(*) FROM events WHERE position > $1 AND position < civic_horizon()
  AND type = ANY($2::text[])
"""

SET_CHECKPOINT = """
UPDATE projection_checkpoints SET position = $2, updated_at = now(), error = NULL WHERE name = $1
"""


class RebuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class RebuildResult:
    name: str
    events: int
    seconds: float
    position: int

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def scratch_schema(name: str) -> str:
    return f"civic_rebuild_{name}"


def _trash_schema(name: str) -> str:
    return f"civic_rebuild_old_{name}"


def _check_ident(value: str) -> str:
    if not _IDENT.match(value):
        raise RebuildError(f"{value!r} is not a plain lower-case SQL identifier")
    return value


def _quote(ident: str) -> str:
    return '"' + ident.replace('"', '""') + '"'


# -- copying a table's definition ---------------------------------------------------------
async def _refuse_unsupported(conn: asyncpg.Connection, tables: Sequence[str]) -> None:
    for t in tables:
        oid = await conn.fetchval("SELECT to_regclass($1)::oid", f"public.{t}")
        if oid is None:
            raise RebuildError(f"table public.{t} does not exist (migrations applied?)")
        problems = await conn.fetch(
            """
            SELECT 'serial column ' || a.attname AS what
            FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
            WHERE d.adrelid = $1 AND pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%'
            UNION ALL
            SELECT 'trigger ' || tgname FROM pg_trigger WHERE tgrelid = $1 AND NOT tgisinternal
            UNION ALL
            SELECT DISTINCT 'view ' || r.ev_class::regclass::text
            FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
            WHERE d.refobjid = $1 AND r.ev_class <> $1
            UNION ALL
            SELECT 'foreign key ' || conname FROM pg_constraint
            WHERE contype = 'f' AND (conrelid = $1 OR confrelid = $1)
            UNION ALL
            SELECT 'partitioned table' FROM pg_class WHERE oid = $1 AND relkind = 'p'
            """,
            oid,
        )
        if problems:
            what = ", ".join(r["what"] for r in problems)
            raise RebuildError(f"cannot rebuild public.{t}: unsupported {what}")


async def _create_copy(
    conn: asyncpg.Connection, schema: str, table: str, *, unlogged: bool = False
) -> None:
    """An empty ``schema.table`` shaped like ``public.table``, constraint and index names kept."""
    live = f"public.{_quote(table)}"
    copy = f"{_quote(schema)}.{_quote(table)}"
    unlogged = unlogged or await conn.fetchval(
        "SELECT relpersistence = 'u' FROM pg_class WHERE oid = $1::regclass", live
    )
    await conn.execute(
        f"CREATE {'UNLOGGED ' if unlogged else ''}TABLE {copy} (LIKE {live} INCLUDING DEFAULTS"
        " INCLUDING GENERATED INCLUDING IDENTITY INCLUDING STORAGE INCLUDING COMMENTS"
        " INCLUDING COMPRESSION)"
    )
    # LIKE leaves out the columns' statistics targets; without them the ANALYZE before the
    # swap would gather what the live table was told not to (migration 0050).
    targets = await conn.fetch(
        "SELECT attname, attstattarget FROM pg_attribute WHERE attrelid = $1::regclass"
        " AND attnum > 0 AND NOT attisdropped AND attstattarget >= 0 ORDER BY attnum",
        live,
    )
    if targets:
        await conn.execute(
            f"ALTER TABLE {copy} "
            + ", ".join(
                f"ALTER COLUMN {_quote(t['attname'])} SET STATISTICS {int(t['attstattarget'])}"
                for t in targets
            )
        )
    constraints = await conn.fetch(
        "SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint"
        " WHERE conrelid = $1::regclass AND contype IN ('p', 'u', 'x', 'c')"
        " ORDER BY contype = 'p' DESC, conname",
        live,
    )
    for c in constraints:
        await conn.execute(f"ALTER TABLE {copy} ADD CONSTRAINT {_quote(c['conname'])} {c['def']}")
    indexes = await conn.fetch(
        """
        SELECT ic.relname, i.indisunique, pg_get_indexdef(i.indexrelid) AS def
        FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
        WHERE i.indrelid = $1::regclass
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
        ORDER BY ic.relname
        """,
        live,
    )
    for ix in indexes:
        definition: str = ix["def"]
        _, using, rest = definition.partition(" USING ")
        if not using:
            raise RebuildError(f"cannot copy index {ix['relname']}: {definition}")
        unique = "UNIQUE " if ix["indisunique"] else ""
        await conn.execute(f"CREATE {unique}INDEX {_quote(ix['relname'])} ON {copy} USING {rest}")


async def _security_ddl(conn: asyncpg.Connection, table: str) -> list[str]:
    """Statements that give a new ``public.table`` the live one's owner, RLS, policies and
    grants (read before the live table is moved away)."""
    live = f"public.{_quote(table)}"
    ddl: list[str] = []
    rel = await conn.fetchrow(
        "SELECT pg_get_userbyid(relowner) AS owner, relrowsecurity, relforcerowsecurity"
        " FROM pg_class WHERE oid = $1::regclass",
        live,
    )
    me = await conn.fetchval("SELECT current_user")
    if rel["owner"] != me:
        ddl.append(f"ALTER TABLE {live} OWNER TO {_quote(rel['owner'])}")
    if rel["relrowsecurity"]:
        ddl.append(f"ALTER TABLE {live} ENABLE ROW LEVEL SECURITY")
    if rel["relforcerowsecurity"]:
        ddl.append(f"ALTER TABLE {live} FORCE ROW LEVEL SECURITY")
    for p in await conn.fetch(
        "SELECT policyname, permissive, roles, cmd, qual, with_check FROM pg_policies"
        " WHERE schemaname = 'public' AND tablename = $1 ORDER BY policyname",
        table,
    ):
        roles = ", ".join("PUBLIC" if r == "public" else _quote(r) for r in p["roles"])
        stmt = f"CREATE POLICY {_quote(p['policyname'])} ON {live} AS {p['permissive']}"
        stmt += f" FOR {p['cmd']} TO {roles}"
        if p["qual"] is not None:
            stmt += f" USING ({p['qual']})"
        if p["with_check"] is not None:
            stmt += f" WITH CHECK ({p['with_check']})"
        ddl.append(stmt)
    for g in await conn.fetch(
        """
        SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END AS grantee,
               a.privilege_type, a.is_grantable
        FROM pg_class c, aclexplode(c.relacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee
        WHERE c.oid = $1::regclass AND a.grantee <> c.relowner
        ORDER BY 1, 2
        """,
        live,
    ):
        option = " WITH GRANT OPTION" if g["is_grantable"] else ""
        ddl.append(f"GRANT {g['privilege_type']} ON {live} TO {g['grantee']}{option}")
    return ddl


# -- replaying ----------------------------------------------------------------------------
async def prepare_scratch(
    conn: asyncpg.Connection, projection: Projection, *, unlogged: bool = False
) -> str:
    """(Re)create the scratch schema with empty copies of the projection's tables
    (``unlogged``: without WAL while they fill; ``_set_logged`` before they go live)."""
    name = _check_ident(projection.name)
    tables = [_check_ident(t) for t in projection.tables]
    await _refuse_unsupported(conn, tables)
    schema = scratch_schema(name)
    await conn.execute(f"DROP SCHEMA IF EXISTS {_quote(schema)} CASCADE")
    await conn.execute(f"DROP SCHEMA IF EXISTS {_quote(_trash_schema(name))} CASCADE")
    await conn.execute(f"CREATE SCHEMA {_quote(schema)}")
    for t in tables:
        await _create_copy(conn, schema, t, unlogged=unlogged)
    return schema


async def _set_logged(conn: asyncpg.Connection, projection: Projection, schema: str) -> None:
    """Give the copies the live tables' persistence (written to WAL once, here)."""
    for t in projection.tables:
        live, copy = await conn.fetchrow(
            "SELECT (SELECT relpersistence::text FROM pg_class WHERE oid = $1::regclass),"
            " (SELECT relpersistence::text FROM pg_class WHERE oid = $2::regclass)",
            f"public.{_quote(t)}",
            f"{_quote(schema)}.{_quote(t)}",
        )
        if live == "p" and copy == "u":
            await conn.execute(f"ALTER TABLE {_quote(schema)}.{_quote(t)} SET LOGGED")


async def drop_scratch(conn: asyncpg.Connection, projection: Projection) -> None:
    await conn.execute(
        f"DROP SCHEMA IF EXISTS {_quote(scratch_schema(_check_ident(projection.name)))} CASCADE"
    )


def replica(projection: Projection) -> Projection:
    """What replays alone into scratch tables: ``projection.for_rebuild()`` when the
    projection offers one (it may then keep state in memory between batches and defer
    writes until its optional ``finish(conn)``), else the projection itself."""
    make = getattr(projection, "for_rebuild", None)
    replica: Projection = make() if callable(make) else projection
    return replica


async def _finish(conn: asyncpg.Connection, projection: Projection, schema: str) -> None:
    finish = getattr(projection, "finish", None)
    if finish is None:
        return
    await conn.execute(f"SET search_path = {_quote(schema)}, public")
    try:
        async with conn.transaction():
            await finish(conn)
    finally:
        await conn.execute("RESET search_path")


Events = list[StoredEvent] | list[ReplayEvent]


async def _fetch(
    conn: asyncpg.Connection, types: list[str], after: int, batch_size: int, light: bool
) -> tuple[Events, int]:
    async with conn.transaction(readonly=True):
        horizon: int = await conn.fetchval("SELECT civic_horizon()")
        if light:
            rows = await conn.fetch(READ_LIGHT_BATCH, after, horizon, types, batch_size)
            return [ReplayEvent._make(r) for r in rows], horizon
        rows = await conn.fetch(READ_BATCH, after, horizon, types, batch_size)
    return [StoredEvent.from_record(r) for r in rows], horizon


async def replay(
    conn: asyncpg.Connection,
    projection: Projection,
    schema: str,
    *,
    after: int = 0,
    batch_size: int = 2000,
    on_batch: Callable[[int], None] | None = None,
    reader: asyncpg.Connection | None = None,
) -> tuple[int, int]:
    """Apply every settled event after ``after`` into the tables of ``schema``; returns
    (position reached, events applied). Each batch is its own short transaction. With a
    ``reader`` connection the next batch is read while the current one is applied.

    After each batch the objects alive are frozen out of the cyclic garbage collector's
    reach (``gc.freeze``; reference counting still frees them) until the replay ends: a
    replica may keep hundreds of thousands of states in memory, and re-scanning them at
    every full collection would cost more than the replay itself."""
    types = list(projection.handles)
    light = getattr(projection, "light_replay", False) is True
    applied = 0
    source = reader or conn
    await conn.execute(f"SET search_path = {_quote(schema)}, public")
    pending: asyncio.Task[tuple[Events, int]] | None = None
    try:
        events, horizon = await _fetch(source, types, after, batch_size, light)
        while True:
            full = len(events) == batch_size
            if full and reader is not None:
                pending = asyncio.create_task(
                    _fetch(reader, types, events[-1].position, batch_size, light)
                )
            if events:
                async with conn.transaction():
                    # (replay events only go to a projection that declared it reads no more)
                    await projection.apply(conn, events)  # type: ignore[arg-type]
            applied += len(events)
            gc.freeze()
            after = max(after, events[-1].position if full else horizon - 1)
            if on_batch is not None:
                on_batch(len(events))
            if not full:
                return after, applied
            if pending is not None:
                events, horizon = await pending
                pending = None
            else:
                events, horizon = await _fetch(source, types, after, batch_size, light)
    finally:
        gc.unfreeze()
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        await conn.execute("RESET search_path")


async def _take_over(conn: asyncpg.Connection, name: str, timeout: float) -> None:
    """Hold the projection's advisory lock (session level), asking the live owner to yield."""
    deadline = time.monotonic() + timeout
    while True:
        await conn.execute("SELECT pg_notify($1, $2)", CONTROL_CHANNEL, f"yield:{name}")
        await conn.execute("SET lock_timeout = '3s'")
        try:
            await conn.execute("SELECT pg_advisory_lock($1, $2)", _LOCK_CLASS, lock_key(name))
            return
        except asyncpg.LockNotAvailableError:
            if time.monotonic() >= deadline:
                raise RebuildError(
                    f"projection {name}: its owner did not yield within {timeout:.0f} s"
                ) from None
        finally:
            await conn.execute("RESET lock_timeout")


async def _swap(
    conn: asyncpg.Connection, projection: Projection, schema: str, position: int
) -> None:
    name = projection.name
    trash = _trash_schema(name)
    async with conn.transaction():
        await conn.execute("SET LOCAL lock_timeout = '15s'")
        for t in projection.tables:
            await conn.execute(f"LOCK TABLE public.{_quote(t)} IN ACCESS EXCLUSIVE MODE")
        security = {t: await _security_ddl(conn, t) for t in projection.tables}
        await conn.execute(f"CREATE SCHEMA {_quote(trash)}")
        for t in projection.tables:
            await conn.execute(f"ALTER TABLE public.{_quote(t)} SET SCHEMA {_quote(trash)}")
            await conn.execute(f"ALTER TABLE {_quote(schema)}.{_quote(t)} SET SCHEMA public")
            for stmt in security[t]:
                await conn.execute(stmt)
        await conn.execute(ENSURE_CHECKPOINT, name)
        await conn.execute(SET_CHECKPOINT, name, position)
        await conn.execute(f"DROP SCHEMA {_quote(trash)} CASCADE")
        await conn.execute(f"DROP SCHEMA {_quote(schema)}")


async def rebuild(
    pool: asyncpg.Pool,
    projection: Projection,
    *,
    batch_size: int = 2000,
    progress: Progress | None = None,
    takeover_timeout: float = 60.0,
) -> RebuildResult:
    """Replay ``projection`` into fresh tables and swap them in (see the module docstring)."""
    started = time.perf_counter()
    name = projection.name
    target = replica(projection)
    # Unlogged copies spare the WAL of rows rewritten batch after batch, at the price of
    # writing every row once more when they are made logged; a replica that writes each row
    # about once (``writes_once``) fills copies with the live tables' persistence instead.
    unlogged = getattr(target, "writes_once", False) is not True
    async with pool.acquire() as conn, pool.acquire() as reader:
        # (counted on the reader while the scratch tables are made)
        counting = asyncio.create_task(reader.fetchval(COUNT_EVENTS, 0, list(projection.handles)))
        swapped = False
        try:
            try:
                schema = await prepare_scratch(conn, projection, unlogged=unlogged)
            finally:
                total: int = await counting
            done = 0

            def advance(n: int) -> None:
                nonlocal done, total
                done += n
                total = max(total, done)
                if progress is not None:
                    progress(done, total)

            if progress is not None:
                progress(0, total)
            position, _ = await replay(
                conn, target, schema, batch_size=batch_size, on_batch=advance, reader=reader
            )
            await _finish(conn, target, schema)
            await _set_logged(conn, projection, schema)
            await _take_over(conn, name, takeover_timeout)
            try:
                position, _ = await replay(
                    conn,
                    target,
                    schema,
                    after=position,
                    batch_size=batch_size,
                    on_batch=advance,
                    reader=reader,
                )
                await _finish(conn, target, schema)
                await _swap(conn, projection, schema, position)
                swapped = True
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1, $2)", _LOCK_CLASS, lock_key(name))
            for t in projection.tables:  # fresh tables have no planner statistics yet
                await conn.execute(f"ANALYZE public.{_quote(t)}")
        finally:
            if not swapped and not conn.is_closed():
                await drop_scratch(conn, projection)
    return RebuildResult(name, done, time.perf_counter() - started, position)
