"""The finishing pass over the OpenAPI document Litestar derives from the handlers.

Litestar documents what a handler's signature says: its body, parameters and success
response. What every operation shares — the problem+json answers it can give, the request
headers the command pipeline reads, the response headers every answer of a class carries (ETag is declared by the reads that send it;
Location goes on a 201 wherever the document has a GET for the created item),
readable operation ids, tag descriptions — is stated here once, by operation class, so an
endpoint added later is documented the same way without a hand copy.
"""

from __future__ import annotations

import re
from typing import Any

from litestar.openapi.spec import Tag

#: tag → (中文, English). Every tag an operation uses must be described here
#: (tests/integration/test_openapi_contract.py checks it).
TAGS: dict[str, tuple[str, str]] = {
    "nodes": (
        "层级节点：县（区）、街道、社区、网格与单位",
        "The hierarchy: counties, streets, communities, grids and units",
    ),
    "pairings": (
        "结对共建：单位与社区结对、承诺事项与活动",
        "Pairing: units paired with communities, commitments and activities",
    ),
    "members": (
        "双报到：单位报到、在职党员报到、服务与积分",
        "Member registration: units and in-service party members, service and points",
    ),
    "issues": (
        "民情工单：受理、派单、签收、办结、回访与吹哨报到",
        "Issues and work orders: report, assign, accept, resolve, callback, escalate",
    ),
    "findings": (
        "巡视整改：建账、更新、销号与回头看",
        "Inspection findings and their rectification ledger",
    ),
    "service": (
        "五单志愿服务：亮单、点单、派单、接单、评单",
        "Volunteer service (五单): offers, orders, dispatch, acceptance, rating",
    ),
    "surveys": ("扫楼入户走访：走访记录与网格覆盖", "Household surveys (扫楼) and grid coverage"),
    "stats": ("统计指标：按层级汇总", "Indicators rolled up the hierarchy"),
    "units": (
        "单位考核：结对、派单、整改与在职党员",
        "Units' records: pairings, issues, findings, members",
    ),
    "exports": ("导出：工单、结对、党员名册", "Exports: issues, pairings and members as XLSX/CSV"),
    "integration": ("数据对接：事件流、Webhook 推送", "Integration: the event feed and webhooks"),
    "audit": ("审计：哈希链、检查点与证明", "Audit: hash chains, checkpoints and proofs"),
    "operations": ("运行维护：健康检查与监控指标", "Operations: health and metrics"),
}

PROBLEM_JSON = "application/problem+json"

_STATUS_TEXT = {
    400: "The request is malformed: a bad parameter, body, header or cursor",
    401: "No valid bearer token",
    403: "The token's role may not do this",
    404: "Not found, or outside your scope",
    409: "Conflicts with the current state (illegal transition, duplicate, concurrent change)",
    412: "If-Match does not match the current version",
    413: "The request body is too large",
    415: "The body is not application/json",
    422: "Well-formed, but the domain refuses the values",
    429: "Too many requests (Retry-After says when to come back)",
    503: "Not ready or read models not caught up (Retry-After says when to retry)",
}
_READ_ERRORS = (400, 401, 403, 404, 422, 429, 503)
_COMMAND_ERRORS = (*_READ_ERRORS, 409, 412, 413, 415)

PROBLEM_SCHEMAS: dict[str, Any] = {
    "FieldError": {
        "type": "object",
        "required": ["field", "message"],
        "properties": {
            "field": {"type": "string", "description": "The field, parameter or header"},
            "message": {"type": "string"},
        },
    },
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string", "format": "uri"},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
            "instance": {"type": "string"},
            "request_id": {"type": "string"},
            "errors": {"type": "array", "items": {"$ref": "#/components/schemas/FieldError"}},
            "current_state": {"type": "string"},
            "current_version": {"type": "integer"},
        },
    },
}


def _header(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "schema": schema or {"type": "string"}}


_RESPONSE_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": _header("Bearer realm")},
    429: {"Retry-After": _header("Seconds to wait", {"type": "integer", "minimum": 0})},
    503: {"Retry-After": _header("Seconds to wait", {"type": "integer", "minimum": 0})},
}
_COMMAND_SUCCESS_HEADERS = {
    "X-Civic-Position": _header(
        "The feed position of the command's last event; pass it as min_position to reads",
        {"type": "integer", "minimum": 0},
    ),
    "Idempotent-Replayed": _header("true when this is the stored answer of an earlier request"),
}


_CREATED_HEADERS = {
    "Location": _header("The created resource (where it can be read)", {"type": "string"})
}


def created_items(doc: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Every collection the document can read an item of → ``(item template, parameter)``:
    ``/v1/pairings`` → ``("/v1/pairings/{pairing_id}", "pairing_id")`` (the first such
    template of a collection, in document order)."""
    items: dict[str, tuple[str, str]] = {}
    for template, item in doc.get("paths", {}).items():
        head, _, last = template.rpartition("/")
        if last.startswith("{") and isinstance(item.get("get"), dict):
            items.setdefault(head, (template, last.strip("{}")))
    return items


def created_item(doc: dict[str, Any], path: str) -> tuple[str, str] | None:
    """The readable item a POST to collection ``path`` creates, or None when the document has
    no GET for one."""
    return created_items(doc).get(path.rstrip("/"))


def location(items: dict[str, tuple[str, str]], path: str, body: dict[str, Any]) -> str | None:
    """The Location of what a 201 created: its id (or code) in the item's path; ``items`` is
    ``created_items`` of the served document, computed once (not per response)."""
    found = items.get(path.rstrip("/"))
    if found is None:
        return None
    template, param = found
    value = body.get("id" if param.endswith("id") else param)
    return None if value is None else template.replace("{" + param + "}", str(value))


def _parameter(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": schema,
    }


ACCEPT_LANGUAGE = _parameter(
    "Accept-Language",
    "zh-CN or en: the language of problem titles, details and messages",
    {"type": "string", "maxLength": 200},
)
IDEMPOTENCY_KEY = _parameter(
    "Idempotency-Key",
    "Repeat a command safely: the same key answers the stored response",
    {"type": "string", "minLength": 1, "maxLength": 200},
)
IF_MATCH = _parameter(
    "If-Match",
    'The ETag of the version you read ("3"); a stale one answers 412',
    {"type": "string", "pattern": '^(W/)?"?[0-9]+"?$'},
)
REVEAL_REASON = _parameter(
    "X-Reveal-Reason",
    "Why an admin reads personal data in clear (recorded in the reveal audit)",
    {"type": "string", "maxLength": 200},
)
LAST_EVENT_ID = _parameter(
    "Last-Event-ID",
    "Server-Sent Events: resume after this position",
    {"type": "string", "pattern": "^[0-9]{1,19}$"},
)

_WORDS = re.compile(r"[A-Za-z0-9]+")


def operation_id(route_handler: Any, http_method: Any, path_components: Any) -> str:
    """``create`` on NodeController → ``createNode``; ``list_findings`` → ``listFindings``.

    A handler that names only a verb gets its controller's noun; an explicit
    ``operation_id`` on the handler wins (Litestar applies it before calling this).
    """
    words = _WORDS.findall(route_handler.handler_name)
    qualname = getattr(route_handler.fn, "__qualname__", "")
    owner_name = qualname.split(".")[0] if "." in qualname else ""
    noun = owner_name.removesuffix("Controller") if owner_name.endswith("Controller") else ""
    if len(route_handler.handler_name.split("_")) == 1 and noun:
        words.append(noun)
    first, *rest = words
    return first.lower() + "".join(w[:1].upper() + w[1:] for w in rest)


def tags() -> list[Tag]:
    return [Tag(name=name, description=f"{zh}\n\n{en}") for name, (zh, en) in TAGS.items()]


def finish(doc: dict[str, Any]) -> dict[str, Any]:
    """Complete the document in place (idempotent) and return it."""
    if doc.get("x-civic-finished"):
        return doc
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for schema in schemas.values():
        _normalise(schema)
    schemas.update(PROBLEM_SCHEMAS)
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            if isinstance(op, dict) and "responses" in op:
                _finish_operation(doc, path, method, op)
    doc["x-civic-finished"] = True
    return doc


def _normalise(schema: Any, name: str = "") -> None:
    """Two repairs over a component schema, recursively.

    A nullable closed set comes out of Litestar as ``{oneOf: [string, null], enum}``, which
    refuses null: the enum moves into the string branch. Instants (``*_at``) and dates
    (``*_on``) that views carry as RFC 3339 text get their ``format``.
    """
    if isinstance(schema, list):
        for item in schema:
            _normalise(item, name)
        return
    if not isinstance(schema, dict):
        return
    branches = schema.get("oneOf")
    if "enum" in schema and isinstance(branches, list):
        values = schema.pop("enum")
        for branch in branches:
            if branch.get("type") == "string":
                branch["enum"] = values
    if schema.get("type") == "string" and "format" not in schema and "enum" not in schema:
        if name.endswith("_at"):
            schema["format"] = "date-time"
        elif name.endswith("_on"):
            schema["format"] = "date"
    if isinstance(branches, list) and name:
        for branch in branches:
            _normalise(branch, name)
    for key, value in schema.get("properties", {}).items():
        _normalise(value, key)
    if "items" in schema:
        _normalise(schema["items"])


def _finish_operation(doc: dict[str, Any], path: str, method: str, op: dict[str, Any]) -> None:
    responses: dict[str, Any] = op["responses"]
    for status in [s for s in responses if s.isdigit() and int(s) >= 400]:
        del responses[status]  # Litestar's generic ValidationException body: not what we send
    command = method in ("post", "put", "patch", "delete")
    if path.startswith("/v1/"):
        statuses: tuple[int, ...] = _COMMAND_ERRORS if command else _READ_ERRORS
    elif path == "/metrics":
        statuses = (401, 403, 429)
    else:
        statuses = (503,)
    for code in statuses:
        response: dict[str, Any] = {
            "description": _STATUS_TEXT[code],
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        if code in _RESPONSE_HEADERS:
            response["headers"] = dict(_RESPONSE_HEADERS[code])
        responses[str(code)] = response
    params: list[dict[str, Any]] = op.setdefault("parameters", [])
    present = {(p.get("in"), p.get("name", "").lower()) for p in params}

    def add(parameter: dict[str, Any]) -> None:
        if ("header", parameter["name"].lower()) not in present:
            params.append(parameter)

    if not path.startswith("/v1/"):
        return
    add(ACCEPT_LANGUAGE)
    if command and method == "post":
        add(IDEMPOTENCY_KEY)
        if "{" in path:
            add(IF_MATCH)
        for status, response in responses.items():
            if status.startswith("2"):
                headers = response.setdefault("headers", {})
                headers.update(_COMMAND_SUCCESS_HEADERS)
                if status == "201" and created_item(doc, path) is not None:
                    headers.update(_CREATED_HEADERS)
    if method == "get" and path.startswith("/v1/members"):
        add(REVEAL_REASON)
    if method == "get" and path == "/v1/feed":
        add(LAST_EVENT_ID)
