"""``business_day`` remembers the last day it answered: the answer must stay the China-local
day of the instant, whatever order the instants come in and whatever zone they carry."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

from domain.refs import CHINA_TZ
from projections.stats.engine import business_day

BASE = datetime(2031, 1, 1, tzinfo=UTC)


def test_midnight_in_china_is_the_boundary() -> None:
    midnight = datetime(2031, 1, 1, 16, tzinfo=UTC)  # 2031-01-02 00:00 in China
    for at, day in (
        (midnight - timedelta(microseconds=1), date(2031, 1, 1)),
        (midnight, date(2031, 1, 2)),
        (midnight - timedelta(microseconds=1), date(2031, 1, 1)),
        (midnight + timedelta(days=1) - timedelta(microseconds=1), date(2031, 1, 2)),
        (midnight + timedelta(days=1), date(2031, 1, 3)),
    ):
        assert business_day(at) == day, at


def test_any_order_and_any_zone() -> None:
    rng = random.Random(7)
    instants = [BASE + timedelta(seconds=rng.randrange(86400 * 40)) for _ in range(3000)]
    ordered = sorted(instants)
    mixed = [t.astimezone(CHINA_TZ) if n % 3 == 0 else t for n, t in enumerate(ordered)]
    for at in ordered + instants + mixed:
        assert business_day(at) == at.astimezone(CHINA_TZ).date(), at
