"""Stored events as CloudEvents 1.0 (JSON event format), for the feed, webhooks and NATS.

Attributes of every event:

* ``specversion`` "1.0"; ``id`` the event id (UUID); ``subject`` the stream (aggregate) id;
  ``time`` the business time (occurred-at, RFC 3339); ``datacontenttype`` "application/json";
  ``data`` the event's data as stored.
* ``source`` ``/civic-ledger/<code>/<code>/...``: the codes of the event's node and its
  ancestors, root first, as the directory has them when the event is read (after a move or
  a reissued code the source follows the node's current place and code).
* ``type`` a reverse-DNS name made from the contract name and schema version, see
  ``event_type``: ``IssueReported`` v1 → ``cn.civic-ledger.issue.reported.v1``.
* ``dataschema`` the URL of the JSON Schema its ``data`` validates against,
  ``<public URL>/schema/events/<contract name>/<version>`` (see ``schema_path``).
* Extension attributes (lowercase alphanumerics, as the spec requires):
  ``position`` the global feed position, a decimal string (positions exceed the 32-bit
  CloudEvents Integer); ``nodecode`` the node's current code; ``nodeseq`` the event's
  sequence number in its node's hash chain; ``streamtype`` and ``streamversion``;
  ``recordedat`` when it was recorded (RFC 3339); ``actor``; ``correlationid`` when known.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Any
from urllib.parse import quote

import msgspec

from domain.clock import instant
from infra.feed import FeedEvent

SPEC_VERSION = "1.0"
TYPE_PREFIX = "cn.civic-ledger."
SOURCE_PREFIX = "/civic-ledger"
CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"

_WORD = re.compile(r"[A-Z][a-z0-9]*")
_CE_TYPE = re.compile(
    r"^cn\.civic-ledger\.([a-z0-9]+)\.([a-z0-9]+(?:-[a-z0-9]+)*)\.v([1-9][0-9]*)$"
)


def event_type(contract_name: str, schema_version: int) -> str:
    """The CloudEvents ``type`` of a contract name at a schema version.

    The contract name's first word is the noun, the rest the past-tense action, in
    lowercase, joined with ``-``: ``IssueReported`` v1 → ``cn.civic-ledger.issue.reported.v1``,
    ``RectificationProgressReported`` v2 → ``cn.civic-ledger.rectification.progress-reported.v2``.
    A one-word name gets the action ``recorded``. ``contract_name_of`` inverts it.
    """
    words = _WORD.findall(contract_name)
    if not words or "".join(words) != contract_name:
        raise ValueError(f"not a contract name: {contract_name!r}")
    noun = words[0].lower()
    action = "-".join(w.lower() for w in words[1:]) or "recorded"
    return f"{TYPE_PREFIX}{noun}.{action}.v{int(schema_version)}"


def contract_name_of(ce_type: str) -> tuple[str, int] | None:
    """``cn.civic-ledger.issue.reported.v1`` → ``("IssueReported", 1)``; None if not ours."""
    match = _CE_TYPE.match(ce_type)
    if match is None:
        return None
    noun, action, version = match.groups()
    words = [noun, *([] if action == "recorded" else action.split("-"))]
    return "".join(w[:1].upper() + w[1:] for w in words), int(version)


def schema_path(contract_name: str, schema_version: int) -> str:
    return f"/schema/events/{contract_name}/{int(schema_version)}"


def source_of(path_codes: Iterable[str]) -> str:
    return SOURCE_PREFIX + "".join("/" + quote(code, safe="-._~") for code in path_codes)


class CloudEvent(msgspec.Struct, omit_defaults=True):
    """One event in the CloudEvents 1.0 JSON format (see the module doc for each field)."""

    specversion: str
    id: str
    source: str
    type: str
    subject: str
    time: str
    datacontenttype: str
    dataschema: str
    position: str
    nodecode: str
    nodeseq: int
    streamtype: str
    streamversion: int
    recordedat: str
    actor: str
    data: msgspec.Raw
    correlationid: str | None = None


def to_cloudevent(item: FeedEvent, schema_base: str) -> CloudEvent:
    """``schema_base``: the API's public URL, under which ``dataschema`` is served."""
    e = item.event
    return CloudEvent(
        specversion=SPEC_VERSION,
        id=str(e.event_id),
        source=source_of(item.path_codes),
        type=event_type(e.type, e.schema_version),
        subject=str(e.stream_id),
        time=instant(e.occurred_at),
        datacontenttype="application/json",
        dataschema=schema_base + schema_path(e.type, e.schema_version),
        position=str(e.position),
        nodecode=item.node_code,
        nodeseq=e.node_seq,
        streamtype=e.stream_type,
        streamversion=e.version,
        recordedat=instant(e.recorded_at),
        actor=e.actor,
        data=msgspec.Raw(e.data.encode() if isinstance(e.data, str) else e.data),
        correlationid=str(e.correlation_id) if e.correlation_id is not None else None,
    )


_encoder = msgspec.json.Encoder()


def encode(event: CloudEvent) -> bytes:
    return _encoder.encode(event)


class CloudEventDoc(msgspec.Struct):
    """The OpenAPI description of a CloudEvent (``data`` is the event's own JSON)."""

    specversion: str
    id: str
    source: str
    type: str
    subject: str
    time: str
    datacontenttype: str
    dataschema: Annotated[str, msgspec.Meta(extra_json_schema={"extra": {"format": "uri"}})]
    position: str
    nodecode: str
    nodeseq: int
    streamtype: str
    streamversion: int
    recordedat: str
    actor: str
    data: dict[str, Any]
    correlationid: str | None = None
