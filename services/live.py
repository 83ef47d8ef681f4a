"""In-process broadcast of "something was committed", for live feeds and outbox workers.

The app registers one ``LiveSignal`` among the context's ``after_commit`` hooks, so every
command committed in this process pokes it; the webhook worker also pokes it on NOTIFY
from other processes (it LISTENs on the connection it holds anyway). Each listener (an SSE
stream, a subscription's delivery task, a relay) has its own coalescing ``Wakeup`` and
still polls as a fallback, so a missed poke only delays, never loses, an event.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from projections.runner import Wakeup


class LiveSignal:
    def __init__(self) -> None:
        self._wakeups: set[Wakeup] = set()

    def __call__(self, _outcome: Any = None) -> None:
        """The ``after_commit`` hook."""
        self.poke()

    def poke(self, *_args: Any) -> None:
        for wakeup in list(self._wakeups):
            wakeup.poke()

    @contextmanager
    def subscribe(self) -> Iterator[Wakeup]:
        wakeup = Wakeup()
        self._wakeups.add(wakeup)
        try:
            yield wakeup
        finally:
            self._wakeups.discard(wakeup)

    @property
    def listeners(self) -> int:
        return len(self._wakeups)


@dataclass
class FeedConfig:
    """Live feed (Server-Sent Events) timing; mutable so tests can make it fast."""

    heartbeat_seconds: float = 15.0
    poll_seconds: float = 1.0
    max_stream_seconds: float = 300.0
    page_size: int = 200
    #: the least time between two reads of one stream, however often commits poke
    min_poll_seconds: float = 0.02
