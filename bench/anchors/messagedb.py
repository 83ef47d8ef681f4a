"""Anchor 3: message-db (Eventide), whose SQL ships in the npm package ``@eventide/message-db``.

At set-up the package is fetched with ``npm pack`` into a temporary directory, and its SQL
files are applied to the scratch database in the order its ``database/install.sh`` runs them
(role, schema, pgcrypto, table, then the files named by install-functions.sh,
install-indexes.sh, install-views.sh and install-privileges.sh). The order is read from those
scripts, not copied here. The package's own create-database step is skipped: the scratch
database is already there.

The benchmark calls ``message_store.write_message(id, stream_name, type, data, metadata,
expected_version)`` with the expected version of each stream, from 8 connections logged in
as the ``message_store`` role (whose default ``search_path`` of ``"$user", public`` is how
message-db's unqualified function and table names resolve). Each connection appends to its
own 50 streams.

message-db serialises writers per *category* (the stream name up to the first ``-``) with an
advisory lock held to commit. ``write_8c`` spreads streams over 300 categories (one per
community node, like our writers), so the lock is no bottleneck and this is message-db at its
fastest; ``write_8c_1cat`` puts all streams in one category (``issue-<uuid>``, Eventide's
usual naming for one entity type), where writes queue behind that lock.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg

from bench.cpu import CpuWindow
from bench.deps import npm_pack
from bench.payload import EVENT_TYPE, PAYLOAD_JSON
from bench.registry import Context, benchmark, group_fixture, with_database
from bench.timing import async_rate

GROUP = "messagedb"
PACKAGE = "@eventide/message-db@1.3.1"
ROLE = "message_store"
CONNECTIONS = 8
STREAMS_PER_WORKER = 50
CATEGORIES = 300
METADATA_JSON = '{"correlationStreamName":"issueCommand-1","schemaVersion":"1"}'
WRITE = "SELECT message_store.write_message($1, $2, $3, $4::jsonb, $5::jsonb, $6)"

_SQL_REF = re.compile(r"\$base/([\w./-]+\.sql)")
_SOURCE = re.compile(r"^\s*(?:source|\.)\s+\$base/([\w./-]+\.sh)\s*$")


def install_order(database_dir: Path, script: str = "install.sh") -> list[Path]:
    """The SQL files ``script`` applies, in order, following ``source``d scripts."""
    files: list[Path] = []
    for line in (database_dir / script).read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        if m := _SOURCE.match(line):
            files += install_order(database_dir, m.group(1))
            continue
        for ref in _SQL_REF.findall(line):
            path = database_dir / ref
            if path not in files:
                files.append(path)
    return files


@group_fixture(GROUP)
async def _install(ctx: Context) -> AsyncIterator[None]:
    with tempfile.TemporaryDirectory(prefix="civic-bench-message-db-") as tmp:
        pkg = await asyncio.to_thread(npm_pack, PACKAGE, Path(tmp))
        database_dir = pkg / "database"
        files = install_order(database_dir)
        names = [f.relative_to(database_dir).as_posix() for f in files]
        for required in ("tables/messages.sql", "functions/write-message.sql"):
            if required not in names:
                raise RuntimeError(f"{required} not found in message-db's install scripts")
        conn = await ctx.connect(server_settings={"client_min_messages": "warning"})
        try:
            role_existed = bool(
                await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", ROLE)
            )
            for f in files:
                await conn.execute(f.read_text())
        finally:
            await conn.close()
        version = (database_dir / "VERSION.txt").read_text().strip()
    ctx.state["info"] = {"package": PACKAGE, "schema_version": version, "sql_files": names}
    # connect as the package's role; fall back to the given user with message-db's search path
    role_url = with_database(ctx.database_url, ctx.url_parts()["dbname"], user=ROLE)
    try:
        probe = await asyncpg.connect(role_url, timeout=10)
        await probe.close()
        ctx.state["url"], ctx.state["settings"] = role_url, {}
    except (OSError, asyncpg.PostgresError):
        ctx.state["url"] = ctx.database_url
        ctx.state["settings"] = {"search_path": "message_store,public"}
    ctx.state["info"]["login_role"] = ROLE if not ctx.state["settings"] else "(given user)"
    try:
        yield
    finally:
        if not role_existed:  # the role is cluster-wide: leave no trace of this run
            conn = await ctx.connect()
            try:
                await conn.execute(f"DROP OWNED BY {ROLE}; DROP ROLE {ROLE}")
            except asyncpg.PostgresError:
                pass  # in use elsewhere on the cluster by now: leave it
            finally:
                await conn.close()


async def _write(ctx: Context, categories: int) -> float:
    conns = [
        await asyncpg.connect(ctx.state["url"], timeout=10, server_settings=ctx.state["settings"])
        for _ in range(CONNECTIONS)
    ]
    try:
        if categories == 1:
            names = [
                [f"issue-{uuid.uuid4()}" for _ in range(STREAMS_PER_WORKER)]
                for _ in range(CONNECTIONS)
            ]
        else:
            names = [
                [
                    f"issueN{(w * STREAMS_PER_WORKER + k) % categories:03d}-{uuid.uuid4()}"
                    for k in range(STREAMS_PER_WORKER)
                ]
                for w in range(CONNECTIONS)
            ]

        async def op(w: int, i: int) -> int:
            k = i % STREAMS_PER_WORKER
            expected = i // STREAMS_PER_WORKER - 1  # -1: the stream does not exist yet
            await conns[w].fetchval(
                WRITE,
                str(uuid.uuid4()),
                names[w][k],
                EVENT_TYPE,
                PAYLOAD_JSON,
                METADATA_JSON,
                expected,
            )
            return 1

        window = CpuWindow({c.get_server_pid() for c in conns})
        rate = await async_rate(
            CONNECTIONS, op, duration=ctx.duration, warmup=ctx.warmup, window=window
        )
        window.report(ctx, rate.events)
        return rate.per_second
    finally:
        for c in conns:
            await c.close()


@benchmark("messagedb.write_8c", GROUP, "events/s", compare=("raw.insert_1row_8c",))
async def write_message_many_categories(ctx: Context) -> float:
    """write_message with expected version, 8 connections, streams over 300 categories."""
    return await _write(ctx, CATEGORIES)


@benchmark("messagedb.write_8c_1cat", GROUP, "events/s", compare=("raw.insert_1row_8c",))
async def write_message_one_category(ctx: Context) -> float:
    """write_message with expected version, 8 connections, all streams in one category."""
    return await _write(ctx, 1)
