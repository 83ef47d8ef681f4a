"""Maps domain events (eventsourcing dataclasses) to stored rows and back.

Stored: ``type`` (the contract name, e.g. ``IssueAssigned``), ``schema_version`` and
``data`` (msgspec JSON of the event's own fields — the originator id, version and
timestamp live in their own columns). Reading an old schema version runs the registered
upcasters in order until the current class's version is reached.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import msgspec
from eventsourcing.utils import get_topic

from domain.base import CivicAggregate, event_schema_version, event_type_name

_ENVELOPE_FIELDS = frozenset(
    {"originator_id", "originator_version", "timestamp", "originator_topic"}
)
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class UnknownEventType(LookupError):
    pass


@dataclasses.dataclass(frozen=True)
class NewEvent:
    event_id: UUID
    type: str
    schema_version: int
    data: bytes
    occurred_at: datetime


class EventCodec:
    def __init__(
        self,
        event_classes: Mapping[str, type[Any]],
        aggregates: Iterable[type[CivicAggregate]],
        upcasters: Mapping[tuple[str, int], Upcaster] | None = None,
    ) -> None:
        self._by_topic = dict(event_classes)
        # The newest schema version of each contract name is what we decode into.
        self._latest: dict[str, type[Any]] = {}
        for cls in self._by_topic.values():
            name = event_type_name(cls)
            current = self._latest.get(name)
            if current is None or event_schema_version(cls) > event_schema_version(current):
                self._latest[name] = cls
        self._aggregates = {agg.STREAM_TYPE: agg for agg in aggregates}
        self._upcasters = dict(upcasters or {})

    @property
    def type_names(self) -> frozenset[str]:
        return frozenset(self._latest)

    def aggregate_class(self, stream_type: str) -> type[CivicAggregate]:
        return self._aggregates[stream_type]

    def encode(self, event: Any) -> NewEvent:
        cls = type(event)
        fields = {
            f.name: getattr(event, f.name)
            for f in dataclasses.fields(event)
            if f.name not in _ENVELOPE_FIELDS
        }
        return NewEvent(
            event_id=uuid4(),
            type=event_type_name(cls),
            schema_version=event_schema_version(cls),
            data=_encoder.encode(fields),
            occurred_at=event.timestamp,
        )

    def upcast(self, type_name: str, schema_version: int, data: dict[str, Any]) -> dict[str, Any]:
        cls = self._latest.get(type_name)
        if cls is None:
            raise UnknownEventType(type_name)
        target = event_schema_version(cls)
        while schema_version < target:
            data = self._upcasters[(type_name, schema_version)](data)
            schema_version += 1
        return data

    def decode(
        self,
        *,
        stream_type: str,
        stream_id: UUID,
        version: int,
        type_name: str,
        schema_version: int,
        data: str | bytes,
        occurred_at: datetime,
    ) -> Any:
        fields = self.upcast(type_name, schema_version, _decoder.decode(data))
        cls = self._latest[type_name]
        fields["originator_id"] = stream_id
        fields["originator_version"] = version
        fields["timestamp"] = occurred_at
        if issubclass(cls, CivicAggregate.Created):
            fields["originator_topic"] = get_topic(self._aggregates[stream_type])
        return msgspec.convert(fields, cls, strict=False)


def decode_json(data: str | bytes) -> Any:
    return _decoder.decode(data)
