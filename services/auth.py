"""JWT bearer authentication: token → Principal.

HS256 with ``CIVIC_JWT_SECRET`` for development and tests; RS256/ES256 with
``CIVIC_JWT_PUBLIC_KEY``, or with the identity provider's keys from ``CIVIC_JWKS_URL``
(services/jwks.py), in production. The accepted algorithms are fixed by
configuration, never taken from the token, so "none" and HS/RS confusion are refused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import jwt

from services.jwks import KEY_TYPES, JwksKeys
from services.roles import Role

#: node codes are at most 40 characters (services/fields.py); a scope is one of them.
MAX_SCOPE_LENGTH = 64


class AuthError(Exception):
    """The request carries no usable credentials (401)."""


class KeysOutdated(AuthError):
    """The token names a signing key we do not hold (or hold from too long ago) and the
    provider's key set may be fetched again: refresh ``keys`` and decode once more."""

    def __init__(self, keys: JwksKeys) -> None:
        super().__init__("invalid token: unknown signing key")
        self.keys = keys


@dataclass(frozen=True)
class Principal:
    subject: str
    scope: str
    roles: frozenset[Role]

    def has_any(self, roles: frozenset[Role]) -> bool:
        return bool(self.roles & roles)

    @property
    def is_admin(self) -> bool:
        return Role.ADMIN in self.roles

    @property
    def idempotency_owner(self) -> str:
        return f"{self.subject}@{self.scope}"


class VerifiedTokens:
    """Tokens already verified, kept until they expire, so a client's next request with the
    same token skips the signature and claims checks (a few dozen µs with HS256, more with
    RS256 and ES256). Time-bound claims are checked again on every use; a token that failed
    verification is never kept.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: dict[str, tuple[Principal, float, float]] = {}

    def get(self, token: str, leeway: float) -> Principal | None:
        hit = self._entries.get(token)
        if hit is None:
            return None
        principal, expires, not_before = hit
        now = time.time()
        if now > expires + leeway:
            self._entries.pop(token, None)
            raise AuthError("token expired")
        if now < not_before - leeway:
            raise AuthError("token not yet valid")
        return principal

    def put(self, token: str, principal: Principal, expires: float, not_before: float) -> None:
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[token] = (principal, expires, not_before)


@dataclass(frozen=True)
class JwtConfig:
    verify_key: Any
    algorithms: tuple[str, ...]
    signing_key: Any | None = None
    issuer: str | None = None
    audience: str | None = None
    leeway_seconds: int = 30
    #: production: the identity provider's keys, picked by the token's ``kid``.
    jwks: JwksKeys | None = None
    verified: VerifiedTokens = field(
        default_factory=VerifiedTokens, compare=False, hash=False, repr=False
    )


def decode_token(config: JwtConfig, header: str | None) -> Principal:
    if not header:
        raise AuthError("missing Authorization header")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthError("Authorization must be 'Bearer <token>'")
    known = config.verified.get(token, config.leeway_seconds)
    if known is not None:
        return known
    verify_key = config.verify_key if config.jwks is None else _jwks_key(config, config.jwks, token)
    try:
        claims = jwt.decode(
            token,
            verify_key,
            algorithms=list(config.algorithms),
            issuer=config.issuer,
            audience=config.audience,
            leeway=config.leeway_seconds,
            options={
                "require": ["exp", "sub"],
                "verify_aud": config.audience is not None,
                "verify_iss": config.issuer is not None,
            },
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("token expired") from None
    except jwt.ImmatureSignatureError:
        raise AuthError("token not yet valid") from None
    except jwt.PyJWTError as exc:
        raise AuthError(f"invalid token: {exc}") from None
    scope = claims.get("scope")
    roles = claims.get("roles")
    subject = claims.get("sub")
    if not isinstance(scope, str) or not scope:
        raise AuthError("token has no scope")
    if len(scope) > MAX_SCOPE_LENGTH or not scope.isprintable():
        raise AuthError("token scope is not a node code")  # e.g. a NUL: never a code
    if not isinstance(subject, str) or not subject:
        raise AuthError("token has no subject")
    if not isinstance(roles, list) or not roles:
        raise AuthError("token has no roles")
    try:
        parsed = frozenset(Role(r) for r in roles)
    except ValueError:
        raise AuthError(f"unknown role in {roles!r}") from None
    principal = Principal(subject=subject, scope=scope, roles=parsed)
    not_before = max(_number(claims.get("nbf")), _number(claims.get("iat")))
    config.verified.put(token, principal, float(claims["exp"]), not_before)
    return principal


def _jwks_key(config: JwtConfig, keys: JwksKeys, token: str) -> Any:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise AuthError(f"invalid token: {exc}") from None
    alg, kid = header.get("alg"), header.get("kid")
    if alg not in config.algorithms:
        raise AuthError("invalid token: the algorithm is not allowed")
    if not isinstance(kid, str) or not kid:
        raise AuthError("invalid token: no key id (kid)")
    key = keys.key(kid)
    if (key is None or keys.stale) and keys.may_refresh():
        raise KeysOutdated(keys)
    if key is None:
        raise AuthError("invalid token: unknown signing key")
    if KEY_TYPES.get(alg) != key.key_type:
        raise AuthError("invalid token: the key does not fit the algorithm")
    return key.key


def _number(claim: object) -> float:
    """A verified numeric date claim, or -inf when absent (PyJWT has checked its type)."""
    return float(claim) if isinstance(claim, int | float) else float("-inf")


def issue_token(
    config: JwtConfig,
    *,
    subject: str,
    scope: str,
    roles: list[str],
    ttl_seconds: int = 8 * 3600,
) -> str:
    if config.signing_key is None:
        raise RuntimeError("no signing key configured for issuing tokens")
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": subject,
        "scope": scope,
        "roles": roles,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    if config.issuer:
        claims["iss"] = config.issuer
    if config.audience:
        claims["aud"] = config.audience
    return jwt.encode(claims, config.signing_key, algorithm=config.algorithms[0])
