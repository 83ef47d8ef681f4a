"""A JSON Schema (2020-12) for the stored ``data`` of every event type and version.

Generated from the event classes themselves — the same declarations the aggregates record,
the codec encodes and the projections read — so a new event (or a new version of one)
declared the standard way (a nested class with its ``TOPIC``, its aggregate listed in
``domain.registry.AGGREGATES``) has its schema with nothing else to write. The data is
described as the codec stores it: the event's own fields without the envelope (id, version,
timestamp live in their own columns), a personal-data field as its sealed form (or null
once shredded).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any

import msgspec

from domain.base import event_schema_version, event_type_name
from infra.event_codec import _ENVELOPE_FIELDS, personal_fields

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


class Sealed(msgspec.Struct, forbid_unknown_fields=True):
    """A personal-data field as stored: AES-GCM under the person's data key."""

    alg: str
    kid: str
    nonce: str
    ct: str


class _Personal(msgspec.Struct):
    """Placeholder for a personal-data field; ``data_schema`` writes its real schema."""


def stored_fields(event_class: type[Any], personal: Any) -> list[Any]:
    """The event's stored fields as ``msgspec.defstruct`` takes them (name, type[, default]):
    the dataclass fields without the envelope, each with its declared type, a personal-data
    field typed ``personal`` (how the reader wants the sealed value)."""
    hints = typing.get_type_hints(event_class, include_extras=True)
    personal_names = set(personal_fields(event_class))
    fields: list[Any] = []
    for f in dataclasses.fields(event_class):
        if f.name in _ENVELOPE_FIELDS:
            continue
        tp: Any = personal if f.name in personal_names else hints.get(f.name, Any)
        if f.default is not dataclasses.MISSING:
            fields.append((f.name, tp, f.default))
        elif f.default_factory is not dataclasses.MISSING:
            fields.append((f.name, tp, msgspec.field(default_factory=f.default_factory)))
        else:
            fields.append((f.name, tp))
    return fields


def data_struct(event_class: type[Any]) -> type[msgspec.Struct]:
    """A msgspec Struct with the event's stored fields (the codec's encoding of ``data``)."""
    name = f"{event_type_name(event_class)}V{event_schema_version(event_class)}"
    return msgspec.defstruct(name, stored_fields(event_class, _Personal | None), kw_only=True)


def data_schema(event_class: type[Any], schema_id: str | None = None) -> dict[str, Any]:
    """The JSON Schema of one event class's ``data``, self-contained (its own ``$defs``)."""
    schema: dict[str, Any] = msgspec.json.schema(data_struct(event_class))
    ref = schema.pop("$ref", None)
    defs = schema.pop("$defs", {})
    if ref is not None:
        schema = dict(defs.pop(ref.rsplit("/", 1)[1]))
    if defs.pop("_Personal", None) is not None:
        _personal_schemas(event_class, schema, defs)
    out: dict[str, Any] = {"$schema": JSON_SCHEMA_DIALECT}
    if schema_id:
        out["$id"] = schema_id
    out["title"] = f"{event_type_name(event_class)} v{event_schema_version(event_class)}"
    out.update(schema)
    if defs:
        out["$defs"] = defs
    return out


def _personal_schemas(event_class: type[Any], schema: dict[str, Any], defs: dict[str, Any]) -> None:
    """A personal field is stored sealed, or null once shredded; events written without a
    field cipher (tools, tests) hold it in clear, which readers accept too."""
    hints = typing.get_type_hints(event_class, include_extras=False)
    for name in personal_fields(event_class):
        clear = [t for t in typing.get_args(hints[name]) if t is not type(None)] or [hints[name]]
        (sealed, *plain), components = msgspec.json.schema_components([Sealed, *clear])
        defs.update(components)
        schema["properties"][name] = {"anyOf": [sealed, *plain, {"type": "null"}]}


def catalogue(event_classes: Mapping[str, type[Any]]) -> list[tuple[str, int, type[Any]]]:
    """``(contract name, version, class)`` of every recordable event, sorted."""
    return sorted(
        (event_type_name(cls), event_schema_version(cls), cls) for cls in event_classes.values()
    )
