"""Secrets: forged, confused, stale and orphaned tokens are all refused with 401 (issue 7)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.reliability import assert_problem, extra_app
from tests.support import Tree, auth, build_tree, post_ok, token

pytestmark = pytest.mark.fuzz


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header: dict[str, Any], claims: dict[str, Any], sign: Any = None) -> str:
    """A JWT assembled by hand (``sign(signing_input) -> bytes``, none when ``None``)."""
    signing_input = (
        b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    ).encode()
    signature = sign(signing_input) if sign is not None else b""
    return signing_input.decode() + "." + b64(signature)


def claims_for(scope: str, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "sub": "mallory",
        "scope": scope,
        "roles": ["admin"],
        "iat": now,
        "exp": now + 600,
        **extra,
    }


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


def rsa_pair() -> tuple[Any, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return key, pem


@pytest.fixture(scope="module")
async def tree(client: Any, jwt: Any) -> Tree:
    return await build_tree(client, jwt, streets=1, communities=2, units=0)


async def assert_401(client: Any, url: str, headers: dict[str, Any], why: str) -> dict[str, Any]:
    r = await client.get(url, headers=headers)
    body = assert_problem(r, 401, where=why)
    assert r.headers.get("www-authenticate", "").startswith("Bearer"), why
    return body


async def test_alg_none_is_refused(client: Any, jwt: Any, tree: Tree):
    url = f"/v1/nodes/{tree.county}?min_position={tree.last_position}"
    claims = claims_for(tree.county)
    for alg in ("none", "None", "NONE", "nOnE"):
        await assert_401(client, url, bearer(raw_token({"alg": alg, "typ": "JWT"}, claims)), alg)
    # a none token that still carries the real HS256 signature of other content
    real = token(jwt, tree.county, "viewer")
    forged = raw_token({"alg": "none"}, claims) + real.rsplit(".", 1)[1]
    await assert_401(client, url, bearer(forged), "none with a signature")


async def test_hs_token_with_the_wrong_algorithm_or_secret_is_refused(
    client: Any, jwt: Any, tree: Tree
):
    url = f"/v1/nodes/{tree.county}?min_position={tree.last_position}"
    secret = jwt.verify_key.encode()
    claims = claims_for(tree.county)
    for alg, digest in (("HS512", hashlib.sha512), ("HS384", hashlib.sha384)):
        tok = raw_token({"alg": alg}, claims, lambda m, d=digest: hmac.new(secret, m, d).digest())
        await assert_401(client, url, bearer(tok), f"{alg} with the right secret")
    wrong = raw_token(
        {"alg": "HS256"}, claims, lambda m: hmac.new(b"guess" * 10, m, hashlib.sha256).digest()
    )
    await assert_401(client, url, bearer(wrong), "HS256 with a guessed secret")
    empty = raw_token({"alg": "HS256"}, claims, lambda m: hmac.new(b"", m, hashlib.sha256).digest())
    await assert_401(client, url, bearer(empty), "HS256 with an empty secret")
    key, _ = rsa_pair()
    rs = pyjwt.encode(claims, key, algorithm="RS256")
    await assert_401(client, url, bearer(rs), "RS256 token on an HS256 deployment")


async def test_tampered_claims_are_refused(client: Any, jwt: Any, tree: Tree):
    street = tree.streets[0]
    tok = token(jwt, street, "viewer")
    header, payload, signature = tok.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    for change in ({"scope": tree.county}, {"roles": ["admin"]}, {"sub": "root"}):
        forged = ".".join([header, b64(json.dumps({**claims, **change}).encode()), signature])
        await assert_401(client, f"/v1/nodes/{street}", bearer(forged), f"tampered {change}")
    r = await client.get(
        f"/v1/nodes/{street}?min_position={tree.last_position}", headers=bearer(tok)
    )
    assert r.status_code == 200, r.text  # the untouched token works


async def test_rs256_deployment_refuses_hs256_signed_with_its_public_key(ctx: Any, tree: Tree):
    key, public_pem = rsa_pair()
    url = f"/v1/nodes/{tree.county}?min_position={tree.last_position}"
    claims = claims_for(tree.county)
    async with extra_app(
        ctx, jwt_secret=None, jwt_public_key=public_pem, jwt_algorithms=("RS256",)
    ) as rs_client:
        good = pyjwt.encode(claims, key, algorithm="RS256")
        r = await rs_client.get(url, headers=bearer(good))
        assert r.status_code == 200, r.text  # the control: a proper RS256 token works
        for key_bytes in (public_pem.encode(), public_pem.strip().encode()):
            confused = raw_token(
                {"alg": "HS256", "typ": "JWT"},
                claims,
                lambda m, k=key_bytes: hmac.new(k, m, hashlib.sha256).digest(),
            )
            await assert_401(rs_client, url, bearer(confused), "HS256 keyed with the public key")
        none = raw_token({"alg": "none"}, claims)
        await assert_401(rs_client, url, bearer(none), "none on RS256")
        other_key, other_pem = rsa_pair()
        other = pyjwt.encode(claims, other_key, algorithm="RS256")
        await assert_401(rs_client, url, bearer(other), "RS256 signed by another key")
        # an attacker's key embedded in the header is not trusted
        jwk = json.loads(pyjwt.algorithms.RSAAlgorithm.to_jwk(other_key.public_key()))
        embedded = pyjwt.encode(claims, other_key, algorithm="RS256", headers={"jwk": jwk})
        await assert_401(rs_client, url, bearer(embedded), "RS256 with an embedded jwk")
        ps = pyjwt.encode(claims, key, algorithm="PS256")
        await assert_401(rs_client, url, bearer(ps), "PS256 (not configured) with the real key")
        del other_pem


async def test_expired_and_not_yet_valid_tokens_are_refused(client: Any, jwt: Any, tree: Tree):
    url = f"/v1/nodes/{tree.county}?min_position={tree.last_position}"
    now = int(time.time())
    secret = jwt.verify_key

    def hs(claims: dict[str, Any]) -> dict[str, str]:
        return bearer(pyjwt.encode(claims, secret, algorithm="HS256"))

    base = {"sub": "alice", "scope": tree.county, "roles": ["viewer"]}
    body = await assert_401(client, url, hs({**base, "exp": now - 3600}), "expired an hour ago")
    assert "expired" in body["detail"]
    await assert_401(client, url, hs({**base, "exp": now - 120}), "expired beyond the leeway")
    body = await assert_401(
        client, url, hs({**base, "exp": now + 3600, "nbf": now + 600}), "nbf in 10 minutes"
    )
    assert "not yet valid" in body["detail"]
    await assert_401(
        client, url, hs({**base, "exp": now + 3600, "iat": now + 600}), "issued in the future"
    )
    await assert_401(client, url, hs(base), "no exp at all")
    await assert_401(client, url, hs({**base, "exp": "tomorrow"}), "exp not a number")
    r = await client.get(url, headers=hs({**base, "exp": now - 5}))
    assert r.status_code == 200, "a token expired 5 s ago is within the 30 s clock leeway"


async def test_malformed_claims_and_headers_are_401(client: Any, jwt: Any, tree: Tree):
    url = f"/v1/nodes/{tree.county}?min_position={tree.last_position}"
    now = int(time.time())
    secret = jwt.verify_key
    for claims in (
        {"scope": tree.county, "roles": ["admin"], "exp": now + 60},  # no sub
        {"sub": "a", "roles": ["admin"], "exp": now + 60},  # no scope
        {"sub": "a", "scope": tree.county, "exp": now + 60},  # no roles
        {"sub": "a", "scope": tree.county, "roles": [], "exp": now + 60},
        {"sub": "a", "scope": tree.county, "roles": "admin", "exp": now + 60},
        {"sub": "a", "scope": tree.county, "roles": ["superuser"], "exp": now + 60},
        {"sub": "a", "scope": ["x"], "roles": ["admin"], "exp": now + 60},
        {"sub": 5, "scope": tree.county, "roles": ["admin"], "exp": now + 60},
    ):
        tok = pyjwt.encode(claims, secret, algorithm="HS256")
        await assert_401(client, url, bearer(tok), f"claims {claims}")
    for header in (
        "Bearer",
        "Bearer ",
        "Basic YWRtaW46YWRtaW4=",
        "Bearer a.b",
        "Bearer a.b.c.d",
        "Bearer " + "A" * 16_000,
        "Bearer \u202e" + token(jwt, tree.county, "admin"),
        "bearer" + token(jwt, tree.county, "admin"),
    ):
        await assert_401(client, url, {"Authorization": header.encode()}, header[:30])
    await assert_401(client, url, {}, "no Authorization header")


async def test_tokens_for_closed_or_unknown_scopes_are_401(client: Any, jwt: Any, tree: Tree):
    street = tree.streets[0]
    doomed = tree.communities[street][1]
    scoped = auth(jwt, doomed, "operator")
    r = await client.get(f"/v1/nodes/{doomed}?min_position={tree.last_position}", headers=scoped)
    assert r.status_code == 200, r.text  # usable (and cached) before the close
    await post_ok(
        client,
        f"/v1/nodes/{doomed}/close",
        {"reason": "撤并"},
        auth(jwt, tree.county, "admin"),
        expect=200,
    )
    body = await assert_401(client, f"/v1/nodes/{doomed}", scoped, "closed scope")
    assert "closed" in body["detail"] or "does not exist" in body["detail"]
    r = await client.post(f"/v1/nodes/{doomed}/rename", json={"name": "复活"}, headers=scoped)
    assert_problem(r, 401, where="a command with a closed scope")
    # the same token shape for a code that never existed, or is not a code at all
    for ghost in (f"{tree.county[:6]}999999", "../" + tree.county, tree.county + "\u0000"):
        await assert_401(client, f"/v1/nodes/{tree.county}", auth(jwt, ghost, "admin"), ghost)
    # the closed node's parent still works for its own principals
    r = await client.get(
        f"/v1/nodes/{street}?min_position={tree.last_position}",
        headers=auth(jwt, street, "viewer"),
    )
    assert r.status_code == 200, r.text
