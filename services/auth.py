"""JWT bearer authentication: token → Principal.

HS256 with ``CIVIC_JWT_SECRET`` for development and tests; RS256/ES256 with
``CIVIC_JWT_PUBLIC_KEY`` in production. The accepted algorithms are fixed by
configuration, never taken from the token, so "none" and HS/RS confusion are refused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt

from services.roles import Role

#: node codes are at most 40 characters (services/api/nodes.py); a scope is one of them.
MAX_SCOPE_LENGTH = 64


class AuthError(Exception):
    """The request carries no usable credentials (401)."""


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


@dataclass(frozen=True)
class JwtConfig:
    verify_key: Any
    algorithms: tuple[str, ...]
    signing_key: Any | None = None
    issuer: str | None = None
    audience: str | None = None
    leeway_seconds: int = 30


def decode_token(config: JwtConfig, header: str | None) -> Principal:
    if not header:
        raise AuthError("missing Authorization header")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("Authorization must be 'Bearer <token>'")
    try:
        claims = jwt.decode(
            token.strip(),
            config.verify_key,
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
    return Principal(subject=subject, scope=scope, roles=parsed)


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
