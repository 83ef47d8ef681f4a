"""Serving an ASGI app under uvicorn in a subprocess on 127.0.0.1, the way our API is served.

One worker, access log off, log level warning, a free port picked at random; the process is
terminated (then killed, if need be) when the context exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.cpu import process_cpu_seconds

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Server:
    url: str
    """Base URL, e.g. ``http://127.0.0.1:43817``."""
    port: int
    pid: int
    log_path: Path

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the server process has used so far (Linux only)."""
        return process_cpu_seconds(self.pid)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _port_open(port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


@contextlib.asynccontextmanager
async def uvicorn_server(
    app: str,
    *,
    factory: bool = False,
    env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
    startup_timeout: float = 60.0,
    cwd: Path = REPO_ROOT,
) -> AsyncIterator[Server]:
    """Run ``uvicorn app`` (``module:attr``; with ``factory``, ``attr`` is called) and yield it.

    Ready once the port accepts connections: uvicorn binds only after the app's lifespan
    start-up has finished.
    """
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
        *(["--factory"] if factory else []),
        *extra_args,
    ]
    fd, log_name = tempfile.mkstemp(prefix="civic-bench-uvicorn-", suffix=".log")
    log_path = Path(log_name)
    proc_env = {**os.environ, **(env or {})}
    proc_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(cwd), proc_env.get("PYTHONPATH", "")) if p
    )
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        cwd=cwd,
        env=proc_env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=fd,
        stderr=fd,
    )
    os.close(fd)
    server = Server(url=f"http://127.0.0.1:{port}", port=port, pid=proc.pid, log_path=log_path)
    try:
        deadline = time.monotonic() + startup_timeout
        while not await _port_open(port):
            if proc.returncode is not None:
                raise RuntimeError(
                    f"uvicorn {app} exited with {proc.returncode}:\n{server.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"uvicorn {app} not listening after {startup_timeout}s")
            await asyncio.sleep(0.05)
        yield server
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        with contextlib.suppress(OSError):
            os.unlink(log_name)
