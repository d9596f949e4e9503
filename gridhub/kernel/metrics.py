"""Prometheus helpers: names follow gridhub_<service>_<noun>_<unit>, registries are handed in."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["CONTENT_TYPE_LATEST", "LATENCY_BUCKETS", "ServiceMetrics", "metric_name", "render"]

_PART = re.compile(r"^[a-z][a-z0-9_]*$")

# Seconds; from 1 ms (one Kafka hop on loopback) to 30 s (a slow webhook).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def metric_name(service: str, noun: str, unit: str) -> str:
    """Build gridhub_<service>_<noun>_<unit>, refusing anything that is not snake_case."""
    for part in (service, noun, unit):
        if not _PART.match(part):
            raise ValueError(f"metric name part {part!r} must be snake_case")
    return f"gridhub_{service}_{noun}_{unit}"


class ServiceMetrics:
    """Factory for one service's metrics on one registry, so tests can use their own."""

    def __init__(self, service: str, registry: CollectorRegistry) -> None:
        self.service = service
        self.registry = registry

    def counter(self, noun: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
        """A counter named gridhub_<service>_<noun>_total."""
        # prometheus_client appends _total itself to counters.
        return Counter(metric_name(self.service, noun, "total")[: -len("_total")], doc, labels, registry=self.registry)

    def gauge(self, noun: str, unit: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        """A gauge named gridhub_<service>_<noun>_<unit>."""
        return Gauge(metric_name(self.service, noun, unit), doc, labels, registry=self.registry)

    def histogram(
        self, noun: str, doc: str, labels: tuple[str, ...] = (), buckets: tuple[float, ...] = LATENCY_BUCKETS
    ) -> Histogram:
        """A latency histogram named gridhub_<service>_<noun>_seconds."""
        return Histogram(
            metric_name(self.service, noun, "seconds"), doc, labels, buckets=buckets, registry=self.registry
        )


def render(registry: CollectorRegistry) -> bytes:
    """The registry in Prometheus text exposition format."""
    return generate_latest(registry)
