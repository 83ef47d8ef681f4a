"""Garbage-collector settings of a serving process (``civic serve``/``project``, uvicorn).

A request allocates thousands of short-lived objects, so with CPython's default threshold
(700) the youngest generation is collected every few requests, and each full collection
walks every object made at start-up (routes, the OpenAPI document, the message catalog,
modules): about 5% of a command's CPU under load was the collector. After start-up the
heap is frozen (those objects are never walked again), and collections run less often;
cyclic garbage made by requests is still collected. It is frozen without a collection
first: start-up leaves a few dozen unreachable objects, and collecting them would cost a
third of a second of every (re)start.
"""

from __future__ import annotations

import gc

#: objects allocated (net) before the youngest generation is collected; CPython's is 700
YOUNG_THRESHOLD = 20_000


def settle_heap_for_serving() -> None:
    """Freeze what start-up made, then collect the young generation less often."""
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
