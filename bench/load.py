"""A bounded HTTP/1.1 load generator for local servers (anchors and our API alike).

``run_load`` opens ``concurrency`` keep-alive connections and, for ``warmup + duration``
seconds, sends requests on each as fast as responses come back (closed loop), or at a fixed
total ``rate`` (open loop: latencies are then measured from each request's scheduled time, so a
stalled server shows up in the percentiles instead of being hidden by the client waiting).

It is a bare asyncio ``Protocol`` with a small HTTP/1.1 response parser (Content-Length and
chunked bodies, keep-alive, ``Connection: close``) rather than httpx or h11: on a 2-core
machine the client shares the CPU with the server under test, and this costs a few times less
CPU per request than either, so the server, not the client, is what gets measured.

Only loopback addresses are accepted unless ``allow_remote=True``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

from bench.timing import percentile

BodyFactory = Callable[[int], bytes]
HeadersFactory = Callable[[int], Mapping[str, str]]
PathFactory = Callable[[int], str]
ResponseHook = Callable[[int, int, bytes, float, float], None]
"""``hook(seq, status, body, t_sent, t_done)``; times are ``time.perf_counter()`` seconds."""


@dataclass
class LoadResult:
    requests: int
    """Responses with an expected status completed inside the timed window."""
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    """Unexpected statuses, connection failures and timeouts over the whole run, warm-up too."""
    statuses: dict[int, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "seconds": self.seconds,
            "rps": self.rps,
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p99_ms": self.p99_ms,
            "max_ms": self.max_ms,
            "errors": self.errors,
            "statuses": dict(self.statuses),
            "error_samples": list(self.error_samples),
        }


class _Response:
    __slots__ = ("body", "keep_alive", "status")

    def __init__(self, status: int, body: bytes, keep_alive: bool) -> None:
        self.status = status
        self.body = body
        self.keep_alive = keep_alive


class _Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with at most one request in flight."""

    def __init__(self, loop: asyncio.AbstractEventLoop, head_only: bool = False) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[_Response] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.closed = False
        self.until_close = False
        self.head_only = head_only

    # -- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport (uvloop's does not subclass asyncio.Transport, so no isinstance)
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.waiter is not None and not self.waiter.done():
            self._parse()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        w = self.waiter
        if w is not None and not w.done():
            if self.until_close and (head := self._head()) is not None:
                status, end = head
                self._finish(_Response(status, bytes(self.buf[end:]), False))
            else:
                self._fail(ConnectionError(f"connection lost: {exc!r}"))

    # -- requests ---------------------------------------------------------------------
    def request(self, data: bytes, timeout: float) -> asyncio.Future[_Response]:
        assert self.transport is not None
        fut: asyncio.Future[_Response] = self.loop.create_future()
        self.waiter = fut
        self.until_close = False
        self.timer = self.loop.call_later(timeout, self._on_timeout)
        self.transport.write(data)
        return fut

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _on_timeout(self) -> None:
        self.timer = None
        self._fail(TimeoutError("response timed out"))
        self.close()

    def _finish(self, resp: _Response) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        w = self.waiter
        self.waiter = None
        if w is not None and not w.done():
            w.set_result(resp)

    def _fail(self, exc: BaseException) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        w = self.waiter
        self.waiter = None
        if w is not None and not w.done():
            w.set_exception(exc)

    def _head(self) -> tuple[int, int] | None:
        i = self.buf.find(b"\r\n\r\n")
        if i < 0:
            return None
        return int(self.buf[9:12]), i + 4

    def _parse(self) -> None:
        buf = self.buf
        i = buf.find(b"\r\n\r\n")
        if i < 0:
            return
        try:
            status = int(buf[9:12])
        except ValueError:
            self._fail(ValueError(f"bad status line {bytes(buf[:40])!r}"))
            self.close()
            return
        if 100 <= status < 200:  # interim response: skip it
            del buf[: i + 4]
            self._parse()
            return
        head = bytes(buf[:i]).lower()
        keep_alive = b"\r\nconnection: close" not in head and not head.startswith(b"http/1.0")
        start = i + 4
        if self.head_only or status in (204, 304):
            body = b""
            end = start
        elif (j := head.find(b"\r\ncontent-length:")) >= 0:
            k = head.find(b"\r\n", j + 2)
            length = int(head[j + 17 : k if k >= 0 else len(head)])
            end = start + length
            if len(buf) < end:
                return
            body = bytes(buf[start:end])
        elif b"\r\ntransfer-encoding: chunked" in head:
            parsed = _parse_chunked(buf, start)
            if parsed is None:
                return
            body, end = parsed
        else:  # body delimited by the server closing the connection
            self.until_close = True
            return
        del buf[:end]
        self._finish(_Response(status, body, keep_alive))


def _parse_chunked(buf: bytearray, pos: int) -> tuple[bytes, int] | None:
    parts: list[bytes] = []
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";", 1)[0], 16)
        pos = eol + 2
        if size == 0:
            end = buf.find(b"\r\n\r\n", pos - 2)  # trailers, then a blank line
            if end < 0:
                return None
            return b"".join(parts), end + 4
        if len(buf) < pos + size + 2:
            return None
        parts.append(bytes(buf[pos : pos + size]))
        pos += size + 2


def _check_loopback(host: str) -> None:
    """Accept ``localhost`` and loopback IP literals only (no DNS look-up of other names)."""
    if host == "localhost":
        return
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{host!r} is not a loopback address; pass allow_remote=True")


async def run_load(
    url: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | HeadersFactory | None = None,
    body: bytes | BodyFactory | None = None,
    concurrency: int = 32,
    duration: float = 5.0,
    warmup: float = 1.0,
    rate: float | None = None,
    request_timeout: float = 10.0,
    ok_status: Callable[[int], bool] = lambda s: 200 <= s < 300,
    on_response: ResponseHook | None = None,
    allow_remote: bool = False,
    path: PathFactory | None = None,
) -> LoadResult:
    """Load ``url`` with ``concurrency`` keep-alive clients for ``warmup + duration`` seconds.

    ``headers`` and ``body`` are fixed values or factories of the request's sequence number
    (0, 1, 2, ... over all clients), e.g. for idempotency keys or distinct payloads. With
    ``rate`` (requests/s over all clients) the load is open-loop at that rate. A response
    slower than ``request_timeout`` seconds counts as an error and its connection is closed.
    ``path``: the target of the i-th request (a command on one of many resources), in place of
    ``url``'s path; it is called before ``headers`` and ``body`` of the same request.
    """
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise ValueError("only http:// URLs are supported")
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    if not allow_remote:
        _check_loopback(host)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = f"{host}:{port}" if port != 80 else host
    prefix = f"{method} {target} HTTP/1.1\r\nHost: {host_header}\r\n".encode("latin-1")
    static_headers = b""
    if isinstance(headers, Mapping):
        static_headers = "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode("latin-1")
    static_body = body if isinstance(body, bytes | bytearray) else None
    static_request: bytes | None = None
    if path is None and not callable(headers) and not callable(body):
        b = static_body or b""
        length = f"Content-Length: {len(b)}\r\n" if (b or method not in ("GET", "HEAD")) else ""
        static_request = prefix + static_headers + length.encode() + b"\r\n" + b

    def build(seq: int) -> bytes:
        if static_request is not None:
            return static_request
        start = (
            prefix
            if path is None
            else f"{method} {path(seq)} HTTP/1.1\r\nHost: {host_header}\r\n".encode("latin-1")
        )
        if callable(headers):
            hs = "".join(f"{k}: {v}\r\n" for k, v in headers(seq).items()).encode("latin-1")
        else:
            hs = static_headers
        b = static_body if static_body is not None else (body(seq) if callable(body) else b"")
        return b"".join((start, hs, b"Content-Length: %d\r\n\r\n" % len(b), b))

    loop = asyncio.get_running_loop()
    head_only = method == "HEAD"
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    error_samples: list[str] = []
    errors = 0
    done_in_window = 0
    seq = 0
    t_begin = time.perf_counter()
    t_measure = t_begin + warmup
    t_stop = t_measure + duration
    interval = 1.0 / rate if rate else 0.0

    def error(msg: str) -> None:
        nonlocal errors
        errors += 1
        if len(error_samples) < 5:
            error_samples.append(msg)

    async def connect() -> _Conn:
        _, proto = await asyncio.wait_for(
            loop.create_connection(lambda: _Conn(loop, head_only), host, port), request_timeout
        )
        return proto

    async def client() -> None:
        nonlocal seq, done_in_window
        conn: _Conn | None = None
        try:
            while True:
                n = seq
                seq += 1
                if rate:
                    t_sched = t_begin + n * interval
                    if t_sched >= t_stop:
                        return
                    delay = t_sched - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                elif time.perf_counter() >= t_stop:
                    return
                data = build(n)
                try:
                    if conn is None or conn.closed:
                        conn = await connect()
                    t0 = time.perf_counter()
                    resp = await conn.request(data, request_timeout)
                except (OSError, TimeoutError, ValueError) as exc:
                    error(f"{type(exc).__name__}: {exc}")
                    if conn is not None:
                        conn.close()
                    conn = None
                    await asyncio.sleep(0.01)
                    continue
                t1 = time.perf_counter()
                if rate:
                    t0 = t_begin + n * interval
                if not resp.keep_alive:
                    conn.close()
                    conn = None
                statuses[resp.status] += 1
                if not ok_status(resp.status):
                    error(f"HTTP {resp.status}: {resp.body[:200]!r}")
                elif t_measure <= t1 <= t_stop:
                    done_in_window += 1
                    latencies.append(t1 - t0)
                if on_response is not None:
                    on_response(n, resp.status, resp.body, t0, t1)
        finally:
            if conn is not None:
                conn.close()

    tasks = [asyncio.create_task(client()) for _ in range(concurrency)]
    try:
        await asyncio.wait_for(
            asyncio.gather(*tasks), timeout=warmup + duration + request_timeout + 5
        )
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    window = min(time.perf_counter(), t_stop) - t_measure
    latencies.sort()
    ms = [x * 1000.0 for x in latencies]
    return LoadResult(
        requests=done_in_window,
        seconds=window,
        rps=done_in_window / window if window > 0 else 0.0,
        p50_ms=percentile(ms, 50),
        p90_ms=percentile(ms, 90),
        p99_ms=percentile(ms, 99),
        max_ms=ms[-1] if ms else float("nan"),
        errors=errors,
        statuses=dict(statuses),
        error_samples=error_samples,
    )
