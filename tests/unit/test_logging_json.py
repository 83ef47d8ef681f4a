"""Every log line is one JSON object, the standard library's (httpx, uvicorn) included."""

from __future__ import annotations

import json
import logging

import structlog

from infra.logging import configure_logging


def test_stdlib_and_structlog_lines_are_json(capsys):
    configure_logging("INFO")
    logging.getLogger("httpx").info('HTTP Request: GET http://127.0.0.1:9/x "HTTP/1.1 200 OK"')
    structlog.get_logger("civic.test").info("request", status=200)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 2
    records = [json.loads(line) for line in lines]
    assert records[0]["logger"] == "httpx" and records[0]["level"] == "info"
    assert records[0]["event"].startswith("HTTP Request: GET") and records[0]["timestamp"]
    assert records[1]["event"] == "request" and records[1]["status"] == 200
