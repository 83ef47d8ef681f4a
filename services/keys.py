"""Builds the JWT configuration from settings (development secrets generated under .data)."""

from __future__ import annotations

from infra.dev_secrets import load_or_create, random_token
from infra.settings import Settings
from services.auth import JwtConfig
from services.jwks import KEY_TYPES, JwksKeys


class ConfigurationError(RuntimeError):
    pass


def jwt_config(settings: Settings) -> JwtConfig:
    algorithms = settings.jwt_algorithms
    if settings.jwks_url:
        return _jwks_config(settings)
    if settings.jwt_public_key:
        if any(a.startswith("HS") for a in algorithms):
            raise ConfigurationError("a public key is configured: use RS256/ES256, not HS*")
        return JwtConfig(
            verify_key=settings.jwt_public_key,
            algorithms=algorithms,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
    if any(not a.startswith("HS") for a in algorithms):
        raise ConfigurationError("asymmetric algorithms need CIVIC_JWT_PUBLIC_KEY")
    secret = settings.jwt_secret
    if secret is None:
        if settings.is_production:
            raise ConfigurationError(
                "CIVIC_JWT_SECRET (or CIVIC_JWT_PUBLIC_KEY) is required in production"
            )
        secret = load_or_create(settings.data_dir, "jwt-secret", random_token)
    if len(secret) < 32:
        raise ConfigurationError("CIVIC_JWT_SECRET must be at least 32 characters")
    return JwtConfig(
        verify_key=secret,
        signing_key=secret,
        algorithms=algorithms,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )


def _jwks_config(settings: Settings) -> JwtConfig:
    """Production sign-in through the SSO: tokens verified with its published keys."""
    if settings.jwt_public_key:
        raise ConfigurationError("set CIVIC_JWKS_URL or CIVIC_JWT_PUBLIC_KEY, not both")
    unsupported = [a for a in settings.jwt_algorithms if a not in KEY_TYPES]
    if unsupported:
        raise ConfigurationError(
            f"CIVIC_JWKS_URL needs asymmetric CIVIC_JWT_ALGORITHMS (e.g. RS256,ES256), "
            f"not {','.join(unsupported)}"
        )
    url = settings.jwks_url or ""
    if not url.startswith("https://") and settings.is_production:
        raise ConfigurationError("CIVIC_JWKS_URL must be https:// in production")
    keys = JwksKeys(
        url,
        timeout_seconds=settings.jwks_timeout_seconds,
        min_refresh_seconds=settings.jwks_min_refresh_seconds,
        max_age_seconds=settings.jwks_max_age_seconds,
    )
    return JwtConfig(
        verify_key=None,
        algorithms=settings.jwt_algorithms,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        jwks=keys,
    )
