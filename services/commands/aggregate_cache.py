"""Recently used aggregates (state + version), per process, so a command decides without
reading its stream first.

A cached aggregate may be stale (another process appended since): the append names the
version it decided on, and the database refuses a stale one as a version conflict, which the
command pipeline answers by dropping the entry and deciding again on a fresh load. Staleness
thus costs a retry, never a wrong write. (A refusal decided on a cached state is never
answered either: ``run_command`` decides again in a transaction.)

Row-level security decides what a principal may load; an entry is only served to a principal
whose scope covers the node of every event of the stream (the node paths the entry records),
and in the entry's root tenant. A node moved in another process can leave a path stale for
at most ``ttl`` seconds, as with ``ScopeCache``; in this process node events clear the cache.
Streams that hold personal data are not cached: their decrypted state must go when the
person's key is shredded.
"""

from __future__ import annotations

import copy
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar
from uuid import UUID

from domain.base import CivicAggregate

A = TypeVar("A", bound=CivicAggregate)


@dataclass(frozen=True, slots=True)
class _Entry:
    aggregate: CivicAggregate
    root_id: UUID
    node_paths: frozenset[str]
    expires: float


class AggregateCache:
    def __init__(self, ttl: float = 5.0, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[UUID, _Entry] = OrderedDict()

    def get(self, cls: type[A], root_id: UUID, stream_id: UUID, scope_path: str) -> A | None:
        """A private copy of the cached aggregate, or None (absent, expired, another type or
        tenant, or an event on a node outside ``scope_path``)."""
        entry = self._entries.get(stream_id)
        if entry is None:
            return None
        if entry.expires < time.monotonic() or entry.root_id != root_id:
            self._entries.pop(stream_id, None)
            return None
        if type(entry.aggregate) is not cls or not all(
            path.startswith(scope_path) for path in entry.node_paths
        ):
            return None
        self._entries.move_to_end(stream_id)
        return copy.deepcopy(entry.aggregate)

    def put(self, root_id: UUID, aggregate: CivicAggregate, node_paths: Iterable[str]) -> None:
        """Keep ``aggregate`` (the caller no longer changes it) with its events' node paths."""
        self._entries[aggregate.id] = _Entry(
            aggregate, root_id, frozenset(node_paths), time.monotonic() + self.ttl
        )
        self._entries.move_to_end(aggregate.id)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def paths(self, stream_id: UUID) -> frozenset[str] | None:
        """The node paths recorded for a stream, if it is cached."""
        entry = self._entries.get(stream_id)
        return None if entry is None else entry.node_paths

    def drop(self, stream_id: UUID) -> None:
        self._entries.pop(stream_id, None)

    def clear(self) -> None:
        self._entries.clear()
