"""The batch loop's own metrics (consumer lag per group and topic, batch latencies) and its readiness."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from gridhub.kernel.batchloop import BatchHandler, BatchLoop
from gridhub.kernel.health import CONTACT_WINDOW_S, Contact, probe_every
from gridhub.kernel.metrics import ConsumerMetrics, catalogue_name, lag_by_topic
from gridhub.kernel.settings import CommonSettings

PREFIX = "t."
RAW = f"{PREFIX}raw.12345"
UPDATES = f"{PREFIX}tasks.updates"


class FakeConsumer:
    """The part of AIOKafkaConsumer the lag measurement and readiness use."""

    def __init__(self, ends: dict[TopicPartition, int], positions: dict[TopicPartition, int]) -> None:
        self.ends = ends
        self.positions = positions
        self.assigned = set(ends)

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def pause(self, *partitions: TopicPartition) -> None:
        pass

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.ends[tp] for tp in partitions}

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]


def loop_with(consumer: Any, registry: CollectorRegistry) -> BatchLoop:
    """A BatchLoop over the two topics, its consumer replaced by a fake (nothing connects)."""
    common = CommonSettings(topic_prefix=PREFIX)
    loop = BatchLoop(common, "intake", [RAW, UPDATES], BatchHandler(), registry)
    loop.consumer = consumer
    return loop


def test_catalogue_name_drops_the_deployment_prefix_only() -> None:
    """Label values are catalogue names, whatever the deployment's prefix."""
    assert catalogue_name("gridhub.raw.110", "gridhub.") == "raw.110"
    assert catalogue_name("other.raw.110", "gridhub.") == "other.raw.110"
    assert catalogue_name("raw.110", "") == "raw.110"


def test_lag_sums_partitions_per_topic_and_reports_every_topic() -> None:
    """End minus position per partition, summed per topic; never negative; 0 for a topic with nothing assigned."""
    ends = {TopicPartition(RAW, 0): 10, TopicPartition(RAW, 1): 7, TopicPartition(RAW, 2): 5}
    positions = {TopicPartition(RAW, 0): 4, TopicPartition(RAW, 1): 9}  # 1 is ahead of a stale end; 2 unknown
    assert lag_by_topic(ends, positions, [RAW, UPDATES]) == {RAW: 6, UPDATES: 0}


def test_consumer_metrics_follow_the_naming_scheme_with_bounded_labels() -> None:
    """gridhub_<service>_consumer_lag_messages{group,topic}, present at 0 from the start, then set."""
    registry = CollectorRegistry()
    metrics = ConsumerMetrics("intake", registry, "t.intake", {RAW: "raw.12345"})
    labels = {"group": "t.intake", "topic": "raw.12345"}
    assert registry.get_sample_value("gridhub_intake_consumer_lag_messages", labels) == 0
    metrics.set_lag({TopicPartition(RAW, 0): 12}, {TopicPartition(RAW, 0): 2})
    assert registry.get_sample_value("gridhub_intake_consumer_lag_messages", labels) == 10
    assert (registry.get_sample_value("gridhub_intake_consumer_lag_measured_timestamp_seconds") or 0) > 0
    metrics.counted(RAW, 3)
    assert registry.get_sample_value("gridhub_intake_records_consumed_total", {"topic": "raw.12345"}) == 3
    metrics.batch_processing.observe(0.01)
    assert registry.get_sample_value("gridhub_intake_batch_processing_seconds_count") == 1
    assert registry.get_sample_value("gridhub_intake_batch_commit_seconds_count") == 0
    assert registry.get_sample_value("gridhub_intake_assigned_partitions", {"group": "t.intake"}) == 0


async def test_measure_lag_sets_the_gauge_per_topic_from_end_offsets_and_positions() -> None:
    """The loop's measurement: the assigned partitions' end offsets minus positions, per catalogue topic."""
    registry = CollectorRegistry()
    consumer = FakeConsumer(
        ends={TopicPartition(RAW, 0): 100, TopicPartition(RAW, 1): 50, TopicPartition(UPDATES, 0): 8},
        positions={TopicPartition(RAW, 0): 90, TopicPartition(RAW, 1): 45, TopicPartition(UPDATES, 0): 8},
    )
    loop = loop_with(consumer, registry)
    await loop.measure_lag()
    group = loop.group
    lag = "gridhub_intake_consumer_lag_messages"
    assert registry.get_sample_value(lag, {"group": group, "topic": "raw.12345"}) == 15
    assert registry.get_sample_value(lag, {"group": group, "topic": "tasks.updates"}) == 0
    assert registry.get_sample_value("gridhub_intake_assigned_partitions", {"group": group}) == 3
    consumer.assigned = {TopicPartition(UPDATES, 0)}  # raw.12345 revoked: its lag is no longer this member's
    await loop.measure_lag()
    assert registry.get_sample_value(lag, {"group": group, "topic": "raw.12345"}) == 0


def test_ready_means_assigned_restored_connected_and_not_stopping() -> None:
    """/readyz's kafka check: an assignment the broker made lately, restored, and no stop asked for."""
    now = [1000.0]
    tp = TopicPartition(RAW, 0)
    loop = loop_with(FakeConsumer({tp: 0}, {tp: 0}), CollectorRegistry())
    loop.contact = Contact(CONTACT_WINDOW_S, clock=lambda: now[0])
    assert not loop.ready()  # the broker never answered
    loop._on_assigned(frozenset({tp}))
    assert not loop.ready()  # assigned, not restored yet
    loop._to_restore.clear()
    assert loop.ready()
    now[0] += CONTACT_WINDOW_S + 1
    assert not loop.connected() and not loop.ready()  # no answer from the broker for too long
    loop.contact.seen()
    assert loop.ready()
    loop.stop()
    assert not loop.ready()


def test_contact_is_recent_within_its_window_only() -> None:
    """Contact: never seen is not recent; seen is recent until the window has passed."""
    now = [0.0]
    contact = Contact(10.0, clock=lambda: now[0])
    assert not contact.recent()
    contact.seen()
    now[0] = 9.9
    assert contact.recent()
    now[0] = 10.0
    assert not contact.recent()


async def test_probe_every_marks_the_contact_on_success_only() -> None:
    """A failing probe leaves the contact unset; a succeeding one sets it; cancelling stops the probing."""
    marked = asyncio.Event()

    class Marked(Contact):
        def seen(self) -> None:
            super().seen()
            marked.set()

    contact = Marked(10.0)
    answers = [False, False, True]

    async def probe() -> None:
        if not answers.pop(0):
            raise ConnectionError("broker gone")

    task = asyncio.create_task(probe_every(probe, contact, every_s=0.01, timeout_s=1.0))
    try:
        await asyncio.wait_for(marked.wait(), 5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert answers == [] and contact.recent()
