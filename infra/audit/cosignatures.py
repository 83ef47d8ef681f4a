"""Witness cosignatures of a root's transparency tree (C2SP tlog-cosignature v1): stored once
checked, counted, and attached to the checkpoints whose tree they cosign."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

import asyncpg
import msgspec

from infra.audit.checkpoints import Checkpoint, Cosignature
from infra.audit.signing import b64

INSERT_COSIGNATURE = """
INSERT INTO audit_cosignatures (root_id, tree_size, tree_root, witness, public_key, signed_at,
                                line, posted_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (root_id, tree_size, witness, public_key) DO NOTHING
RETURNING id
"""

COSIGNATURES_OF = """
SELECT tree_size, tree_root, witness, public_key, signed_at, line FROM audit_cosignatures
WHERE root_id = $1 AND tree_size = ANY($2::bigint[])
ORDER BY tree_size, id
LIMIT $3
"""

COUNT_COSIGNATURES = "SELECT count(*) FROM audit_cosignatures WHERE root_id = $1 AND tree_size = $2"

#: witnesses per tree size kept and served (a log has a handful of witnesses)
MAX_COSIGNATURES_PER_SIZE = 20


@dataclass(frozen=True)
class StoredCosignature:
    tree_size: int
    tree_root: bytes
    witness: str
    public_key: bytes
    signed_at: int
    line: str


async def insert_cosignature(
    conn: asyncpg.Connection, root_id: UUID, c: StoredCosignature, posted_by: str
) -> bool:
    """Store a checked cosignature; False when that witness key already cosigned the size."""
    return (
        await conn.fetchval(
            INSERT_COSIGNATURE,
            root_id,
            c.tree_size,
            c.tree_root,
            c.witness,
            c.public_key,
            c.signed_at,
            c.line,
            posted_by,
        )
        is not None
    )


async def count_cosignatures(conn: asyncpg.Connection, root_id: UUID, size: int) -> int:
    n: int = await conn.fetchval(COUNT_COSIGNATURES, root_id, size)
    return n


async def cosignatures_of(
    conn: asyncpg.Connection, root_id: UUID, sizes: Sequence[int]
) -> list[StoredCosignature]:
    rows = await conn.fetch(
        COSIGNATURES_OF, root_id, list(sizes), MAX_COSIGNATURES_PER_SIZE * max(1, len(sizes))
    )
    return [
        StoredCosignature(
            r["tree_size"],
            bytes(r["tree_root"]),
            r["witness"],
            bytes(r["public_key"]),
            r["signed_at"],
            r["line"],
        )
        for r in rows
    ]


async def with_cosignatures(
    conn: asyncpg.Connection, root_id: UUID, checkpoints: list[Checkpoint]
) -> list[Checkpoint]:
    """The checkpoints with the witness cosignatures of their tree (lines appended to the
    note, as C2SP cosigned checkpoints are distributed)."""
    sizes = sorted({c.tree_size for c in checkpoints if c.tree_size is not None and c.note})
    if not sizes:
        return checkpoints
    found: dict[tuple[int, str], list[Cosignature]] = {}
    for c in await cosignatures_of(conn, root_id, sizes):
        found.setdefault((c.tree_size, c.tree_root.hex()), []).append(
            Cosignature(
                witness=c.witness, public_key=b64(c.public_key), time=c.signed_at, line=c.line
            )
        )
    out: list[Checkpoint] = []
    for cp in checkpoints:
        cos = found.get((cp.tree_size or 0, cp.tree_root or ""), [])
        if cos and cp.note:
            cp = msgspec.structs.replace(
                cp, note=cp.note + "".join(c.line for c in cos), cosignatures=cos
            )
        out.append(cp)
    return out
