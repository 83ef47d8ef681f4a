"""The aggregate base every civic aggregate builds on.

We use the ``eventsourcing`` library's pure domain layer (``Aggregate`` and its nested
event dataclasses). Every aggregate pins its stored name with ``STREAM_TYPE`` and every
event with ``TOPIC`` so a moved module never breaks replay. Event topics read ``<ContractName>.v<N>`` where the
contract name is the one DESIGN.md lists (``PairingSigned``, ``CommitmentFulfilled``) and
feeds publish. A schema change adds a new event class (``.v2``) and an upcaster in the
codec; stored events are never edited.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.clock import require_aware


class CivicAggregate(Aggregate):
    """Base aggregate. Subclasses set ``STREAM_TYPE`` and nest explicit event classes,
    each with a pinned ``TOPIC``.

    The pins are ours, not the library's module-path topics: the codec stores
    ``STREAM_TYPE`` and event ``TOPIC`` and resolves them through its own registry, so
    nothing stored names a Python module. (Setting ``TOPIC`` on the aggregate class would
    switch on the library's own topic registry, which insists on a ``Created`` class.)
    """

    #: the short type name streams are stored under (``stream_type``).
    STREAM_TYPE: ClassVar[str] = ""
    #: the shape of the aggregate's state (its attributes and what they mean), as snapshots
    #: store it: raise it when that changes, and snapshots of the old shape are ignored.
    STATE_VERSION: ClassVar[int] = 1

    def _record(self, event_class: type[Aggregate.Event], at: datetime, **fields: Any) -> None:
        """Record an already-validated fact. Mutation lives in the event's ``apply``."""
        self.trigger_event(event_class, timestamp=require_aware(at), **fields)

    @property
    def owner_node_id(self) -> UUID:
        """The hierarchy node whose hash chain the aggregate's next events join."""
        raise NotImplementedError


def event_type_name(event_class: type[Any]) -> str:
    """``PairingSigned.v1`` → ``PairingSigned``: the contract name used in feeds and filters."""
    topic: str = event_class.TOPIC
    return topic.rsplit(".v", 1)[0]


def event_schema_version(event_class: type[Any]) -> int:
    topic: str = event_class.TOPIC
    return int(topic.rsplit(".v", 1)[1])
