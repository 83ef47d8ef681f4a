"""The event store: append a stream's events in one round trip, load streams, read in order.

See migration 0001 for the table, the append function and how positions are made.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID

import asyncpg

from infra.chain import (
    CanonicalText,
    ChainHasher,
    Sha256Chain,
    canonical_instant,
    encode_canonical,
)
from infra.database import Scope
from infra.event_codec import NewEvent, decode_json

_CONCURRENCY_SQLSTATE = "CV409"


class ConcurrencyError(Exception):
    """The stream moved on since it was loaded (expected version is stale)."""

    def __init__(self, stream_id: UUID, expected: int, actual: int | None) -> None:
        super().__init__(f"stream {stream_id} is at version {actual}, expected {expected}")
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True)
class AppendContext:
    """Who and why: the metadata every event of one command carries."""

    actor: str
    correlation_id: UUID | None = None
    causation_id: UUID | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True)
class AppendResult:
    stream_id: UUID
    version: int
    positions: tuple[int, ...]
    node_seqs: tuple[int, ...]
    #: the appended events' ids (what a follow-up event names as its causation)
    event_ids: tuple[UUID, ...] = ()

    @property
    def position(self) -> int:
        return self.positions[-1]


@dataclass(frozen=True, slots=True)
class StoredEvent:
    position: int
    root_id: UUID
    node_id: UUID
    node_seq: int
    prev_hash: bytes
    hash: bytes
    stream_id: UUID
    stream_type: str
    version: int
    event_id: UUID
    type: str
    schema_version: int
    data: str
    occurred_at: datetime
    recorded_at: datetime
    actor: str
    correlation_id: UUID | None
    causation_id: UUID | None
    idempotency_key: str | None

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> StoredEvent:
        return cls(*r)


EVENT_COLUMNS = (
    "position, root_id, node_id, node_seq, prev_hash, hash, stream_id, stream_type, version,"
    " event_id, type, schema_version, data, occurred_at, recorded_at, actor, correlation_id,"
    " causation_id, idempotency_key"
)

APPEND = """
SELECT event_position, event_version, event_seq
FROM civic_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                  $18)
"""

CHAIN_TIP = "SELECT tip_seq, tip_hash, tip_base FROM civic_chain_tip($1, $2)"
APPEND_LINKED = """
SELECT event_position, event_version, event_seq
FROM civic_append_linked($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                         $17, $18, $19)
"""

COMMAND_APPEND = """
SELECT event_position, event_version, event_seq
FROM civic_command_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                          $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27)
"""

LOAD_STREAM = f"""
SELECT {EVENT_COLUMNS} FROM events
WHERE root_id = $1 AND stream_id = $2 AND version > $3
ORDER BY version
"""

# The same, with each event's node path (None where row-level security hides the node): what
# a cache of the stream needs to know who may be served it.
LOAD_STREAM_WITH_PATHS = f"""
SELECT {EVENT_COLUMNS}, (SELECT n.path FROM nodes n WHERE n.id = events.node_id) FROM events
WHERE root_id = $1 AND stream_id = $2
ORDER BY version
"""

# Everything settled after a position, oldest first; the horizon comes back with each row
# batch so a reader can move its cursor past positions that no transaction can still take.
READ_SETTLED = f"""
SELECT {EVENT_COLUMNS} FROM events
WHERE position > $1 AND position < civic_horizon()
ORDER BY position
LIMIT $2
"""


@dataclass
class TxAppender:
    """Counts events appended in the current transaction: each gets its own position."""

    conn: asyncpg.Connection
    appended: int = 0
    results: list[AppendResult] = field(default_factory=list)


@dataclass(frozen=True)
class IdempotencyRecord:
    """A command's first answer, stored under its Idempotency-Key with its events.

    ``response`` names the positions the append assigns as ``placeholder + i`` (i-th event),
    which the database replaces with the real ones (see ``PLACEHOLDER_FLOOR``).
    """

    principal: str
    request_hash: bytes
    status: int
    response: bytes
    placeholder: int


#: Provisional positions start above this: 19 digits (so ``placeholder + i`` never is a
#: prefix of another) and far beyond any real position (xid << 16).
PLACEHOLDER_FLOOR = 9 * 10**18


def provisional_base() -> int:
    """A fresh placeholder base for one command's provisional positions."""
    return PLACEHOLDER_FLOOR + (secrets.randbits(40) << 16)


def _raise_conflict(exc: asyncpg.PostgresError, stream_id: UUID, expected: int) -> None:
    """Raise ConcurrencyError when ``exc`` says the stream is not at ``expected``."""
    if exc.sqlstate == _CONCURRENCY_SQLSTATE:
        actual = getattr(exc, "detail", None)
        raise ConcurrencyError(stream_id, expected, int(actual) if actual else None) from exc
    if isinstance(exc, asyncpg.UniqueViolationError) and "stream_version" in str(
        exc.constraint_name
    ):
        raise ConcurrencyError(stream_id, expected, None) from exc


def _event_arrays(
    events: Sequence[NewEvent],
) -> tuple[list[UUID], list[str], list[int], list[str], list[datetime]]:
    """The events' columns as the append functions take them (one array each)."""
    return (
        [e.event_id for e in events],
        [e.type for e in events],
        [e.schema_version for e in events],
        [e.data.decode() for e in events],
        [e.occurred_at.astimezone(UTC) for e in events],
    )


def _result(
    stream_id: UUID, events: Sequence[NewEvent], rows: Sequence[asyncpg.Record]
) -> AppendResult:
    return AppendResult(
        stream_id=stream_id,
        version=rows[-1]["event_version"],
        positions=tuple(r["event_position"] for r in rows),
        node_seqs=tuple(r["event_seq"] for r in rows),
        event_ids=tuple(e.event_id for e in events),
    )


class EventStore:
    def __init__(self, hasher: ChainHasher | None = None) -> None:
        self.hasher: ChainHasher = hasher or Sha256Chain()
        #: SHA-256 links are computed by civic_append in SQL; others here (two round trips)
        self.sql_links = self.hasher.name == "sha256"

    def _canonical(
        self,
        root_id: UUID,
        node_id: UUID,
        stream_id: UUID,
        stream_type: str,
        expected_version: int,
        events: Sequence[NewEvent],
        recorded_at: datetime,
        context: AppendContext,
    ) -> tuple[list[bytes], list[bytes]]:
        """Each event's canonical bytes (stored with it, migration 0038) and their digest
        (what its chain link covers)."""
        # canonical_event's bytes, with what the batch shares rendered once (a batch of 100
        # spent most of its Python time formatting the same ids and instant 100 times)
        recorded_text = canonical_instant(recorded_at)
        root_text, node_text, stream_text = str(root_id), str(node_id), str(stream_id)
        causation = None if context.causation_id is None else str(context.causation_id)
        correlation = None if context.correlation_id is None else str(context.correlation_id)
        canonical = [
            encode_canonical(
                CanonicalText(
                    context.actor,
                    causation,
                    correlation,
                    decode_json(event.data),
                    str(event.event_id),
                    context.idempotency_key,
                    node_text,
                    canonical_instant(event.occurred_at),
                    recorded_text,
                    root_text,
                    event.schema_version,
                    stream_text,
                    stream_type,
                    event.type,
                    expected_version + offset,
                )
            )
            for offset, event in enumerate(events, start=1)
        ]
        digest = self.hasher.digest
        return canonical, [digest(c) for c in canonical]

    async def _append_linked(
        self,
        tx: TxAppender,
        root_id: UUID,
        node_id: UUID,
        stream_id: UUID,
        stream_type: str,
        expected_version: int,
        events: Sequence[NewEvent],
        recorded_at: datetime,
        context: AppendContext,
        canonical: list[bytes],
        digests: list[bytes],
    ) -> list[asyncpg.Record]:
        tip = await tx.conn.fetchrow(CHAIN_TIP, root_id, node_id)
        seq, prev, base = tip[0], bytes(tip[1]), tip[2] + tx.appended
        link = self.hasher.link
        hashes: list[bytes] = []
        for i, digest in enumerate(digests):
            prev = link(prev, seq + i + 1, base + i, digest)
            hashes.append(prev)
        rows: list[asyncpg.Record] = await tx.conn.fetch(
            APPEND_LINKED,
            root_id,
            node_id,
            stream_id,
            stream_type,
            expected_version,
            tx.appended,
            *_event_arrays(events),
            recorded_at,
            context.actor,
            context.correlation_id,
            context.causation_id,
            context.idempotency_key,
            seq,
            hashes,
            canonical,
        )
        return rows

    async def append(
        self,
        tx: TxAppender,
        *,
        root_id: UUID,
        node_id: UUID,
        stream_id: UUID,
        stream_type: str,
        expected_version: int,
        events: Sequence[NewEvent],
        context: AppendContext,
    ) -> AppendResult:
        """Append ``events`` to a stream, chaining them on ``node_id``'s hash chain.

        Raises ConcurrencyError when the stream is not at ``expected_version``. Events whose
        ids are already stored are not appended again; their original result comes back.
        """
        if not events:
            raise ValueError("nothing to append")
        recorded_at = datetime.now(UTC)
        canonical, digests = self._canonical(
            root_id, node_id, stream_id, stream_type, expected_version, events, recorded_at, context
        )
        try:
            if not self.sql_links:
                rows = await self._append_linked(
                    tx,
                    root_id,
                    node_id,
                    stream_id,
                    stream_type,
                    expected_version,
                    events,
                    recorded_at,
                    context,
                    canonical,
                    digests,
                )
            else:
                rows = await tx.conn.fetch(
                    APPEND,
                    root_id,
                    node_id,
                    stream_id,
                    stream_type,
                    expected_version,
                    tx.appended,
                    *_event_arrays(events),
                    recorded_at,
                    context.actor,
                    context.correlation_id,
                    context.causation_id,
                    context.idempotency_key,
                    digests,
                    canonical,
                )
        except asyncpg.PostgresError as exc:
            _raise_conflict(exc, stream_id, expected_version)
            raise
        tx.appended += len(rows)
        result = _result(stream_id, events, rows)
        tx.results.append(result)
        return result

    async def append_statement(
        self,
        conn: asyncpg.Connection,
        scope: Scope,
        *,
        root_id: UUID,
        node_id: UUID,
        stream_id: UUID,
        stream_type: str,
        expected_version: int,
        events: Sequence[NewEvent],
        context: AppendContext,
        check_nodes: Sequence[UUID] = (),
        check_except: UUID | None = None,
        record: IdempotencyRecord | None = None,
    ) -> AppendResult:
        """A whole command's write as one autocommit statement (migration 0036): enter
        ``scope`` as the runtime role, refuse ``check_nodes`` in a closed subtree (but
        ``check_except``), append as ``append`` does, and store the Idempotency-Key
        ``record``. SHA-256 chains only (``sql_links``); ``conn`` is not in a transaction.
        """
        if not events:
            raise ValueError("nothing to append")
        if not self.sql_links:
            raise RuntimeError("one-statement appends need chain links computed in SQL")
        recorded_at = datetime.now(UTC)
        canonical, digests = self._canonical(
            root_id, node_id, stream_id, stream_type, expected_version, events, recorded_at, context
        )
        try:
            rows: list[asyncpg.Record] = await conn.fetch(
                COMMAND_APPEND,
                scope.root_id,
                scope.path,
                scope.is_unit,
                list(check_nodes),
                check_except,
                root_id,
                node_id,
                stream_id,
                stream_type,
                expected_version,
                *_event_arrays(events),
                recorded_at,
                context.actor,
                context.correlation_id,
                context.causation_id,
                context.idempotency_key,
                digests,
                None if record is None else record.principal,
                None if record is None else record.request_hash,
                None if record is None else record.status,
                None if record is None else record.response,
                None if record is None else record.placeholder,
                canonical,
            )
        except asyncpg.PostgresError as exc:
            _raise_conflict(exc, stream_id, expected_version)
            raise
        return _result(stream_id, events, rows)

    async def load(
        self, conn: asyncpg.Connection, root_id: UUID, stream_id: UUID, after_version: int = 0
    ) -> list[StoredEvent]:
        rows = await conn.fetch(LOAD_STREAM, root_id, stream_id, after_version)
        return [StoredEvent.from_record(r) for r in rows]

    async def load_with_paths(
        self, conn: asyncpg.Connection, root_id: UUID, stream_id: UUID
    ) -> tuple[list[StoredEvent], list[str | None]]:
        """The stream's events and, for each, the path of its node."""
        rows = await conn.fetch(LOAD_STREAM_WITH_PATHS, root_id, stream_id)
        return [StoredEvent(*r[:-1]) for r in rows], [r[-1] for r in rows]

    async def read_settled(
        self, conn: asyncpg.Connection, after: int, limit: int
    ) -> list[StoredEvent]:
        rows = await conn.fetch(READ_SETTLED, after, limit)
        return [StoredEvent.from_record(r) for r in rows]

    @staticmethod
    async def horizon(conn: asyncpg.Connection) -> int:
        value: int = await conn.fetchval("SELECT civic_horizon()")
        return value
