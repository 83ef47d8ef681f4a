"""The deployment's crypto profile, recorded once so that every event verifies with it.

Per deployment rather than per root: the chain hash of an event is implied by where it is
stored, the append path and verification need no per-row algorithm, and nobody can mix
algorithms inside one tenant's history by switching a setting. A deployment that already
holds events before the profile was recorded is ``standard`` (SHA-256), which is what those
events used; a process configured otherwise refuses to start instead of writing chains the
rest of the deployment cannot verify. Moving an existing deployment to ``gm`` is a
migration to a new deployment (replaying the events into it re-chains them with SM3).
"""

from __future__ import annotations

import asyncpg

CHAIN_HASH = {"standard": "sha256", "gm": "sm3"}

RECORDED = "SELECT profile FROM crypto_profile"
RECORD = """
INSERT INTO crypto_profile (profile, chain_hash)
SELECT CASE WHEN EXISTS (SELECT 1 FROM events) THEN 'standard' ELSE $1 END,
       CASE WHEN EXISTS (SELECT 1 FROM events) THEN 'sha256' ELSE $2 END
ON CONFLICT (only_row) DO NOTHING
"""


class CryptoProfileMismatch(RuntimeError):
    """CIVIC_CRYPTO_PROFILE differs from the profile the deployment's data uses."""


async def ensure_profile(conn: asyncpg.Connection, profile: str) -> str:
    """Record the profile on first start; refuse a configuration that differs from it."""
    if profile not in CHAIN_HASH:
        raise CryptoProfileMismatch(f"CIVIC_CRYPTO_PROFILE is 'standard' or 'gm', not {profile!r}")
    await conn.execute(RECORD, profile, CHAIN_HASH[profile])
    recorded: str = await conn.fetchval(RECORDED)
    if recorded != profile:
        raise CryptoProfileMismatch(
            f"this deployment's data uses the {recorded!r} crypto profile; "
            f"CIVIC_CRYPTO_PROFILE is {profile!r}"
        )
    return recorded
