"""Cursor paging for list endpoints: ``?limit=`` (≤ 500) and an opaque ``cursor``.

A cursor is the sort key of the last item returned, msgspec-encoded and base64url'd; it is
opaque to clients and validated on the way back in (a tampered cursor is a 400).
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any, Generic, TypeAlias, TypeVar
from uuid import UUID

import msgspec
from litestar.params import QueryParameter

from services.problems import FieldError, ProblemError

T = TypeVar("T")

MAX_LIMIT = 500

Limit: TypeAlias = Annotated[
    int, QueryParameter(ge=1, le=MAX_LIMIT, description="Page size (1-500).")
]
Cursor: TypeAlias = Annotated[
    str | None,
    QueryParameter(required=False, max_length=512, description="Opaque cursor from next_cursor."),
]


class Page(msgspec.Struct, Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(key)).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> list[Any] | None:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = msgspec.json.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        key = None
    if not isinstance(key, list):
        raise invalid_cursor()
    return key


def decode_time_id_cursor(cursor: str | None) -> tuple[datetime, UUID] | None:
    """The common ``(recorded time, id)`` keyset cursor of the list endpoints."""
    key = decode_cursor(cursor)
    if key is None:
        return None
    try:
        at, ident = key
        return datetime.fromisoformat(at), UUID(ident)
    except (TypeError, ValueError):
        raise invalid_cursor() from None


def invalid_cursor() -> ProblemError:
    return ProblemError(
        400,
        "Bad Request",
        "the cursor is not one this API returned",
        slug="validation",
        errors=[FieldError(field="cursor", message="invalid cursor")],
    )


def page_of(items: list[T], limit: int, key_of: Any) -> Page[T]:
    """Build a page from ``limit + 1`` fetched rows: the extra row only says "there is more"."""
    if len(items) > limit:
        items = items[:limit]
        return Page(items=items, next_cursor=encode_cursor(key_of(items[-1])))
    return Page(items=items, next_cursor=None)
