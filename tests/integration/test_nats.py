"""The NATS JetStream relay against a real server (NATS_URL, default 127.0.0.1:4222).

Skipped when no server is reachable. Each run uses its own stream and subject prefix and
deletes the stream afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import time
from urllib.parse import urlsplit

import pytest

from services.live import LiveSignal
from services.nats_relay import NatsRelay
from tests.support import build_tree

NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 4222), 1):
            return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _reachable(NATS_URL), reason=f"no NATS server at {NATS_URL}")


async def wait_for(relay: NatsRelay, position: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while relay.position < position:
        assert time.monotonic() < deadline, f"the relay did not reach {position}"
        await asyncio.sleep(0.05)


async def test_relay_publishes_every_event_once_with_msg_id(client, jwt, pool):
    nats = pytest.importorskip("nats")
    suffix = secrets.token_hex(4)
    stream, prefix = f"CIVIC_TEST_{suffix.upper()}", f"civictest{suffix}"
    tree = await build_tree(client, jwt, streets=1, communities=2, units=0)
    for _ in range(1500):  # the tree's events settle (at most 30 s)
        if await pool.fetchval("SELECT civic_horizon()") > tree.last_position:
            break
        await asyncio.sleep(0.02)
    expected = await pool.fetch(
        "SELECT e.position, e.event_id::text AS id, e.type FROM events e"
        " JOIN nodes r ON r.id = e.root_id WHERE r.code = $1 ORDER BY e.position",
        tree.county,
    )

    nc = await nats.connect(NATS_URL, connect_timeout=2)
    js = nc.jetstream()
    relay = NatsRelay(
        LiveSignal(), url=NATS_URL, stream=stream, subject_prefix=prefix, poll_seconds=0.05
    )
    try:
        relay.start(pool)
        await wait_for(relay, tree.last_position)
        await relay.stop()

        # every event of the tenant, in order, on civic.<root>.<ContractName>, id'd for dedup
        sub = await js.subscribe(f"{prefix}.{tree.county}.>", stream=stream, ordered_consumer=True)
        got = []
        for _ in expected:
            msg = await sub.next_msg(timeout=5)
            got.append(msg)
        await sub.unsubscribe()
        assert [m.subject for m in got] == [f"{prefix}.{tree.county}.{r['type']}" for r in expected]
        bodies = [json.loads(m.data) for m in got]
        assert [(int(b["position"]), b["id"]) for b in bodies] == [
            (r["position"], r["id"]) for r in expected
        ]
        assert [m.headers["Nats-Msg-Id"] for m in got] == [r["id"] for r in expected]
        assert bodies[0]["type"] == "cn.civic-ledger.node.registered.v1"
        assert bodies[0]["source"] == f"/civic-ledger/{tree.county}"

        # a replay from the start (a lost cursor) is de-duplicated by the stream
        before = (await js.stream_info(stream)).state.messages
        await pool.execute("UPDATE relay_cursors SET position = 0 WHERE name = $1", relay.name)
        again = NatsRelay(
            LiveSignal(), url=NATS_URL, stream=stream, subject_prefix=prefix, poll_seconds=0.05
        )
        again.start(pool)
        try:
            await wait_for(again, tree.last_position)
        finally:
            await again.stop()
        assert again.duplicates >= len(expected) and again.published == 0
        assert (await js.stream_info(stream)).state.messages == before
        ack = await js.publish(
            got[0].subject, got[0].data, stream=stream, headers={"Nats-Msg-Id": expected[0]["id"]}
        )
        assert ack.duplicate
        saved = await pool.fetchval(
            "SELECT position FROM relay_cursors WHERE name = $1", relay.name
        )
        assert saved >= tree.last_position
    finally:
        await relay.stop()
        try:
            await js.delete_stream(stream)
        finally:
            await nc.close()
            await pool.execute("DELETE FROM relay_cursors WHERE name = $1", relay.name)
