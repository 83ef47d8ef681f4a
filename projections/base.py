"""What a projection is: the events it handles, its tables, and how it applies a batch.

The runner calls ``apply`` inside the transaction that also moves the projection's
checkpoint, so a batch takes effect exactly once, even across kill -9.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import asyncpg

from infra.event_store import StoredEvent

#: ``handles`` of a projection that reads every event, whatever its type (the audit tree).
ALL_EVENTS: frozenset[str] = frozenset({"*"})


class Projection(Protocol):
    #: unique name; also the checkpoint key and the advisory-lock key.
    name: str
    #: contract names of the events it reads (``NodeRegistered`` ...).
    handles: frozenset[str]
    #: its read-model tables, emptied by a rebuild.
    tables: tuple[str, ...]

    async def apply(self, conn: asyncpg.Connection, events: Sequence[StoredEvent]) -> None: ...


# Optional, read by the runner when present: ``min_poll_gap: float``, the least seconds
# between the starts of two batches once caught up (larger batches, less CPU per event).
