"""References to other aggregates, and the small value checks every workflow shares.

Aggregates never load each other. When a command needs a fact about another node (its
kind, its root tenant, whether it is closed), the application looks the node up and
passes a ``NodeRef``; the aggregate decides with that snapshot and records ids and codes
in its events (ids are stable, codes are what government platforms key on).

The text, date and time checks live here too so the four workflows word their 422s the
same way.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from uuid import UUID

from domain.errors import Conflict, InvalidValue
from domain.hierarchy import NodeKind
from domain.node import Node

#: business dates (a service day, a due date) are China Standard Time dates; UTC+8, no DST.
CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")

#: longest free text (a reason, a note, a description).
MAX_TEXT = 2000
#: longest short label (a title, a category, a source).
MAX_TITLE = 200

# NUL cannot be stored in PostgreSQL text/jsonb; other C0 controls are never meant.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class NodeRef:
    """What one aggregate needs to know about a hierarchy node it names.

    ``kind`` is a ``NodeKind`` value (``"unit"``, ``"community"``...). ``parent_id`` is
    needed only where placement matters (a member's grid must sit in their community).
    """

    id: UUID
    code: str
    kind: str
    root_id: UUID
    parent_id: UUID | None = None
    closed: bool = False

    @classmethod
    def of(cls, node: Node) -> NodeRef:
        """Build a reference from a loaded ``Node`` aggregate."""
        return cls(
            id=node.id,
            code=node.code,
            kind=NodeKind(node.kind).value,
            root_id=node.root_id,
            parent_id=node.parent_id,
            closed=node.closed,
        )


def require_node(
    field: str,
    node: NodeRef,
    *,
    kinds: frozenset[NodeKind] | set[NodeKind],
    root_id: UUID | None = None,
) -> NodeRef:
    """Refuse a node of the wrong kind or of another root tenant (422), or closed (409)."""
    if node.kind not in {k.value for k in kinds}:
        wanted = " or ".join(sorted(k.value for k in kinds))
        raise InvalidValue(field, f"{node.code} is a {node.kind} node; expected a {wanted} node")
    if root_id is not None and node.root_id != root_id:
        raise InvalidValue(field, f"{node.code} belongs to another root tenant")
    return require_open(node)


def require_open(node: NodeRef) -> NodeRef:
    """Nothing new may name a closed node (a ``Conflict``: 409, whatever the aggregate's state)."""
    if node.closed:
        raise Conflict(f"node {node.code} is closed")
    return node


def clean_text(field: str, value: object, *, max_len: int = MAX_TEXT) -> str:
    """Strip and check a required piece of free text (Chinese is kept exactly as given)."""
    if not isinstance(value, str):
        raise InvalidValue(field, "must be text")
    text = value.strip()
    if not text:
        raise InvalidValue(field, "must not be empty")
    if len(text) > max_len:
        raise InvalidValue(field, f"must be at most {max_len} characters (got {len(text)})")
    if _CONTROL.search(text):
        raise InvalidValue(field, "must not contain control characters")
    return text


def clean_optional_text(field: str, value: object, *, max_len: int = MAX_TEXT) -> str | None:
    """Like ``clean_text`` but ``None`` or blank means "not given"."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return clean_text(field, value, max_len=max_len)


#: business dates and deadlines outside this range are typing errors, not plans: refusing
#: them keeps year-9999 values out of the ledger (and out of every read model's date math).
EARLIEST = date(1990, 1, 1)
LATEST = date(2100, 12, 31)


def _within_range(field: str, day: date) -> None:
    if not EARLIEST <= day <= LATEST:
        raise InvalidValue(field, f"must fall between {EARLIEST} and {LATEST}")


def require_date(field: str, value: object) -> date:
    # datetime is a subclass of date: a timestamp where a calendar day is meant is a bug.
    if not isinstance(value, date) or isinstance(value, datetime):
        raise InvalidValue(field, "must be a date (YYYY-MM-DD)")
    _within_range(field, value)
    return value


def require_moment(field: str, value: object) -> datetime:
    """A caller-supplied point in time (a deadline) must carry its UTC offset."""
    if not isinstance(value, datetime):
        raise InvalidValue(field, "must be a date-time (RFC 3339)")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidValue(field, "must include a UTC offset (e.g. 2024-05-01T18:00:00+08:00)")
    _within_range(field, value.date())
    return value


def require_int(field: str, value: object, *, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidValue(field, "must be a whole number")
    if not low <= value <= high:
        raise InvalidValue(field, f"must be between {low} and {high} (got {value})")
    return value


def require_number(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidValue(field, "must be a number")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidValue(field, "must be a finite number")
    return number


def business_date(at: datetime) -> date:
    """The calendar day ``at`` falls on in China (what "today" means for due dates)."""
    return at.astimezone(CHINA_TZ).date()
