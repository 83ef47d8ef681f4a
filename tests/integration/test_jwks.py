"""Production sign-in: tokens from an identity provider, verified with the keys it publishes
at a JWKS URL (here a local HTTP server on 127.0.0.1) — cached, refetched when a token
names a new ``kid``, refetched at a bounded rate whatever tokens arrive."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from litestar import Litestar, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.testing import AsyncTestClient

from infra.settings import Settings
from services.api.deps import Caller, provide_ctx, provide_principal
from services.auth import JwtConfig
from services.jwks import JwksKeys
from services.jwks_refresh import refresh_signing_keys
from services.keys import ConfigurationError, jwt_config
from services.problems import handle_exception
from tests.support import fresh_county_code


@dataclass
class Provider:
    """A toy identity provider: its signing keys and the JWKS document it serves."""

    url: str = ""
    published: list[dict[str, Any]] = field(default_factory=list)
    private: dict[str, Any] = field(default_factory=dict)
    hits: int = 0
    down: bool = False

    def add_rsa(self, kid: str) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._publish(
            kid, key, pyjwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
        )

    def add_ec(self, kid: str) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        self._publish(kid, key, pyjwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True))

    def _publish(self, kid: str, key: Any, jwk: dict[str, Any]) -> None:
        self.private[kid] = key
        self.published.append({**jwk, "kid": kid, "use": "sig"})

    def withdraw(self, kid: str) -> None:
        self.published = [k for k in self.published if k["kid"] != kid]

    def token(self, kid: str, alg: str, scope: str, roles: list[str], key: Any = None) -> str:
        now = int(time.time())
        claims = {"sub": "sso-user", "scope": scope, "roles": roles, "iat": now, "exp": now + 600}
        return pyjwt.encode(claims, key or self.private[kid], algorithm=alg, headers={"kid": kid})


@pytest.fixture
def provider() -> Iterator[Provider]:
    state = Provider()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits += 1
            if state.down:
                self.send_response(503)
                self.end_headers()
                return
            body = json.dumps({"keys": state.published}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@get("/whoami", sync_to_thread=False)
def whoami(principal: Caller) -> dict[str, str]:
    return {"sub": principal.subject, "scope": principal.scope}


def tiny_app(config: JwtConfig) -> Litestar:
    """Just the authentication path: the refresh middleware and the principal dependency."""
    return Litestar(
        route_handlers=[whoami],
        dependencies={
            "ctx": Provide(provide_ctx, sync_to_thread=False),  # provide_principal takes it
            "principal": Provide(provide_principal, sync_to_thread=False),
        },
        middleware=[refresh_signing_keys(config)],
        state=State({"ctx": SimpleNamespace(jwt=config)}),
        exception_handlers={Exception: handle_exception},
    )


def jwks_config(provider: Provider, clock: FakeClock, **kw: float) -> JwtConfig:
    keys = JwksKeys(provider.url, clock=clock, **kw)
    return JwtConfig(verify_key=None, algorithms=("RS256", "ES256"), jwks=keys)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_rs256_and_es256_tokens_verify_with_one_fetch_of_the_keys(provider):
    provider.add_rsa("rsa-1")
    provider.add_ec("ec-1")
    config = jwks_config(provider, FakeClock())
    async with AsyncTestClient(tiny_app(config)) as client:
        for kid, alg in (("rsa-1", "RS256"), ("ec-1", "ES256"), ("rsa-1", "RS256")):
            r = await client.get(
                "/whoami", headers=bearer(provider.token(kid, alg, "330106000000", ["viewer"]))
            )
            assert r.status_code == 200, r.text
            assert r.json() == {"sub": "sso-user", "scope": "330106000000"}
    assert provider.hits == 1


async def test_a_rotated_key_is_fetched_when_a_token_names_it(provider):
    provider.add_rsa("2025")
    clock = FakeClock()
    config = jwks_config(provider, clock, min_refresh_seconds=30)
    async with AsyncTestClient(tiny_app(config)) as client:
        r = await client.get(
            "/whoami", headers=bearer(provider.token("2025", "RS256", "330106000000", ["admin"]))
        )
        assert r.status_code == 200
        provider.add_rsa("2026")
        provider.withdraw("2025")
        clock.now += 31
        r = await client.get(
            "/whoami", headers=bearer(provider.token("2026", "RS256", "330106000000", ["admin"]))
        )
        assert r.status_code == 200, r.text
        assert provider.hits == 2


async def test_made_up_key_ids_cannot_make_us_hammer_the_provider(provider):
    provider.add_rsa("real")
    clock = FakeClock()
    config = jwks_config(provider, clock, min_refresh_seconds=30)
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    async with AsyncTestClient(tiny_app(config)) as client:
        for _ in range(25):
            kid = uuid.uuid4().hex
            r = await client.get(
                "/whoami",
                headers=bearer(provider.token(kid, "RS256", "330106000000", ["admin"], key=forger)),
            )
            assert r.status_code == 401
            assert r.headers["content-type"].startswith("application/problem+json")
        assert provider.hits == 1  # one fetch for the first unknown kid, none after
        clock.now += 31
        r = await client.get(
            "/whoami",
            headers=bearer(provider.token("nope", "RS256", "330106000000", ["admin"], key=forger)),
        )
        assert r.status_code == 401
        assert provider.hits == 2  # one more per interval, no more


async def test_forged_and_confused_tokens_are_refused(provider):
    provider.add_rsa("rsa-1")
    provider.add_ec("ec-1")
    config = jwks_config(provider, FakeClock())
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        provider.private["rsa-1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    now = int(time.time())
    claims = {"sub": "x", "scope": "330106000000", "roles": ["admin"], "exp": now + 600}
    hs_with_public_key = _hs256(claims, public_pem, "rsa-1")
    tokens = {
        "signed by a key not published under that kid": provider.token(
            "rsa-1", "RS256", "330106000000", ["admin"], key=forger
        ),
        "ES256 header on the RSA key": provider.token(
            "rsa-1", "ES256", "330106000000", ["admin"], key=provider.private["ec-1"]
        ),
        "HS256 keyed with the public key": hs_with_public_key,
        "no kid": pyjwt.encode(claims, provider.private["rsa-1"], algorithm="RS256"),
        "alg none": pyjwt.encode(claims, "", algorithm="none", headers={"kid": "rsa-1"}),
    }
    async with AsyncTestClient(tiny_app(config)) as client:
        for what, token in tokens.items():
            r = await client.get("/whoami", headers=bearer(token))
            assert r.status_code == 401, (what, r.text)


def _hs256(claims: dict[str, Any], secret: bytes, kid: str) -> str:
    """An HS256 token built by hand (PyJWT refuses to use a PEM public key as an HMAC secret)."""
    import base64
    import hashlib
    import hmac

    def part(obj: Any) -> bytes:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=")

    signing_input = part({"alg": "HS256", "typ": "JWT", "kid": kid}) + b"." + part(claims)
    sig = base64.urlsafe_b64encode(hmac.new(secret, signing_input, hashlib.sha256).digest()).rstrip(
        b"="
    )
    return (signing_input + b"." + sig).decode()


async def test_an_outage_keeps_the_keys_and_a_withdrawn_key_stops_after_max_age(provider):
    provider.add_rsa("k1")
    clock = FakeClock()
    config = jwks_config(provider, clock, min_refresh_seconds=30, max_age_seconds=600)
    token = provider.token("k1", "RS256", "330106000000", ["viewer"])
    async with AsyncTestClient(tiny_app(config)) as client:
        assert (await client.get("/whoami", headers=bearer(token))).status_code == 200
        config.verified._entries.clear()  # make every request verify the signature again
        provider.down = True
        clock.now += 601
        r = await client.get("/whoami", headers=bearer(token))
        assert r.status_code == 200, r.text  # the fetch failed; the keys we had still hold
        assert provider.hits == 2
        config.verified._entries.clear()
        provider.down = False
        provider.add_rsa("k2")
        provider.withdraw("k1")
        clock.now += 31
        r = await client.get("/whoami", headers=bearer(token))
        assert r.status_code == 401  # stale set refetched: k1 is gone
        assert provider.hits == 3


async def test_the_app_signs_in_with_sso_tokens(provider, database_url):
    """The whole application configured with CIVIC_JWKS_URL: an SSO admin bootstraps a
    county and reads it; an HS256 development token is refused."""
    from services.app import create_app

    provider.add_ec("sso-ec")
    settings = Settings.from_env(
        {
            "DATABASE_URL": database_url,
            "CIVIC_JWKS_URL": provider.url,
            "CIVIC_RUN_PROJECTOR": "false",
            "CIVIC_MIGRATE_ON_START": "false",
            "CIVIC_LOG_LEVEL": "WARNING",
        }
    )
    assert settings.jwt_algorithms == ("RS256", "ES256")
    county = fresh_county_code()
    token = provider.token("sso-ec", "ES256", county, ["admin"])
    async with AsyncTestClient(create_app(settings)) as client:
        r = await client.post(
            "/v1/nodes",
            json={"code": county, "name": "单点登录区", "kind": "county", "parent_code": None},
            headers=bearer(token),
        )
        assert r.status_code == 201, r.text
        r = await client.get("/v1/nodes", headers=bearer(token))
        assert r.status_code == 200, r.text
        assert r.json()["items"][0]["code"] == county
        hs = pyjwt.encode(
            {"sub": "x", "scope": county, "roles": ["admin"], "exp": int(time.time()) + 60},
            "s" * 40,
            algorithm="HS256",
        )
        assert (await client.get("/v1/nodes", headers=bearer(hs))).status_code == 401


def test_jwks_configuration_is_checked_at_start():
    base = {"CIVIC_JWKS_URL": "https://sso.example.gov.cn/jwks.json"}
    config = jwt_config(Settings.from_env(base))
    assert config.jwks is not None and config.algorithms == ("RS256", "ES256")
    with pytest.raises(ConfigurationError):
        jwt_config(Settings.from_env({**base, "CIVIC_JWT_ALGORITHMS": "HS256"}))
    with pytest.raises(ConfigurationError):
        jwt_config(
            Settings.from_env({**base, "CIVIC_JWT_PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----"})
        )
    with pytest.raises(ConfigurationError):
        jwt_config(
            Settings.from_env(
                {"CIVIC_JWKS_URL": "http://sso.example/jwks.json", "CIVIC_ENV": "production"}
            )
        )
