"""The per-root transparency tree against a real PostgreSQL: signed notes, consistency and
inclusion proofs, evidence bundles with the offline verifier, witness cosigning.

Tampering runs as the superuser with ``session_replication_role = replica`` on a tenant
built for that test alone (see test_audit.py).
"""

from __future__ import annotations

import asyncio
import base64
import json
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

from civic_verify.bundle import main as civic_verify_main
from civic_verify.bundle import verify_bundle
from civic_verify.hashing import sha256
from civic_verify.note import verify_note
from civic_verify.tlog import Frontier, leaf_hash, verify_consistency, verify_inclusion
from tests.integration.test_audit import audit_tree, node_id, tampering
from tests.support import auth, post_ok

H = sha256


async def tree_built(pool: asyncpg.Pool, county: str) -> int:
    """Wait (bounded) until the root's tree holds every event of the root; its size."""
    root = await node_id(pool, county)
    async with pool.acquire() as conn:
        for _ in range(200):
            events = await conn.fetchval("SELECT count(*) FROM events WHERE root_id = $1", root)
            size = await conn.fetchval("SELECT size FROM audit_trees WHERE root_id = $1", root)
            if size == events:
                return int(size)
            await asyncio.sleep(0.05)
    raise AssertionError(f"the tree of {county} was not built: {size} of {events}")


async def public_key(client: Any) -> dict[str, Any]:
    r = await client.get("/v1/audit/public-key")
    assert r.status_code == 200
    body: dict[str, Any] = r.json()
    return body


async def checkpoint(client: Any, jwt: Any, county: str) -> dict[str, Any]:
    r = await client.get("/v1/audit/checkpoint", headers=auth(jwt, county, "inspector"))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def grow(client: Any, jwt: Any, county: str, n: int) -> None:
    h = auth(jwt, county, "admin")
    for i in range(n):
        await post_ok(client, f"/v1/nodes/{county}/rename", {"name": f"测试区{i}"}, h, 200)


# ---------------------------------------------------------------------------------------
# Notes, consistency and inclusion


async def test_checkpoint_note_is_a_c2sp_checkpoint_of_the_tree(client, jwt, pool):
    t = await audit_tree(client, jwt)
    size = await tree_built(pool, t.county)
    key = await public_key(client)
    cp = await checkpoint(client, jwt, t.county)
    raw = base64.b64decode(key["public_key"])
    body = verify_note(cp["note"], key["note_key_name"], raw)
    root = await node_id(pool, t.county)
    assert body.origin == cp["origin"] == f"civic-ledger/{root}"
    assert body.size == cp["tree_size"] == size
    assert body.root.hex() == cp["tree_root"]
    lines = cp["note"].split("\n")
    assert lines[:3] == [body.origin, str(size), base64.b64encode(body.root).decode()]
    assert lines[3] == "" and lines[4].startswith("\u2014 civic-ledger ")
    # the tree is the RFC 6962 tree over the root's event hashes in position order
    async with pool.acquire() as conn:
        hashes = await conn.fetch(
            "SELECT hash FROM events WHERE root_id = $1 ORDER BY position", root
        )
    f = Frontier(H)
    for r in hashes:
        f.push_leaf(bytes(r["hash"]))
    assert f.root() == body.root
    # the spine is unchanged and the served checkpoint verifies as before
    r = await client.post(
        "/v1/audit/checkpoint/verify", json=cp, headers=auth(jwt, t.county, "inspector")
    )
    assert r.status_code == 200, r.text
    assert r.json()["signature_valid"] and r.json()["root_matches"] and r.json()["extends"]
    tree_checks = {
        d["check"]: d["ok"] for d in r.json()["details"] if d["check"] in ("note", "tree")
    }
    assert tree_checks == {"note": True, "tree": True}
    assert key["vkey"].startswith("civic-ledger+")


async def test_consistency_proofs_verify_and_a_rewritten_history_fails(client, jwt, pool):
    t = await audit_tree(client, jwt)
    first = await tree_built(pool, t.county)
    kept = await checkpoint(client, jwt, t.county)
    await grow(client, jwt, t.county, 9)
    second = await tree_built(pool, t.county)
    inspector = auth(jwt, t.county, "inspector")
    r = await client.get(f"/v1/audit/consistency?from={first}&to={second}", headers=inspector)
    assert r.status_code == 200, r.text
    proof = r.json()
    assert proof["from"]["size"] == first and proof["to"]["size"] == second
    assert len(proof["proof"]) <= 2 * second.bit_length()
    assert verify_consistency(
        H,
        first,
        second,
        bytes.fromhex(proof["from"]["root"]),
        bytes.fromhex(proof["to"]["root"]),
        [bytes.fromhex(p) for p in proof["proof"]],
    )
    r = await client.post("/v1/audit/consistency/verify", json=proof, headers=inspector)
    assert r.status_code == 200, r.text
    verdict = r.json()
    assert verdict["consistent"] and verdict["from_signed"] and verdict["to_signed"]
    assert verdict["matches_stored"]
    # `to` defaults to the tree now; a size beyond the tree is a 422, junk a 400
    r = await client.get(f"/v1/audit/consistency?from={first}", headers=inspector)
    assert r.status_code == 200 and r.json()["to"]["size"] == second
    r = await client.get(f"/v1/audit/consistency?from={second + 5}", headers=inspector)
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem")
    r = await client.get("/v1/audit/consistency?from=yesterday", headers=inspector)
    assert r.status_code == 400
    # a forged proof (one hash changed) does not verify
    forged = json.loads(json.dumps(proof))
    forged["proof"][0] = "00" * 32
    r = await client.post("/v1/audit/consistency/verify", json=forged, headers=inspector)
    assert r.json()["consistent"] is False

    # Rewrite history: an old leaf changed and the tree recomputed over it, as someone who
    # can write the database would. The old head no longer extends to the new one.
    await rewrite_leaf(pool, t.county, 1)
    r = await client.get(f"/v1/audit/consistency?from={first}&to={second}", headers=inspector)
    rewritten = r.json()
    assert rewritten["to"]["root"] != proof["to"]["root"]
    assert not verify_consistency(
        H,
        first,
        second,
        bytes.fromhex(proof["from"]["root"]),
        bytes.fromhex(rewritten["to"]["root"]),
        [bytes.fromhex(p) for p in rewritten["proof"]],
    )
    mixed = {**rewritten, "from": proof["from"]}
    r = await client.post("/v1/audit/consistency/verify", json=mixed, headers=inspector)
    assert r.json()["consistent"] is False
    # the checkpoint kept from before: its note still verifies, but the tree moved under it
    r = await client.post("/v1/audit/checkpoint/verify", json=kept, headers=inspector)
    checks = {d["check"]: d["ok"] for d in r.json()["details"] if d["check"] in ("note", "tree")}
    assert checks == {"note": True, "tree": False}


async def rewrite_leaf(pool: asyncpg.Pool, county: str, index: int) -> None:
    """Replace leaf ``index`` of the root's tree and recompute every stored hash above it."""
    root = await node_id(pool, county)
    async with tampering(pool) as conn:
        leaves = [
            bytes(r["hash"])
            for r in await conn.fetch(
                "SELECT hash FROM audit_tree_leaves WHERE root_id = $1 ORDER BY idx", root
            )
        ]
        leaves[index] = leaf_hash(H, b"rewritten history")
        await conn.execute("DELETE FROM audit_tree_nodes WHERE root_id = $1", root)
        await conn.execute(
            "UPDATE audit_tree_leaves SET hash = $3 WHERE root_id = $1 AND idx = $2",
            root,
            index,
            leaves[index],
        )
        f = Frontier(H)
        for i, leaf in enumerate(leaves):
            for level, idx, value in f.push(0, i, leaf)[1:]:
                await conn.execute(
                    "INSERT INTO audit_tree_nodes VALUES ($1, $2, $3, $4)", root, level, idx, value
                )
        await conn.execute(
            "UPDATE audit_trees SET root_hash = $2, frontier = $3 WHERE root_id = $1",
            root,
            f.root(),
            f.hashes(),
        )


async def test_inclusion_proof_carries_the_tree_path(client, jwt, pool):
    t = await audit_tree(client, jwt)
    await tree_built(pool, t.county)
    inspector = auth(jwt, t.county, "inspector")
    r = await client.get(f"/v1/nodes/{t.busy}/history", headers=inspector)
    event = r.json()["items"][2]
    r = await client.get(f"/v1/events/{event['event_id']}/proof", headers=inspector)
    assert r.status_code == 200, r.text
    proof = r.json()
    tree = proof["tree"]
    assert (
        tree is not None and tree["leaf_hash"] == leaf_hash(H, bytes.fromhex(event["hash"])).hex()
    )
    key = await public_key(client)
    body = verify_note(tree["note"], key["note_key_name"], base64.b64decode(key["public_key"]))
    assert body.size == tree["tree_size"]
    assert verify_inclusion(
        H,
        tree["leaf_index"],
        tree["tree_size"],
        bytes.fromhex(tree["leaf_hash"]),
        [bytes.fromhex(p) for p in tree["path"]],
        body.root,
    )
    assert len(tree["path"]) <= tree["tree_size"].bit_length()


# ---------------------------------------------------------------------------------------
# Evidence bundles


async def bundle(client: Any, jwt: Any, scope: str, node: str, path: Path) -> Path:
    r = await client.get(f"/v1/audit/evidence?node={node}", headers=auth(jwt, scope, "inspector"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    await asyncio.to_thread(path.write_bytes, r.content)
    return path


def rewrite_member(src: Path, dst: Path, change: Any) -> Path:
    """A copy of the bundle with events.ndjson's lines passed through ``change``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "events.ndjson":
                lines = data.split(b"\n")[:-1]
                data = b"".join(line + b"\n" for line in change(lines))
            zout.writestr(item.filename, data)
    return dst


def event_lines(lines: list[bytes]) -> list[tuple[int, dict[str, Any]]]:
    out = []
    for i, line in enumerate(lines):
        cut = line.find(b',"event":')
        if cut >= 0:
            out.append((i, json.loads(line[:cut] + b"}")))
    return out


async def test_a_clean_bundle_verifies_offline_and_tampering_is_named(client, jwt, pool, tmp_path):
    t = await audit_tree(client, jwt)
    await tree_built(pool, t.county)
    key = (await public_key(client))["public_key"]
    clean = await bundle(client, jwt, t.county, t.county, tmp_path / "clean.zip")
    report = verify_bundle(str(clean), key)
    assert report.ok, report.first
    async with pool.acquire() as conn:
        total = await conn.fetchval(
            "SELECT count(*) FROM events WHERE root_id = $1", await node_id(pool, t.county)
        )
    assert report.events == total == report.tree_size
    assert civic_verify_main([str(clean), "--key", key]) == 0
    assert civic_verify_main([str(clean), "--key", (await public_key(client))["vkey"]]) == 0

    with zipfile.ZipFile(clean) as zf:
        lines = zf.read("events.ndjson").split(b"\n")[:-1]
    events = event_lines(lines)
    # the busy community's chain: pick its third event
    busy = [(i, m) for i, m in events if m["node"] == t.busy]
    (i3, m3), (i4, _) = busy[2], busy[3]

    def first(path: Path) -> tuple[str | None, int | None, str]:
        r = verify_bundle(str(path), key)
        assert not r.ok
        f = r.first
        assert f is not None
        return f.node, f.seq, f.reason

    # alter: a byte of the event's data
    def alter(ls: list[bytes]) -> list[bytes]:
        ls = list(ls)
        ls[i3] = ls[i3].replace("更名".encode(), "改名".encode(), 1)
        assert ls[i3] != lines[i3]
        return ls

    assert first(rewrite_member(clean, tmp_path / "alter.zip", alter)) == (
        t.busy,
        m3["seq"],
        "altered",
    )
    # delete
    gone = rewrite_member(clean, tmp_path / "delete.zip", lambda ls: ls[:i3] + ls[i3 + 1 :])
    assert first(gone) == (t.busy, m3["seq"], "missing")
    # delete the node's last event
    last_i, last_m = busy[-1]
    tail = rewrite_member(clean, tmp_path / "tail.zip", lambda ls: ls[:last_i] + ls[last_i + 1 :])
    assert first(tail) == (t.busy, last_m["seq"], "missing")
    # insert: the event again, after itself
    again = rewrite_member(
        clean, tmp_path / "insert.zip", lambda ls: [*ls[: i3 + 1], ls[i3], *ls[i3 + 1 :]]
    )
    assert first(again) == (t.busy, m3["seq"], "inserted")

    # reorder: two events of the node swapped
    def swap(ls: list[bytes]) -> list[bytes]:
        ls = list(ls)
        ls[i3], ls[i4] = ls[i4], ls[i3]
        return ls

    assert first(rewrite_member(clean, tmp_path / "swap.zip", swap)) == (
        t.busy,
        m3["seq"],
        "missing",
    )
    # reorder: two neighbouring events of different nodes swapped (chains stay whole; the
    # tree order names the first line out of place)
    by_line = dict(events)
    j = next(
        i
        for i in range(len(lines) - 1)
        if i in by_line and i + 1 in by_line and by_line[i]["node"] != by_line[i + 1]["node"]
    )
    after = json.loads(lines[j + 1][: lines[j + 1].find(b',"event":')] + b"}")

    def cross(ls: list[bytes]) -> list[bytes]:
        ls = list(ls)
        ls[j], ls[j + 1] = ls[j + 1], ls[j]
        return ls

    assert first(rewrite_member(clean, tmp_path / "cross.zip", cross)) == (
        after["node"],
        after["seq"],
        "out_of_order",
    )
    assert civic_verify_main([str(tmp_path / "alter.zip"), "--key", key]) == 1


async def test_a_bundle_of_a_street_skips_the_rest_of_the_root(client, jwt, pool, tmp_path):
    t = await audit_tree(client, jwt)
    await tree_built(pool, t.county)
    key = (await public_key(client))["public_key"]
    street = t.tree.streets[1]
    path = await bundle(client, jwt, street, street, tmp_path / "street.zip")
    report = verify_bundle(str(path), key)
    assert report.ok, report.first
    with zipfile.ZipFile(path) as zf:
        text = zf.read("events.ndjson")
        manifest = json.loads(zf.read("manifest.json"))
    assert b'"skip"' in text
    assert report.events < report.tree_size
    assert {n["code"] for n in manifest["nodes"]} >= {street, t.busy}
    assert not any(n["code"] == t.county for n in manifest["nodes"])


async def test_a_bundle_from_another_key_fails(client, jwt, pool, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    t = await audit_tree(client, jwt)
    await tree_built(pool, t.county)
    path = await bundle(client, jwt, t.county, t.county, tmp_path / "b.zip")
    other = base64.b64encode(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    ).decode()
    report = verify_bundle(str(path), other)
    assert not report.ok and any(f.reason == "signature" for f in report.other)
    assert civic_verify_main([str(path), "--key", other]) == 1
    # and a bundle whose key was swapped for another one's does not verify under it either
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(tmp_path / "swapped.zip", "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "public-key.json":
                data = json.dumps({**json.loads(data), "public_key": other}).encode()
            zout.writestr(item.filename, data)
    assert not verify_bundle(str(tmp_path / "swapped.zip")).ok
    assert civic_verify_main([str(tmp_path / "missing.zip")]) == 2


async def test_evidence_is_scoped_and_bad_input_is_4xx(client, jwt):
    t = await audit_tree(client, jwt)
    a, b = t.tree.streets
    r = await client.get(f"/v1/audit/evidence?node={b}", headers=auth(jwt, a, "inspector"))
    assert r.status_code == 404
    r = await client.get("/v1/audit/evidence", headers=auth(jwt, a, "viewer"))
    assert r.status_code == 403


# ---------------------------------------------------------------------------------------
# Witness cosigning


async def test_a_witness_cosigns_extensions_and_refuses_a_rewritten_history(
    client, jwt, pool, tmp_path
):
    import pytest

    from civic_verify.note import verify_cosignature
    from civic_verify.witness import Refused, WitnessState
    from services.witness import witness_once

    t = await audit_tree(client, jwt)
    await tree_built(pool, t.county)
    token = auth(jwt, t.county, "inspector")["Authorization"].split(" ", 1)[1]
    run = {
        "token": token,
        "node": t.county,
        "key_path": tmp_path / "witness.pem",
        "name": "jiwei.example",
        "state_path": tmp_path / "witness.json",
    }
    first = await witness_once(client, **run)
    assert first.first_use and (tmp_path / "witness.pem").stat().st_mode & 0o777 == 0o600
    # checkpoints of that size are served with the cosignature, its line after the log's
    cp = await checkpoint(client, jwt, t.county)
    assert cp["tree_size"] == first.size
    [cos] = cp["cosignatures"]
    assert cos["witness"] == "jiwei.example" and cp["note"].endswith(first.line)
    body = cp["note"].split("\n\n")[0] + "\n"
    assert verify_cosignature(
        body, cos["line"], "jiwei.example", base64.b64decode(cos["public_key"])
    )
    # posting it again keeps one
    r = await client.post(
        "/v1/audit/cosignatures",
        json={"note": cp["note"], "cosignature": cos["line"], "public_key": cos["public_key"]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 201
    assert len((await checkpoint(client, jwt, t.county))["cosignatures"]) == 1

    # the log grows: the witness checks consistency and cosigns again
    await grow(client, jwt, t.county, 3)
    await tree_built(pool, t.county)
    second = await witness_once(client, **run)
    assert second.size == first.size + 3 and not second.first_use

    # history rewritten below the last cosigned size: refused, state unchanged
    await grow(client, jwt, t.county, 2)
    await tree_built(pool, t.county)
    await rewrite_leaf(pool, t.county, 0)
    with pytest.raises(Refused, match="rewritten"):
        await witness_once(client, **run)
    state = WitnessState.load(tmp_path / "witness.json")
    [log] = state.logs.values()
    assert log.size == second.size


async def test_bad_cosignatures_are_refused_with_4xx(client, jwt, pool):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from civic_verify.note import cosign, sign_note
    from civic_verify.witness import raw_public

    t = await audit_tree(client, jwt)
    await tree_built(pool, t.county)
    headers = auth(jwt, t.county, "inspector")
    cp = await checkpoint(client, jwt, t.county)
    witness = Ed25519PrivateKey.generate()
    body = cp["note"].split("\n\n")[0] + "\n"
    line = cosign(body, "w.example", raw_public(witness), 1_700_000_000, witness.sign)
    pub = base64.b64encode(raw_public(witness)).decode()
    # a cosignature by another key than the one given
    other = base64.b64encode(raw_public(Ed25519PrivateKey.generate())).decode()
    r = await client.post(
        "/v1/audit/cosignatures",
        json={"note": cp["note"], "cosignature": line, "public_key": other},
        headers=headers,
    )
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem")
    # a note this log did not sign
    forger = Ed25519PrivateKey.generate()
    forged = sign_note(body, "civic-ledger", raw_public(forger), forger.sign)
    r = await client.post(
        "/v1/audit/cosignatures",
        json={"note": forged, "cosignature": line, "public_key": pub},
        headers=headers,
    )
    assert r.status_code == 422
    # another root's note
    u = await audit_tree(client, jwt)
    await tree_built(pool, u.county)
    r = await client.post(
        "/v1/audit/cosignatures",
        json={"note": cp["note"], "cosignature": line, "public_key": pub},
        headers=auth(jwt, u.county, "inspector"),
    )
    assert r.status_code == 422
    r = await client.post(
        "/v1/audit/cosignatures",
        json={"note": "x", "cosignature": "y", "public_key": "z"},
        headers=headers,
    )
    assert r.status_code == 422
    r = await client.post(
        "/v1/audit/cosignatures",
        json={"note": cp["note"], "cosignature": line, "public_key": pub},
        headers=auth(jwt, t.county, "viewer"),
    )
    assert r.status_code == 403


async def test_stored_checkpoints_keep_their_note_and_prove_consistency_by_date(
    client, jwt, pool, app, clock, tmp_path
):
    from datetime import timedelta

    from tests.integration.test_audit import own_checkpointer

    t = await audit_tree(client, jwt)
    await tree_built(pool, t.county)
    stored = await own_checkpointer(app, pool).take_and_store(t.county)
    assert stored is not None and stored.note is not None and stored.tree_size
    clock.offset = timedelta(hours=2)
    await grow(client, jwt, t.county, 4)
    now = await tree_built(pool, t.county)
    inspector = auth(jwt, t.county, "inspector")
    listed = (await client.get("/v1/audit/checkpoints", headers=inspector)).json()["items"]
    assert listed[0]["note"] == stored.note and listed[0]["tree_size"] == stored.tree_size
    at = (datetime.fromisoformat(stored.at) + timedelta(seconds=1)).isoformat()
    r = await client.get("/v1/audit/consistency", params={"from": at}, headers=inspector)
    assert r.status_code == 200, r.text
    proof = r.json()
    assert proof["from"]["checkpoint_id"] == stored.id and proof["from"]["note"] == stored.note
    assert proof["to"]["size"] == now
    r = await client.post("/v1/audit/consistency/verify", json=proof, headers=inspector)
    assert r.json()["consistent"] and r.json()["from_signed"]
    # a bundle carries the proof from that stored checkpoint, and civic-verify checks it
    path = tmp_path / "b.zip"
    await bundle(client, jwt, t.county, t.county, path)
    with zipfile.ZipFile(path) as zf:
        assert json.loads(zf.read("consistency.json"))["from"]["size"] == stored.tree_size
    key = (await public_key(client))["public_key"]
    assert verify_bundle(str(path), key).ok
    # a street inspector sees no stored root checkpoint: 404, not another tenant's data
    r = await client.get(
        "/v1/audit/consistency",
        params={"from": at},
        headers=auth(jwt, t.tree.streets[0], "inspector"),
    )
    assert r.status_code == 404


async def test_the_append_transaction_writes_nothing_of_the_tree(client, jwt, pool):
    """The tree is built after commit, by the builder: an append touches no tree table."""
    import uuid as _uuid
    from datetime import UTC

    from infra.database import scoped_transaction
    from infra.event_codec import NewEvent
    from infra.event_store import AppendContext, EventStore, TxAppender

    t = await audit_tree(client, jwt)
    await tree_built(pool, t.county)
    async with pool.acquire() as conn, scoped_transaction(conn, t.busy) as (_, scope):
        await EventStore().append(
            TxAppender(conn),
            root_id=scope.root_id,
            node_id=scope.node_id,
            stream_id=_uuid.uuid4(),
            stream_type="issue",
            expected_version=0,
            events=[NewEvent(_uuid.uuid4(), "Probe", 1, b"{}", datetime.now(UTC))],
            context=AppendContext(actor="test"),
        )
        written = dict(
            await conn.fetch(
                "SELECT relname, n_tup_ins + n_tup_upd FROM pg_stat_xact_user_tables"
                " WHERE relname IN ('events', 'audit_trees', 'audit_tree_leaves',"
                " 'audit_tree_nodes')"
            )
        )
    assert written.get("events") == 1
    assert not any(
        written.get(t, 0) for t in ("audit_trees", "audit_tree_leaves", "audit_tree_nodes")
    )
    # and the builder then takes the event into the tree
    await tree_built(pool, t.county)
