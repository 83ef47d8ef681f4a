"""Concurrency caps: how many waits, live streams and heavy audit requests run at a time.

A rate limit counts requests; these count requests *in flight*, which is what pins pool
connections and memory. Each cap answers at once instead of queueing (a queue would only
move the pile-up): 429 with ``Retry-After`` when one principal holds too many, 503 with
``Retry-After`` when the server-wide budget of heavy work is spent (that is capacity, not
the caller's fault).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from services.auth import Principal
from services.problems import ProblemError


def principal_key(principal: Principal) -> str:
    """Who a cap counts: the verified token's subject and scope (as the rate limit does)."""
    return f"{principal.subject}\x00{principal.scope}"


class PerPrincipal:
    """At most ``limit`` concurrent holders per principal (``limit <= 0``: no cap)."""

    def __init__(self, limit: int, what: str) -> None:
        self.limit = limit
        self.what = what
        self._held: dict[str, int] = {}

    def held(self, principal: Principal) -> int:
        return self._held.get(principal_key(principal), 0)

    def try_take(self, principal: Principal) -> str:
        key = principal_key(principal)
        count = self._held.get(key, 0)
        if 0 < self.limit <= count:
            raise ProblemError(
                429,
                "Too Many Requests",
                f"at most {self.limit} {self.what} at a time per principal; retry when one ends",
                slug="rate-limited",
                headers={"Retry-After": "1"},
            )
        self._held[key] = count + 1
        return key

    def give_back(self, key: str) -> None:
        left = self._held.get(key, 0) - 1
        if left > 0:
            self._held[key] = left
        else:
            self._held.pop(key, None)

    @contextmanager
    def slot(self, principal: Principal) -> Iterator[None]:
        key = self.try_take(principal)
        try:
            yield
        finally:
            self.give_back(key)


class HeavyBudget:
    """Server-wide slots for work that reads whole subtrees (chain verification,
    checkpoints, proofs, ledger exports): they hold a pool connection for seconds, so at
    most ``limit`` run at once and one principal runs one at a time. The rest of the pool
    stays free for commands and ordinary reads."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0
        self.per_principal = PerPrincipal(1, "heavy audit or export requests")

    @contextmanager
    def slot(self, principal: Principal) -> Iterator[None]:
        if self.limit <= 0:
            yield
            return
        key = self.per_principal.try_take(principal)
        try:
            if self.in_use >= self.limit:
                raise ProblemError(
                    503,
                    "Service Unavailable",
                    "the server is busy with other audit and export requests; retry shortly",
                    slug="busy",
                    headers={"Retry-After": "2"},
                )
            self.in_use += 1
            try:
                yield
            finally:
                self.in_use -= 1
        finally:
            self.per_principal.give_back(key)
