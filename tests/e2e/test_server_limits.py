"""`civic serve` as a real process on 127.0.0.1: caps on the request head, and deadlines for
slow or silent connections (issue #13, item 11; services/http_server.py).

An 8 MB Authorization header used to be read, parsed and handed to the app (1.1 s and
+50 MB per request); a connection that sent nothing was held for a minute or more.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
HEADER_TIMEOUT = 1.0
KEEPALIVE_TIMEOUT = 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    port: int
    pid: int

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    port = free_port()
    data = tmp_path_factory.mktemp("serve-limits")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIVIC_")}
    env.update(
        DATABASE_URL=database_url,
        PORT=str(port),
        CIVIC_DATA_DIR=str(data),
        CIVIC_LOG_LEVEL="WARNING",
        CIVIC_JWT_SECRET="limits-secret-" + "x" * 40,
        CIVIC_RUN_PROJECTOR="0",
        CIVIC_MIGRATE_ON_START="0",
        CIVIC_DB_POOL_MIN="1",
        CIVIC_DB_POOL_MAX="2",
        CIVIC_HEADER_TIMEOUT=str(HEADER_TIMEOUT),
        CIVIC_KEEPALIVE_TIMEOUT=str(KEEPALIVE_TIMEOUT),
    )
    log = (data / "serve.log").open("wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "civic"), "serve", "--host", "127.0.0.1"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (data / "serve.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "civic serve did not start"
            time.sleep(0.1)
        yield Server(port=port, pid=proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def read_all(sock: socket.socket, limit: float = 10.0) -> bytes:
    sock.settimeout(limit)
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def test_an_8_mb_authorization_header_is_refused_cheaply(server: Server) -> None:
    before = server.rss_kib()
    sock = server.connect()
    sent = 0
    head = b"GET /v1/nodes/110101000000 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
    value = b"a" * (8 * 1024 * 1024)

    def push() -> None:
        nonlocal sent
        try:
            sock.sendall(head)
            for i in range(0, len(value), 65536):
                sock.sendall(value[i : i + 65536])
                sent += 65536
            sock.sendall(b"\r\n\r\n")
        except OSError:
            pass  # the server hung up: what we want

    started = time.monotonic()
    sender = threading.Thread(target=push)
    sender.start()
    answer = read_all(sock)
    elapsed = time.monotonic() - started
    sender.join(timeout=10)
    sock.close()
    grown = server.rss_kib() - before
    print(
        f"\n8 MB header: answered in {elapsed * 1000:.0f} ms after {sent / 1024:.0f} KiB sent, RSS +{grown} KiB"
    )
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"application/problem+json" in answer
    assert elapsed < 2.0
    # refused after the cap, not after reading 8 MB (the kernel buffers some in flight)
    assert sent < 4 * 1024 * 1024, sent
    assert grown < 20 * 1024


def test_caps_on_request_line_and_headers_leave_normal_requests_alone(server: Server) -> None:
    base = f"http://127.0.0.1:{server.port}"
    r = httpx.get(f"{base}/health/live", headers={"X-Padding": "p" * 4000}, timeout=5)
    assert r.status_code == 200
    with server.connect() as sock:
        sock.sendall(b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 414 "), answer[:200]
    many = "".join(f"X-H{i}: {'v' * 100}\r\n" for i in range(300)).encode()
    with server.connect() as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]


def test_silent_and_slow_connections_are_closed(server: Server) -> None:
    with server.connect() as sock:  # sends nothing at all
        started = time.monotonic()
        assert read_all(sock) == b""
        assert time.monotonic() - started < HEADER_TIMEOUT + 2
    with server.connect() as sock:  # slowloris: one byte of header now and then
        started = time.monotonic()
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
        closed = False
        for _ in range(50):
            try:
                sock.sendall(b"X")
            except OSError:
                closed = True
                break
            time.sleep(0.1)
            sock.settimeout(0.01)
            try:
                if sock.recv(1) == b"":
                    closed = True
                    break
            except TimeoutError:
                pass
        assert closed, "a slow header kept the connection open"
        assert time.monotonic() - started < HEADER_TIMEOUT + 2
    with server.connect() as sock:  # an idle keep-alive connection
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        answer = read_all(sock)
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert time.monotonic() - started < KEEPALIVE_TIMEOUT + 2
