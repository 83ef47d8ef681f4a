"""Which events a projection reads, named by the domain's event classes.

A projection's methods say what they apply with ``@on(Pairing.Signed)``: the contract name
(``PairingSigned``) comes from the class (``domain.base.event_type_name``), which must be an
event of a registered aggregate (``domain.registry``), and the payload is decoded into the
Struct derived from that class (``projections.payloads``). A ``Subscriber`` subclass gets
its ``handles`` from its subscriptions, so nothing names an event with a string typed again:
a misspelt class fails at import, and ``check_handles`` (run by ``projections.registry``)
refuses a projection whose ``handles`` names something that is not a registered event type.

``PerEvent`` is the common case: apply a batch event by event, each to its method.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import asyncpg
import msgspec

from domain.base import CivicAggregate, event_type_name
from domain.registry import event_classes
from infra.event_store import StoredEvent
from projections.base import ALL_EVENTS, Projection
from projections.payloads import payload_decoder

_MARK = "__civic_subscribes__"
F = TypeVar("F", bound=Callable[..., Any])


class UnknownEvent(LookupError):
    """A projection subscribes to, or handles, something that is not a registered event."""


@functools.cache
def _registered() -> Mapping[str, type[Any]]:
    return event_classes()


@functools.cache
def registered_type_names() -> frozenset[str]:
    """The contract names of every registered event class."""
    return frozenset(event_type_name(cls) for cls in _registered().values())


def contract_name(event_class: type[Any]) -> str:
    """``Pairing.Signed`` → ``PairingSigned``; anything but a registered event class raises."""
    topic = getattr(event_class, "TOPIC", None)
    if not isinstance(topic, str) or _registered().get(topic) is not event_class:
        raise UnknownEvent(f"{event_class!r} is not an event of a registered aggregate")
    return event_type_name(event_class)


def on(
    *events: type[Any], fields: tuple[str, ...] | None = None, text_ids: bool = False
) -> Callable[[F], F]:
    """Subscribe the decorated method to ``events`` (checked now, at import).

    ``fields``: decode only these (each must be declared by every event named);
    ``text_ids``: UUID fields as text (see ``projections.payloads``)."""
    if not events:
        raise UnknownEvent("@on() names no event")
    for event in events:
        contract_name(event)
        payload_decoder(event, fields, text_ids=text_ids)

    def mark(fn: F) -> F:
        marks = ((e, fields, text_ids) for e in events)
        setattr(fn, _MARK, (*getattr(fn, _MARK, ()), *marks))
        return fn

    return mark


class _Nothing(msgspec.Struct):
    """The payload of a subscription that reads no field (``fields=()``): nothing decoded."""


_NOTHING = _Nothing()


@dataclass(frozen=True)
class Subscription:
    event: type[Any]
    #: the subscribed function (unbound: called with the instance first).
    handler: Callable[..., Any]
    #: None: the subscription reads no field, its data is not even parsed.
    decoder: msgspec.json.Decoder[Any] | None
    #: the event creates its aggregate (a ``Created``: the stream's first event).
    creates: bool

    def decode(self, data: str | bytes) -> Any:
        return _NOTHING if self.decoder is None else self.decoder.decode(data)


def subscriptions(cls: type[Any]) -> dict[str, Subscription]:
    """{contract name: subscription} of ``cls``'s ``@on`` methods (a subclass's override
    wins); two methods of one class subscribed to the same event raise."""
    found: dict[str, Subscription] = {}
    for klass in reversed(cls.__mro__):
        own: set[str] = set()
        for value in vars(klass).values():
            for event, fields, text_ids in getattr(value, _MARK, ()):
                name = contract_name(event)
                if name in own:
                    raise UnknownEvent(f"{klass.__qualname__} subscribes to {name} twice")
                own.add(name)
                decoder = (
                    None if fields == () else payload_decoder(event, fields, text_ids=text_ids)
                )
                creates = issubclass(event, CivicAggregate.Created)
                found[name] = Subscription(event, value, decoder, creates)
    return found


def check_handles(projection: Projection) -> None:
    """Fail fast when ``projection.handles`` names something that is not a registered event."""
    if projection.handles == ALL_EVENTS:
        return
    unknown = sorted(projection.handles - registered_type_names())
    if unknown:
        raise UnknownEvent(f"projection {projection.name!r} handles unknown events {unknown}")


class Subscriber:
    """A class whose ``@on`` methods make its ``handles`` (set when the class is created)."""

    handles: frozenset[str] = frozenset()
    subscriptions: ClassVar[Mapping[str, Subscription]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.subscriptions = subscriptions(cls)
        cls.handles = frozenset(cls.subscriptions)


Handler = Callable[[Any, asyncpg.Connection, StoredEvent, Any], Awaitable[None]]


class PerEvent(Subscriber):
    """A projection that applies its events one at a time, each to its ``@on`` method
    ``(self, conn, event, payload)``; an event it has no method for raises (never skipped)."""

    name: str

    async def apply(self, conn: asyncpg.Connection, events: Sequence[StoredEvent]) -> None:
        subs = self.subscriptions
        for e in events:
            sub = subs.get(e.type)
            if sub is None:
                raise UnknownEvent(f"{self.name} cannot apply {e.type}")
            await sub.handler(self, conn, e, sub.decode(e.data))
