"""The audit trail against a real PostgreSQL: verification, checkpoints, proofs, histories.

Tampering runs as the superuser with ``session_replication_role = replica`` (which disables
the append-only trigger) and always on a tenant built for that test alone: a tampered tenant
stays broken for good.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from infra.audit.proof_checks import proof_problems, verify_proof
from infra.chain import Sha256Chain, canonical_event
from infra.event_codec import decode_json
from services.api.paging import encode_cursor
from services.checkpoints import Checkpointer
from tests.support import Tree, auth, build_tree, post_ok

hasher = Sha256Chain()
PROBLEM = "application/problem+json"


@dataclass
class AuditTree:
    tree: Tree
    #: the community renamed several times (a chain of 6 events on its own node)
    busy: str
    #: the community moved from street a to street b (with a new code)
    moved: str
    headers: dict[str, str]

    @property
    def county(self) -> str:
        return self.tree.county


async def audit_tree(client: Any, jwt: Any) -> AuditTree:
    """build_tree plus renames and a move, so chains have some length and history."""
    tree = await build_tree(client, jwt)
    a, b = tree.streets
    h = auth(jwt, tree.county, "admin")
    busy = tree.communities[b][0]
    for i in range(5):
        await post_ok(client, f"/v1/nodes/{busy}/rename", {"name": f"第{i}次更名社区"}, h, 200)
    moved = f"{b[:9]}050"
    r = await post_ok(
        client,
        f"/v1/nodes/{tree.communities[a][1]}/move",
        {"new_parent_code": b, "new_code": moved, "reason": "区划调整"},
        h,
        200,
    )
    tree.last_position = r["position"]
    return AuditTree(tree=tree, busy=busy, moved=moved, headers=h)


async def verify(client: Any, jwt: Any, scope: str, node: str | None = None) -> dict[str, Any]:
    url = "/v1/audit/verify" + (f"?node={node}" if node else "")
    r = await client.get(url, headers=auth(jwt, scope, "inspector"))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def failure(report: dict[str, Any]) -> tuple[str, int, str]:
    f = report["first_failure"]
    assert f is not None and not report["ok"], report
    return f["node"], f["seq"], f["reason"]


@asynccontextmanager
async def tampering(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A superuser transaction with the append-only trigger switched off."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        yield conn


async def node_id(pool: asyncpg.Pool, code: str) -> UUID:
    async with pool.acquire() as conn:
        value: UUID = await conn.fetchval("SELECT id FROM nodes WHERE code = $1", code)
    return value


async def chain_length(pool: asyncpg.Pool, code: str) -> int:
    async with pool.acquire() as conn:
        n: int = await conn.fetchval(
            "SELECT count(*) FROM events e JOIN nodes n ON n.id = e.node_id WHERE n.code = $1", code
        )
    return n


# ---------------------------------------------------------------------------------------
# Verification


async def test_an_untouched_tree_verifies_and_roles_and_scope_apply(client, jwt, pool):
    t = await audit_tree(client, jwt)
    report = await verify(client, jwt, t.county)
    assert report["ok"] and report["first_failure"] is None and report["failures"] == []
    assert report["nodes_checked"] == 1 + 2 + 4 + 1
    async with pool.acquire() as conn:
        total = await conn.fetchval(
            "SELECT count(*) FROM events WHERE root_id = $1", await node_id(pool, t.county)
        )
    assert report["events_checked"] == total
    # a street: its own subtree, by default the token's scope
    b = t.tree.streets[1]
    street = await verify(client, jwt, b)
    assert street["ok"] and street["nodes_checked"] == 1 + 3  # b, its two, the moved one
    from_county = await verify(client, jwt, t.county, node=b)
    assert {**from_county, "elapsed_ms": 0} == {**street, "elapsed_ms": 0}
    # a former code resolves; operators and admins may verify too
    for role in ("operator", "admin"):
        r = await client.get(
            f"/v1/audit/verify?node={t.tree.communities[t.tree.streets[0]][1]}",
            headers=auth(jwt, t.county, role),
        )
        assert r.status_code == 200 and r.json()["nodes_checked"] == 1, r.text
    # not for viewers, units or integrators
    for role in ("viewer", "unit", "integrator"):
        r = await client.get("/v1/audit/verify", headers=auth(jwt, t.county, role))
        assert r.status_code == 403 and r.headers["content-type"].startswith(PROBLEM)
    # outside the caller's subtree, or another tenant: 404
    a = t.tree.streets[0]
    r = await client.get(f"/v1/audit/verify?node={b}", headers=auth(jwt, a, "inspector"))
    assert r.status_code == 404
    other = await build_tree(client, jwt, streets=1, communities=1, units=0)
    r = await client.get(
        f"/v1/audit/verify?node={other.county}", headers=auth(jwt, t.county, "inspector")
    )
    assert r.status_code == 404
    assert (await client.get("/v1/audit/verify")).status_code == 401


async def test_altered_event_is_found_and_the_sibling_subtree_still_verifies(client, jwt, pool):
    t = await audit_tree(client, jwt)
    a, b = t.tree.streets
    busy = await node_id(pool, t.busy)
    async with tampering(pool) as conn:
        await conn.execute(
            "UPDATE events SET data = jsonb_set(data, '{name}', '\"伪造的名称\"')"
            " WHERE node_id = $1 AND node_seq = 3",
            busy,
        )
    assert failure(await verify(client, jwt, t.county)) == (t.busy, 3, "altered")
    assert failure(await verify(client, jwt, b)) == (t.busy, 3, "altered")
    assert (await verify(client, jwt, a))["ok"]
    # a forged actor is content too
    async with tampering(pool) as conn:
        await conn.execute(
            "UPDATE events SET actor = 'someone-else' WHERE node_id = $1 AND node_seq = 1",
            await node_id(pool, a),
        )
    report = await verify(client, jwt, t.county)
    found = [(f["node"], f["seq"], f["reason"]) for f in report["failures"]]
    assert sorted(found) == sorted([(a, 1, "altered"), (t.busy, 3, "altered")])
    assert failure(report) == found[0]  # the first in path order
    assert report["nodes_checked"] == 8


async def test_deleted_events_are_missing(client, jwt, pool):
    t = await audit_tree(client, jwt)
    b = t.tree.streets[1]
    busy = await node_id(pool, t.busy)
    async with tampering(pool) as conn:
        await conn.execute("DELETE FROM events WHERE node_id = $1 AND node_seq = 2", busy)
    assert failure(await verify(client, jwt, b)) == (t.busy, 2, "missing")
    # the tail: the head still says seq 6
    t2 = await audit_tree(client, jwt)
    busy2 = await node_id(pool, t2.busy)
    async with tampering(pool) as conn:
        await conn.execute("DELETE FROM events WHERE node_id = $1 AND node_seq = 6", busy2)
    assert failure(await verify(client, jwt, t2.county)) == (t2.busy, 6, "missing")
    assert (await verify(client, jwt, t2.tree.streets[0]))["ok"]


async def test_forged_events_are_inserted(client, jwt, pool):
    t = await audit_tree(client, jwt)
    busy = await node_id(pool, t.busy)
    copy_row = """
    INSERT INTO events (position, root_id, node_id, node_seq, prev_hash, hash, stream_id,
        stream_type, version, event_id, type, schema_version, data, occurred_at, recorded_at,
        actor, correlation_id, causation_id, idempotency_key)
    SELECT position + 1, root_id, node_id, node_seq + 1, {prev}, hash, stream_id, stream_type,
        version + 1, gen_random_uuid(), type, schema_version, data, occurred_at, recorded_at,
        actor, correlation_id, causation_id, idempotency_key
    FROM events WHERE node_id = $1 AND node_seq = $2
    """
    # a copy of the last event as the next one, the head left alone: beyond the head
    async with tampering(pool) as conn:
        await conn.execute(copy_row.format(prev="hash"), busy, 6)
    assert failure(await verify(client, jwt, t.county)) == (t.busy, 7, "inserted")

    # a forger who also moves the head: the copy links to the same predecessor as the original
    t2 = await audit_tree(client, jwt)
    busy2 = await node_id(pool, t2.busy)
    async with tampering(pool) as conn:
        await conn.execute(copy_row.format(prev="prev_hash"), busy2, 6)
        await conn.execute(
            "UPDATE chain_heads SET seq = 7, hash = (SELECT hash FROM events WHERE node_id = $1"
            " AND node_seq = 7) WHERE node_id = $1",
            busy2,
        )
    assert failure(await verify(client, jwt, t2.county)) == (t2.busy, 7, "inserted")


async def test_swapped_events_are_altered_at_the_first_of_the_two(client, jwt, pool):
    t = await audit_tree(client, jwt)
    busy = await node_id(pool, t.busy)
    async with tampering(pool) as conn:
        await conn.execute(
            """
            UPDATE events e SET data = o.data
            FROM events o
            WHERE e.node_id = $1 AND o.node_id = $1
              AND ((e.node_seq = 2 AND o.node_seq = 4) OR (e.node_seq = 4 AND o.node_seq = 2))
            """,
            busy,
        )
    report = await verify(client, jwt, t.county)
    assert failure(report) == (t.busy, 2, "altered")
    assert (await verify(client, jwt, t.tree.streets[0]))["ok"]


async def test_a_rewritten_link_is_broken(client, jwt, pool):
    t = await audit_tree(client, jwt)
    busy = await node_id(pool, t.busy)
    async with tampering(pool) as conn:
        await conn.execute(
            "UPDATE events SET prev_hash = decode(repeat('ab', 32), 'hex')"
            " WHERE node_id = $1 AND node_seq = 4",
            busy,
        )
    assert failure(await verify(client, jwt, t.county)) == (t.busy, 4, "broken_link")
    t2 = await audit_tree(client, jwt)
    async with tampering(pool) as conn:
        await conn.execute(
            "UPDATE chain_heads SET hash = decode(repeat('cd', 32), 'hex') WHERE node_id = $1",
            await node_id(pool, t2.busy),
        )
    assert failure(await verify(client, jwt, t2.county)) == (t2.busy, 6, "broken_link")


async def test_verification_streams_with_a_small_prefetch(client, jwt, pool, ctx):
    """The cursor path (many fetches per chain) gives the same answer as one big fetch."""
    from infra.audit.verify import verify_subtree
    from infra.database import scoped_transaction
    from infra.directory import find_by_code

    t = await audit_tree(client, jwt)
    busy = await node_id(pool, t.busy)
    async with tampering(pool) as conn:
        await conn.execute("DELETE FROM events WHERE node_id = $1 AND node_seq = 5", busy)
    async with pool.acquire() as conn, scoped_transaction(conn, t.county) as (_, scope):
        node = await find_by_code(conn, scope.code)
        assert node is not None
        small = await verify_subtree(conn, node, hasher, prefetch=2)
        large = await verify_subtree(conn, node, hasher, prefetch=5000)
    assert small.first_failure == large.first_failure
    assert small.first_failure is not None
    assert (small.first_failure.node, small.first_failure.seq, small.first_failure.reason) == (
        t.busy,
        5,
        "missing",
    )
    assert small.events_checked == large.events_checked


# ---------------------------------------------------------------------------------------
# Checkpoints


async def rewrite_from(pool: asyncpg.Pool, code: str, seq: int, name: str) -> None:
    """A careful forger: changes one event and recomputes every later link and the head."""
    nid = await node_id(pool, code)
    async with tampering(pool) as conn:
        rows = await conn.fetch(
            "SELECT * FROM events WHERE node_id = $1 AND node_seq >= $2 ORDER BY node_seq", nid, seq
        )
        prev = bytes(rows[0]["prev_hash"])
        for r in rows:
            data = decode_json(r["data"])
            if r["node_seq"] == seq:
                data["name"] = name
            canonical = canonical_event(
                root_id=r["root_id"],
                node_id=r["node_id"],
                stream_id=r["stream_id"],
                stream_type=r["stream_type"],
                version=r["version"],
                event_id=r["event_id"],
                type=r["type"],
                schema_version=r["schema_version"],
                data=data,
                occurred_at=r["occurred_at"],
                recorded_at=r["recorded_at"],
                actor=r["actor"],
                correlation_id=r["correlation_id"],
                causation_id=r["causation_id"],
                idempotency_key=r["idempotency_key"],
            )
            new_hash = hasher.link(prev, r["node_seq"], r["position"], hasher.digest(canonical))
            # the stored canonical bytes too (the row's flag then says they match)
            await conn.execute(
                "UPDATE events SET data = $2::jsonb, prev_hash = $3, hash = $4,"
                " canonical = CASE WHEN canonical IS NOT NULL THEN $5::bytea END"
                " WHERE position = $1",
                r["position"],
                msgspec.json.encode(data).decode(),
                prev,
                new_hash,
                canonical,
            )
            prev = new_hash
        await conn.execute("UPDATE chain_heads SET hash = $2 WHERE node_id = $1", nid, prev)


async def get_checkpoint(
    client: Any, jwt: Any, scope: str, node: str | None = None
) -> dict[str, Any]:
    url = "/v1/audit/checkpoint" + (f"?node={node}" if node else "")
    r = await client.get(url, headers=auth(jwt, scope, "inspector"))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def check(client: Any, jwt: Any, scope: str, checkpoint: dict[str, Any]) -> dict[str, Any]:
    r = await client.post(
        "/v1/audit/checkpoint/verify", json=checkpoint, headers=auth(jwt, scope, "inspector")
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_checkpoint_heads_root_and_signature(client, jwt, pool):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from infra.audit.merkle import merkle_root
    from infra.audit.proof_checks import checkpoint_message

    t = await audit_tree(client, jwt)
    cp = await get_checkpoint(client, jwt, t.county)
    assert cp["node"] == t.county and cp["algorithm"] == "ed25519" and cp["id"] is None
    async with pool.acquire() as conn:
        expected = await conn.fetch(
            "SELECT n.id, n.code, h.seq, h.hash FROM nodes n JOIN chain_heads h ON h.node_id = n.id"
            " WHERE n.root_id = $1 ORDER BY n.path",
            await node_id(pool, t.county),
        )
    assert [(h["node_id"], h["code"], h["seq"], h["hash"]) for h in cp["heads"]] == [
        (str(r["id"]), r["code"], r["seq"], bytes(r["hash"]).hex()) for r in expected
    ]
    busy = next(h for h in cp["heads"] if h["code"] == t.busy)
    assert busy["seq"] == 6
    assert merkle_root(cp["heads"]).hex() == cp["root"]
    # the published key, without authentication, verifies the signature
    r = await client.get("/v1/audit/public-key")
    assert r.status_code == 200, r.text
    key = r.json()
    assert key["public_key"] == cp["public_key"] and key["key_id"] == cp["key_id"]
    assert key["pem"].startswith("-----BEGIN PUBLIC KEY-----")
    Ed25519PublicKey.from_public_bytes(base64.b64decode(key["public_key"])).verify(
        base64.b64decode(cp["signature"]), checkpoint_message(cp["node"], cp["at"], cp["root"])
    )
    # a street's checkpoint covers its subtree only
    street = await get_checkpoint(client, jwt, t.tree.streets[0])
    assert [h["code"] for h in street["heads"]] == [
        t.tree.streets[0],
        t.tree.communities[t.tree.streets[0]][0],
    ]
    for role in ("viewer", "integrator", "unit"):
        r = await client.get("/v1/audit/checkpoint", headers=auth(jwt, t.county, role))
        assert r.status_code == 403


async def test_checkpoint_verification(client, jwt, pool):
    t = await audit_tree(client, jwt)
    cp = await get_checkpoint(client, jwt, t.county)
    ok = await check(client, jwt, t.county, cp)
    assert ok["signature_valid"] and ok["root_matches"] and ok["extends"], ok
    # still extends after more events
    await post_ok(client, f"/v1/nodes/{t.busy}/rename", {"name": "又一次更名"}, t.headers, 200)
    assert (await check(client, jwt, t.county, cp))["extends"]

    # an altered root: the signature no longer matches and the root differs from the heads
    bad_root = dict(cp, root=("0" if cp["root"][0] != "0" else "1") + cp["root"][1:])
    verdict = await check(client, jwt, t.county, bad_root)
    assert not verdict["signature_valid"] and not verdict["root_matches"]
    # an altered head: the root recomputed from the heads differs; that head does not extend
    heads = [dict(h) for h in cp["heads"]]
    i = next(i for i, h in enumerate(heads) if h["code"] == t.busy)
    heads[i]["hash"] = "ab" * 32
    verdict = await check(client, jwt, t.county, dict(cp, heads=heads))
    assert verdict["signature_valid"] and not verdict["root_matches"] and not verdict["extends"]
    failed = [d for d in verdict["details"] if d["check"] == "head"]
    assert [(d["node"], d["seq"]) for d in failed] == [(t.busy, 6)]
    heads = [dict(h) for h in cp["heads"]]
    heads[i]["seq"] = 5
    verdict = await check(client, jwt, t.county, dict(cp, heads=heads))
    assert verdict["signature_valid"] and not verdict["root_matches"] and not verdict["extends"]
    # signed by someone else's key
    from infra.audit.checkpoints import sign_checkpoint
    from infra.audit.merkle import Head
    from infra.audit.signing import Ed25519Signer

    forger = Ed25519Signer.from_pem(Ed25519Signer.generate_pem())
    forged = msgspec.to_builtins(
        sign_checkpoint(cp["node"], cp["at"], [Head(**h) for h in cp["heads"]], forger, hasher)
    )
    verdict = await check(client, jwt, t.county, forged)
    assert not verdict["signature_valid"] and verdict["root_matches"] and verdict["extends"]
    # malformed bodies are 400, unknown fields refused
    r = await client.post(
        "/v1/audit/checkpoint/verify",
        json=dict(cp, extra=1),
        headers=auth(jwt, t.county, "inspector"),
    )
    assert r.status_code == 400 and r.headers["content-type"].startswith(PROBLEM)
    r = await client.post(
        "/v1/audit/checkpoint/verify",
        json=dict(cp, root="xyz"),
        headers=auth(jwt, t.county, "inspector"),
    )
    assert r.status_code == 400
    # a street inspector cannot confirm heads outside its subtree
    verdict = await check(client, jwt, t.tree.streets[0], cp)
    assert verdict["signature_valid"] and verdict["root_matches"] and not verdict["extends"]
    assert any("not in your scope" in d["detail"] for d in verdict["details"])


async def test_a_checkpoint_taken_before_a_rewrite_no_longer_extends(client, jwt, pool):
    t = await audit_tree(client, jwt)
    cp = await get_checkpoint(client, jwt, t.county)
    await rewrite_from(pool, t.busy, 3, "改写后的名称")
    # the careful forger's chains are self-consistent: verification alone cannot tell...
    assert (await verify(client, jwt, t.county))["ok"]
    # ...but the checkpoint signed before can
    verdict = await check(client, jwt, t.county, cp)
    assert verdict["signature_valid"] and verdict["root_matches"] and not verdict["extends"]
    failed = [d for d in verdict["details"] if d["check"] == "head"]
    assert [(d["node"], d["seq"]) for d in failed] == [(t.busy, 6)]
    assert "another hash" in failed[0]["detail"]
    # a careless one who only edits the head event's data is caught by the same check
    t2 = await audit_tree(client, jwt)
    cp2 = await get_checkpoint(client, jwt, t2.county)
    async with tampering(pool) as conn:
        await conn.execute(
            "UPDATE events SET data = jsonb_set(data, '{name}', '\"x\"') WHERE node_id = $1"
            " AND node_seq = 6",
            await node_id(pool, t2.busy),
        )
    verdict = await check(client, jwt, t2.county, cp2)
    assert not verdict["extends"]
    assert [d["detail"] for d in verdict["details"] if d["check"] == "head"] == [
        "the event at seq 6 was altered"
    ]


def own_checkpointer(app: Any, pool: asyncpg.Pool) -> Checkpointer:
    """The app's checkpointer (same key and clock) on the test's pool: the app's pool lives on
    the test client's event loop."""
    app_checkpointer: Checkpointer = app.state.checkpointer
    ctx = dataclasses.replace(app.state.ctx, pool=pool)
    return Checkpointer(ctx, app_checkpointer.signer, interval=app_checkpointer.interval)


async def test_periodic_checkpoints_are_stored_and_listed(client, jwt, pool, app, clock):
    checkpointer = own_checkpointer(app, pool)
    t = await audit_tree(client, jwt)
    first = await checkpointer.take_and_store(t.county)
    assert first is not None and first.id is not None
    await post_ok(client, f"/v1/nodes/{t.busy}/rename", {"name": "两次之间"}, t.headers, 200)
    clock.advance(timedelta(hours=2))
    # the clock's pass: this tenant is due again (its newest checkpoint is 2 h old); the app's
    # own clock may run the pass first, and a second pass finds nothing due for this tenant
    h = auth(jwt, t.county, "inspector")
    for _ in range(100):
        await checkpointer.tick(batch=100_000)
        r = await client.get(f"/v1/audit/checkpoints?node={t.county}", headers=h)
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        if len(items) == 2:
            break
        await asyncio.sleep(0.05)
    await checkpointer.tick(batch=100_000)
    r = await client.get(f"/v1/audit/checkpoints?node={t.county}", headers=h)
    assert r.json()["items"] == items
    newest, oldest = items
    assert oldest["id"] == first.id and newest["at"] > oldest["at"]
    busy_then = next(x for x in oldest["heads"] if x["code"] == t.busy)
    busy_now = next(x for x in newest["heads"] if x["code"] == t.busy)
    assert (busy_then["seq"], busy_now["seq"]) == (6, 7)
    # both still verify and extend
    for cp in items:
        verdict = await check(client, jwt, t.county, cp)
        assert verdict["signature_valid"] and verdict["root_matches"] and verdict["extends"]
    # time filters and paging
    r = await client.get(
        "/v1/audit/checkpoints",
        params={"node": t.county, "from": newest["at"]},
        headers=h,
    )
    assert [x["id"] for x in r.json()["items"]] == [newest["id"]]
    r = await client.get(
        "/v1/audit/checkpoints", params={"node": t.county, "to": newest["at"]}, headers=h
    )
    assert [x["id"] for x in r.json()["items"]] == [oldest["id"]]
    page = (await client.get(f"/v1/audit/checkpoints?node={t.county}&limit=1", headers=h)).json()
    assert [x["id"] for x in page["items"]] == [newest["id"]] and page["next_cursor"]
    page = (
        await client.get(
            f"/v1/audit/checkpoints?node={t.county}&limit=1&cursor={page['next_cursor']}", headers=h
        )
    ).json()
    assert [x["id"] for x in page["items"]] == [oldest["id"]] and page["next_cursor"] is None
    # a street does not see the root tenant's checkpoints
    r = await client.get("/v1/audit/checkpoints", headers=auth(jwt, t.tree.streets[0], "inspector"))
    assert r.status_code == 200 and r.json()["items"] == []
    r = await client.get("/v1/audit/checkpoints", params={"from": "2025-01-01T00:00:00"}, headers=h)
    assert r.status_code == 400


# ---------------------------------------------------------------------------------------
# Inclusion proofs


async def history(
    client: Any, jwt: Any, scope: str, code: str, query: str = "", *, settled: int
) -> list[dict[str, Any]]:
    """Every page of a subtree's history, once the ledger has settled past ``settled``."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        url = f"/v1/nodes/{code}/history?limit=4&min_position={settled}{query}"
        url += f"&cursor={cursor}" if cursor else ""
        r = await client.get(url, headers=auth(jwt, scope, "inspector"))
        assert r.status_code == 200, r.text
        page = r.json()
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items


async def test_inclusion_proofs(client, jwt, pool, app):
    t = await audit_tree(client, jwt)
    key = (await client.get("/v1/audit/public-key")).json()["public_key"]
    events = [
        e
        for e in await history(client, jwt, t.county, t.busy, settled=t.tree.last_position)
        if e["node"] == t.busy
    ]
    assert [e["node_seq"] for e in events] == [1, 2, 3, 4, 5, 6]
    h = auth(jwt, t.county, "inspector")

    # no stored checkpoint yet: a fresh one of the caller's scope
    r = await client.get(f"/v1/events/{events[1]['event_id']}/proof", headers=h)
    assert r.status_code == 200, r.text
    proof = r.json()
    assert proof_problems(proof, trusted_public_key=key) == []
    assert proof["event"]["hash"] == events[1]["hash"] and proof["event"]["seq"] == 2
    assert [x["seq"] for x in proof["chain"]] == [3, 4, 5, 6]
    assert proof["checkpoint"]["node"] == t.county and proof["checkpoint"]["id"] is None

    # a stored checkpoint covering the event is preferred
    stored = await own_checkpointer(app, pool).take_and_store(t.county)
    assert stored is not None
    proof = (await client.get(f"/v1/events/{events[5]['event_id']}/proof", headers=h)).json()
    assert proof["checkpoint"]["id"] == stored.id and proof["chain"] == []
    assert verify_proof(proof, trusted_public_key=key)
    # newer than the stored checkpoint: a fresh one
    r = await post_ok(client, f"/v1/nodes/{t.busy}/rename", {"name": "新名称"}, t.headers, 200)
    newest = [
        e
        for e in await history(client, jwt, t.county, t.busy, settled=r["position"])
        if e["node"] == t.busy
    ][-1]
    assert newest["node_seq"] == 7
    proof = (await client.get(f"/v1/events/{newest['event_id']}/proof", headers=h)).json()
    assert proof["checkpoint"]["id"] is None and verify_proof(proof, trusted_public_key=key)
    # a chosen stored checkpoint; one that predates the event cannot prove it
    r = await client.get(
        f"/v1/events/{events[0]['event_id']}/proof?checkpoint={stored.id}", headers=h
    )
    assert r.status_code == 200 and verify_proof(r.json(), trusted_public_key=key)
    r = await client.get(f"/v1/events/{newest['event_id']}/proof?checkpoint={stored.id}", headers=h)
    assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM)
    r = await client.get(f"/v1/events/{newest['event_id']}/proof?checkpoint=999999999", headers=h)
    assert r.status_code == 404
    # a street inspector proves its own events against its own subtree
    b = t.tree.streets[1]
    proof = (
        await client.get(
            f"/v1/events/{events[2]['event_id']}/proof", headers=auth(jwt, b, "inspector")
        )
    ).json()
    assert proof["checkpoint"]["node"] == b and verify_proof(proof, trusted_public_key=key)
    # outside the scope, unknown, wrong role
    a = t.tree.streets[0]
    assert (
        await client.get(
            f"/v1/events/{events[2]['event_id']}/proof", headers=auth(jwt, a, "inspector")
        )
    ).status_code == 404
    assert (await client.get(f"/v1/events/{UUID(int=7)}/proof", headers=h)).status_code == 404
    assert (
        await client.get(
            f"/v1/events/{events[2]['event_id']}/proof", headers=auth(jwt, t.county, "viewer")
        )
    ).status_code == 403

    # after a careful rewrite, a proof against the checkpoint kept before fails offline
    await rewrite_from(pool, t.busy, 2, "改写")
    r = await client.get(
        f"/v1/events/{events[1]['event_id']}/proof?checkpoint={stored.id}", headers=h
    )
    assert r.status_code == 200
    assert not verify_proof(r.json(), trusted_public_key=key)


# ---------------------------------------------------------------------------------------
# Histories


async def test_stream_history(client, jwt, pool):
    t = await audit_tree(client, jwt)
    stream = await node_id(pool, t.busy)  # a node's stream id is its node id
    h = auth(jwt, t.county, "inspector")
    r = await client.get(f"/v1/streams/{stream}/events", headers=h)
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == '"6"'
    page = r.json()
    items = page["items"]
    assert page["next_cursor"] is None
    assert [e["version"] for e in items] == [1, 2, 3, 4, 5, 6]
    assert [e["type"] for e in items] == ["NodeRegistered"] + ["NodeRenamed"] * 5
    assert items[-1]["data"]["name"] == "第4次更名社区"
    assert all(e["node"] == t.busy and e["stream_type"] == "node" for e in items)
    assert [e["node_seq"] for e in items] == [1, 2, 3, 4, 5, 6]
    assert all(items[i + 1]["prev_hash"] == items[i]["hash"] for i in range(5))
    assert items[0]["prev_hash"] == "00" * 32
    first = items[0]
    assert first["actor"] == f"tester@{t.county}" and first["recorded_at"] and first["occurred_at"]
    assert first["schema_version"] == 1 and isinstance(first["position"], int)
    # paged
    r = await client.get(f"/v1/streams/{stream}/events?limit=4", headers=h)
    page = r.json()
    assert [e["version"] for e in page["items"]] == [1, 2, 3, 4] and page["next_cursor"]
    r = await client.get(
        f"/v1/streams/{stream}/events?limit=4&cursor={page['next_cursor']}", headers=h
    )
    assert [e["version"] for e in r.json()["items"]] == [5, 6]
    # not visible: another street, another tenant, unknown; wrong role
    a = t.tree.streets[0]
    assert (
        await client.get(f"/v1/streams/{stream}/events", headers=auth(jwt, a, "admin"))
    ).status_code == 404
    assert (await client.get(f"/v1/streams/{UUID(int=1)}/events", headers=h)).status_code == 404
    other = await build_tree(client, jwt, streets=1, communities=1, units=0)
    assert (
        await client.get(f"/v1/streams/{stream}/events", headers=auth(jwt, other.county, "admin"))
    ).status_code == 404
    assert (
        await client.get(f"/v1/streams/{stream}/events", headers=auth(jwt, t.county, "viewer"))
    ).status_code == 403


async def test_subtree_history(client, jwt, pool):
    t = await audit_tree(client, jwt)
    a, b = t.tree.streets
    everything = await history(client, jwt, t.county, t.county, settled=t.tree.last_position)
    async with pool.acquire() as conn:
        stored = await conn.fetch(
            "SELECT event_id FROM events WHERE root_id = $1 ORDER BY position",
            await node_id(pool, t.county),
        )
    assert [e["event_id"] for e in everything] == [str(r["event_id"]) for r in stored]
    positions = [e["position"] for e in everything]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    # the street b subtree now includes the moved community, with its history from before
    street_b = await history(client, jwt, t.county, b, settled=t.tree.last_position)
    assert {e["node"] for e in street_b} == {b, *t.tree.communities[b], t.moved}
    assert {e["type"] for e in street_b if e["node"] == t.moved} == {"NodeRegistered", "NodeMoved"}
    # street a's inspector sees its subtree; b is 404 to it
    assert {e["node"] for e in await history(client, jwt, a, a, settled=t.tree.last_position)} == {
        a,
        t.tree.communities[a][0],
    }
    r = await client.get(f"/v1/nodes/{b}/history", headers=auth(jwt, a, "inspector"))
    assert r.status_code == 404
    # type filter
    renames = await history(
        client, jwt, t.county, t.county, "&type=NodeRenamed", settled=t.tree.last_position
    )
    assert len(renames) == 5 and {e["type"] for e in renames} == {"NodeRenamed"}
    both = await history(
        client, jwt, t.county, t.county, "&type=NodeMoved,NodeRenamed", settled=t.tree.last_position
    )
    assert len(both) == 6
    r = await client.get(f"/v1/nodes/{t.county}/history?type=NoSuchThing", headers=t.headers)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "type"
    # recorded-time filter: from (inclusive) / to (exclusive)
    cut = everything[len(everything) // 2]["recorded_at"]
    later = await history(
        client,
        jwt,
        t.county,
        t.county,
        f"&from={cut.replace('+', '%2B')}",
        settled=t.tree.last_position,
    )
    earlier = await history(
        client,
        jwt,
        t.county,
        t.county,
        f"&to={cut.replace('+', '%2B')}",
        settled=t.tree.last_position,
    )
    assert len(later) + len(earlier) == len(everything) and later and earlier
    assert all(e["recorded_at"] >= cut for e in later)
    # after a position
    r = await client.get(
        f"/v1/nodes/{t.county}/history?after={everything[2]['position']}&limit=500",
        headers=t.headers,
    )
    assert [e["event_id"] for e in r.json()["items"]] == [e["event_id"] for e in everything[3:]]
    # bad inputs
    for query in (
        "cursor=nope",
        "limit=0",
        "limit=501",
        "from=yesterday",
        "from=2025-01-01T00:00:00",
        "after=-1",
        "after=9223372036854775808",
        "min_position=9223372036854775808",
        f"cursor={encode_cursor([2**70])}",
    ):
        r = await client.get(f"/v1/nodes/{t.county}/history?{query}", headers=t.headers)
        assert r.status_code == 400, (query, r.text)
        assert r.headers["content-type"].startswith(PROBLEM)
    assert (
        await client.get(f"/v1/nodes/{t.county}/history", headers=auth(jwt, t.county, "integrator"))
    ).status_code == 403


async def test_openapi_describes_the_audit_endpoints(client):
    r = await client.get("/schema/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    for path in (
        "/v1/audit/verify",
        "/v1/audit/checkpoint",
        "/v1/audit/checkpoint/verify",
        "/v1/audit/checkpoints",
        "/v1/audit/public-key",
        "/v1/events/{event_id}/proof",
        "/v1/streams/{stream_id}/events",
        "/v1/nodes/{code}/history",
    ):
        assert path in paths, path
