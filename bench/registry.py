"""The benchmark registry: what ``bench.run`` measures, and the context each measurement gets.

A benchmark is an async function ``(ctx: Context) -> float`` that sets up what it needs, times
its own work (``bench.timing`` has bounded loops for that) and returns the figure, in the unit
it was registered with. It may attach secondary figures of the same run (a latency percentile,
an error count) with ``ctx.report(suffix, value, unit)``; they become rows named
``"<name>.<suffix>"`` with their own median and range.

Benchmarks of one *group* share a scratch database, created fresh from the server for the
group and dropped afterwards, and an optional *group fixture* (an async generator decorated
with ``@group_fixture(group)``) that runs once around all of the group's runs, e.g. to install
a schema or start a server, and leaves what it made in ``ctx.state``.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

T = TypeVar("T")
Kind = Literal["anchor", "ours"]


@dataclass
class Context:
    """What one run of one benchmark gets."""

    server_url: str
    """The PostgreSQL server as given (``--database-url``); do not write to its database."""
    database_url: str
    """The group's scratch database on that server, created for this run of the suite."""
    group: str
    quick: bool
    duration: float
    """Seconds of timed work per run (5.0 in a full run, 1.5 with ``--quick``)."""
    warmup: float
    """Seconds of untimed work before each timed window."""
    run_index: int = 0
    runs: int = 3
    state: dict[str, Any] = field(default_factory=dict)
    """Shared by the group's fixture and benchmarks for the whole suite run."""
    extras: dict[str, tuple[float, str]] = field(default_factory=dict)

    def scaled(self, full: T, quick: T) -> T:
        """``full`` in a full run, ``quick`` with ``--quick``."""
        return quick if self.quick else full

    def report(self, suffix: str, value: float, unit: str) -> None:
        """Attach a secondary figure of this run, shown as ``<benchmark>.<suffix>``."""
        self.extras[suffix] = (float(value), unit)

    async def connect(self, **kwargs: Any) -> asyncpg.Connection:
        """One asyncpg connection to the scratch database."""
        return await asyncpg.connect(self.database_url, timeout=10, **kwargs)

    async def pool(self, size: int, **kwargs: Any) -> asyncpg.Pool:
        """An asyncpg pool of exactly ``size`` connections to the scratch database."""
        pool = await asyncpg.create_pool(
            self.database_url, min_size=size, max_size=size, timeout=10, **kwargs
        )
        assert pool is not None
        return pool

    def url_parts(self) -> dict[str, str]:
        """host, port, user, password and dbname of the scratch database (for libpq clients)."""
        return url_parts(self.database_url)


BenchFn = Callable[[Context], Awaitable[float]]
FixtureFn = Callable[[Context], AsyncIterator[None]]


@dataclass(frozen=True)
class Benchmark:
    name: str
    group: str
    unit: str
    fn: BenchFn
    kind: Kind
    higher_is_better: bool
    description: str = ""
    compare: tuple[str, ...] = ()
    """Other figures to show an informational ratio against (no target)."""
    timeout: float | None = None
    """Seconds one run may take, setup included; default: 60 + 12 x duration."""


REGISTRY: dict[str, Benchmark] = {}
FIXTURES: dict[str, FixtureFn] = {}

_LOWER_IS_BETTER_UNITS = {"ms", "s", "us", "µs", "count", "errors", "bytes"}


def _kind_of(fn: Callable[..., Any]) -> Kind:
    return "anchor" if fn.__module__.startswith("bench.anchors") else "ours"


def benchmark(
    name: str,
    group: str,
    unit: str,
    *,
    higher_is_better: bool | None = None,
    description: str = "",
    compare: tuple[str, ...] = (),
    timeout: float | None = None,
) -> Callable[[BenchFn], BenchFn]:
    """Register ``async def fn(ctx: Context) -> float`` as benchmark ``name`` of ``group``.

    Names are dotted, group first by convention (``"store.append_single_8w"``). Benchmarks in
    ``bench.anchors`` are anchors; all others are ours.
    """

    def register(fn: BenchFn) -> BenchFn:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"benchmark {name!r} must be an async function")
        if name in REGISTRY:
            raise ValueError(f"benchmark {name!r} is registered twice")
        hib = unit not in _LOWER_IS_BETTER_UNITS if higher_is_better is None else higher_is_better
        REGISTRY[name] = Benchmark(
            name=name,
            group=group,
            unit=unit,
            fn=fn,
            kind=_kind_of(fn),
            higher_is_better=hib,
            description=description or (inspect.getdoc(fn) or "").split("\n")[0],
            compare=compare,
            timeout=timeout,
        )
        return fn

    return register


def group_fixture(group: str) -> Callable[[FixtureFn], FixtureFn]:
    """Register an async generator run once around all runs of ``group``'s benchmarks.

    Code before its ``yield`` runs after the scratch database exists; code after it runs
    before the database is dropped, even when a benchmark failed.
    """

    def register(fn: FixtureFn) -> FixtureFn:
        if not inspect.isasyncgenfunction(fn):
            raise TypeError(f"fixture of {group!r} must be an async generator function")
        if group in FIXTURES:
            raise ValueError(f"group {group!r} has two fixtures")
        FIXTURES[group] = fn
        return fn

    return register


def url_parts(url: str) -> dict[str, str]:
    """Split a ``postgresql://user:password@host:port/dbname`` URL."""
    parts = urlsplit(url)
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": str(parts.port or 5432),
        "user": parts.username or "postgres",
        "password": parts.password or "",
        "dbname": parts.path.lstrip("/") or "postgres",
    }


def with_database(url: str, dbname: str, user: str | None = None) -> str:
    """``url`` pointing at another database (and optionally as another user)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if user is not None:
        host = netloc.rsplit("@", 1)[-1]
        netloc = f"{user}@{host}"
    return urlunsplit((parts.scheme, netloc, "/" + dbname, parts.query, parts.fragment))
