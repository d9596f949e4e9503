"""The kernel's Kafka wiring against the session's real broker."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from gridhub.broker import EmbeddedBroker, port_is_free
from gridhub.kernel.kafka import create_topics, decode, make_consumer, make_producer
from gridhub.kernel.settings import CommonSettings
from schemas import CATALOGUE, TaskUpdated, UpdateKind, new_id
from schemas.catalogue import INTERNAL_TOPICS
from tests.conftest import Broker

pytestmark = pytest.mark.broker


def settings_for(broker: Broker, prefix: str) -> CommonSettings:
    """Settings pointing at the session broker with a prefix of the test's own."""
    return CommonSettings(kafka_bootstrap=broker.bootstrap, kafka_idempotence=broker.idempotence, topic_prefix=prefix)


async def test_topics_create_is_idempotent(broker: Broker) -> None:
    common = settings_for(broker, f"k{uuid.uuid4().hex[:8]}.")
    first = await create_topics(common)
    second = await create_topics(common)
    assert set(first.values()) == {"created"}
    assert set(second.values()) == {"exists"}
    # The public catalogue and the services' own topics (the router's), all at once.
    assert sorted(first) == sorted(common.topic(spec.name) for spec in (*CATALOGUE, *INTERNAL_TOPICS))


async def test_message_round_trips_through_kernel_clients(broker: Broker) -> None:
    common = settings_for(broker, f"k{uuid.uuid4().hex[:8]}.")
    await create_topics(common)
    update = TaskUpdated(
        update_id=new_id(),
        task_id=new_id(),
        unit_code="PA-CG",
        kind=UpdateKind.FEEDBACK,
        occurred_at="2026-11-20T10:00:00+08:00",
        note="群众表示满意，已回访",
        satisfaction=5,
    )
    producer = make_producer(common)
    await producer.start()
    try:
        await producer.send_and_wait(common.topic("tasks.updates"), update.to_bytes(), key=update.task_id.encode())
    finally:
        await producer.stop()
    consumer = make_consumer(common, common.topic("tasks.updates"), group_id=common.group(f"test-{uuid.uuid4().hex}"))
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), timeout=30)
    finally:
        await consumer.stop()
    assert decode(TaskUpdated, record.value) == update
    assert "回访".encode() in record.value  # UTF-8 on the wire, not \\u escapes


def test_embedded_broker_starts_answers_and_stops() -> None:
    embedded = EmbeddedBroker()
    embedded.start(timeout_s=30)
    try:
        assert not port_is_free(embedded.host, embedded.port)
        with pytest.raises(OSError, match="in use"):
            EmbeddedBroker(port=embedded.port).start()
    finally:
        embedded.stop()
    assert embedded.pid is None
    assert port_is_free(embedded.host, embedded.port)
