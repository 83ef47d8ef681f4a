"""Where the CPU of a measured window went: this process, another one, PostgreSQL's backends.

On 2 cores most of our figures are CPU-bound, so CPU per operation, client and server apart,
says more than a rate: a ratio against an anchor is roughly the ratio of their total CPU per
operation. Linux only (``/proc/<pid>/stat``): a process that cannot be read is NaN alone and
counts 0 in a sum.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable
from pathlib import Path

from bench.registry import Context

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process ``pid`` has used so far; NaN when it cannot be read
    (gone, or no ``/proc``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / _TICK


def total_cpu_seconds(pids: Iterable[int]) -> float:
    """The CPU seconds of these processes together; one that is gone counts 0."""
    return sum(c for c in map(process_cpu_seconds, pids) if not math.isnan(c))


async def backend_pids(ctx: Context) -> set[int]:
    """The client backends connected to the group's scratch database, but the one asking."""
    conn = await ctx.connect()
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return {r["pid"] for r in rows}


class CpuWindow:
    """CPU of this process (all its threads) and of ``backends`` between ``start`` and
    ``stop``: the timed window of ``bench.timing.async_rate``, which calls both."""

    def __init__(self, backends: set[int]) -> None:
        self.backends = backends
        self.client_seconds = math.nan
        self.backend_seconds = math.nan
        self._client0 = 0.0
        self._backend0 = 0.0

    def start(self) -> None:
        self._client0 = time.process_time()
        self._backend0 = total_cpu_seconds(self.backends)

    def stop(self) -> None:
        self.client_seconds = time.process_time() - self._client0
        self.backend_seconds = total_cpu_seconds(self.backends) - self._backend0

    def report(self, ctx: Context, events: int) -> None:
        """``.client_us_per_event`` and ``.db_us_per_event`` of ``events`` done in the window."""
        if events > 0:
            ctx.report("client_us_per_event", self.client_seconds * 1e6 / events, "us")
            ctx.report("db_us_per_event", self.backend_seconds * 1e6 / events, "us")
