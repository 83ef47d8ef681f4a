"""Waiting for read models to reach a position without holding a database connection.

A read with ``min_position`` used to poll on a pool connection for up to 5 s: twelve such
reads from one viewer held every connection of a pool of ten, and every other tenant's
commands and reads queued behind them. Now a waiting read holds nothing but an
``asyncio.Event``:

* When this process runs the projections (and owns them), the runner's in-memory
  checkpoint says what is applied, and the runner wakes the waiters after every batch: no
  query at all.
* Otherwise one shared poller, running only while someone waits, asks the database for
  every projection's reach in one statement on a briefly borrowed connection (so N waiters
  cost one connection for one query per ``poll_seconds``, not N connections for 5 s).

``newest_position`` tells a position no transaction has committed yet (the caller then
answers 422 at once: no position the server handed out can lie beyond it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import asyncpg

from projections.runner import ProjectionRunner, Wakeup

# Per projection: the stored checkpoint, the horizon and the first settled event it handles
# after the checkpoint. Everything up to min(that event, horizon) - 1 is as applied as it
# will ever be (the rule of ``runner.REACHED``, for every position at once). The scan stops
# at the first such event or the horizon, so it reads at most the events since the stored
# checkpoint. ``newest``: the highest committed position (an index probe).
REACH = """
SELECT h.newest, c.name, c.position, h.horizon,
       (SELECT min(e.position) FROM events e
        WHERE e.position > c.position AND e.position < h.horizon
          AND e.type IN (SELECT x.type FROM unnest($2::text[], $3::text[]) AS x(name, type)
                         WHERE x.name = c.name)) AS pending
FROM (SELECT civic_horizon() AS horizon,
             (SELECT coalesce(max(position), 0) FROM events) AS newest) h
LEFT JOIN projection_checkpoints c ON c.name = ANY($1::text[])
"""


@dataclass(frozen=True)
class Reach:
    """How far each projection is as applied as it will be, and the newest position."""

    newest: int
    reached: Mapping[str, int]

    def covers(self, names: Sequence[str], position: int) -> bool:
        return all(self.reached.get(n, -1) >= position for n in names)


@dataclass(eq=False)
class _Waiter:
    names: tuple[str, ...]
    position: int
    done: asyncio.Event = field(default_factory=asyncio.Event)


class PositionWaits:
    def __init__(
        self,
        pool: Callable[[], asyncpg.Pool],
        handles: Callable[[], Mapping[str, frozenset[str]]],
        *,
        poll_seconds: float = 0.02,
    ) -> None:
        self._pool = pool
        self._handles = handles
        self.poll_seconds = poll_seconds
        self.runner: ProjectionRunner | None = None
        self._waiters: set[_Waiter] = set()
        self._wakeup = Wakeup()
        self._poller: asyncio.Task[None] | None = None
        #: the highest position known to be committed (commits of this process, queries).
        self.newest_seen = 0

    # -- wiring ---------------------------------------------------------------------------

    def attach(self, runner: ProjectionRunner) -> None:
        """Follow an in-process runner: its progress wakes the waiters."""
        self.runner = runner
        runner.on_progress.append(self.poke)

    def poke(self, *_: object) -> None:
        self._wakeup.poke()

    def saw_commit(self, outcome: object) -> None:
        """The ``after_commit`` hook: remember the newest position committed here."""
        position = getattr(outcome, "position", None)
        if isinstance(position, int) and position > self.newest_seen:
            self.newest_seen = position

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    # -- queries --------------------------------------------------------------------------

    def reached_here(self, names: Sequence[str], position: int) -> bool:
        """True when ``position`` is known to be committed and this process's runner owns
        every named projection and has applied everything settled up to it (no database
        needed)."""
        runner = self.runner
        if runner is None or position > self.newest_seen:
            return False
        for name in names:
            state = runner.states.get(name)
            if state is None or not state.owned or state.checkpoint < position:
                return False
        return True

    async def reach(self, names: Sequence[str]) -> Reach:
        """One statement on a briefly borrowed connection."""
        handles = self._handles()
        pairs = [(n, t) for n in names if n in handles for t in sorted(handles[n])]
        async with self._pool().acquire() as conn:
            rows = await conn.fetch(
                REACH, list(names), [n for n, _ in pairs], [t for _, t in pairs]
            )
        reached: dict[str, int] = {}
        for r in rows:
            if r["name"] is None:
                continue
            checkpoint: int = r["position"]
            if r["name"] not in handles:
                reached[r["name"]] = checkpoint  # events unknown: only the checkpoint counts
                continue
            limit = r["horizon"] - 1 if r["pending"] is None else r["pending"] - 1
            reached[r["name"]] = max(checkpoint, min(limit, r["horizon"] - 1))
        newest: int = rows[0]["newest"]
        self.newest_seen = max(self.newest_seen, newest)
        return Reach(newest=newest, reached=reached)

    # -- waiting --------------------------------------------------------------------------

    async def wait(self, names: Sequence[str], position: int, timeout: float) -> bool:
        """Wait (holding no connection) until every named projection reached ``position``;
        False on timeout."""
        if self.reached_here(names, position):
            return True
        waiter = _Waiter(tuple(names), position)
        self._waiters.add(waiter)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(
                self._poll(), name="position-waits"
            )
        else:
            self.poke()
        try:
            async with asyncio.timeout(timeout):
                await waiter.done.wait()
            return True
        except TimeoutError:
            return False
        finally:
            self._waiters.discard(waiter)

    async def _poll(self) -> None:
        while self._waiters:
            pending = [w for w in self._waiters if not w.done.is_set()]
            remote: list[_Waiter] = []
            for w in pending:
                if self.reached_here(w.names, w.position):
                    w.done.set()
                else:
                    remote.append(w)
            if remote and not self._all_local(remote):
                names = sorted({n for w in remote for n in w.names})
                with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    reach = await self.reach(names)
                    for w in remote:
                        if reach.covers(w.names, w.position):
                            w.done.set()
            await self._wakeup.wait(self.poll_seconds)

    def _all_local(self, waiters: list[_Waiter]) -> bool:
        """Whether the in-process runner owns every projection these waiters name (then its
        progress, not a query, tells when they are done)."""
        runner = self.runner
        if runner is None:
            return False
        return all(
            (s := runner.states.get(n)) is not None and s.owned for w in waiters for n in w.names
        )

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._poller
            self._poller = None
