"""aiokafka producer/consumer/admin factory and the message codec, configured from CommonSettings."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from gridhub.kernel.settings import CommonSettings
from schemas import Message, TopicSpec
from schemas.catalogue import TOPICS_TO_CREATE, InternalTopic

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)


def producer_options(common: CommonSettings) -> dict[str, Any]:
    """Producer options: acks=all always, idempotence only where the broker supports it."""
    return {
        "bootstrap_servers": common.kafka_bootstrap,
        "acks": "all",
        "enable_idempotence": common.kafka_idempotence,
        "linger_ms": common.kafka_linger_ms,
        "max_batch_size": 256 * 1024,
    }


def make_producer(common: CommonSettings, **overrides: Any) -> AIOKafkaProducer:
    """A producer for the configured cluster (not started)."""
    return AIOKafkaProducer(**{**producer_options(common), **overrides})


def make_consumer(common: CommonSettings, *topics: str, group_id: str | None, **overrides: Any) -> AIOKafkaConsumer:
    """A consumer with the session timeout in force (short on Tansu, see settings)."""
    session_ms = int(common.session_timeout_s * 1000)
    options: dict[str, Any] = {
        "bootstrap_servers": common.kafka_bootstrap,
        "group_id": group_id,
        "session_timeout_ms": session_ms,
        "heartbeat_interval_ms": max(500, session_ms // 6),
        "auto_offset_reset": "earliest",
        "enable_auto_commit": group_id is not None,
    }
    return AIOKafkaConsumer(*topics, **{**options, **overrides})


def decode(model: type[M], value: bytes) -> M:
    """Parse one message value with its pydantic model (raises pydantic.ValidationError)."""
    return model.model_validate_json(value)


async def create_topics(
    common: CommonSettings,
    specs: Sequence[TopicSpec | InternalTopic] = TOPICS_TO_CREATE,
    partitions: int | None = None,
) -> dict[str, str]:
    """Create every catalogue and service-internal topic that does not exist yet; return {topic: created|exists}."""
    admin = AIOKafkaAdminClient(bootstrap_servers=common.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        outcome: dict[str, str] = {}
        wanted = []
        for spec in specs:
            name = common.topic(spec.name)
            if name in existing:
                outcome[name] = "exists"
                continue
            wanted.append(
                NewTopic(
                    name=name,
                    num_partitions=partitions or spec.partitions,
                    replication_factor=common.kafka_replication_factor,
                    topic_configs=spec.config(),
                )
            )
        for topic in wanted:
            # One request per topic: a concurrent creator racing us is "exists", not a failure.
            try:
                await admin.create_topics([topic])
                outcome[topic.name] = "created"
            except TopicAlreadyExistsError:
                outcome[topic.name] = "exists"
        return outcome
    finally:
        await admin.close()


async def wait_for_broker(bootstrap: str, timeout_s: float = 30.0) -> None:
    """Return once the broker answers a metadata request; raise TimeoutError after timeout_s."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    last: Exception | None = None
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    # Wait for the port first: aiokafka logs an ERROR for every refused connection.
    while asyncio.get_running_loop().time() < deadline:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout=2)
        except (OSError, TimeoutError) as exc:
            last = exc
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        break
    while asyncio.get_running_loop().time() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
        try:
            await asyncio.wait_for(admin.start(), timeout=3)
            await asyncio.wait_for(admin.list_topics(), timeout=3)
            return
        except (KafkaError, OSError, TimeoutError) as exc:
            last = exc
            await asyncio.sleep(0.2)
        finally:
            await admin.close()
    raise TimeoutError(f"Kafka broker at {bootstrap} did not answer within {timeout_s} s: {last!r}")
