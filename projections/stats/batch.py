"""One batch of "stats": load what it names, count (``rules``), roll up the tree, write.

State rows are loaded once per batch (in an exclusive replay, only what is not in memory
yet), deltas summed per node and day and rolled up to every ancestor, and written with a few
set-based statements; node events are written as they come since later events of the batch
depend on the tree.

A move (NodeMoved) on day M takes the moved node's current totals T off every old ancestor
that is not also a new one, and adds T to every new ancestor that was not an old one, dated
M. As-of answers before M still show the old tree; the children lists follow
``rm_stats_node_parents``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any
from uuid import UUID

import asyncpg

from domain.finding import Finding
from domain.issue import Issue
from domain.member import Member
from domain.node import Node
from domain.pairing import Pairing
from domain.service import ServiceOrder
from domain.survey import Survey
from projections.base import LightEvent
from projections.daily_counters import DayKey, Latest
from projections.stats.counters import DAYS, N_COUNTERS
from projections.stats.engine import (
    AggregateTable,
    Decoded,
    UnknownAggregate,
    business_day,
    root_text,
)
from projections.stats.rules import StatsRules
from projections.stats.tree import (
    INSERT_NODE,
    LATEST_TOTALS,
    MOVE_NODE,
    MOVE_SUBTREE,
    RENAME_NODE,
    SET_PARENT,
    NodeKey,
    load_nodes,
    path_ids,
)
from projections.subscriptions import Subscription, on

AGGREGATES = AggregateTable("rm_stats_aggregates")

#: the field naming the node a new aggregate counts under, by creation event.
COUNTS_UNDER: dict[type[Any], str] = {
    Pairing.Signed: "community_id",
    Member.Registered: "community_id",
    Issue.Reported: "node_id",
    Finding.Recorded: "scope_id",
    ServiceOrder.Requested: "community_id",
    Survey.Visited: "node_id",
}


class StatsBatch(StatsRules):
    def __init__(self, conn: asyncpg.Connection) -> None:
        super().__init__()
        self.conn = conn
        #: exclusive replay: the maps hold everything stored so far (loads only misses) and
        #: creation events cannot find their aggregate stored already.
        self.exclusive = False
        self.paths: dict[NodeKey, str] = {}
        self.node_versions: dict[NodeKey, int] = {}
        self.ancestors_cache: dict[NodeKey, tuple[str, ...]] = {}
        #: ``own`` (the nodes' own deltas) rolled up to every ancestor (``propagate``,
        #: before a move and at the end).
        self.deltas: dict[DayKey, list[int]] = {}
        #: exclusive replay: each node's latest stored daily row (see ``DailyTable.write_alone``).
        self.latest: dict[NodeKey, Latest] | None = None
        #: exclusive replay: registrations' tree rows not sent yet (``send_tree``), as
        #: (INSERT_NODE, SET_PARENT) arguments; None: each is written as it comes.
        self.new_nodes: list[tuple[Any, ...]] | None = None
        self.new_parents: list[tuple[Any, ...]] | None = None

    # -- loading ---------------------------------------------------------------------------
    async def load(self, decoded: Sequence[Decoded]) -> None:
        """Fetch the stored state of the aggregates and nodes the events name (one query
        each, for what is not in memory already)."""
        known, paths = self.aggregates, self.paths
        agg_keys: set[tuple[UUID, UUID]] = set()  # to fetch
        node_keys: set[NodeKey] = set()  # to fetch, unless in ``paths`` already
        created: set[tuple[UUID, UUID]] = set()
        for e, sub, data in decoded:
            event = sub.event
            if event in NODE_EVENTS:
                root = root_text(e.root_id)
                node_keys.add((root, str(e.stream_id)))
                if event is Node.Moved:
                    parent = data.new_parent_id
                elif event is Node.Registered:
                    parent = data.parent_id
                else:
                    parent = None
                if parent is not None:
                    node_keys.add((root, parent))
                continue
            key = (e.root_id, e.stream_id)
            attr = COUNTS_UNDER.get(event)
            if attr is not None:
                node = (root_text(e.root_id), getattr(data, attr))
                if node not in paths:
                    node_keys.add(node)
                if self.exclusive:
                    created.add(key)
                    continue
            elif event is Member.Transferred:
                node = (root_text(e.root_id), data.to_community_id)
                if node not in paths:
                    node_keys.add(node)
            if key not in known:
                agg_keys.add(key)
        agg_keys -= created
        for a in await AGGREGATES.load(self.conn, agg_keys):
            known[(a.root_id, a.id)] = a
            assert a.node is not None  # every stats aggregate counts under a node
            if (a.root, a.node) not in paths:
                node_keys.add((a.root, a.node))
        await load_nodes(self.conn, node_keys, paths, self.node_versions)

    # -- deltas ----------------------------------------------------------------------------
    def ancestors(self, root: str, node: str) -> tuple[str, ...]:
        """The node and its ancestors (root first), from this projection's own tree."""
        key = (root, node)
        found = self.ancestors_cache.get(key)
        if found is None:
            path = self.paths.get(key)
            if path is None:
                raise UnknownAggregate(f"node {node} of root {root} is not in rm_stats_nodes")
            found = path_ids(path)
            self.ancestors_cache[key] = found
        return found

    def propagate(self) -> None:
        """Roll the nodes' own deltas up to every ancestor, with the tree as it stands."""
        for (root, node, day), vec in self.own.items():
            if any(vec):
                self.add_vector(root, self.ancestors(root, node), day, vec)
        self.own.clear()

    def add_vector(self, root: str, nodes: Iterable[str], day: date, vec: Sequence[int]) -> None:
        deltas = self.deltas
        nonzero: list[tuple[int, int]] | None = None  # a day's vector is mostly zeros
        for a in nodes:
            key = (root, a, day)
            acc = deltas.get(key)
            if acc is None:
                deltas[key] = list(vec)
                continue
            if nonzero is None:
                nonzero = [(i, v) for i, v in enumerate(vec) if v]
            for i, v in nonzero:
                acc[i] += v

    # -- events ----------------------------------------------------------------------------
    async def handle(self, e: LightEvent, sub: Subscription, data: Any) -> None:
        if sub.event in NODE_EVENTS:
            await self.node_event(e, sub.event, data)
        else:
            self.count(e, sub, data)

    @on(Node.Registered, fields=("code", "name", "kind", "parent_id"), text_ids=True)
    @on(Node.Renamed, fields=("name",))
    @on(Node.Moved, fields=("new_parent_id", "new_code"), text_ids=True)
    async def node_event(self, e: LightEvent, event: type[Any], data: Any) -> None:
        root, node = root_text(e.root_id), str(e.stream_id)
        key = (root, node)
        day = business_day(e.occurred_at)
        conn = self.conn
        if event is Node.Registered:
            if key in self.paths:
                return  # already applied
            parent = data.parent_id
            if parent is None:
                path = f"/{node}/"
            else:
                parent_path = self.paths.get((root, parent))
                if parent_path is None:
                    raise UnknownAggregate(f"parent {parent} of node {node} unknown")
                path = f"{parent_path}{node}/"
            row = (root, node, parent, path, data.code, data.name, data.kind, e.version)
            if self.new_nodes is not None and self.new_parents is not None:
                # Later events of the batch read the tree from ``paths``, not the table: a
                # replay sends the batch's registrations together (``send_tree``).
                self.new_nodes.append(row)
                self.new_parents.append((root, node, day, parent))
            else:
                await conn.execute(INSERT_NODE, *row)
                await conn.execute(SET_PARENT, root, node, day, parent)
            self.paths[key] = path
            self.node_versions[key] = e.version
            return
        if key not in self.paths:
            raise UnknownAggregate(f"{e.type} at position {e.position}: node {node} unknown")
        if e.version <= self.node_versions[key]:
            return  # already applied
        self.node_versions[key] = e.version
        await self.send_tree()  # the statements below update the rows of earlier registrations
        if event is Node.Renamed:
            await conn.execute(RENAME_NODE, root, node, data.name, e.version)
            return
        await self._move(e, root, node, day, data)

    async def send_tree(self) -> None:
        """Write the registrations held back (one pipelined statement per table)."""
        if self.new_nodes:
            await self.conn.executemany(INSERT_NODE, self.new_nodes)
            self.new_nodes.clear()
        if self.new_parents:
            await self.conn.executemany(SET_PARENT, self.new_parents)
            self.new_parents.clear()

    async def _move(self, e: LightEvent, root: str, node: str, day: date, data: Any) -> None:
        conn = self.conn
        new_parent = data.new_parent_id
        parent_path = self.paths.get((root, new_parent))
        if parent_path is None:
            raise UnknownAggregate(f"new parent {new_parent} of node {node} unknown")
        old_path = self.paths[(root, node)]
        new_path = f"{parent_path}{node}/"
        old_ancestors = self.ancestors(root, node)[:-1]
        new_ancestors = path_ids(parent_path)
        self.propagate()  # what happened before the move counts under the old tree
        totals = await self._totals(root, node)
        common = set(old_ancestors) & set(new_ancestors)
        self.add_vector(
            root, [a for a in old_ancestors if a not in common], day, [-v for v in totals]
        )
        self.add_vector(root, [a for a in new_ancestors if a not in common], day, totals)
        if new_path != old_path:
            await conn.execute(MOVE_SUBTREE, root, old_path, new_path)
        await conn.execute(MOVE_NODE, root, node, new_parent, data.new_code, e.version)
        await conn.execute(SET_PARENT, root, node, day, new_parent)
        for k, p in list(self.paths.items()):
            if k[0] == root and p.startswith(old_path):
                self.paths[k] = new_path + p[len(old_path) :]
        self.ancestors_cache.clear()

    async def _totals(self, root: str, node: str) -> list[int]:
        """The node's current figures: its latest stored row plus the unwritten deltas."""
        row = await self.conn.fetchrow(LATEST_TOTALS, root, node)
        totals = [int(v) for v in row] if row is not None else [0] * N_COUNTERS
        for (r, n, _day), vec in self.deltas.items():
            if r == root and n == node:
                totals = [a + b for a, b in zip(totals, vec, strict=True)]
        return totals

    # -- writing ---------------------------------------------------------------------------
    async def flush(self) -> None:
        self.propagate()
        created = self.created
        if created is None:
            await AGGREGATES.save(self.conn, self.changed())
        else:
            aggregates = self.aggregates
            await AGGREGATES.insert(self.conn, [aggregates[k] for k in created])
            await AGGREGATES.save(self.conn, [aggregates[k] for k in self.dirty - created])
        if self.latest is None:
            await DAYS.write(self.conn, self.deltas)
        else:
            await DAYS.write_alone(self.conn, self.deltas, self.latest)


NODE_EVENTS = frozenset({Node.Registered, Node.Renamed, Node.Moved})
