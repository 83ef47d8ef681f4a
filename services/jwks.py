"""Signing keys of an identity provider (the government SSO), fetched from its JWKS URL.

Keys are kept in memory and fetched again when a token names a ``kid`` we do not hold (the
provider rotated its keys) or when the set is older than ``max_age`` (so a withdrawn key
stops being accepted). Refetches are bounded: at most one per ``min_refresh_seconds``, one
at a time, so tokens with made-up ``kid``\\ s cannot turn into a stream of requests to the
provider. The fetch itself (PyJWT's ``PyJWKClient``, blocking urllib) runs in a thread,
never on the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import jwt
import structlog

log = structlog.get_logger("civic.jwks")

#: JWKS ``kty`` each accepted algorithm needs (the token's ``alg`` must match its key's type).
KEY_TYPES = {
    "RS256": "RSA",
    "RS384": "RSA",
    "RS512": "RSA",
    "PS256": "RSA",
    "ES256": "EC",
    "ES384": "EC",
    "ES512": "EC",
    "EdDSA": "OKP",
}


class JwksKeys:
    def __init__(
        self,
        url: str,
        *,
        timeout_seconds: float = 3.0,
        min_refresh_seconds: float = 30.0,
        max_age_seconds: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.min_refresh_seconds = min_refresh_seconds
        self.max_age_seconds = max_age_seconds
        self._clock = clock
        # Our own cache below: PyJWKClient's refetches on every unknown kid, unbounded.
        self._client = jwt.PyJWKClient(
            url, cache_keys=False, cache_jwk_set=False, timeout=int(max(1, timeout_seconds))
        )
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")
        self._inflight: asyncio.Task[None] | None = None

    def key(self, kid: str | None) -> jwt.PyJWK | None:
        return None if kid is None else self._keys.get(kid)

    @property
    def stale(self) -> bool:
        """Older than ``max_age`` (or never fetched): fetch again before trusting it."""
        return self._clock() - self._fetched_at > self.max_age_seconds

    def may_refresh(self) -> bool:
        """A fetch would be allowed now (or one is under way to wait for)."""
        if self._inflight is not None and not self._inflight.done():
            return True
        return self._clock() - self._attempted_at >= self.min_refresh_seconds

    async def refresh(self) -> None:
        """Fetch the set again, unless one was attempted recently; concurrent callers share
        one fetch."""
        if self._inflight is None or self._inflight.done():
            if self._clock() - self._attempted_at < self.min_refresh_seconds:
                return
            self._attempted_at = self._clock()
            self._inflight = asyncio.ensure_future(asyncio.to_thread(self._fetch))
        await asyncio.shield(self._inflight)

    def _fetch(self) -> None:
        try:
            jwk_set = self._client.get_jwk_set(refresh=True)
        except jwt.PyJWTError as exc:  # unreachable, not JSON, or no usable key in it
            # Keep what we had: a provider outage must not sign everyone out at once.
            log.warning("jwks fetch failed", url=self.url, error=str(exc))
            return
        keys = {k.key_id: k for k in jwk_set.keys if k.key_id and k.public_key_use in (None, "sig")}
        self._keys = keys
        self._fetched_at = self._clock()
        log.info("jwks fetched", url=self.url, keys=len(keys))
