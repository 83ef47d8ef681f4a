"""Stopping `make run` (``civic dev``) with Ctrl-C or SIGTERM stops the embedded PostgreSQL
it started, exits 0 and prints neither "Aborted!" nor a warning about XDG_RUNTIME_DIR."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from infra import embedded_pg
from tests.e2e.test_dev_server import free_port, stop_postgres


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_stopping_dev_stops_its_postgres_quietly(tmp_path: Path, signum: int):
    port = free_port()
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "XDG_RUNTIME_DIR")}
    env.update(CIVIC_DATA_DIR=str(data), PORT=str(port), CIVIC_LOG_LEVEL="WARNING")
    env.pop("CIVIC_JWT_SECRET", None)
    civic = Path(sys.executable).parent / "civic"
    proc = subprocess.Popen(
        [str(civic), "dev"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).is_success:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise AssertionError("civic dev exited early:\n" + proc.communicate()[0])
            time.sleep(0.3)
        else:
            raise AssertionError("civic dev never became ready")
        assert embedded_pg.running_pid(data) is not None
        proc.send_signal(signum)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        stop_postgres(data / "pg")  # only does anything if the test failed before
    assert proc.returncode == 0, output
    assert "Aborted!" not in output and "Traceback" not in output, output
    assert "XDG_RUNTIME_DIR" not in output, output
    assert "stopping PostgreSQL" in output
    assert embedded_pg.running_pid(data) is None, "the embedded PostgreSQL is still running"
