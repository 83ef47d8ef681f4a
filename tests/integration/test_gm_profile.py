"""The 国密 profile end to end, on a database of its own: SM3 chains and tree, SM4-GCM
personal data, the offline verifier, and a deployment that refuses to switch profiles."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from civic_verify.bundle import verify_bundle
from civic_verify.hashing import sm3
from civic_verify.note import verify_note
from infra.crypto_profile import CryptoProfileMismatch, ensure_profile
from infra.settings import Settings
from services.app import create_app
from tests.conftest import scratch_database
from tests.integration.test_privacy import fresh_person, register
from tests.support import auth, build_tree


@asynccontextmanager
async def gm_app(url: str, profile: str = "gm") -> AsyncIterator[Any]:
    settings = Settings(
        database_url=url,
        jwt_secret="test-secret-" + "g" * 40,
        log_level="WARNING",
        pool_min=1,
        pool_max=6,
        crypto_profile=profile,
    )
    app = create_app(settings)
    async with AsyncTestClient(app) as client:
        yield app, client


async def test_gm_profile_chains_with_sm3_and_seals_with_sm4(server_url, tmp_path):
    async with scratch_database(server_url) as url:
        async with gm_app(url) as (app, client):
            jwt = app.state.ctx.jwt
            tree = await build_tree(client, jwt, streets=1, communities=2, units=1)
            member = await register(client, jwt, tree, fresh_person())
            conn = await asyncpg.connect(url)  # the app's pool lives on the client's loop
            try:
                assert await conn.fetchval("SELECT profile FROM crypto_profile") == "gm"
                rows = await conn.fetch(
                    "SELECT node_seq, position, prev_hash, hash FROM events ORDER BY position"
                )
                data = await conn.fetchval(
                    "SELECT data::text FROM events WHERE type = 'MemberRegistered'"
                )
            finally:
                await conn.close()
            # links chain (prev_hash is the hash before); /audit/verify recomputes them with SM3
            assert all(len(bytes(r["hash"])) == 32 for r in rows)
            sealed = [v for v in json.loads(data).values() if isinstance(v, dict) and "alg" in v]
            assert sealed and all(v["alg"] == "SM4GCM" for v in sealed)
            inspector = auth(jwt, tree.county, "inspector")
            report = (await client.get("/v1/audit/verify", headers=inspector)).json()
            assert report["ok"] and report["events_checked"] == len(rows), report
            # the member reads back decrypted (SM4-GCM opens)
            m = await client.get(
                f"/v1/members/{member['id']}?min_position={member['position']}",
                headers={**auth(jwt, tree.county, "admin"), "X-Reveal-Reason": "test"},
            )
            assert m.status_code == 200, m.text
            # a checkpoint says sm3, its tree is SM3 and the note verifies
            for _ in range(100):
                cp = (await client.get("/v1/audit/checkpoint", headers=inspector)).json()
                if cp["tree_size"] == len(rows):
                    break
                await asyncio.sleep(0.05)
            assert cp["hash_algorithm"] == "sm3" and cp["tree_size"] == len(rows)
            key = (await client.get("/v1/audit/public-key")).json()
            assert key["hash_algorithm"] == "sm3"
            body = verify_note(cp["note"], "civic-ledger", base64.b64decode(key["public_key"]))
            leaf0 = sm3(b"\x00" + bytes(rows[0]["hash"]))
            assert len(rows) > 1 and body.root != leaf0
            # the offline verifier follows the bundle's algorithms
            r = await client.get("/v1/audit/evidence", headers=inspector)
            path = tmp_path / "gm.zip"
            path.write_bytes(r.content)
            result = verify_bundle(str(path), key["public_key"])
            assert result.ok, result.first
            assert result.events == len(rows)
        # the same database refuses the standard profile (the app checks it at start-up)
        conn = await asyncpg.connect(url)
        try:
            with pytest.raises(CryptoProfileMismatch, match="'gm' crypto profile"):
                await ensure_profile(conn, "standard")
            assert await ensure_profile(conn, "gm") == "gm"
        finally:
            await conn.close()


async def test_a_deployment_with_events_but_no_recorded_profile_is_standard(server_url):
    async with scratch_database(server_url) as url:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(
                "INSERT INTO events (position, root_id, node_id, node_seq, prev_hash, hash,"
                " stream_id, stream_type, version, event_id, type, schema_version, data,"
                " occurred_at, recorded_at, actor)"
                " VALUES (1, gen_random_uuid(), gen_random_uuid(), 1, '\\x00', '\\x00',"
                " gen_random_uuid(), 'node', 1, gen_random_uuid(), 'X', 1, '{}', now(), now(),"
                " 'a')"
            )
            with pytest.raises(CryptoProfileMismatch, match="'standard' crypto profile"):
                await ensure_profile(conn, "gm")
        finally:
            await conn.close()


def test_the_sm3_link_is_the_sha256_link_with_sm3() -> None:
    from civic_verify.hashing import link
    from infra.chain import Sm3Chain

    prev, digest = bytes(32), sm3(b"abc")
    assert Sm3Chain().link(prev, 1, 65536, digest) == link(sm3, prev, 1, 65536, digest)
    assert Sm3Chain().digest(b"abc").hex().startswith("66c7f0f4")
