"""Everything a request handler needs, built once by ``create_app`` and kept in app state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

from domain.clock import Clock, system_clock
from infra.database import ScopeCache
from infra.event_codec import EventCodec
from infra.event_store import EventStore
from infra.metrics import Metrics
from infra.settings import Settings
from projections.waits import PositionWaits
from services.auth import JwtConfig
from services.commands.aggregate_cache import AggregateCache
from services.commands.node_cache import NodeCache
from services.limits import HeavyBudget, PerPrincipal


@dataclass
class AppContext:
    settings: Settings
    jwt: JwtConfig
    store: EventStore
    codec: EventCodec
    metrics: Metrics
    clock: Clock = system_clock
    pool: asyncpg.Pool | None = None
    scopes: ScopeCache = field(default_factory=ScopeCache)
    #: what commands decide on without a read round trip (see each module)
    aggregates: AggregateCache = field(default_factory=AggregateCache)
    nodes: NodeCache = field(default_factory=NodeCache)
    #: called after every committed command (wakes projectors, relays).
    after_commit: list[Any] = field(default_factory=list)
    #: reads waiting for a position (no connection held), and the caps on concurrent work.
    waits: PositionWaits | None = None
    wait_slots: PerPrincipal = field(default_factory=lambda: PerPrincipal(4, "waiting reads"))
    stream_slots: PerPrincipal = field(default_factory=lambda: PerPrincipal(4, "live streams"))
    heavy: HeavyBudget = field(default_factory=lambda: HeavyBudget(2))

    @property
    def db(self) -> asyncpg.Pool:
        if self.pool is None:
            from infra.database import DatabaseUnavailable

            raise DatabaseUnavailable("the database pool is not open")
        return self.pool
