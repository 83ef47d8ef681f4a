"""Every aggregate and event class of the domain, by the names we store.

The codec resolves stored ``stream_type`` and event ``TOPIC`` through these maps, never
through Python module paths. Adding an aggregate means adding it to ``AGGREGATES``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from eventsourcing.domain import CanMutateAggregate

from domain.base import CivicAggregate
from domain.finding import Finding
from domain.issue import Issue
from domain.member import Member, UnitRegistration
from domain.node import Node
from domain.pairing import Pairing
from domain.service import ServiceOffer, ServiceOrder
from domain.survey import Survey

AGGREGATES: tuple[type[CivicAggregate], ...] = (
    Node,
    Pairing,
    UnitRegistration,
    Member,
    Issue,
    Finding,
    ServiceOffer,
    ServiceOrder,
    Survey,
)

_TOPIC = re.compile(r"^[A-Z][A-Za-z0-9]*\.v[1-9][0-9]*$")
#: the library's base event classes every aggregate carries; they are never recorded.
_BASES = frozenset({"Event", "Created"})


class RegistryError(Exception):
    """The aggregates' classes break the naming contract (a programming error)."""


def _own_topic(event_class: type[Any]) -> str | None:
    """The TOPIC the class itself declares.

    The library re-creates nested event classes as subclasses of the originals, so the
    declaration may sit on a base with the same qualified name; a TOPIC merely inherited
    from a *different* event class does not count.
    """
    for klass in event_class.__mro__:
        if klass.__qualname__ != event_class.__qualname__:
            break
        if "TOPIC" in vars(klass):
            topic: str = vars(klass)["TOPIC"]
            return topic
    return None


def aggregate_events(aggregate: type[CivicAggregate]) -> list[type[Any]]:
    """The recordable event classes nested in ``aggregate`` (each with its own TOPIC)."""
    found = []
    for name, value in vars(aggregate).items():
        if not (isinstance(value, type) and issubclass(value, CanMutateAggregate)):
            continue
        topic = _own_topic(value)
        if topic is None:
            if name in _BASES:
                continue
            raise RegistryError(f"{aggregate.__name__}.{name} has no TOPIC of its own")
        if not _TOPIC.match(topic):
            raise RegistryError(
                f"{aggregate.__name__}.{name}: TOPIC {topic!r} is not '<ContractName>.v<N>'"
            )
        found.append(value)
    return found


def event_classes(
    aggregates: Iterable[type[CivicAggregate]] = AGGREGATES,
) -> dict[str, type[Any]]:
    """{TOPIC: event class} over every aggregate; a missing or duplicate TOPIC raises."""
    topics: dict[str, type[Any]] = {}
    for aggregate in aggregates:
        for event_class in aggregate_events(aggregate):
            topic = _own_topic(event_class)
            assert topic is not None
            if topic in topics:
                raise RegistryError(
                    f"TOPIC {topic!r} is used by both {topics[topic].__qualname__} and "
                    f"{event_class.__qualname__}"
                )
            topics[topic] = event_class
    return topics


def aggregate_classes(
    aggregates: Iterable[type[CivicAggregate]] = AGGREGATES,
) -> dict[str, type[CivicAggregate]]:
    """{STREAM_TYPE: aggregate class}; a missing or duplicate STREAM_TYPE raises."""
    types: dict[str, type[CivicAggregate]] = {}
    for aggregate in aggregates:
        stream_type = vars(aggregate).get("STREAM_TYPE", "")
        if not stream_type:
            raise RegistryError(f"{aggregate.__name__} has no STREAM_TYPE of its own")
        if stream_type in types:
            raise RegistryError(
                f"STREAM_TYPE {stream_type!r} is used by both {types[stream_type].__name__} "
                f"and {aggregate.__name__}"
            )
        types[stream_type] = aggregate
    return types


def aggregate_of(event_class: type[Any]) -> type[CivicAggregate]:
    """The aggregate class an event class belongs to."""
    for aggregate in AGGREGATES:
        if event_class in aggregate_events(aggregate):
            return aggregate
    raise RegistryError(f"{event_class.__qualname__} belongs to no registered aggregate")
