"""Bounded, time-boxed measurement loops shared by the anchors and our benchmarks.

Both loops start ``workers`` workers that repeat one operation until a deadline. The first
``warmup`` seconds are not counted: the rate is (operations completed in the timed window) /
(window length), so connection set-up, plan caching and the first page faults stay out of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol


class Window(Protocol):
    """Something measured over exactly the timed window (``bench.cpu.CpuWindow``)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class Rate:
    events: int
    seconds: float
    errors: int

    @property
    def per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


async def async_rate(
    workers: int,
    op: Callable[[int, int], Awaitable[int]],
    *,
    duration: float,
    warmup: float = 0.0,
    max_errors: int = 0,
    window: Window | None = None,
) -> Rate:
    """Run ``op(worker, iteration) -> events done`` in ``workers`` tasks for warmup + duration.

    An operation that raises counts as an error; more than ``max_errors`` errors stop the run
    and re-raise the first one. ``window`` is started and stopped with the timed window.
    """
    counts = [0] * workers
    errors: list[BaseException] = []
    stop = asyncio.Event()

    async def worker(w: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                counts[w] += await op(w, i)
            except Exception as exc:
                errors.append(exc)
                if len(errors) > max_errors:
                    stop.set()
                    return
            i += 1

    tasks = [asyncio.create_task(worker(w)) for w in range(workers)]
    try:
        await _sleep_unless(stop, warmup)
        if window is not None:
            window.start()
        c0, t0 = sum(counts), time.perf_counter()
        await _sleep_unless(stop, duration)
        c1, t1 = sum(counts), time.perf_counter()
        if window is not None:
            window.stop()
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=max(30.0, duration * 4))
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if len(errors) > max_errors:
        raise errors[0]
    return Rate(events=c1 - c0, seconds=t1 - t0, errors=len(errors))


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    if seconds <= 0:
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


def thread_rate(
    workers: int,
    op: Callable[[int, int], int],
    *,
    duration: float,
    warmup: float = 0.0,
    max_errors: int = 0,
) -> Rate:
    """``async_rate`` for blocking code: ``op(worker, iteration) -> events`` in OS threads."""
    counts = [0] * workers
    errors: list[BaseException] = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker(w: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                n = op(w, i)
            except Exception as exc:
                with lock:
                    errors.append(exc)
                    if len(errors) > max_errors:
                        stop.set()
                        return
            else:
                counts[w] += n
            i += 1

    threads = [
        threading.Thread(target=worker, args=(w,), name=f"bench-{w}", daemon=True)
        for w in range(workers)
    ]
    for t in threads:
        t.start()
    try:
        stop.wait(warmup)
        c0, t0 = sum(counts), time.perf_counter()
        stop.wait(duration)
        c1, t1 = sum(counts), time.perf_counter()
    finally:
        stop.set()
        deadline = time.monotonic() + max(30.0, duration * 4)
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
    if len(errors) > max_errors:
        raise errors[0]
    if any(t.is_alive() for t in threads):
        raise TimeoutError("benchmark threads did not stop in time")
    return Rate(events=c1 - c0, seconds=t1 - t0, errors=len(errors))


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an already sorted list; NaN when empty."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]
