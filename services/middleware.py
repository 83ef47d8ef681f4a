"""ASGI middleware: request id, access log, request metrics."""

from __future__ import annotations

import time
from typing import Any
from uuid import uuid4

import structlog
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from infra.metrics import Metrics

log = structlog.get_logger("civic.access")


def _route(scope: Scope) -> str:
    template: Any = scope.get("path_template")
    return str(template) if template else "unmatched"


def request_context(metrics: Metrics) -> Any:
    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
            request_id = incoming if 0 < len(incoming) <= 100 else uuid4().hex
            scope.setdefault("state", {})["request_id"] = request_id
            status = 500
            started = time.perf_counter()

            async def send_with_id(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    headers = list(message.get("headers", []))
                    headers.append((b"x-request-id", request_id.encode()))
                    message["headers"] = headers
                await send(message)

            structlog.contextvars.bind_contextvars(request_id=request_id)
            try:
                await app(scope, receive, send_with_id)
            finally:
                structlog.contextvars.unbind_contextvars("request_id")
                elapsed = time.perf_counter() - started
                route = _route(scope)
                method = scope.get("method", "")
                metrics.requests.labels(method, route, str(status)).inc()
                metrics.latency.labels(method, route).observe(elapsed)
                if status >= 500:
                    log.warning(
                        "request",
                        method=method,
                        route=route,
                        status=status,
                        ms=round(elapsed * 1000, 1),
                        request_id=request_id,
                    )
                else:
                    log.debug(
                        "request",
                        method=method,
                        route=route,
                        status=status,
                        ms=round(elapsed * 1000, 1),
                        request_id=request_id,
                    )

        return middleware

    return factory
