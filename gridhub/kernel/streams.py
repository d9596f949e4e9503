"""What every Faust worker shares: topics of raw bytes and one way to dead-letter."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import faust
from prometheus_client import CollectorRegistry

from gridhub.kernel.deadletter import dead_letter
from gridhub.kernel.metrics import ServiceMetrics
from gridhub.kernel.settings import CommonSettings

log = logging.getLogger(__name__)


def bytes_topic(app: faust.App, common: CommonSettings, *names: str) -> faust.TopicT:
    """A Faust topic over catalogue names whose keys and values stay bytes (pydantic does the parsing)."""
    return app.topic(*(common.topic(name) for name in names), key_serializer="raw", value_serializer="raw")


class DeadLetters:
    """Publishes a stage's permanent failures to events.deadletter and counts them by reason."""

    def __init__(self, app: faust.App, common: CommonSettings, stage: str, registry: CollectorRegistry) -> None:
        self.stage = stage
        self.topic = bytes_topic(app, common, "events.deadletter")
        self.count = ServiceMetrics(stage, registry).counter(
            "dead_letters", "Messages dead-lettered, by reason.", ("reason",)
        )

    async def event(self, event: Any, reason: str, detail: str, causation_id: str | None = None) -> None:
        """Dead-letter the message a Faust event carries, with where it was read."""
        message = event.message
        await self.record(
            reason=reason,
            detail=detail,
            topic=message.topic,
            value=message.value,
            key=message.key,
            partition=message.partition,
            offset=message.offset,
            causation_id=causation_id,
        )

    async def record(
        self,
        *,
        reason: str,
        detail: str,
        topic: str,
        value: bytes,
        key: bytes | None,
        partition: int | None = None,
        offset: int | None = None,
        causation_id: str | None = None,
    ) -> None:
        """Dead-letter bytes that no longer have a Kafka position (held, then refused)."""
        record = dead_letter(
            stage=self.stage,
            reason=reason,
            detail=detail,
            topic=topic,
            value=value,
            key=key,
            partition=partition,
            offset=offset,
            now=datetime.now(UTC),
            causation_id=causation_id,
        )
        await self.topic.send(key=key, value=record.to_bytes())
        self.count.labels(reason).inc()
        log.warning("dead-lettered", extra={"reason": reason, "detail": detail, "topic": topic})
