"""Unknown query parameters are refused (400), never silently ignored.

A client that sends ``?format=csv`` to a list that has no such parameter should learn so,
not receive JSON it did not ask for. The parameters an operation takes are the ones the
OpenAPI document lists for it, so the check and the contract cannot drift apart.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from litestar import Litestar, Request

from services.problems import FieldError, ProblemError

_TYPED = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*):[^}]+\}")


def _document(app: Litestar) -> dict[str, Any]:
    from litestar._openapi.plugin import OpenAPIPlugin

    doc: dict[str, Any] = app.plugins.get(OpenAPIPlugin).provide_openapi_schema()
    return doc


@cache
def _known(app: Litestar, template: str, method: str) -> frozenset[str] | None:
    operation = _document(app).get("paths", {}).get(template, {}).get(method)
    if not isinstance(operation, dict):
        return None  # not a documented operation (the schema pages): nothing to hold it to
    return frozenset(p["name"] for p in operation.get("parameters", []) if p.get("in") == "query")


async def refuse_unknown_query(request: Request[Any, Any, Any]) -> None:
    if not request.scope.get("query_string"):
        return
    template = _TYPED.sub(r"{\1}", str(request.scope.get("path_template", "")))
    known = _known(request.app, template, request.method.lower())
    if known is None:
        return
    unknown = sorted({k for k in request.query_params if k not in known})
    if unknown:
        raise ProblemError(
            400,
            "Bad Request",
            f"unknown query parameter {unknown[0]}",
            slug="validation",
            errors=[FieldError(field=k, message="unknown query parameter") for k in unknown[:20]],
        )
