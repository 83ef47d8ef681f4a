"""What a projection is: the events it handles, its tables, and how it applies a batch.

The runner calls ``apply`` inside the transaction that also moves the projection's
checkpoint, so a batch takes effect exactly once, even across kill -9.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple, Protocol
from uuid import UUID

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
# Optional, read by a rebuild on the replica when present: ``light_replay: bool``, true when
# its ``apply`` reads only what a ``ReplayEvent`` holds (annotated ``LightEvent``, so that the
# type checker holds it to that): the replay then fetches and decodes 7 columns, not 19.


class ReplayEvent(NamedTuple):
    """The columns of a stored event that a ``light_replay`` projection reads."""

    position: int
    root_id: UUID
    stream_id: UUID
    version: int
    type: str
    data: str
    occurred_at: datetime


REPLAY_COLUMNS = ", ".join(ReplayEvent._fields)

#: what a ``light_replay`` projection reads of an event: live, the stored event; replayed
#: by a rebuild, its ``ReplayEvent``.
LightEvent = StoredEvent | ReplayEvent
