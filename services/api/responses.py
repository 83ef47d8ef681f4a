"""How a handler that answers pre-encoded bytes says what its body holds.

Commands answer the bytes the command session stored (an idempotent replay must send the
same bytes again) and reads set ETag beside them, so their return annotation cannot carry
the schema; ``documented`` declares it for the OpenAPI document instead.
"""

from __future__ import annotations

from typing import Any

from litestar.datastructures import ResponseHeader
from litestar.openapi.datastructures import ResponseSpec


def documented(status: int, body: Any, what: str) -> dict[int, ResponseSpec]:
    return {status: ResponseSpec(data_container=body, description=what, generate_examples=False)}


#: the reads that answer a version as ETag (send it back as If-Match on the next command).
ETAG = [
    ResponseHeader(
        name="ETag",
        documentation_only=True,
        description='The version read, e.g. "3"; send it as If-Match to the next command',
    )
]
