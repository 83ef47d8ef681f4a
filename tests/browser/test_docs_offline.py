"""The /schema docs render in a real browser with no internet access.

Debian's Chromium (``/usr/bin/chromium``, never a downloaded browser) driven by Playwright
loads Swagger UI and Redoc from a server on 127.0.0.1; every request to anywhere else is
blocked and recorded, and the page must list the API's operations all the same.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.test_dev_server import free_port

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (.ci/run installs it)"
)


@pytest.fixture
def docs_server(database_url: str, tmp_path: Path) -> Iterator[str]:
    """The API (no projector) on a free local port, on the session's migrated database."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PORT": str(port),
        "CIVIC_JWT_SECRET": "docs-test-" + "x" * 40,
        "CIVIC_RUN_PROJECTOR": "false",
        "CIVIC_MIGRATE_ON_START": "false",
        "CIVIC_DATA_DIR": str(tmp_path / "data"),
        "CIVIC_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "services.app:app_from_env",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health/live", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise AssertionError("the docs server did not start")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _browse(base: str, path: str, wait_for: str) -> tuple[str, list[str]]:
    from playwright.sync_api import Route, sync_playwright

    blocked: list[str] = []

    def only_local(route: Route) -> None:
        host = urlsplit(route.request.url).hostname
        if host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page()
            page.route("**/*", only_local)
            page.goto(base + path, wait_until="load", timeout=60_000)
            page.wait_for_selector(wait_for, timeout=60_000)
            text = page.inner_text("body")
        finally:
            browser.close()
    return text, blocked


def test_swagger_ui_lists_the_operations_offline(docs_server: str):
    text, blocked = _browse(docs_server, "/schema", ".opblock-summary-path")
    for path in ("/v1/nodes", "/v1/issues/{issue_id}/assign", "/v1/feed", "/v1/findings/ledger"):
        assert path in text, f"{path} not listed"
    assert "层级节点" in text  # the tags' Chinese descriptions
    assert not blocked, f"the page tried to reach the internet: {blocked}"


def test_redoc_lists_the_operations_offline(docs_server: str):
    text, blocked = _browse(docs_server, "/schema/redoc", "[data-section-id]")
    assert "Register a node" in text and "Read an issue" in text
    assert not blocked, f"the page tried to reach the internet: {blocked}"
