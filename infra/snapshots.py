"""Snapshots of long streams: a cold load reads the latest snapshot plus the events after it.

A snapshot is a cache (migration 0042): the state of one aggregate after version ``version``
(whose event id it records), encoded as JSON, with the aggregate's ``STATE_VERSION`` and the
ids of the nodes its events lie on. Dropping any or all rows loses nothing: a load without
a usable snapshot reads every event, as it always did. A snapshot is used only when it is of
the aggregate's current state version, decodes, and the stored event at its version has the
id it records; anything else (stale, corrupt, of another schema, of another history) is
ignored, never trusted over the events, and replaced by the next one written.

When one is written: a command whose load read at least ``snapshot_every`` events past the
snapshot (or past none) writes the state its save leaves with the COMMIT that stores those
events (``CommandSession.save``), so a snapshot is never of a version that did not commit,
and a cold load reads about ``snapshot_every`` events at most. (Commands decided on the
process's cache do not load, and do not write snapshots; a stream appended that way for a
long time is read in full once, at its next cold load, which then writes one.)

Row-level security shows a snapshot only to a principal who may read every event it sums up
(its nodes all in scope, or a party stream, or a transferred member's; see the migration), so
loading through a snapshot never shows more than loading the events would.

Personal information stays sealed at rest: each attribute of the state that holds a personal
event field (same name: ``Member.person``, ``Survey.note``) is sealed with the stream's data
key, as the event field is, and opened again on decode; once the key is shredded it decodes
as ``None``, like the events. Shredding also deletes the stream's snapshot, in the same
transaction.

The encoding is tagged JSON over what aggregate state holds: JSON scalars and lists, and
tuples, dicts, UUIDs, dates, datetimes and the domain's dataclasses and enums, named by
their class name (never a module path), so a renamed class makes old snapshots fail to
decode, which only means they are ignored.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar
from uuid import UUID

import asyncpg
import msgspec

from domain.base import CivicAggregate
from domain.personal_data import PersonalData
from domain.registry import AGGREGATES, aggregate_events
from infra.database import hex_text
from infra.event_codec import EventCodec, FieldCipher, personal_fields
from infra.event_store import EVENT_COLUMNS, EventStore, StoredEvent
from infra.pii_crypto import PersonKeyring, is_sealed

log = logging.getLogger(__name__)
A = TypeVar("A", bound=CivicAggregate)

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()
#: the attributes of the aggregate base kept in a snapshot (pending events never are)
_BASE = ("_id", "_version", "_created_on", "_modified_on")
#: the associated-data field name of a sealed state attribute (apart from the event fields)
_SEALED_PREFIX = "snapshot."

# The snapshot this principal may use (row-level security) and the events from its version
# on, in one round trip: the snapshot's columns come on the row of the event it ends with.
# A load without a snapshot (the usual case: a short stream) costs one primary-key look-up
# more than reading its events did.
# (The lower bound is a sub-select, not coalesce(...): under row-level security only a
# leakproof bound becomes an index condition, and coalesce() over a sub-select is not one.)
LOAD = f"""
WITH snap (s_version, s_event_id, s_state, s_node_ids, s_paths) AS MATERIALIZED (
    SELECT version, event_id, state, node_ids,
           ARRAY(SELECT n.path FROM nodes n WHERE n.id = ANY (node_ids))
    FROM snapshots
    WHERE root_id = $1 AND stream_id = $2 AND stream_type = $3 AND state_version = $4
)
SELECT {EVENT_COLUMNS}, (SELECT n.path FROM nodes n WHERE n.id = events.node_id),
       snap.s_event_id, snap.s_state, snap.s_node_ids, snap.s_paths
FROM events LEFT JOIN snap ON snap.s_version = events.version
WHERE root_id = $1 AND stream_id = $2
  AND version >= (SELECT coalesce(max(s_version), 1) FROM snap)
ORDER BY version
"""
_EVENT = len(EVENT_COLUMNS.split(","))
DELETE = "DELETE FROM snapshots WHERE root_id = $1 AND stream_id = $2"


class SnapshotUnusable(Exception):
    """A stored snapshot that does not decode into the aggregate (it is ignored)."""


def _value_types() -> dict[str, type[Any]]:
    """The dataclasses and enums aggregate state may hold, by class name: those defined in
    the aggregates' modules, and ``PersonalData``."""
    found: dict[str, type[Any]] = {"PersonalData": PersonalData}
    for aggregate in AGGREGATES:
        module = sys.modules[aggregate.__module__]
        for name, value in vars(module).items():
            if not isinstance(value, type) or name.startswith("_"):
                continue
            if dataclasses.is_dataclass(value) or (
                issubclass(value, enum.Enum) and value is not enum.Enum
            ):
                found.setdefault(value.__qualname__, value)
    return found


_TYPES = _value_types()


def _encode(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return {"$e": type(value).__qualname__, "v": _encode(value.value)}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, tuple):
        return {"$t": [_encode(v) for v in value]}
    if isinstance(value, UUID):
        return {"$u": str(value)}
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, date):
        return {"$d": value.isoformat()}
    if isinstance(value, dict):
        return {"$m": [[_encode(k), _encode(v)] for k, v in value.items()]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__qualname__
        if _TYPES.get(name) is not type(value):
            raise TypeError(f"{name} is not a value type snapshots know")
        return {
            "$c": name,
            "f": {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)},
        }
    raise TypeError(f"snapshots cannot hold a {type(value).__name__}")


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((tag, body),) = value.items()
        if tag == "$t":
            return tuple(_decode(v) for v in body)
        if tag == "$u":
            return UUID(body)
        if tag == "$dt":
            return datetime.fromisoformat(body)
        if tag == "$d":
            return date.fromisoformat(body)
        if tag == "$m":
            return {_decode(k): _decode(v) for k, v in body}
    if value.keys() == {"$e", "v"}:
        return _TYPES[value["$e"]](_decode(value["v"]))
    if value.keys() == {"$c", "f"}:
        cls = _TYPES[value["$c"]]
        return cls(**{k: _decode(v) for k, v in value["f"].items()})
    raise ValueError("not a snapshot value")


@functools.cache
def personal_attributes(cls: type[CivicAggregate]) -> tuple[str, ...]:
    """The state attributes that hold personal information: the names of the aggregate's
    personal event fields (the domain keeps such a value under the field's name)."""
    names: list[str] = []
    for event_class in aggregate_events(cls):
        names.extend(n for n in personal_fields(event_class) if n not in names)
    return tuple(names)


def encode_state(aggregate: CivicAggregate, cipher: FieldCipher | None) -> bytes | None:
    """The snapshot of ``aggregate`` as it stands (no pending events), or None when it
    cannot be kept: a value of a type it cannot hold, or a personal attribute set and no key
    in ``cipher`` to seal it with. Never raises: a snapshot never fails a command."""
    try:
        return _encode_state(aggregate, cipher)
    except Exception as exc:  # a value snapshots cannot hold: the events still serve
        log.warning("no snapshot of %s: %s", type(aggregate).__name__, exc)
        return None


def _encode_state(aggregate: CivicAggregate, cipher: FieldCipher | None) -> bytes | None:
    state = vars(aggregate)
    out = {name: _encode(value) for name, value in state.items() if name != "_pending_events"}
    for name in personal_attributes(type(aggregate)):
        if state.get(name) is None:
            continue
        if cipher is None:
            return None
        try:
            out[name] = cipher.encrypt(
                aggregate.id, _SEALED_PREFIX + name, _encoder.encode(out[name])
            )
        except LookupError:  # no data key loaded: nothing to seal with
            return None
    return _encoder.encode(out)


def decode_state(cls: type[A], stream_id: UUID, data: bytes | str, cipher: FieldCipher | None) -> A:
    """The aggregate a snapshot holds (``SnapshotUnusable`` when it does not decode into
    ``cls`` with ``stream_id``); sealed attributes open with ``cipher`` or decode as None."""
    try:
        raw = _decoder.decode(data)
        if not isinstance(raw, dict) or not set(_BASE) <= raw.keys():
            raise ValueError("not a snapshot of an aggregate")
        personal = set(personal_attributes(cls))
        state: dict[str, Any] = {}
        for name, value in raw.items():
            if name in personal and value is not None:
                if not is_sealed(value):
                    raise ValueError("a personal attribute in clear")
                opened = cipher.decrypt(stream_id, _SEALED_PREFIX + name, value) if cipher else None
                state[name] = None if opened is None else _decode(_decoder.decode(opened))
            else:
                state[name] = _decode(value)
        if state["_id"] != stream_id:
            raise ValueError("a snapshot of another stream")
        aggregate = object.__new__(cls)
        aggregate.__dict__.update(state)
        aggregate.__dict__["_pending_events"] = []
    except (ValueError, TypeError, KeyError, msgspec.DecodeError) as exc:
        raise SnapshotUnusable(str(exc)) from None
    return aggregate


def holds_personal(cls: type[CivicAggregate]) -> bool:
    """Whether snapshots of ``cls`` may hold sealed personal attributes."""
    return bool(personal_attributes(cls))


def put_statement(
    *,
    root_id: UUID,
    stream_id: UUID,
    stream_type: str,
    version: int,
    event_id: UUID,
    state_version: int,
    state: bytes,
    node_ids: Iterable[UUID],
) -> str:
    """SQL that replaces the stream's snapshot by this one, for ``defer_until_commit``
    (literals only: UUIDs, ints and ``hex_text``). It is written with the events it sums up,
    so it never gets ahead of them. One this principal may not see stays (a delete under
    row-level security skips it), and the insert then does nothing: a snapshot write never
    fails the command it rides with."""
    ids = ",".join(f"'{UUID(str(n))}'" for n in sorted(set(node_ids), key=str))
    root, stream, event = UUID(str(root_id)), UUID(str(stream_id)), UUID(str(event_id))
    return (
        f"DELETE FROM snapshots WHERE root_id = '{root}' AND stream_id = '{stream}'; "
        "INSERT INTO snapshots (root_id, stream_id, stream_type, version, event_id,"
        " state_version, state, node_ids)"
        f" VALUES ('{root}', '{stream}', {hex_text(stream_type)}, {int(version)}, '{event}',"
        f" {int(state_version)}, {hex_text(state.decode())}, ARRAY[{ids}]::uuid[])"
        " ON CONFLICT (root_id, stream_id) DO NOTHING"
    )


async def delete(conn: asyncpg.Connection, root_id: UUID, stream_id: UUID) -> None:
    """Drop the stream's snapshot (crypto-shredding: no copy of the state outlives the key)."""
    await conn.execute(DELETE, root_id, stream_id)


@dataclass(frozen=True, slots=True)
class LoadedStream:
    """An aggregate as one load rebuilt it, and what the command pipeline needs to know."""

    aggregate: Any
    #: every version from 1 was seen (through the snapshot or as events)
    whole: bool
    #: the node paths of the events it sums up (None where one is unknown)
    paths: list[str | None]
    node_ids: frozenset[UUID]
    #: its events (or snapshot) may hold personal data
    personal: bool
    #: events read past the snapshot (or past none)
    read: int


class NeedsMoreReads(Exception):
    """The rows of one ``LOAD`` do not rebuild the aggregate without more reads: a personal
    data key to fetch, or every event to read again (a snapshot not usable)."""


async def load_stream(
    conn: asyncpg.Connection,
    store: EventStore,
    codec: EventCodec,
    keyring: PersonKeyring,
    cls: type[CivicAggregate],
    root_id: UUID,
    stream_id: UUID,
) -> LoadedStream | None:
    """Rebuild an aggregate from its snapshot and the events after it, or from all of its
    events when there is no snapshot it may use (row-level security applies to both); None
    when it sees no event of the stream, or the stream is of another type."""
    rows = await conn.fetch(LOAD, root_id, stream_id, cls.STREAM_TYPE, cls.STATE_VERSION)
    return await rebuild(rows, codec, keyring, cls, root_id, stream_id, conn=conn, store=store)


async def rebuild(
    rows: list[asyncpg.Record],
    codec: EventCodec,
    keyring: PersonKeyring,
    cls: type[CivicAggregate],
    root_id: UUID,
    stream_id: UUID,
    *,
    conn: asyncpg.Connection | None = None,
    store: EventStore | None = None,
) -> LoadedStream | None:
    """``load_stream`` on the rows of ``LOAD`` (or rows of its shape). Without ``conn`` and
    ``store`` (rows read in a statement of their own, ``civic_command_read``) it reads
    nothing more: where it would, it raises ``NeedsMoreReads``."""
    if rows and rows[0][_EVENT + 2] is not None:
        loaded = await _through_snapshot(conn, codec, keyring, cls, root_id, stream_id, rows)
        if loaded is not None:
            return loaded
        if conn is None or store is None:
            raise NeedsMoreReads("every event, read again")
        rows = []
    elif rows and rows[0]["version"] != 1:
        # The rows start past version 1 with no snapshot on the first: the snapshot's event
        # is not stored (of another history), or is hidden from this principal.
        log.warning("snapshot of stream %s ignored: its last event is not stored", stream_id)
        if conn is None or store is None:
            raise NeedsMoreReads("every event, read again")
        rows = []
    if rows:
        stored, paths = [StoredEvent(*r[:_EVENT]) for r in rows], [r[_EVENT] for r in rows]
    elif conn is None or store is None:
        return None  # the one statement saw no event: there is none to read again
    else:  # none came, or not from version 1: every event, afresh
        stored, paths = await store.load_with_paths(conn, root_id, stream_id)
    if not stored or stored[0].stream_type != cls.STREAM_TYPE:
        return None
    personal = _personal(codec, stored)
    if personal:
        # one key fetch per stream; none (erased) → personal fields decode as None
        await keyring.load(_reading(conn), root_id, stream_id)
    return LoadedStream(
        aggregate=replay(codec, keyring, stored, None),
        whole=_contiguous(stored, 1),
        paths=paths,
        node_ids=frozenset(e.node_id for e in stored),
        personal=personal,
        read=len(stored),
    )


def _reading(conn: asyncpg.Connection | None) -> asyncpg.Connection:
    if conn is None:
        raise NeedsMoreReads("a personal data key")
    return conn


async def _through_snapshot(
    conn: asyncpg.Connection | None,
    codec: EventCodec,
    keyring: PersonKeyring,
    cls: type[CivicAggregate],
    root_id: UUID,
    stream_id: UUID,
    rows: list[asyncpg.Record],
) -> LoadedStream | None:
    """The aggregate from the snapshot on the first row and the events of the others; None
    when the snapshot is not usable (it ends with another event, or does not decode)."""
    first = StoredEvent(*rows[0][:_EVENT])
    event_id, state, node_ids, node_paths = rows[0][_EVENT + 1 : _EVENT + 5]
    known = [p for p in node_paths if p is not None]
    if first.event_id != event_id or first.stream_type != cls.STREAM_TYPE:
        log.warning("snapshot of stream %s ignored: it ends with another event", stream_id)
        return None
    if len(known) != len(node_ids):
        return None  # a node of its events is not found: it cannot say who may see it
    tail = [StoredEvent(*r[:_EVENT]) for r in rows[1:]]
    personal = holds_personal(cls) or _personal(codec, tail)
    if personal:
        await keyring.load(_reading(conn), root_id, stream_id)
    try:
        base = decode_state(cls, stream_id, state, keyring)
        if base.version != first.version:
            raise SnapshotUnusable("the state is of another version")
        aggregate = replay(codec, keyring, tail, base)
    except Exception as exc:  # whatever a bad snapshot does, the events decide
        log.warning("snapshot of stream %s ignored: %s", stream_id, type(exc).__name__)
        return None
    return LoadedStream(
        aggregate=aggregate,
        whole=_contiguous(tail, first.version + 1),
        paths=[*known, *(r[_EVENT] for r in rows[1:])],
        node_ids=frozenset(node_ids) | {e.node_id for e in tail},
        personal=personal,
        read=len(tail),
    )


def _personal(codec: EventCodec, events: Iterable[StoredEvent]) -> bool:
    return any(codec.has_personal_data(e.type) for e in events)


def _contiguous(events: list[StoredEvent], first: int) -> bool:
    return all(e.version == i for i, e in enumerate(events, start=first))


def replay(
    codec: EventCodec, cipher: FieldCipher, events: Iterable[StoredEvent], aggregate: Any
) -> Any:
    for e in events:
        event = codec.decode(
            stream_type=e.stream_type,
            stream_id=e.stream_id,
            version=e.version,
            type_name=e.type,
            schema_version=e.schema_version,
            data=e.data,
            occurred_at=e.occurred_at,
            cipher=cipher,
        )
        aggregate = event.mutate(aggregate)
    return aggregate
