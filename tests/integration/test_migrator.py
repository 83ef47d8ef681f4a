"""The migrator applies numbered files once, in order, and refuses what would reorder them."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest

from infra import migrator
from infra.dsn import with_database
from infra.migrator import Migration, MigrationError

# NNNN_<verb>_<object>: the verb says what the file does to the schema.
_VERBS = ("create", "add", "alter", "replace", "drop", "rename", "backfill", "grant", "revoke")
_NAME = re.compile(rf"^(?:{'|'.join(_VERBS)})_[a-z0-9_]+$")


@pytest.fixture
async def empty_db(server_url: str) -> AsyncIterator[asyncpg.Connection]:
    name = f"civic_migrator_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(with_database(server_url, name))
    try:
        yield conn
    finally:
        await conn.close()
        admin = await asyncpg.connect(server_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def _m(version: int, table: str) -> Migration:
    return Migration(version, f"create_{table}", f"CREATE TABLE {table} (id int)")


async def test_a_file_numbered_below_the_highest_applied_is_refused(
    empty_db: asyncpg.Connection,
) -> None:
    applied = await migrator.apply(empty_db, [_m(1, "t_one"), _m(3, "t_three")])
    assert [m.version for m in applied] == [1, 3]

    with pytest.raises(MigrationError, match="0002_create_t_two numbered below"):
        await migrator.apply(empty_db, [_m(1, "t_one"), _m(2, "t_two"), _m(3, "t_three")])
    # Refused before anything ran: the late file's table does not exist.
    assert await empty_db.fetchval("SELECT to_regclass('t_two')") is None

    # The next free number is fine.
    applied = await migrator.apply(empty_db, [_m(1, "t_one"), _m(3, "t_three"), _m(4, "t_four")])
    assert [m.version for m in applied] == [4]


async def test_an_applied_file_that_was_edited_is_refused(empty_db: asyncpg.Connection) -> None:
    await migrator.apply(empty_db, [_m(1, "t_one")])
    edited = Migration(1, "create_t_one", "CREATE TABLE t_one (id bigint)")
    with pytest.raises(MigrationError, match="edited after it was applied"):
        await migrator.apply(empty_db, [edited])


def test_shipped_migrations_are_named_verb_object() -> None:
    names = [f"{m.version:04d}_{m.name}" for m in migrator.discover()]
    assert names, "no migrations shipped"
    bad = [n for n in names if not _NAME.match(n.split("_", 1)[1])]
    assert bad == [], f"not NNNN_<verb>_<object> with a verb in {_VERBS}: {bad}"
