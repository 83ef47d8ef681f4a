"""Per-principal rate limiting: a token bucket per (JWT subject, scope), in process.

Litestar's own ``RateLimitMiddleware`` keys by client address, which is wrong here: many
grid workers share one NAT address, and one integrator can come from many. So this small
ASGI middleware keys by the *verified* token's ``sub`` and ``scope`` (an unverified token
could drain someone else's bucket). Verified tokens are remembered for a minute, so a
request costs one dictionary look-up, not a second signature check.

``CIVIC_RATE_LIMIT`` (``Settings.rate_limit_per_minute``, default 1200; why that figure:
``infra/settings.py``) is both the refill rate per minute and the bucket's size: a principal
may burst up to a minute's allowance, then gets ``429 Too Many Requests`` (problem+json)
with ``Retry-After`` in whole seconds. ``0`` turns limiting off.

Requests without a usable token (none, a bad one, the metrics token) are limited per client
address instead, at ``CIVIC_ANON_RATE_LIMIT`` (default 120): each bad token costs a
signature check, and nothing unauthenticated needs more. The address is the peer's, or the
``X-Forwarded-For`` one when the peer is a trusted proxy (uvicorn's ``FORWARDED_ALLOW_IPS``).
Health probes, and the static pages of ``/console`` and ``/schema`` (which load many assets
without a token; ``/schema``'s from ``/static/docs``), are never limited. The limits are per API process: behind N replicas a
client gets up to N times as much.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import msgspec
from litestar.types import ASGIApp, Receive, Scope, Send

from services.auth import AuthError, JwtConfig, decode_token
from services.problems import PROBLEM_JSON

_TYPE = "https://civic-ledger.dev/problems/rate-limited"
_TOKEN_CACHE_SECONDS = 60.0
_MAX_CACHED_TOKENS = 10_000
#: path prefixes never limited: probes, and static pages that load assets without a token
_UNLIMITED = ("/health/", "/console", "/schema", "/static/docs")


class TokenBuckets:
    """One bucket per key: ``capacity`` tokens, refilled at ``per_minute / 60`` per second."""

    def __init__(
        self,
        per_minute: int,
        *,
        capacity: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.rate = per_minute / 60.0
        self.capacity = float(capacity if capacity is not None else per_minute)
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key → (tokens, updated)

    def take(self, key: str) -> float:
        """Take one token: 0.0 when allowed, else the seconds until one is available."""
        now = self.clock()
        tokens, updated = self._buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - updated) * self.rate)
        if tokens >= 1.0:
            if len(self._buckets) >= self.max_keys and key not in self._buckets:
                self._forget_full(now)
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled (they behave exactly like absent ones)."""
        full = [
            k
            for k, (tokens, updated) in self._buckets.items()
            if tokens + (now - updated) * self.rate >= self.capacity
        ]
        for k in full:
            del self._buckets[k]
        if len(self._buckets) >= self.max_keys:  # everyone is busy: start afresh
            self._buckets.clear()


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            return str(value.decode("latin-1"))
    return None


def _client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def rate_limit(jwt: JwtConfig, per_minute: int, anonymous_per_minute: int = 0) -> Any:
    """The middleware factory for ``Litestar(middleware=[...])``."""

    def factory(app: ASGIApp) -> ASGIApp:
        if per_minute <= 0 and anonymous_per_minute <= 0:
            return app
        buckets = TokenBuckets(per_minute) if per_minute > 0 else None
        anonymous = TokenBuckets(anonymous_per_minute) if anonymous_per_minute > 0 else None
        verified: dict[str, tuple[float, str]] = {}  # token → (until, key)

        def key_of(header: str) -> str | None:
            now = time.monotonic()
            hit = verified.get(header)
            if hit is not None and hit[0] > now:
                return hit[1]
            try:
                principal = decode_token(jwt, header)
            except AuthError:
                return None
            if len(verified) >= _MAX_CACHED_TOKENS:
                verified.clear()
            key = f"{principal.subject}\x00{principal.scope}"
            verified[header] = (now + _TOKEN_CACHE_SECONDS, key)
            return key

        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http" or scope.get("path", "").startswith(_UNLIMITED):
                await app(scope, receive, send)
                return
            header = _bearer(scope)
            key = key_of(header) if header else None
            if key is not None:
                wait = buckets.take(key) if buckets is not None else 0.0
                limit, who = per_minute, "this principal"
            else:
                address = _client_address(scope)
                wait = anonymous.take(address) if anonymous is not None else 0.0
                limit, who = (
                    anonymous_per_minute,
                    "requests without a valid token from this address",
                )
            if wait <= 0.0:
                await app(scope, receive, send)
                return
            retry_after = max(1, math.ceil(wait))
            body: dict[str, Any] = {
                "type": _TYPE,
                "title": "Too Many Requests",
                "status": 429,
                "detail": (
                    f"rate limit of {limit} requests per minute for {who} "
                    f"exceeded; retry after {retry_after} s"
                ),
                "instance": scope.get("path", ""),
            }
            request_id = scope.get("state", {}).get("request_id")
            if request_id:
                body["request_id"] = request_id
            content = msgspec.json.encode(body)
            start: Any = {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(content)).encode()),
                    (b"retry-after", str(retry_after).encode()),
                ],
            }
            await send(start)
            end: Any = {"type": "http.response.body", "body": content}
            await send(end)

        return middleware

    return factory
