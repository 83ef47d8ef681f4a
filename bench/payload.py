"""Event-shaped payloads shared by the anchors (and available to our benchmarks)."""

from __future__ import annotations

import json
import uuid
from typing import Any

EVENT_TYPE = "IssueReported"


def event_data(seq: int = 0) -> dict[str, Any]:
    """A realistic ~300-byte event body: an issue reported in a community."""
    return {
        "issue_id": str(uuid.UUID(int=seq + 1)),
        "node": f"county-07/street-{seq % 20:02d}/community-{seq % 15:02d}",
        "title": "Streetlight out at the north gate of building 12",
        "body": "Reported on the evening patrol; the lamp has been dark for "
        "three nights and children use the path after school.",
        "category": "public-safety",
        "priority": 2,
    }


def event_json(seq: int = 0) -> str:
    """``event_data`` as compact JSON text (what goes into a jsonb parameter)."""
    return json.dumps(event_data(seq), separators=(",", ":"))


PAYLOAD_JSON = event_json()
"""One payload, encoded once: the anchors reuse it so the client spends no CPU on encoding."""
assert 280 <= len(PAYLOAD_JSON.encode()) <= 340, len(PAYLOAD_JSON.encode())
