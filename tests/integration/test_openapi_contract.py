"""The served OpenAPI document says everything a generated client needs (API.md "Contract
documents"): typed bodies, Problem on every error status, headers, enums, formats, ids."""

from __future__ import annotations

import re
from typing import Any

from services.openapi_contract import TAGS


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if isinstance(op, dict) and "responses" in op
    ]


async def test_every_operation_is_typed_and_answers_problems(client):
    doc = (await client.get("/schema/openapi.json")).json()
    ops = operations(doc)
    assert len(ops) >= 60
    ids = [op["operationId"] for _, _, op in ops]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[a-z][A-Za-z]+", i) for i in ids), ids
    for method, path, op in ops:
        where = f"{method.upper()} {path}"
        assert set(op.get("tags", [])) <= set(TAGS), f"{where}: a tag without a description"
        for status, response in op["responses"].items():
            for media, content in response.get("content", {}).items():
                schema = content.get("schema", {})
                if "json" in media:
                    assert schema.get("type") != "string", f"{where} {status}: untyped body"
                if int(status) >= 400:
                    assert media == "application/problem+json", where
                    assert schema == {"$ref": "#/components/schemas/Problem"}, where
        if not path.startswith("/v1/"):
            continue
        statuses = set(op["responses"])
        assert {"400", "401", "403", "404", "422", "429", "503"} <= statuses, where
        headers = {p["name"] for p in op.get("parameters", []) if p["in"] == "header"}
        assert "Accept-Language" in headers, where
        if method == "post":
            assert {"409", "412"} <= statuses and "Idempotency-Key" in headers, where
            if "{" in path:
                assert "If-Match" in headers, where
        assert "Retry-After" in op["responses"]["503"]["headers"], where
    feed = doc["paths"]["/v1/feed"]["get"]
    assert "Last-Event-ID" in {p["name"] for p in feed["parameters"]}
    read = doc["paths"]["/v1/issues/{issue_id}"]["get"]
    assert "ETag" in read["responses"]["200"]["headers"]
    member = doc["paths"]["/v1/members/{member_id}"]["get"]
    assert "X-Reveal-Reason" in {p["name"] for p in member["parameters"]}
    problem = doc["components"]["schemas"]["Problem"]
    assert problem["properties"]["errors"]["items"] == {"$ref": "#/components/schemas/FieldError"}


async def test_closed_sets_are_enums_and_instants_have_formats(client):
    schemas = (await client.get("/schema/openapi.json")).json()["components"]["schemas"]
    assert schemas["NodeView"]["properties"]["kind"]["enum"][:3] == ["province", "city", "county"]
    assert schemas["PairingReview"]["properties"]["rating"]["enum"] == [
        "excellent",
        "good",
        "fair",
        "poor",
    ]
    nullable = schemas["PairingView"]["properties"]["rating"]["oneOf"]
    assert {"type": "null"} in nullable and any("enum" in b for b in nullable)
    assert "enum" in schemas["IssueView"]["properties"]["status"]
    assert schemas["NodeView"]["properties"]["registered_at"]["format"] == "date-time"
    assert schemas["NodeView"]["properties"]["id"]["format"] == "uuid"
    for name, schema in schemas.items():
        for prop, value in schema.get("properties", {}).items():
            text = str(value)
            if prop.endswith("_at") and "'string'" in text:
                assert "date-time" in text, f"{name}.{prop}"
            if prop.endswith("_on") and "'string'" in text:
                assert "'date'" in text, f"{name}.{prop}"
