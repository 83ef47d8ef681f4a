"""The "stats" projection: batches of ``StatsBatch``, and the exclusive mode of a rebuild."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import asyncpg

from projections.base import LightEvent
from projections.daily_counters import DayKey, Latest
from projections.stats.batch import StatsBatch
from projections.stats.counters import NAME
from projections.stats.engine import Aggregate
from projections.stats.tree import NodeKey


class StatsProjection:
    """The projection.

    ``exclusive=True`` is what ``for_rebuild`` gives a rebuild, which replays alone into
    scratch tables: the aggregates' states and the tree stay in memory between batches (up
    to ``cache_limit`` aggregates), and the writes of about ``write_every`` events are
    gathered into one (an aggregate touched by several batches is written once); the rebuild
    calls ``finish`` to write the rest before it swaps the tables in. The live projection
    (``exclusive=False``) loads what each batch needs and writes everything with it. Its rules
    read only what a ``ReplayEvent`` holds (``light_replay``), so a rebuild fetches no more."""

    name = NAME
    handles = StatsBatch.handles
    light_replay = True
    tables: tuple[str, ...] = (
        "rm_stats_nodes",
        "rm_stats_node_parents",
        "rm_stats_daily",
        "rm_stats_aggregates",
    )

    def __init__(
        self, *, exclusive: bool = False, cache_limit: int = 1_000_000, write_every: int = 100_000
    ) -> None:
        self.exclusive = exclusive
        #: read by a rebuild: an exclusive replay gathers its writes, so most rows are written
        #: once (see ``projections.rebuild.rebuild``).
        self.writes_once = exclusive
        self.cache_limit = cache_limit
        self.write_every = write_every
        self._aggregates: dict[tuple[UUID, UUID], Aggregate] = {}
        self._paths: dict[NodeKey, str] = {}
        self._node_versions: dict[NodeKey, int] = {}
        self._dirty: set[tuple[UUID, UUID]] = set()
        self._created: set[tuple[UUID, UUID]] = set()
        self._latest: dict[NodeKey, Latest] = {}
        self._deltas: dict[DayKey, list[int]] = {}
        self._unwritten = 0
        #: exclusive: every aggregate and node stored so far is in memory (the replay began
        #: at the first event, on empty tables, and nothing was let go), so there is nothing
        #: to load: what is not in memory does not exist.
        self._complete = exclusive

    def for_rebuild(self) -> StatsProjection:
        return StatsProjection(
            exclusive=True, cache_limit=self.cache_limit, write_every=self.write_every
        )

    def _batch(self, conn: asyncpg.Connection) -> StatsBatch:
        batch = StatsBatch(conn)
        if self.exclusive:
            batch.exclusive = True
            batch.aggregates = self._aggregates
            batch.paths = self._paths
            batch.node_versions = self._node_versions
            batch.dirty = self._dirty
            batch.created = self._created
            batch.latest = self._latest
            batch.deltas = self._deltas
            batch.new_nodes = []
            batch.new_parents = []
        return batch

    async def apply(self, conn: asyncpg.Connection, events: Sequence[LightEvent]) -> None:
        decoded = StatsBatch.decode(events)
        batch = self._batch(conn)
        try:
            if not self._complete:
                await batch.load(decoded)
            for e, sub, data in decoded:
                await batch.handle(e, sub, data)
            if not self.exclusive:
                await batch.flush()
                return
            await batch.send_tree()
            batch.propagate()
            self._unwritten += len(decoded)
            if self._unwritten >= self.write_every or len(self._aggregates) > self.cache_limit:
                await self._write(batch)
        except BaseException:
            # the transaction will not commit: forget whatever is not stored
            self._forget()
            raise

    async def finish(self, conn: asyncpg.Connection) -> None:
        """Write what an exclusive replay still holds in memory."""
        if self.exclusive:
            try:
                await self._write(self._batch(conn))
            except BaseException:
                self._forget()
                raise

    async def _write(self, batch: StatsBatch) -> None:
        await batch.flush()
        self._dirty.clear()
        self._created.clear()
        self._deltas.clear()
        self._unwritten = 0
        if len(self._aggregates) > self.cache_limit:
            self._aggregates.clear()
            self._complete = False

    def _forget(self) -> None:
        for cache in (self._aggregates, self._paths, self._node_versions, self._dirty):
            cache.clear()
        self._created.clear()
        self._latest.clear()
        self._complete = False
        self._deltas.clear()
        self._unwritten = 0
