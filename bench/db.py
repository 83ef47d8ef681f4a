"""Scratch databases: one fresh database per benchmark group, dropped afterwards."""

from __future__ import annotations

import re
import secrets
from typing import Any

import asyncpg

from bench.registry import url_parts, with_database

PREFIX = "civic_bench_"


def scratch_name(group: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", group.lower()).strip("_")[:30] or "group"
    return f"{PREFIX}{slug}_{secrets.token_hex(4)}"


async def _admin(server_url: str) -> asyncpg.Connection:
    return await asyncpg.connect(server_url, timeout=10)


async def create_scratch(server_url: str, group: str) -> str:
    """Create an empty database for ``group`` on the server; return its URL."""
    name = scratch_name(group)
    conn = await _admin(server_url)
    try:
        await conn.execute(f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8'")
    finally:
        await conn.close()
    return with_database(server_url, name)


async def drop_scratch(server_url: str, database_url: str) -> None:
    """Drop a scratch database made by ``create_scratch`` (only ours: the name is checked)."""
    name = url_parts(database_url)["dbname"]
    if not name.startswith(PREFIX) or not re.fullmatch(r"[a-z0-9_]+", name):
        raise ValueError(f"refusing to drop {name!r}: not a scratch database")
    conn = await _admin(server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def server_info(server_url: str) -> dict[str, Any]:
    """The server's version and the settings that move write throughput."""
    conn = await _admin(server_url)
    try:
        info: dict[str, Any] = {"version": await conn.fetchval("SHOW server_version")}
        for setting in (
            "fsync",
            "synchronous_commit",
            "wal_sync_method",
            "commit_delay",
            "shared_buffers",
            "max_connections",
            "max_wal_size",
        ):
            info[setting] = await conn.fetchval(f"SHOW {setting}")
        return info
    finally:
        await conn.close()


_checkpoint_denied = False


async def checkpoint(server_url: str) -> None:
    """Best-effort CHECKPOINT (needs superuser or pg_checkpoint); a no-op once refused."""
    global _checkpoint_denied
    if _checkpoint_denied:
        return
    conn = await _admin(server_url)
    try:
        await conn.execute("CHECKPOINT")
    except asyncpg.InsufficientPrivilegeError:
        _checkpoint_denied = True
    finally:
        await conn.close()
