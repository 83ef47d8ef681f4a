"""Stored events built in memory, for applying to a projection without the event log."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import msgspec

from infra.event_store import StoredEvent


def stored_event(
    *,
    position: int,
    root: UUID,
    stream: UUID,
    version: int,
    kind: str,
    data: dict[str, Any],
    at: datetime,
    stream_type: str = "test",
) -> StoredEvent:
    """An event as the store returns it (hashes left empty: projections do not read them)."""
    return StoredEvent(
        position=position,
        root_id=root,
        node_id=root,
        node_seq=position,
        prev_hash=b"",
        hash=b"",
        stream_id=stream,
        stream_type=stream_type,
        version=version,
        event_id=uuid4(),
        type=kind,
        schema_version=1,
        data=msgspec.json.encode(data).decode(),
        occurred_at=at,
        recorded_at=at,
        actor="test",
        correlation_id=None,
        causation_id=None,
        idempotency_key=None,
    )
