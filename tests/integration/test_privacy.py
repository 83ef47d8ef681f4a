"""Personal information (PIPL) end to end: encryption inside events, masking, the audit of
clear-text reveals, crypto-shredding on erasure, and logs without personal data.

Each test registers people with values no other test uses, then scans what the system
stored and answered for those exact strings.
"""

from __future__ import annotations

import logging
import random
import secrets
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

import msgspec
import structlog

from domain.personal_data import ERASED, id_check_digit
from infra.chain import Sha256Chain, canonical_event
from infra.event_codec import decode_json
from infra.pii_crypto import is_sealed
from services.personal_data_view import UNAVAILABLE
from tests.support import Tree, auth, build_tree, post_ok

_SURNAMES = "赵钱孙李周吴郑王冯陈褚卫蒋沈韩杨朱秦尤许何吕施张"
_GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂"


def fresh_person() -> dict[str, str]:
    """A person whose name, mobile and ID number appear nowhere else in this run."""
    name = random.choice(_SURNAMES) + "".join(random.choices(_GIVEN, k=3)) + "隐"
    phone = "139" + f"{secrets.randbelow(10**8):08d}"
    first17 = "330106" + f"{1950 + secrets.randbelow(50)}0101" + f"{secrets.randbelow(1000):03d}"
    return {"name": name, "phone": phone, "id_number": first17 + id_check_digit(first17)}


def secrets_of(who: dict[str, str]) -> list[str]:
    return [who["name"], who["phone"], who["id_number"]]


def assert_clean(text: str, who: dict[str, str], where: str) -> None:
    for value in secrets_of(who):
        assert value not in text, f"{where} shows personal data"


@contextmanager
def captured_logs() -> Iterator[list[str]]:
    """Everything logged while inside, at every level: structlog events and stdlib records."""
    lines: list[str] = []

    def capture(_logger: Any, method: str, event: MutableMapping[str, Any]) -> str:
        lines.append(f"{method} {event!r}")
        raise structlog.DropEvent

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(f"{record.name} {record.getMessage()} {record.args!r} {record.exc_text}")

    old = structlog.get_config()
    structlog.configure(
        processors=[*old["processors"][:-1], capture],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
    )
    root = logging.getLogger()
    handler, level = Handler(level=logging.DEBUG), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        structlog.configure(**old)


def community(tree: Tree, street: int = 0) -> str:
    return tree.communities[tree.streets[street]][0]


async def register(client: Any, jwt: Any, tree: Tree, who: dict[str, str]) -> dict[str, Any]:
    body = {"community_code": community(tree), **who, "home_unit_code": tree.units[0]}
    return await post_ok(client, "/v1/members", body, auth(jwt, tree.county, "operator"))


async def scan_tables(pool: Any, who: dict[str, str]) -> list[str]:
    """Every table of the database (as the superuser, past row-level security) whose rows'
    text holds one of the person's values."""
    found = []
    async with pool.acquire() as conn:
        tables = await conn.fetch(
            "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) AS t"
            " FROM information_schema.tables"
            " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
            " AND table_type = 'BASE TABLE'"
        )
        for row in tables:
            for value in secrets_of(who):
                hit = await conn.fetchval(
                    f"SELECT EXISTS (SELECT 1 FROM {row['t']} x WHERE x::text LIKE $1)",
                    f"%{value}%",
                )
                if hit:
                    found.append(row["t"])
    return found


async def responses(client: Any, jwt: Any, tree: Tree, member_id: str) -> list[tuple[str, str]]:
    """What every endpoint that could show the person answers, as (what, body text)."""
    out = []
    county = tree.county
    for role in ("admin", "operator", "viewer", "inspector"):
        h = auth(jwt, county, role)
        out.append(
            (f"member {role}", (await client.get(f"/v1/members/{member_id}", headers=h)).text)
        )
        out.append((f"members {role}", (await client.get("/v1/members?limit=500", headers=h)).text))
    for role in ("admin", "inspector", "operator"):
        h = auth(jwt, county, role)
        for url in (
            f"/v1/streams/{member_id}/events",
            f"/v1/nodes/{community(tree)}/history",
            f"/v1/nodes/{community(tree, 1)}/history",
            f"/v1/nodes/{county}/history",
            "/v1/audit/reveals",
            "/v1/findings/ledger?format=csv",
        ):
            out.append((f"{url} {role}", (await client.get(url, headers=h)).text))
    for role in ("admin", "integrator"):
        h = auth(jwt, county, role)
        out.append((f"feed {role}", (await client.get("/v1/feed?limit=500", headers=h)).text))
    return out


def recompute_chain(rows: list[Any]) -> bytes:
    hasher = Sha256Chain()
    prev = bytes(32)
    for r in rows:
        digest = hasher.digest(
            canonical_event(
                root_id=r["root_id"],
                node_id=r["node_id"],
                stream_id=r["stream_id"],
                stream_type=r["stream_type"],
                version=r["version"],
                event_id=r["event_id"],
                type=r["type"],
                schema_version=r["schema_version"],
                data=decode_json(r["data"]),
                occurred_at=r["occurred_at"],
                recorded_at=r["recorded_at"],
                actor=r["actor"],
                correlation_id=r["correlation_id"],
                causation_id=r["causation_id"],
                idempotency_key=r["idempotency_key"],
            )
        )
        link = hasher.link(prev, r["node_seq"], r["position"], digest)
        assert bytes(r["prev_hash"]) == prev and bytes(r["hash"]) == link
        prev = link
    return prev


async def test_events_and_read_models_hold_only_ciphertext(client, jwt, pool):
    tree = await build_tree(client, jwt, streets=1, communities=1, units=1)
    who = fresh_person()
    m = await register(client, jwt, tree, who)
    async with pool.acquire() as conn:
        data = await conn.fetchval(
            "SELECT data FROM events WHERE stream_id = $1::uuid AND version = 1", m["id"]
        )
        key = await conn.fetchrow(
            "SELECT key_id, wrapped_key, master_key_id FROM person_keys WHERE member_id = $1::uuid",
            m["id"],
        )
    stored = msgspec.json.decode(data)
    sealed = stored["person"]
    assert is_sealed(sealed) and sealed["alg"] == "A256GCM" and sealed["kid"] == key["key_id"]
    assert len(bytes(key["wrapped_key"])) == 1 + 12 + 32 + 16 and key["master_key_id"]
    assert stored["community_code"] == community(tree)
    r = await client.get(
        f"/v1/members/{m['id']}?min_position={m['position']}",
        headers=auth(jwt, tree.county, "admin"),
    )
    assert r.json()["name"] == who["name"]
    async with pool.acquire() as conn:
        person = await conn.fetchval("SELECT person FROM rm_members WHERE id = $1::uuid", m["id"])
    assert is_sealed(msgspec.json.decode(person))
    assert await scan_tables(pool, who) == []


async def test_whole_lifecycle_erasure_and_logs(client, jwt, pool):
    tree = await build_tree(client, jwt, streets=2, communities=1, units=1)
    who, other = fresh_person(), fresh_person()
    op = auth(jwt, tree.county, "operator")
    admin = auth(jwt, tree.county, "admin")
    with captured_logs() as logs:
        m = await register(client, jwt, tree, who)
        kept = await register(client, jwt, tree, other)
        url = f"/v1/members/{m['id']}"
        # failing requests: the answers never echo what was submitted
        bad_phone = "139" + who["phone"][3:9]
        bad_id = who["id_number"][:17] + ("1" if who["id_number"][17] != "1" else "2")
        for body, status in (
            ({**who, "phone": bad_phone}, 422),
            ({**who, "id_number": bad_id}, 422),
            ({**who, "phone": who["phone"] + "123456789012"}, 400),
            ({**who, "name": who["name"] * 20}, 400),
            ({**who, "unknown": who["phone"]}, 400),
        ):
            r = await client.post(
                "/v1/members",
                json={"community_code": community(tree), **body, "home_unit_code": tree.units[0]},
                headers=op,
            )
            assert r.status_code == status, r.text
            for value in (*secrets_of(who), bad_phone, bad_id):
                assert value not in r.text
        # the same person again: 409 without personal data
        r = await client.post(
            "/v1/members",
            json={"community_code": community(tree), **who, "home_unit_code": tree.units[0]},
            headers=op,
        )
        assert r.status_code == 409 and who["phone"] not in r.text
        # reads: the operator sees masks, the admin clear text
        v = (await client.get(f"{url}?min_position={kept['position']}", headers=op)).json()
        assert v["phone"] == who["phone"][:3] + "****" + who["phone"][-4:]
        assert v["personal_data_masked"] is True
        a = (await client.get(url, headers={**admin, "X-Reveal-Reason": "identity check"})).json()
        assert (a["name"], a["phone"], a["id_number"]) == tuple(secrets_of(who))
        # service, transfer to another street, read again after the transfer
        await post_ok(
            client,
            f"{url}/services",
            {"served_on": "2024-01-02", "hours": 2, "kind": "扫楼走访"},
            op,
            200,
        )
        t = await post_ok(
            client, f"{url}/transfer", {"to_community_code": community(tree, 1)}, op, 200
        )
        moved = (await client.get(f"{url}?min_position={t['position']}", headers=admin)).json()
        assert moved["phone"] == who["phone"] and moved["community_code"] == community(tree, 1)
        before = await responses(client, jwt, tree, m["id"])
        # erase (admin): the key goes in the same transaction as MemberErased
        e = await post_ok(client, f"{url}/erase", {"reason": "本人申请"}, admin, 200)
        assert e["status"] == "erased"
        await client.get(f"/v1/members?min_position={e['position']}", headers=admin)
        after = await responses(client, jwt, tree, m["id"])
        # a failing command on the erased member
        r = await client.post(f"{url}/points", json={"delta": 1, "reason": "x"}, headers=op)
        assert r.status_code == 409
    # the scans had something to look at: the ledger shows the sealed person
    seen = dict(before)
    assert '"ct"' in seen[f"/v1/streams/{m['id']}/events inspector"]
    assert '"ct"' in seen["feed integrator"] and m["id"] in seen["feed integrator"]
    assert who["phone"] in seen["member admin"] and who["phone"] in seen["members admin"]
    # ledger endpoints never showed plaintext, before or after
    for what, text in before:
        if what.startswith(("member ", "members ")):
            continue
        assert_clean(text, who, what)
    for what, text in after:
        assert_clean(text, who, what)
    # the erased person reads [erased] for everyone, the other person is untouched
    for role in ("admin", "operator"):
        v = (await client.get(url, headers=auth(jwt, tree.county, role))).json()
        assert (v["name"], v["phone"], v["id_number"]) == (ERASED, ERASED, ERASED)
        assert v["status"] == "erased" and v["service_hours"] == 2
    o = (await client.get(f"/v1/members/{kept['id']}", headers=admin)).json()
    assert o["phone"] == other["phone"]
    # logs never held either person
    text = "\n".join(logs)
    assert logs, "nothing was captured"
    assert_clean(text, who, "logs")
    assert_clean(text, other, "logs")
    # nothing in any table; the key is gone, the ciphertext stays, the chains verify
    assert await scan_tables(pool, who) == []
    async with pool.acquire() as conn:
        assert not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM person_keys WHERE member_id = $1::uuid)", m["id"]
        )
        first = await conn.fetchval(
            "SELECT data FROM events WHERE stream_id = $1::uuid AND version = 1", m["id"]
        )
        assert is_sealed(msgspec.json.decode(first)["person"])
        identity = await conn.fetchval(
            "SELECT identity_hash FROM member_identities WHERE member_id = $1::uuid", m["id"]
        )
        assert identity is None
        for code in (community(tree), community(tree, 1)):
            rows = await conn.fetch(
                "SELECT e.* FROM events e JOIN nodes n ON n.id = e.node_id WHERE n.code = $1"
                " ORDER BY e.node_seq",
                code,
            )
            assert rows
            recompute_chain(list(rows))
    r = await client.get("/v1/audit/verify", headers=auth(jwt, tree.county, "inspector"))
    assert r.status_code == 200 and r.json()["ok"], r.text
    # counts and history remain
    hist = await client.get(
        f"/v1/streams/{m['id']}/events", headers=auth(jwt, tree.county, "inspector")
    )
    assert [i["type"] for i in hist.json()["items"]] == [
        "MemberRegistered",
        "ServiceRecorded",
        "MemberTransferred",
        "MemberErased",
    ]


async def test_admin_reveals_are_recorded_and_masked_reads_are_not(client, jwt, pool):
    tree = await build_tree(client, jwt, streets=2, communities=1, units=1)
    who, other = fresh_person(), fresh_person()
    m = await register(client, jwt, tree, who)
    m2 = await register(client, jwt, tree, other)
    inspector = auth(jwt, tree.county, "inspector")

    async def reveals(query: str = "", headers: dict[str, str] = inspector) -> Any:
        return await client.get(f"/v1/audit/reveals{query}", headers=headers)

    # masked reads (operator, viewer, inspector) record nothing
    for role in ("operator", "viewer", "inspector"):
        r = await client.get(
            f"/v1/members/{m['id']}?min_position={m2['position']}",
            headers=auth(jwt, tree.county, role),
        )
        assert r.json()["personal_data_masked"] is True
        await client.get("/v1/members", headers=auth(jwt, tree.county, role))
    assert (await reveals()).json()["items"] == []
    # an admin's clear read is recorded, with the reason header
    admin = auth(jwt, tree.county, "admin", sub="admin-li")
    r = await client.get(
        f"/v1/members/{m['id']}", headers={**admin, "X-Reveal-Reason": "petition-case-42"}
    )
    assert r.json()["phone"] == who["phone"]
    [one] = (await reveals()).json()["items"]
    assert one["member_id"] == m["id"] and one["actor"] == f"admin-li@{tree.county}"
    assert one["endpoint"] == "GET /v1/members/{id}" and one["reason"] == "petition-case-42"
    assert one["node"] == community(tree) and one["revealed_at"]
    # a list as admin: one record per person shown
    await client.get("/v1/members", headers=admin)
    items = (await reveals()).json()["items"]
    assert len(items) == 3 and {i["member_id"] for i in items[1:]} == {m["id"], m2["id"]}
    assert all(i["endpoint"] == "GET /v1/members" for i in items[1:])
    # filters: member, node, time; paging
    assert len((await reveals(f"?member={m2['id']}")).json()["items"]) == 1
    assert len((await reveals(f"?node={community(tree)}")).json()["items"]) == 3
    assert (await reveals(f"?node={tree.streets[1]}")).json()["items"] == []
    page = (await reveals("?limit=2")).json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = (await reveals(f"?limit=2&cursor={page['next_cursor']}")).json()
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    at = one["revealed_at"]
    assert len((await reveals("?to=" + at.replace("+", "%2B"))).json()["items"]) == 0
    assert len((await reveals("?from=" + at.replace("+", "%2B"))).json()["items"]) == 3
    # roles and scope
    for role in ("operator", "viewer", "unit", "integrator"):
        assert (await reveals(headers=auth(jwt, tree.county, role))).status_code == 403
    street_b = auth(jwt, tree.streets[1], "inspector")
    assert (await reveals(headers=street_b)).json()["items"] == []
    assert (await reveals(f"?node={community(tree)}", headers=street_b)).status_code == 404
    # the records hold no personal data and cannot be changed
    assert_clean((await reveals()).text, who, "reveals")
    async with pool.acquire() as conn:
        try:
            await conn.execute("DELETE FROM pii_reveals WHERE member_id = $1::uuid", m["id"])
        except Exception as exc:  # the append-only trigger refuses
            assert "append-only" in str(exc)
        else:
            raise AssertionError("pii_reveals accepted a DELETE")
    # an erased person is no longer revealed (nothing to show): no record
    e = await post_ok(client, f"/v1/members/{m['id']}/erase", {}, admin, 200)
    r = await client.get(f"/v1/members/{m['id']}?min_position={e['position']}", headers=admin)
    assert r.json()["phone"] == ERASED
    assert len((await reveals(f"?member={m['id']}")).json()["items"]) == 2


async def test_tampered_ciphertext_reads_as_unavailable(client, jwt, pool):
    tree = await build_tree(client, jwt, streets=1, communities=1, units=1)
    who = fresh_person()
    m = await register(client, jwt, tree, who)
    admin = auth(jwt, tree.county, "admin")
    r = await client.get(f"/v1/members/{m['id']}?min_position={m['position']}", headers=admin)
    assert r.json()["name"] == who["name"]
    async with pool.acquire() as conn:
        stored = msgspec.json.decode(
            await conn.fetchval("SELECT person FROM rm_members WHERE id = $1::uuid", m["id"])
        )
        ct = stored["ct"]
        stored["ct"] = ("A" if ct[0] != "A" else "B") + ct[1:]
        await conn.execute(
            "UPDATE rm_members SET person = $2::jsonb WHERE id = $1::uuid",
            m["id"],
            msgspec.json.encode(stored).decode(),
        )
    with captured_logs() as logs:
        for role in ("admin", "operator"):
            r = await client.get(f"/v1/members/{m['id']}", headers=auth(jwt, tree.county, role))
            assert r.status_code == 200, r.text
            v = r.json()
            assert (v["name"], v["phone"], v["id_number"]) == (UNAVAILABLE,) * 3
        listed = await client.get("/v1/members", headers=admin)
        assert listed.status_code == 200 and listed.json()["items"][0]["name"] == UNAVAILABLE
    assert any("does not decrypt" in line for line in logs)
    assert_clean("\n".join(logs), who, "logs")
    # nothing was revealed, so nothing more is recorded than the first clear read
    items = (
        await client.get("/v1/audit/reveals", headers=auth(jwt, tree.county, "inspector"))
    ).json()["items"]
    assert len(items) == 1
    # the command side still works on the member (the events themselves are intact)
    await post_ok(
        client,
        f"/v1/members/{m['id']}/points",
        {"delta": 5, "reason": "志愿服务"},
        auth(jwt, tree.county, "operator"),
        200,
    )


async def test_keys_follow_event_visibility(client, jwt, pool):
    """Row-level security: a key is visible where its stream's events are, and only there."""
    tree = await build_tree(client, jwt, streets=2, communities=1, units=1)
    m = await register(client, jwt, tree, fresh_person())
    query = "SELECT count(*) FROM person_keys WHERE member_id = $1::uuid"
    from infra.database import scoped_transaction

    async def visible(scope: str) -> int:
        async with pool.acquire() as conn, scoped_transaction(conn, scope) as (c, _):
            n: int = await c.fetchval(query, m["id"])
            return n

    assert await visible(tree.county) == 1
    assert await visible(tree.streets[0]) == 1
    assert await visible(tree.streets[1]) == 0
    other = await build_tree(client, jwt, streets=1, communities=1, units=1)
    assert await visible(other.county) == 0
