"""Request bodies are read as the media type the handler declares, and only if sent so.

Litestar decodes a ``JSONBody`` whatever ``Content-Type`` came with it, so a JSON document
sent as ``text/plain`` or a form was acted on. A handler whose body is JSON now answers 415
to a non-empty body of any other type (``application/json``, or ``application/*+json``),
before anything is decided. Handlers that take other bodies (CSV) declare no JSON body and
are not affected.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.enums import RequestEncodingType

from services.problems import ProblemError

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _declares_json_body(request: Request[Any, Any, Any]) -> bool:
    data = request.route_handler.parsed_fn_signature.parameters.get("data")
    if data is None:
        return False  # the handler reads no body, or reads it itself (a CSV import)
    media_type = getattr(data.kwarg_definition, "media_type", RequestEncodingType.JSON)
    return bool(media_type == RequestEncodingType.JSON)


async def require_json_body(request: Request[Any, Any, Any]) -> None:
    """``before_request``: 415 for a non-empty body that is not sent as JSON to a handler
    that reads JSON."""
    if request.method not in _BODY_METHODS or _is_json(request.headers.get("content-type", "")):
        return
    if not _declares_json_body(request):
        return
    if (await request.body()).strip():
        raise ProblemError(
            415,
            "Unsupported Media Type",
            "send the request body as application/json",
            slug="unsupported-media-type",
        )
