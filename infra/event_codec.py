"""Maps domain events (eventsourcing dataclasses) to stored rows and back.

Stored: ``type`` (the contract name, e.g. ``IssueAssigned``), ``schema_version`` and
``data`` (msgspec JSON of the event's own fields — the originator id, version and
timestamp live in their own columns). Reading an old schema version runs the registered
upcasters in order until the current class's version is reached.

Personal information: an event field typed ``PersonalData`` (or ``Annotated[..., PERSONAL]``)
is sealed by a ``FieldCipher`` before the data is encoded (and so before it is hashed), and
opened again on decode; without the key (crypto-shredded) it decodes as ``None``. A codec
built with ``require_cipher=True`` (the application's) refuses to encode such a field in
clear. Upcasters see sealed values as they are stored.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Annotated, Any, Protocol, Union, get_args, get_origin
from uuid import UUID, uuid4

import msgspec
from eventsourcing.utils import get_topic

from domain.base import CivicAggregate, event_schema_version, event_type_name
from domain.personal_data import PERSONAL, PersonalData
from infra.pii_crypto import is_sealed

_ENVELOPE_FIELDS = frozenset(
    {"originator_id", "originator_version", "timestamp", "originator_topic"}
)
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class UnknownEventType(LookupError):
    pass


class PlaintextRefused(RuntimeError):
    """A personal-data field was about to be stored in clear (no field cipher given)."""


class FieldCipher(Protocol):
    """Seals and opens personal-data fields of one stream (see ``infra.pii_crypto``)."""

    def encrypt(self, stream_id: UUID, field_name: str, plaintext: bytes) -> Any: ...

    def decrypt(self, stream_id: UUID, field_name: str, sealed: Any) -> bytes | None: ...


def _is_personal(tp: Any) -> bool:
    if tp is PersonalData:
        return True
    origin = get_origin(tp)
    if origin is Annotated:
        args = get_args(tp)
        return any(m is PERSONAL for m in args[1:]) or _is_personal(args[0])
    if origin is Union or origin is types.UnionType:
        return any(_is_personal(a) for a in get_args(tp) if a is not type(None))
    return False


def personal_fields(cls: type[Any]) -> tuple[str, ...]:
    """The names of ``cls``'s fields that hold personal information."""
    cached = _personal_fields.get(cls)
    if cached is None:
        try:
            hints = typing.get_type_hints(cls, include_extras=True)
        except (NameError, TypeError):  # unresolvable annotation: judge by its text
            hints = {}
        names = []
        for f in dataclasses.fields(cls) if dataclasses.is_dataclass(cls) else ():
            tp = hints.get(f.name, f.type)
            if _is_personal(tp) or (isinstance(tp, str) and "PersonalData" in tp):
                names.append(f.name)
        cached = _personal_fields[cls] = tuple(names)
    return cached


_personal_fields: dict[type[Any], tuple[str, ...]] = {}


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
        *,
        require_cipher: bool = False,
    ) -> None:
        self.require_cipher = require_cipher
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

    def has_personal_data(self, type_name: str) -> bool:
        """Whether events of this contract name may carry sealed personal data."""
        cls = self._latest.get(type_name)
        return cls is not None and bool(personal_fields(cls))

    @staticmethod
    def carries_personal_data(event: Any) -> bool:
        """Whether encoding ``event`` seals something (a personal field is not ``None``)."""
        return any(getattr(event, name) is not None for name in personal_fields(type(event)))

    def encode(self, event: Any, cipher: FieldCipher | None = None) -> NewEvent:
        cls = type(event)
        fields = {
            f.name: getattr(event, f.name)
            for f in dataclasses.fields(event)
            if f.name not in _ENVELOPE_FIELDS
        }
        for name in personal_fields(cls):
            value = fields.get(name)
            if value is None:
                continue
            if cipher is None:
                if self.require_cipher:
                    raise PlaintextRefused(
                        f"{event_type_name(cls)}.{name} holds personal data: a field cipher"
                        " is required to store it"
                    )
                continue
            fields[name] = cipher.encrypt(event.originator_id, name, _encoder.encode(value))
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
        cipher: FieldCipher | None = None,
    ) -> Any:
        fields = self.upcast(type_name, schema_version, _decoder.decode(data))
        cls = self._latest[type_name]
        for name in personal_fields(cls):
            value = fields.get(name)
            if is_sealed(value):
                plaintext = cipher.decrypt(stream_id, name, value) if cipher else None
                fields[name] = None if plaintext is None else _decoder.decode(plaintext)
        fields["originator_id"] = stream_id
        fields["originator_version"] = version
        fields["timestamp"] = occurred_at
        if issubclass(cls, CivicAggregate.Created):
            fields["originator_topic"] = get_topic(self._aggregates[stream_type])
        return msgspec.convert(fields, cls, strict=False)


def decode_json(data: str | bytes) -> Any:
    return _decoder.decode(data)
