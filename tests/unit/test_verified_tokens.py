"""The verified-token cache: a token verified once is reused only while its claims hold."""

from __future__ import annotations

import time

import jwt as pyjwt
import pytest

from services.auth import AuthError, JwtConfig, decode_token

SECRET = "unit-secret-" + "x" * 40


def config() -> JwtConfig:
    return JwtConfig(verify_key=SECRET, signing_key=SECRET, algorithms=("HS256",), leeway_seconds=0)


def bearer(claims: dict[str, object]) -> str:
    return "Bearer " + pyjwt.encode(claims, SECRET, algorithm="HS256")


def claims(**extra: object) -> dict[str, object]:
    now = int(time.time())
    return {"sub": "u", "scope": "371202000000", "roles": ["admin"], "exp": now + 60, **extra}


def test_second_use_is_served_from_the_cache_with_the_same_principal() -> None:
    cfg = config()
    header = bearer(claims())
    first = decode_token(cfg, header)
    assert cfg.verified.get(header.split(" ", 1)[1], 0) == first
    assert decode_token(cfg, header) == first


def test_a_cached_token_expires_on_time(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config()
    now = time.time()
    header = bearer(claims(exp=int(now) + 5))
    decode_token(cfg, header)
    monkeypatch.setattr(time, "time", lambda: now + 10)
    with pytest.raises(AuthError, match="expired"):
        decode_token(cfg, header)
    assert header.split(" ", 1)[1] not in cfg.verified._entries  # dropped, not kept


def test_a_cached_token_is_checked_against_not_before(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = JwtConfig(verify_key=SECRET, algorithms=("HS256",), leeway_seconds=30)
    now = time.time()
    header = bearer(claims(nbf=int(now) + 20))  # inside the leeway: accepted now
    decode_token(cfg, header)
    monkeypatch.setattr(time, "time", lambda: now - 60)  # the clock steps back
    with pytest.raises(AuthError, match="not yet valid"):
        decode_token(cfg, header)


def test_tokens_that_fail_are_never_cached() -> None:
    cfg = config()
    forged = "Bearer " + pyjwt.encode(claims(), "another-secret-" + "y" * 40, algorithm="HS256")
    for _ in range(2):
        with pytest.raises(AuthError, match="invalid token"):
            decode_token(cfg, forged)
    assert cfg.verified.get(forged.split(" ", 1)[1], 0) is None


def test_a_cache_of_one_config_is_not_used_by_another() -> None:
    header = bearer(claims())
    decode_token(config(), header)
    other = JwtConfig(verify_key="another-secret-" + "y" * 40, algorithms=("HS256",))
    with pytest.raises(AuthError, match="invalid token"):
        decode_token(other, header)


def test_the_cache_is_bounded() -> None:
    cfg = config()
    cfg.verified.max_entries = 3
    headers = [bearer(claims(sub=f"u{i}")) for i in range(5)]
    for h in headers:
        decode_token(cfg, h)
    assert len(cfg.verified._entries) <= 3
