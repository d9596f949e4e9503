"""/readyz of a batch service means connected to Kafka and assigned: a member whose broker stops answering is no
longer ready although it still holds its assignment, and is ready again once the broker answers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import CollectorRegistry

from gridhub.broker import EmbeddedBroker
from gridhub.kernel.batchloop import BatchHandler, BatchLoop
from gridhub.kernel.batchout import Outgoing
from gridhub.kernel.health import Contact
from gridhub.kernel.kafka import make_producer
from gridhub.kernel.settings import CommonSettings

pytestmark = pytest.mark.broker

WAIT_S = 30.0
WINDOW_S = 3.0  # the contact window of the test's loop (30 s in services)


class Nothing(BatchHandler):
    """Reads records and produces nothing."""

    def __init__(self) -> None:
        self.seen = 0

    def process(self, record: Any) -> list[Outgoing]:
        self.seen += 1
        return []


async def eventually(check: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Poll until check() is true, for at most timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        await asyncio.sleep(0.1)


async def create_topic(bootstrap: str, topic: str) -> None:
    """One partition of a topic of the test's own."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await asyncio.wait_for(admin.start(), WAIT_S)
    try:
        await asyncio.wait_for(admin.create_topics([NewTopic(topic, 1, 1)]), WAIT_S)
    finally:
        await admin.close()


async def test_ready_follows_the_broker_and_lag_is_measured(tmp_path: Path) -> None:
    """Ready once assigned; lag counted per topic; not ready while the broker is gone; ready again after."""
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log")
    await asyncio.to_thread(broker.start)
    common = CommonSettings(
        kafka_bootstrap=broker.bootstrap, kafka_idempotence=False, topic_prefix="ops.ready.", kafka_batch_timeout_ms=100
    )
    topic = common.topic("raw.12345")
    registry = CollectorRegistry()
    handler = Nothing()
    loop = BatchLoop(common, "intake", [topic], handler, registry, lag_every_s=0.5)
    loop.contact = Contact(WINDOW_S)
    task: asyncio.Task[None] | None = None
    try:
        await create_topic(broker.bootstrap, topic)
        producer = make_producer(common)
        await asyncio.wait_for(producer.start(), WAIT_S)
        try:
            for i in range(5):
                await asyncio.wait_for(producer.send_and_wait(topic, b"{}", key=f"k{i}".encode()), WAIT_S)
        finally:
            await producer.stop()
        await asyncio.wait_for(loop.start(), WAIT_S)
        task = asyncio.create_task(loop.run())
        await eventually(loop.ready, "assigned, restored and connected")
        await eventually(lambda: handler.seen == 5, "the five records read")
        labels = {"group": loop.group, "topic": "raw.12345"}
        lag = "gridhub_intake_consumer_lag_messages"
        await eventually(lambda: registry.get_sample_value(lag, labels) == 0, "lag measured as 0 once read")
        assert registry.get_sample_value("gridhub_intake_records_consumed_total", {"topic": "raw.12345"}) == 5
        assert registry.get_sample_value("gridhub_intake_assigned_partitions", {"group": loop.group}) == 1

        await asyncio.to_thread(broker.stop)
        await eventually(lambda: not loop.ready(), "not ready with the broker gone", WINDOW_S + 10)
        assert loop.consumer is not None and loop.consumer.assignment()  # the assignment alone said "ready"

        await asyncio.to_thread(broker.start)  # same port; memory storage: a new, empty broker
        await create_topic(broker.bootstrap, topic)
        await eventually(loop.ready, "ready again once the broker answers")
    finally:
        loop.stop()
        if task is not None:
            await asyncio.wait_for(task, WAIT_S)
        await asyncio.wait_for(loop.close(timeout_s=5), WAIT_S)
        await asyncio.to_thread(broker.stop)
