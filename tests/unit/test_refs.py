"""Shared value checks of domain/refs.py."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from domain.errors import InvalidValue
from domain.refs import require_date, require_moment


def test_absurd_dates_and_deadlines_are_refused() -> None:
    assert require_date("due_on", date(2027, 3, 1)) == date(2027, 3, 1)
    for day in (date(9999, 12, 31), date(1, 1, 1), date(1949, 10, 1)):
        with pytest.raises(InvalidValue):
            require_date("due_on", day)
    with pytest.raises(InvalidValue):
        require_moment("due_at", datetime(9999, 12, 31, tzinfo=UTC))
