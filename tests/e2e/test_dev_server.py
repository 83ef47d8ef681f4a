"""`make run`'s command over real HTTP: embedded PostgreSQL, migrations, token, API."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_postgres(pgdata: Path) -> None:
    """Stop the embedded server we caused to start: fast shutdown via its postmaster pid."""
    pidfile = pgdata / "postmaster.pid"
    if not pidfile.exists():
        return
    pid = int(pidfile.read_text().splitlines()[0])
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def dev_server(tmp_path: Path):
    """`civic dev` with no DATABASE_URL: it must start its own PostgreSQL under the data dir."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(CIVIC_DATA_DIR=str(tmp_path / "data"), PORT=str(port), CIVIC_LOG_LEVEL="WARNING")
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
    output: list[str] = []
    token = None
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        assert proc.stdout is not None
        while token is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            output.append(line)
            match = re.match(r"\s+export TOKEN=(\S+)", line)
            if match:
                token = match.group(1)
        assert token, "no token printed:\n" + "".join(output)
        assert any(f"{base}/schema" in line for line in output), "no docs URL printed"
        console_link = f"{base}/console/#token={token}"
        assert any(console_link in line for line in output), "no console sign-in link printed"
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            raise AssertionError("never became ready")
        yield base, token
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        stop_postgres(tmp_path / "data" / "pg")


def test_dev_server_on_embedded_postgres(dev_server):
    base, token = dev_server
    h = {"Authorization": f"Bearer {token}"}
    r = httpx.post(
        f"{base}/v1/nodes",
        headers=h,
        json={"code": "330106000000", "name": "西湖区", "kind": "county", "parent_code": None},
    )
    assert r.status_code == 201, r.text
    position = r.json()["position"]
    r = httpx.get(f"{base}/v1/nodes/330106000000?min_position={position}", headers=h, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "西湖区"
    assert httpx.get(f"{base}/schema/openapi.json").status_code == 200
