"""Middleware: when a bearer token names a key we do not hold, fetch the identity provider's
keys (bounded, off the event loop) before the request reaches its handler.

The handlers' principal dependency is synchronous; this is the one await point before it,
so it decodes there without waiting. Installed only when ``CIVIC_JWKS_URL`` is set.
"""

from __future__ import annotations

from typing import Any

from litestar.types import ASGIApp, Receive, Scope, Send

from services.auth import AuthError, JwtConfig, KeysOutdated, decode_token
from services.ratelimit import _bearer


def refresh_signing_keys(jwt: JwtConfig) -> Any:
    """The middleware factory for ``Litestar(middleware=[...])``."""

    def factory(app: ASGIApp) -> ASGIApp:
        if jwt.jwks is None:
            return app

        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            header = _bearer(scope) if scope["type"] == "http" else None
            if header:
                try:
                    decode_token(jwt, header)
                except KeysOutdated as outdated:
                    await outdated.keys.refresh()
                except AuthError:
                    pass  # the handler answers 401 with the reason
            await app(scope, receive, send)

        return middleware

    return factory
