"""Prometheus metrics, one registry per application instance (tests build many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "civic_http_requests",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "civic_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.events_appended = Counter(
            "civic_events_appended",
            "Events appended to the store",
            ["type"],
            registry=self.registry,
        )
        self.projection_position = Gauge(
            "civic_projection_position",
            "Checkpoint of each projection",
            ["projection"],
            registry=self.registry,
        )
        self.projection_lag = Gauge(
            "civic_projection_lag_seconds",
            "Seconds since the oldest settled event a projection has not processed was recorded"
            " (0 = caught up)",
            ["projection"],
            registry=self.registry,
        )
        self.projection_events = Counter(
            "civic_projection_events",
            "Events applied by each projection",
            ["projection"],
            registry=self.registry,
        )
        self.projection_batch_seconds = Histogram(
            "civic_projection_batch_seconds",
            "Time to apply one batch",
            ["projection"],
            registry=self.registry,
        )
        self.projection_errors = Counter(
            "civic_projection_errors",
            "Failed projection batches",
            ["projection"],
            registry=self.registry,
        )

    def observe_projection(
        self, name: str, position: int, applied: int, seconds: float, lag: float
    ) -> None:
        self.projection_position.labels(name).set(position)
        self.projection_lag.labels(name).set(lag)
        if applied:
            self.projection_events.labels(name).inc(applied)
            self.projection_batch_seconds.labels(name).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
