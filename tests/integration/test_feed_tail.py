"""GET /v1/feed?tail=true: start at the end of the log (the console's live refresh)."""

from __future__ import annotations

import asyncio

from services.cloudevents import event_type
from tests.support import auth, build_tree, post_ok


async def test_tail_starts_after_everything_already_recorded(client, jwt):
    tree = await build_tree(client, jwt, streets=1, communities=1, units=0)
    h = auth(jwt, tree.county, "integrator")
    # The tail starts at the settled end of the log: a transaction still open elsewhere (other
    # tests share the database) may hold it just below the tree's own events for a moment.
    start = -1
    for _ in range(200):
        r = await client.get("/v1/feed?tail=true", headers=h)
        assert r.status_code == 200, r.text
        assert r.json()["items"] == []
        start = r.json()["next"]
        if start >= tree.last_position:
            break
        await asyncio.sleep(0.05)
    assert start >= tree.last_position
    admin = auth(jwt, tree.county, "admin")
    issue = await post_ok(
        client,
        "/v1/issues",
        {
            "node_code": tree.streets[0],
            "title": "井盖缺失",
            "category": "安全隐患",
            "source": "grid",
        },
        admin,
    )
    assert issue["position"] > start
    types: list[str] = []
    for _ in range(100):  # until the new event has settled below the horizon
        r = await client.get(f"/v1/feed?after={start}", headers=h)
        assert r.status_code == 200, r.text
        types = [e["type"] for e in r.json()["items"]]
        if types:
            break
        await asyncio.sleep(0.05)
    # only the issue: none of the tree's NodeRegistered events recorded before the tail
    assert types == [event_type("IssueReported", 1)], types
    r = await client.get("/v1/feed?tail=true", headers=auth(jwt, tree.county, "viewer"))
    assert r.status_code == 403
