"""CanonicalText (verification's encoder) gives canonical_event's bytes, byte for byte.

Verification gets ids as PostgreSQL's ``uuid::text`` and instants as
``to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')``; here those texts
are spelled out field by field the way that pattern writes them, so the test also pins that
``isoformat(timespec="microseconds")`` always has that fixed shape (zero microseconds, years
before 1000, any offset). tests/integration/test_audit_canonical.py checks PostgreSQL's side.
"""

from __future__ import annotations

import inspect
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

from hypothesis import example, given
from hypothesis import strategies as st

from infra.chain import CanonicalText, canonical_event, encode_canonical


def rendered(ts: datetime) -> str:
    """The to_char pattern's output for ``ts``."""
    u = ts.astimezone(UTC)
    return (
        f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}"
        f".{u.microsecond:06d}+00:00"
    )


def text_of(value: UUID | None) -> str | None:
    return None if value is None else str(value)


# PostgreSQL text and jsonb strings hold neither NUL nor lone surrogates; anything else goes.
texts = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=40
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(texts, inner, max_size=5),
    max_leaves=20,
)
offsets = st.builds(
    lambda minutes, seconds: timezone(timedelta(minutes=minutes, seconds=seconds)),
    st.integers(min_value=-23 * 60, max_value=23 * 60),
    st.sampled_from([0, 0, 0, 17, 43]),
)
instants = st.datetimes(
    min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=offsets
)
ids = st.uuids()
optional_ids = st.none() | st.uuids()


@given(
    root_id=ids,
    node_id=ids,
    stream_id=ids,
    stream_type=texts,
    version=st.integers(min_value=1, max_value=2**31 - 1),
    event_id=ids,
    type_=texts,
    schema_version=st.integers(min_value=-(2**15), max_value=2**15 - 1),
    data=json_values,
    occurred_at=instants,
    recorded_at=instants,
    actor=texts,
    correlation_id=optional_ids,
    causation_id=optional_ids,
    idempotency_key=st.none() | texts,
)
@example(  # zero microseconds, a year before 1000, non-ASCII and nested data, a +08:00 clock
    root_id=UUID(int=1),
    node_id=UUID(int=2),
    stream_id=UUID(int=3),
    stream_type="issue",
    version=1,
    event_id=UUID(int=4),
    type_="IssueReported",
    schema_version=1,
    data={"标题": '路灯坏了 "急"\n', "b": [1, {"z": None, "a": 1.5}], "a": True},
    occurred_at=datetime(999, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=8))),
    recorded_at=datetime(2031, 6, 1, 0, 0, 0, 1, tzinfo=UTC),
    actor="王\u2028\x7f",
    correlation_id=None,
    causation_id=UUID(int=5),
    idempotency_key=None,
)
def test_canonical_text_encodes_as_canonical_event(
    root_id: UUID,
    node_id: UUID,
    stream_id: UUID,
    stream_type: str,
    version: int,
    event_id: UUID,
    type_: str,
    schema_version: int,
    data: Any,
    occurred_at: datetime,
    recorded_at: datetime,
    actor: str,
    correlation_id: UUID | None,
    causation_id: UUID | None,
    idempotency_key: str | None,
) -> None:
    expected = canonical_event(
        root_id=root_id,
        node_id=node_id,
        stream_id=stream_id,
        stream_type=stream_type,
        version=version,
        event_id=event_id,
        type=type_,
        schema_version=schema_version,
        data=data,
        occurred_at=occurred_at,
        recorded_at=recorded_at,
        actor=actor,
        correlation_id=correlation_id,
        causation_id=causation_id,
        idempotency_key=idempotency_key,
    )
    fields = CanonicalText(
        actor=actor,
        causation_id=text_of(causation_id),
        correlation_id=text_of(correlation_id),
        data=data,
        event_id=str(event_id),
        idempotency_key=idempotency_key,
        node_id=str(node_id),
        occurred_at=rendered(occurred_at),
        recorded_at=rendered(recorded_at),
        root_id=str(root_id),
        schema_version=schema_version,
        stream_id=str(stream_id),
        stream_type=stream_type,
        type=type_,
        version=version,
    )
    assert encode_canonical(fields) == expected


def test_fields_are_canonical_events_keys_in_key_order():
    """Verification builds CanonicalText positionally: its field order is the key order."""
    keys = tuple(sorted(inspect.signature(canonical_event).parameters))
    assert CanonicalText.__struct_fields__ == keys
