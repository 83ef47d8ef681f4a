"""Reserving a pairing's term: no second active pairing of one unit and one community with
overlapping terms (table ``pairing_terms``, migration 0010).

The rule needs the other active terms of the pair before the domain decides, so the check
cannot be a constraint alone: a transaction-level advisory lock on the (unit, community)
pair serialises signings of that pair, and the second of two concurrent signings waits, then
sees the first's term. Everything runs in the command's own transaction.
"""

from __future__ import annotations

from datetime import date
from uuid import UUID

import asyncpg

#: advisory-lock namespace of pairing signings ("pa").
_PAIR_LOCK = 0x7061

LOCK_PAIR = "SELECT pg_advisory_xact_lock($1::int, hashtext($2::text))"
ACTIVE_TERMS = """
SELECT starts_on, ends_on FROM pairing_terms
WHERE root_id = $1 AND unit_id = $2 AND community_id = $3 AND active
"""
INSERT_TERM = """
INSERT INTO pairing_terms (root_id, pairing_id, unit_id, community_id, starts_on, ends_on)
VALUES ($1, $2, $3, $4, $5, $6)
"""
END_TERM = "UPDATE pairing_terms SET active = false WHERE root_id = $1 AND pairing_id = $2"


async def lock_active_terms(
    conn: asyncpg.Connection, root_id: UUID, unit_id: UUID, community_id: UUID
) -> list[tuple[date, date]]:
    """Lock the pair for this transaction and return its active terms (start, end)."""
    await conn.execute(LOCK_PAIR, _PAIR_LOCK, f"{unit_id}/{community_id}")
    rows = await conn.fetch(ACTIVE_TERMS, root_id, unit_id, community_id)
    return [(r["starts_on"], r["ends_on"]) for r in rows]


async def reserve(
    conn: asyncpg.Connection,
    root_id: UUID,
    pairing_id: UUID,
    unit_id: UUID,
    community_id: UUID,
    starts_on: date,
    ends_on: date,
) -> None:
    await conn.execute(INSERT_TERM, root_id, pairing_id, unit_id, community_id, starts_on, ends_on)


async def release(conn: asyncpg.Connection, root_id: UUID, pairing_id: UUID) -> None:
    """The pairing ended early: its term no longer blocks a new signing."""
    await conn.execute(END_TERM, root_id, pairing_id)
