"""/schema/events and /schema/asyncapi.json: the event contract, derived from the code.

The per-event JSON Schemas come from ``infra.event_schemas`` (the event classes); the
AsyncAPI 3.0 document describes the three ways events leave the ledger — the feed (paged
JSON and Server-Sent Events), webhooks and NATS JetStream — and references one message per
event type and version whose ``data`` is that schema. Both are public, like the OpenAPI
document: they describe shapes, never data.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

import msgspec
from litestar import Controller, Request, Response, get
from litestar.datastructures import State
from litestar.params import FromPath

from domain.registry import event_classes
from infra.event_schemas import catalogue, data_schema
from services.cloudevents import CONTENT_TYPE, event_type, schema_path
from services.context import AppContext
from services.problems import not_found

ASYNCAPI_VERSION = "3.0.0"


class EventSchemaItem(msgspec.Struct):
    type: str
    version: int
    schema_url: str


class EventSchemaList(msgspec.Struct):
    items: list[EventSchemaItem]


@cache
def _schemas() -> dict[tuple[str, int], dict[str, Any]]:
    return {(name, version): data_schema(cls) for name, version, cls in catalogue(event_classes())}


def _base(state: State) -> str:
    ctx: AppContext = state.ctx
    return ctx.settings.base_url


class ContractDocsController(Controller):
    path = "/schema"
    include_in_schema = False

    @get("/events", sync_to_thread=False)
    def list_event_schemas(self, state: State) -> EventSchemaList:
        base = _base(state)
        return EventSchemaList(
            items=[
                EventSchemaItem(
                    type=name, version=version, schema_url=base + schema_path(name, version)
                )
                for name, version in sorted(_schemas())
            ]
        )

    @get("/events/{type_name:str}/{version:int}", sync_to_thread=False)
    def event_schema(
        self, type_name: FromPath[str], version: FromPath[int], state: State
    ) -> Response[bytes]:
        schema = _schemas().get((type_name, version))
        if schema is None:
            raise not_found(f"event schema {type_name} v{version}")
        body = {**schema, "$id": _base(state) + schema_path(type_name, version)}
        return Response(content=msgspec.json.encode(body), media_type="application/schema+json")

    @get("/asyncapi.json", sync_to_thread=False)
    def asyncapi(self, request: Request[Any, Any, Any], state: State) -> dict[str, Any]:
        ctx: AppContext = state.ctx
        return asyncapi_document(
            ctx.settings.base_url, ctx.settings.nats_subject_prefix, bool(ctx.settings.nats_url)
        )


def _local_refs(schema: Any, prefix: str) -> Any:
    """Point an event schema's ``#/$defs/X`` at the document's ``components/schemas``."""
    if isinstance(schema, dict):
        out = {}
        for k, v in schema.items():
            if k == "$ref" and isinstance(v, str) and v.startswith("#/$defs/"):
                out[k] = f"#/components/schemas/{prefix}{v.rsplit('/', 1)[1]}"
            elif k not in ("$schema", "$id"):
                out[k] = _local_refs(v, prefix)
        return out
    if isinstance(schema, list):
        return [_local_refs(v, prefix) for v in schema]
    return schema


_ENVELOPE: dict[str, Any] = {
    "type": "object",
    "description": "A CloudEvent 1.0 (JSON format); see services/cloudevents.py for each field",
    "required": [
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "time",
        "datacontenttype",
        "dataschema",
        "position",
        "nodecode",
        "nodeseq",
        "streamtype",
        "streamversion",
        "recordedat",
        "actor",
        "data",
    ],
    "properties": {
        "specversion": {"type": "string", "const": "1.0"},
        "id": {"type": "string", "format": "uuid"},
        "source": {"type": "string", "description": "/civic-ledger/<root code>/.../<node code>"},
        "type": {"type": "string", "description": "cn.civic-ledger.<noun>.<action>.v<N>"},
        "subject": {"type": "string", "format": "uuid", "description": "the stream id"},
        "time": {"type": "string", "format": "date-time"},
        "datacontenttype": {"type": "string", "const": "application/json"},
        "dataschema": {"type": "string", "format": "uri"},
        "position": {"type": "string", "pattern": "^[0-9]+$"},
        "nodecode": {"type": "string"},
        "nodeseq": {"type": "integer", "minimum": 1},
        "streamtype": {"type": "string"},
        "streamversion": {"type": "integer", "minimum": 1},
        "recordedat": {"type": "string", "format": "date-time"},
        "actor": {"type": "string"},
        "correlationid": {"type": "string", "format": "uuid"},
        "data": {"type": "object"},
    },
}

_WEBHOOK_HEADERS: dict[str, Any] = {
    "type": "object",
    "required": [
        "X-Civic-Signature",
        "X-Civic-Timestamp",
        "X-Civic-Timestamped-Signature",
        "X-Civic-Event-Id",
        "X-Civic-Delivery-Attempt",
        "X-Civic-Webhook-Id",
        "X-Civic-Position",
    ],
    "properties": {
        "X-Civic-Signature": {
            "type": "string",
            "description": "sha256=<hex HMAC-SHA256(key=the subscription secret, msg=raw body)>",
        },
        "X-Civic-Timestamp": {"type": "string", "description": "Unix seconds of this attempt"},
        "X-Civic-Timestamped-Signature": {
            "type": "string",
            "description": 'sha256=<hex HMAC-SHA256(secret, f"{timestamp}." + raw body)>; '
            "reject timestamps older than a few minutes",
        },
        "X-Civic-Event-Id": {
            "type": "string",
            "description": "the CloudEvent id: de-duplicate by it",
        },
        "X-Civic-Delivery-Attempt": {"type": "string", "description": "1, 2, ... within a round"},
        "X-Civic-Webhook-Id": {"type": "string", "format": "uuid"},
        "X-Civic-Position": {"type": "string", "description": "the global feed position"},
    },
}


def asyncapi_document(base_url: str, subject_prefix: str, nats_enabled: bool) -> dict[str, Any]:
    schemas: dict[str, Any] = {"CloudEvent": _ENVELOPE, "WebhookHeaders": _WEBHOOK_HEADERS}
    messages: dict[str, Any] = {}
    for (name, version), schema in sorted(_schemas().items()):
        key = f"{name}.v{version}"
        prefix = f"{name}V{version}_"
        data = _local_refs(copy.deepcopy(schema), prefix)
        for def_name, definition in data.pop("$defs", {}).items():
            schemas[prefix + def_name] = definition
        schemas[f"{key}.data"] = data
        messages[key] = {
            "name": key,
            "title": f"{name} v{version}",
            "summary": f"CloudEvent type {event_type(name, version)}",
            "contentType": CONTENT_TYPE.split(";")[0],
            "payload": {
                "allOf": [
                    {"$ref": "#/components/schemas/CloudEvent"},
                    {
                        "type": "object",
                        "properties": {
                            "type": {"const": event_type(name, version)},
                            "dataschema": {"const": base_url + schema_path(name, version)},
                            "data": {"$ref": f"#/components/schemas/{key}.data"},
                        },
                    },
                ]
            },
        }
    refs = {key: {"$ref": f"#/components/messages/{key}"} for key in messages}
    # webhook requests carry the signature headers: the same messages, with headers
    for key in list(messages):
        messages[f"webhook.{key}"] = {
            **messages[key],
            "name": f"webhook.{key}",
            "headers": {"$ref": "#/components/schemas/WebhookHeaders"},
        }
    webhook_refs = {
        f"webhook.{key}": {"$ref": f"#/components/messages/webhook.{key}"} for key in refs
    }
    host = base_url.split("://", 1)[-1]
    servers: dict[str, Any] = {
        "api": {
            "host": host,
            "protocol": "http",
            "description": "The feed: GET /v1/feed (paged JSON) or with Accept: "
            "text/event-stream (Server-Sent Events). Bearer token, role integrator or admin.",
            "security": [{"$ref": "#/components/securitySchemes/bearer"}],
        },
        "nats": {
            "host": "nats:4222",
            "protocol": "nats",
            "description": "NATS JetStream, stream CIVIC (when CIVIC_NATS_URL is set"
            + ("; enabled here" if nats_enabled else "; not enabled here")
            + "). Header Nats-Msg-Id = event id (JetStream drops duplicates).",
        },
    }
    channels: dict[str, dict[str, Any]] = {
        "feed": {
            "address": "/v1/feed",
            "title": "事件流 / The feed",
            "description": "Your subtree's events in position order, as CloudEvents. Paged: "
            "{items, next}; pass next as ?after=. SSE: id = position, event = CloudEvent type, "
            "data = the CloudEvent; reconnect with Last-Event-ID; ': keep-alive' heartbeats.",
            "servers": [{"$ref": "#/servers/api"}],
            "messages": refs,
        },
        "webhook": {
            "address": "{url}",
            "title": "Webhook 推送 / Webhooks",
            "description": "POST of one CloudEvent per request to a subscription's URL, in "
            "position order, signed (see WebhookHeaders). Any answer but 2xx is retried with "
            "exponential backoff and jitter (Retry-After of a 429/503 honoured up to the cap); "
            "after CIVIC_WEBHOOK_MAX_ATTEMPTS (default 8) the event becomes a dead letter, "
            "listed by GET /v1/webhooks/{id}/deliveries?status=dead and queued again by POST "
            "/v1/webhooks/{id}/redrive.",
            "parameters": {"url": {"description": "The subscription's URL"}},
            "messages": webhook_refs,
        },
        "nats": {
            "address": subject_prefix + ".{rootCode}.{contractName}",
            "title": "NATS 主题 / NATS subjects",
            "description": "Every tenant's events, e.g. "
            f"{subject_prefix}.330106000000.IssueReported",
            "servers": [{"$ref": "#/servers/nats"}],
            "parameters": {
                "rootCode": {"description": "The code of the event's root tenant"},
                "contractName": {"description": "The event's contract name"},
            },
            "messages": refs,
        },
    }

    def operation(channel: str, summary: str) -> dict[str, Any]:
        keys = channels[channel]["messages"]
        return {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": summary,
            "messages": [{"$ref": f"#/channels/{channel}/messages/{key}"} for key in keys],
        }

    operations = {
        "sendFeed": operation("feed", "The ledger serves its events on the feed"),
        "sendWebhook": operation("webhook", "The ledger POSTs each event to a subscription"),
        "sendNats": operation("nats", "The ledger publishes each event to NATS JetStream"),
    }
    operations["sendWebhook"]["bindings"] = {"http": {"method": "POST"}}
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "civic-ledger events",
            "version": "1.0.0",
            "description": "事件契约：事件流、Webhook 与 NATS。The event contract: the feed, "
            "webhooks and NATS. Each message's data schema is also served at "
            "/schema/events/{type}/{version} (JSON Schema 2020-12).",
        },
        "defaultContentType": "application/cloudevents+json",
        "servers": servers,
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": schemas,
            "messages": messages,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }
