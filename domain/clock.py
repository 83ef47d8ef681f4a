"""Time comes into the domain as data: commands take ``at`` so tests never sleep or patch."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


def require_aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("timestamps must be timezone-aware")
    return at


def instant(at: datetime) -> str:
    """RFC 3339 in UTC with ``Z``, the one form every answer uses (as msgspec encodes a
    ``datetime``): ``2026-03-05T08:00:00Z``."""
    text = require_aware(at).astimezone(UTC).isoformat()
    return text.removesuffix("+00:00") + "Z"
