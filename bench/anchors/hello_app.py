"""The Litestar hello-world the HTTP anchor serves: one POST decoding a small msgspec Struct.

Served like our API: ``uvicorn bench.anchors.hello_app:create_app --factory``, one worker,
``--no-access-log --log-level warning``. No middleware, no auth, no database: the ceiling of
the framework and server on this machine.
"""

from __future__ import annotations

import msgspec
from litestar import Litestar, post


class ReportIssue(msgspec.Struct, forbid_unknown_fields=True):
    node: str
    title: str
    body: str
    category: str
    priority: int


class Created(msgspec.Struct):
    id: str
    node: str


@post("/hello", status_code=201)
async def hello(data: ReportIssue) -> Created:
    return Created(id="00000000-0000-0000-0000-000000000001", node=data.node)


def create_app() -> Litestar:
    return Litestar(route_handlers=[hello], debug=False, openapi_config=None)


app = create_app()
