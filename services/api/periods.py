"""The ``?from=&to=`` day range of the daily series and coverage reads.

Days are China-local dates (``domain.refs.business_date``); both ends are included. ``to``
defaults to today, ``from`` to ``default_days`` before it; a range longer than ``max_days``
or one that ends before it starts answers 422 naming the parameter.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, TypeAlias

from litestar.params import QueryParameter

from services.problems import invalid_value

FromDay: TypeAlias = Annotated[
    date | None,
    QueryParameter(name="from", required=False, description="First day (YYYY-MM-DD)."),
]
ToDay: TypeAlias = Annotated[
    date | None,
    QueryParameter(required=False, description="Last day (YYYY-MM-DD); default today."),
]


def day_range(
    first: date | None, last: date | None, *, today: date, default_days: int, max_days: int
) -> tuple[date, date]:
    """``(first, last)`` with the defaults filled in; 422 for a range that cannot be read."""
    last = last or today
    first = first or date.fromordinal(max(1, last.toordinal() - (default_days - 1)))
    if first > last:
        raise invalid_value("from", f"must not be after to ({last.isoformat()})")
    if (last - first).days + 1 > max_days:
        raise invalid_value("to", f"a period covers at most {max_days} days")
    return first, last
