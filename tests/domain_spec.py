"""Given/when/then for the domain's aggregates, without I/O.

    events = history(report(), assign)                 # a past: creation, then commands
    [e] = given(events).when(accept).then(Issue.Accepted)
    given(events).when(accept).then_raises(IllegalTransition)

``given`` replays the past into a fresh aggregate each time a command runs, so one past
serves several whens; ``then`` asserts the exact sequence of event types the command
recorded (none: ``then()``) and hands them back, with the aggregate they lead to (replayed,
so the events' ``apply`` is what is checked); ``then_raises`` asserts the refusal and hands
back pytest's ``ExceptionInfo``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import reduce
from typing import Any, TypeVar

import pytest

from domain.base import CivicAggregate

A = TypeVar("A", bound=CivicAggregate)
Command = Callable[[Any], object]


def replay(events: Iterable[Any]) -> Any:
    """The aggregate the events lead to (None for no events)."""
    return reduce(lambda aggregate, e: e.mutate(aggregate), events, None)


def history(created: A, *commands: Callable[[A], object]) -> list[Any]:
    """The events of a past: ``created`` is a new aggregate (its creation events pending),
    then each command runs on it."""
    for command in commands:
        command(created)
    return list(created.collect_events())


@dataclass(frozen=True)
class Recorded:
    """What a command recorded (iterate or index it like the list of events)."""

    past: tuple[Any, ...]
    events: list[Any]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)

    def __getitem__(self, index: int) -> Any:
        return self.events[index]

    @property
    def aggregate(self) -> Any:
        """The aggregate replayed from the past and the recorded events."""
        return replay([*self.past, *self.events])

    @property
    def all_events(self) -> list[Any]:
        return [*self.past, *self.events]


@dataclass(frozen=True)
class When:
    past: tuple[Any, ...]
    command: Command

    def _run(self) -> list[Any]:
        aggregate = replay(self.past)
        self.command(aggregate)
        return list(aggregate.collect_events())

    def then(self, *expected: type) -> Recorded:
        """The command records exactly events of these types, in this order."""
        events = self._run()
        assert [type(e) for e in events] == list(expected), (
            f"recorded {[type(e).__qualname__ for e in events]}, "
            f"expected {[t.__qualname__ for t in expected]}"
        )
        return Recorded(self.past, events)

    def then_raises(
        self, error: type[BaseException], *, match: str | None = None
    ) -> pytest.ExceptionInfo[Any]:
        """The command is refused with ``error`` (its message matching ``match``)."""
        with pytest.raises(error, match=match) as info:
            self._run()
        return info


@dataclass(frozen=True)
class Given:
    past: tuple[Any, ...]

    @property
    def aggregate(self) -> Any:
        return replay(self.past)

    def when(self, command: Command) -> When:
        return When(self.past, command)


def given(events: Iterable[Any]) -> Given:
    return Given(tuple(events))
