"""The member blind index and current community (table ``member_identities``, migration 0011).

One row per member: the community it is registered at now, and its identity (a keyed HMAC
of the ID-card number, else the mobile; never the plaintext). The same person is registered
once per community: a partial unique index on (root, community, identity_hash) WHERE active.
Of two concurrent registrations of one person, the second's insert waits for the first and
then finds the slot taken. Everything runs in the command's own transaction.

``transferred`` marks members whose stream began in another community: row-level security
then shows the whole stream to the scope holding the current community (the events policy
of migration 0011).
"""

from __future__ import annotations

from uuid import UUID

import asyncpg

CLAIM = """
INSERT INTO member_identities (root_id, member_id, community_id, identity_hash)
VALUES ($1, $2, $3, $4)
ON CONFLICT (root_id, community_id, identity_hash) WHERE active DO NOTHING
RETURNING member_id
"""
CURRENT_COMMUNITY = """
SELECT community_id FROM member_identities WHERE root_id = $1 AND member_id = $2
"""
# No RETURNING: the moved row may leave the caller's subtree (and so its visibility).
MOVE = """
UPDATE member_identities SET community_id = $3, transferred = true
WHERE root_id = $1 AND member_id = $2
"""
RELEASE = "UPDATE member_identities SET active = false WHERE root_id = $1 AND member_id = $2"
SHRED = """
UPDATE member_identities SET active = false, identity_hash = NULL
WHERE root_id = $1 AND member_id = $2
"""


async def claim(
    conn: asyncpg.Connection, root_id: UUID, member_id: UUID, community_id: UUID, identity: bytes
) -> bool:
    """Reserve the person's slot in the community for ``member_id``; False when the same
    person is registered there already."""
    return await conn.fetchval(CLAIM, root_id, member_id, community_id, identity) is not None


async def current_community(
    conn: asyncpg.Connection, root_id: UUID, member_id: UUID
) -> UUID | None:
    """The community the member is registered at now (``None``: no such member)."""
    community_id: UUID | None = await conn.fetchval(CURRENT_COMMUNITY, root_id, member_id)
    return community_id


async def move(
    conn: asyncpg.Connection, root_id: UUID, member_id: UUID, community_id: UUID
) -> bool:
    """The member's row follows it to ``community_id``; False (nothing moved) when the same
    person already holds a slot there."""
    # A savepoint: the slot being taken is an answer (409 from the domain), not a failed
    # transaction.
    await conn.execute("SAVEPOINT member_identity")
    try:
        moved = await conn.execute(MOVE, root_id, member_id, community_id)
    except asyncpg.UniqueViolationError:
        await conn.execute("ROLLBACK TO SAVEPOINT member_identity")
        return False
    await conn.execute("RELEASE SAVEPOINT member_identity")
    if moved != "UPDATE 1":
        raise RuntimeError(f"member {member_id} has no identity index row")
    return True


async def release(conn: asyncpg.Connection, root_id: UUID, member_id: UUID) -> None:
    """The member is deregistered: the person may register there again."""
    await conn.execute(RELEASE, root_id, member_id)


async def shred(conn: asyncpg.Connection, root_id: UUID, member_id: UUID) -> None:
    """The member is erased: the slot is freed and the blind index (personal data) goes."""
    await conn.execute(SHRED, root_id, member_id)
