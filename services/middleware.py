"""ASGI middleware: request id, access log, request metrics.

It runs on every request, so it keeps to what each one needs: the request id header is
looked up without copying the headers, metric children are looked up once per (method,
route, status), and the debug access line is skipped without building a logger when debug
is off (structlog's lazy logger would otherwise be rebuilt per call).
"""

from __future__ import annotations

import logging
import time
from typing import Any
from uuid import uuid4

import structlog
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from infra.metrics import Metrics

log = structlog.get_logger("civic.access")
_stdlib_log = logging.getLogger("civic.access")


def _route(scope: Scope) -> str:
    template: Any = scope.get("path_template")
    return str(template) if template else "unmatched"


def _incoming_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            return str(value.decode("latin-1"))
    return ""


def request_context(metrics: Metrics) -> Any:
    counters: dict[tuple[str, str, int], Any] = {}
    histograms: dict[tuple[str, str], Any] = {}

    def observe(method: str, route: str, status: int, elapsed: float) -> None:
        counter = counters.get((method, route, status))
        if counter is None:
            counter = counters[(method, route, status)] = metrics.requests.labels(
                method, route, str(status)
            )
        histogram = histograms.get((method, route))
        if histogram is None:
            histogram = histograms[(method, route)] = metrics.latency.labels(method, route)
        counter.inc()
        histogram.observe(elapsed)

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            incoming = _incoming_id(scope)
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
                method = str(scope.get("method", ""))
                observe(method, route, status, elapsed)
                if status >= 500:
                    log.warning(
                        "request",
                        method=method,
                        route=route,
                        status=status,
                        ms=round(elapsed * 1000, 1),
                        request_id=request_id,
                    )
                elif _stdlib_log.isEnabledFor(logging.DEBUG):
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
