"""Every log line is one JSON object, the standard library's (httpx, uvicorn) included."""

from __future__ import annotations

import json
import logging

import structlog

from infra.logging import configure_logging


def test_stdlib_and_structlog_lines_are_json(capsys):
    configure_logging("INFO")
    # httpx's INFO request lines are dropped (URLs may carry credentials); what it does log
    # at WARNING is JSON like the rest
    logging.getLogger("httpx").info('HTTP Request: GET http://127.0.0.1:9/x?token=s "200 OK"')
    logging.getLogger("httpx").warning("HTTP Request: GET http://127.0.0.1:9/x failed")
    structlog.get_logger("civic.test").info("request", status=200)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 2
    records = [json.loads(line) for line in lines]
    assert records[0]["logger"] == "httpx" and records[0]["level"] == "warning"
    assert records[0]["event"].startswith("HTTP Request: GET") and records[0]["timestamp"]
    assert records[1]["event"] == "request" and records[1]["status"] == 200
