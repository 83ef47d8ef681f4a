"""Wiring of the integration pieces: live signal, feed timing, webhook worker, NATS relay.

``create_app`` builds one ``Integration`` from the settings, registers its live signal as
an after-commit hook, exposes its parts in the app state (``live``, ``feed_config``,
``webhooks``, ``nats_relay``) and starts the workers in projector processes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

from infra.settings import Settings
from services.live import FeedConfig, LiveSignal
from services.nats_relay import NatsRelay
from services.webhooks.addresses import AddressPolicy
from services.webhooks.delivery import RetryPolicy, WebhookConfig, WebhookWorker


@dataclass
class Integration:
    live: LiveSignal
    feed_config: FeedConfig
    webhooks: WebhookWorker
    nats_relay: NatsRelay | None = None
    _started: list[Any] = field(default_factory=list)

    @classmethod
    def from_settings(cls, settings: Settings) -> Integration:
        live = LiveSignal()
        webhooks = WebhookWorker(
            live,
            WebhookConfig(
                policy=RetryPolicy(
                    base_seconds=settings.webhook_retry_base_seconds,
                    cap_seconds=settings.webhook_retry_cap_seconds,
                    max_attempts=settings.webhook_max_attempts,
                ),
                timeout_seconds=settings.webhook_timeout_seconds,
                schema_base=settings.base_url,
                addresses=AddressPolicy(settings.webhook_allow_hosts),
            ),
        )
        relay = None
        if settings.nats_url:
            relay = NatsRelay(
                live,
                url=settings.nats_url,
                stream=settings.nats_stream,
                subject_prefix=settings.nats_subject_prefix,
                schema_base=settings.base_url,
            )
        return cls(
            live=live,
            feed_config=FeedConfig(
                heartbeat_seconds=settings.feed_heartbeat_seconds,
                max_stream_seconds=settings.feed_max_stream_seconds,
            ),
            webhooks=webhooks,
            nats_relay=relay,
        )

    def state(self) -> dict[str, Any]:
        return {
            "live": self.live,
            "feed_config": self.feed_config,
            "webhooks": self.webhooks,
            "nats_relay": self.nats_relay,
        }

    def start(self, pool: asyncpg.Pool) -> None:
        """Start the outbox workers (projector processes only)."""
        self.webhooks.start(pool)
        self._started.append(self.webhooks)
        if self.nats_relay is not None:
            self.nats_relay.start(pool)
            self._started.append(self.nats_relay)

    async def stop(self) -> None:
        while self._started:
            await self._started.pop().stop()
