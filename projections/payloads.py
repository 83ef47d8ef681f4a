"""Stored event payloads as projections read them, derived from the domain's event classes.

An event's fields are declared once, on its class in ``domain/`` (what the aggregate records
and the codec stores, ``infra.event_schemas.stored_fields``); a projection decodes the stored
``data`` into a msgspec Struct built from that declaration, never into a copy of its own.
The Struct differs from the declaration only where a reader needs it to:

* a personal-data field is ``msgspec.Raw``: the sealed value, copied verbatim, never opened
  here (``services/personal_data_view.py`` does that);
* a field that may be ``None`` reads as ``None`` when absent (events written by tools);
* ``text_ids=True``: UUID fields as their text (the roll-ups key their maps by strings).

Built once per class (cached): decoding is msgspec's typed decoder, as fast as a hand-written
Struct of the same fields.
"""

from __future__ import annotations

import functools
import operator
import types
import typing
from typing import Annotated, Any, Union
from uuid import UUID

import msgspec

from domain.base import event_type_name
from infra.event_schemas import stored_fields

_NULL = msgspec.Raw(b"null")


def _as_text(tp: Any) -> Any:
    if tp is UUID:
        return str
    origin = typing.get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return functools.reduce(operator.or_, [_as_text(a) for a in typing.get_args(tp)])
    return tp


def _may_be_none(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return _may_be_none(typing.get_args(tp)[0])
    if origin is Union or origin is types.UnionType:
        return type(None) in typing.get_args(tp)
    return tp is None or tp is type(None) or tp is Any


class UnknownField(LookupError):
    """A projection reads a field its event does not declare."""


_Key = tuple[type[Any], tuple[str, ...] | None, bool]
_TYPES: dict[_Key, type[msgspec.Struct]] = {}
_DECODERS: dict[_Key, msgspec.json.Decoder[Any]] = {}


def payload_type(
    event_class: type[Any], fields: tuple[str, ...] | None = None, *, text_ids: bool = False
) -> type[msgspec.Struct]:
    """The Struct a projection decodes ``event_class``'s stored data into: every stored field,
    or only ``fields`` (a reader of a few fields of a large payload skips the rest)."""
    key = (event_class, fields, text_ids)
    found = _TYPES.get(key)
    if found is None:
        found = _TYPES[key] = _build(event_class, fields, text_ids)
    return found


def _build(
    event_class: type[Any], fields: tuple[str, ...] | None, text_ids: bool
) -> type[msgspec.Struct]:
    declared = stored_fields(event_class, msgspec.Raw)
    if fields is not None:
        unknown = set(fields) - {f[0] for f in declared}
        if unknown:
            raise UnknownField(f"{event_class.__qualname__} has no field {sorted(unknown)}")
        declared = [f for f in declared if f[0] in fields]
    out: list[Any] = []
    for name, tp, *default in declared:
        if text_ids:
            tp = _as_text(tp)
        if not default and tp is msgspec.Raw:
            default = [_NULL]
        elif not default and _may_be_none(tp):
            default = [None]
        out.append((name, tp, *default))
    suffix = "Text" if text_ids else ""
    return msgspec.defstruct(f"{event_type_name(event_class)}Payload{suffix}", out, kw_only=True)


def payload_decoder(
    event_class: type[Any], fields: tuple[str, ...] | None = None, *, text_ids: bool = False
) -> msgspec.json.Decoder[Any]:
    """A JSON decoder of ``event_class``'s stored data (see ``payload_type``)."""
    key = (event_class, fields, text_ids)
    found = _DECODERS.get(key)
    if found is None:
        found = _DECODERS[key] = msgspec.json.Decoder(payload_type(*key[:2], text_ids=text_ids))
    return found
