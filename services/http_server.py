"""The HTTP/1.1 protocol ``civic serve`` runs: uvicorn's httptools one with caps on the head.

uvicorn with httptools reads a request's header block however long it is: an 8 MB
``Authorization`` header was read, parsed and handed to the app (1.1 s, +50 MB per request),
and a connection that sent nothing, or one byte now and then, was held for as long as the
client liked. This protocol counts the bytes of each request's head as they arrive and:

* answers ``431 Request Header Fields Too Large`` and closes once the head passes
  ``CIVIC_MAX_HEADER_BYTES`` (request line included), before the rest is even read;
* answers ``414 URI Too Long`` for a request line over ``CIVIC_MAX_REQUEST_LINE``;
* closes a connection whose head is not complete ``CIVIC_HEADER_TIMEOUT`` seconds after it
  opened, or after the first byte of a later request (slow or silent clients);
* idle keep-alive connections close after ``CIVIC_KEEPALIVE_TIMEOUT`` (uvicorn's own timer).

A head still incomplete is measured per read (asyncio reads up to 256 KiB at a time), so
at most one read beyond the cap is ever buffered; a complete head is measured exactly.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from infra.settings import Settings
from services.problems import PROBLEM_JSON

_TITLES = {414: "URI Too Long", 431: "Request Header Fields Too Large"}


class CappedHttpToolsProtocol(HttpToolsProtocol):
    max_request_line: int = 8192
    max_header_bytes: int = 16384
    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._url_bytes = 0
        self._field_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None

    # -- the head's clock ----------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    # -- counting ------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._arm_head_timer()
            self._head_bytes += len(data)
        super().data_received(data)
        closing = self.transport.is_closing()
        if not closing and self._in_head and self._head_bytes > self.max_header_bytes:
            self._refuse(431, "the request's header fields are too large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._url_bytes = 0
        self._field_bytes = 0

    def on_url(self, url: bytes) -> None:
        if self.transport.is_closing():
            return
        self._url_bytes += len(url)
        if self._url_bytes > self.max_request_line:
            self._refuse(414, "the request line is too long")
            return
        super().on_url(url)

    # Once refused, the rest of the read is parsed into nothing: the app never sees it.

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.transport.is_closing():
            self._field_bytes += len(name) + len(value) + 4  # ": " and CRLF
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._disarm_head_timer()
        # exact, for a head that arrived within one read (the count per read misses it)
        if self._url_bytes + self._field_bytes > self.max_header_bytes:
            self._refuse(431, "the request's header fields are too large")
        if not self.transport.is_closing():
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self.transport.is_closing():
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_head = True  # what comes next is the next request's head
        if not self.transport.is_closing():
            super().on_message_complete()

    def _refuse(self, status: int, detail: str) -> None:
        title = _TITLES[status]
        body = msgspec.json.encode(
            {
                "type": f"https://civic-ledger.dev/problems/{title.lower().replace(' ', '-')}",
                "title": title,
                "status": status,
                "detail": detail,
            }
        )
        head = (
            f"HTTP/1.1 {status} {title}\r\ncontent-type: {PROBLEM_JSON}\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        self.transport.write(head.encode("latin-1") + body)
        self.transport.close()


def protocol_for(settings: Settings) -> type[CappedHttpToolsProtocol]:
    """The protocol class with this configuration's caps (uvicorn instantiates it)."""
    return type(
        "CivicHttpProtocol",
        (CappedHttpToolsProtocol,),
        {
            "max_request_line": settings.max_request_line_bytes,
            "max_header_bytes": settings.max_header_bytes,
            "header_timeout": settings.header_timeout_seconds,
        },
    )
