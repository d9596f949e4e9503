"""Prometheus helpers: names follow gridhub_<service>_<noun>_<unit>, registries are handed in."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = [
    "CONTENT_TYPE_LATEST",
    "LATENCY_BUCKETS",
    "ConsumerMetrics",
    "ServiceMetrics",
    "catalogue_name",
    "lag_by_topic",
    "metric_name",
    "render",
]

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


def catalogue_name(topic: str, prefix: str) -> str:
    """A topic's catalogue name: the full name without the deployment prefix (a bounded label value)."""
    return topic[len(prefix) :] if prefix and topic.startswith(prefix) else topic


def lag_by_topic(
    ends: Mapping[tuple[str, int], int], positions: Mapping[tuple[str, int], int], topics: Iterable[str]
) -> dict[str, int]:
    """Messages not yet read, summed per topic over the partitions with both an end offset and a position.

    Keys are (topic, partition) pairs (aiokafka's TopicPartition is one); every topic of `topics` is in the answer,
    0 when none of its partitions is assigned, so a revoked topic's lag drops instead of freezing.
    """
    lag = dict.fromkeys(topics, 0)
    for tp, end in ends.items():
        position = positions.get(tp)
        if position is not None and tp[0] in lag:
            lag[tp[0]] += max(0, end - position)
    return lag


class ConsumerMetrics:
    """The batch loop's own metrics: consumer lag per group and topic, records read, batch latencies, assignment.

    Label values come from bounded sets: the service's consumer group and the catalogue names of its topics.
    """

    def __init__(self, service: str, registry: CollectorRegistry, group: str, topics: Mapping[str, str]) -> None:
        m = ServiceMetrics(service, registry)
        self.group = group
        self.topics = dict(topics)  # full topic name -> catalogue name
        self.lag = m.gauge(
            "consumer_lag",
            "messages",
            "Messages on the broker not yet read by this member, summed over its assigned partitions, per topic.",
            ("group", "topic"),
        )
        self.lag_measured = m.gauge(
            "consumer_lag_measured", "timestamp_seconds", "When the consumer lag was last measured (Unix time)."
        )
        self.assigned = m.gauge(
            "assigned", "partitions", "Partitions assigned to this member of the group.", ("group",)
        )
        self.records = m.counter("records_consumed", "Records read and handed to the handler, by topic.", ("topic",))
        self.batch_processing = m.histogram("batch_processing", "Time to run one batch through the handler.")
        self.batch_commit = m.histogram(
            "batch_commit", "Time from a batch processed to its offsets committed (every output acked)."
        )
        # Children made once: counted() runs for every partition of every batch.
        self._records = {topic: self.records.labels(name) for topic, name in self.topics.items()}
        for name in self.topics.values():
            self.lag.labels(group, name).set(0)
        self.assigned.labels(group).set(0)

    def counted(self, topic: str, records: int) -> None:
        """Count records read from a topic (full name)."""
        child = self._records.get(topic)
        if child is None:
            child = self._records[topic] = self.records.labels(topic)
        child.inc(records)

    def set_assigned(self, partitions: int) -> None:
        """Record how many partitions this member holds."""
        self.assigned.labels(self.group).set(partitions)

    def set_lag(self, ends: Mapping[tuple[str, int], int], positions: Mapping[tuple[str, int], int]) -> None:
        """Set every topic's lag gauge from end offsets and positions of the assigned partitions."""
        for topic, lag in lag_by_topic(ends, positions, self.topics).items():
            self.lag.labels(self.group, self.topics[topic]).set(lag)
        self.lag_measured.set(time.time())
