"""Notifier's Kafka wiring: tasks.dispatched in, webhooks out, deliveries.results and dead letters recorded."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import aiohttp
import faust
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from gridhub.kernel.deadletter import dead_letter
from gridhub.kernel.faust_app import make_faust_app
from gridhub.kernel.metrics import ServiceMetrics
from gridhub.kernel.problems import describe_validation_error
from gridhub.kernel.service import prepare, run_worker
from schemas import DeliveryOutcome, DeliveryRecorded, TaskDispatched
from services.notifier.delivery import deliver, new_session
from services.notifier.settings import NotifierSettings
from services.notifier.signing import secret_bytes

SERVICE = "notifier"
log = logging.getLogger(__name__)


class NotifierMetrics:
    """Delivery counters and latency histogram."""

    def __init__(self, registry: CollectorRegistry) -> None:
        m = ServiceMetrics(SERVICE, registry)
        self.deliveries = m.counter("deliveries", "Deliveries finished, by outcome.", ("outcome",))
        self.attempts = m.counter("attempts", "HTTP attempts made, by status class.", ("status_class",))
        self.latency = m.histogram("delivery_latency", "Latency of the successful attempt.")


def create_app(settings: NotifierSettings, registry: CollectorRegistry) -> faust.App:
    """The notifier Faust app: each task POSTed to its unit's webhook, signed, retried."""
    common = settings.common
    key = secret_bytes(settings.signing_secret)
    app = make_faust_app(SERVICE, common, web_port=settings.port, web_host=settings.host)
    metrics = NotifierMetrics(registry)
    prepare(app, SERVICE, registry)
    sessions: list[aiohttp.ClientSession] = []

    tasks_in = app.topic(common.topic("tasks.dispatched"), key_serializer="raw", value_serializer="raw")
    results_out = app.topic(common.topic("deliveries.results"), key_serializer="raw", value_serializer="raw")
    dead_out = app.topic(common.topic("events.deadletter"), key_serializer="raw", value_serializer="raw")

    def session() -> aiohttp.ClientSession:
        # Created on first use, inside the worker's running loop.
        if not sessions:
            sessions.append(new_session(settings.concurrency, settings.timeout_s))
        return sessions[0]

    @app.on_before_shutdown.connect  # type: ignore[arg-type]  # mode types async receivers too narrowly
    async def _close_session(app: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        for open_session in sessions:
            await open_session.close()

    @app.agent(tasks_in, name="deliver-tasks", concurrency=settings.concurrency)
    async def deliver_tasks(stream: faust.StreamT[bytes]) -> None:
        async for item in stream.events():
            message = item.message
            try:
                task = TaskDispatched.model_validate_json(message.value)
            except ValidationError as exc:
                record = dead_letter(
                    stage=SERVICE,
                    reason="malformed-task",
                    detail=describe_validation_error(exc),
                    topic=message.topic,
                    value=message.value,
                    key=message.key,
                    partition=message.partition,
                    offset=message.offset,
                    now=datetime.now(UTC),
                )
                await dead_out.send(key=message.key, value=record.to_bytes())
                continue
            url = settings.endpoint_for(task.unit_code)
            # The task id is deterministic, so a replayed task keeps its webhook-id and receivers dedupe.
            webhook_id = f"task_{task.task_id}"
            error: str | None
            if url is None:
                outcome, attempts, status, error, latency = DeliveryOutcome.NO_ENDPOINT, 0, None, "no webhook", None
            else:
                report = await deliver(session(), url, key, webhook_id, message.value, settings.retry_schedule_s)
                outcome = DeliveryOutcome.DELIVERED if report.delivered else DeliveryOutcome.EXHAUSTED
                attempts, status, error, latency = (
                    report.attempts,
                    report.last.status,
                    report.last.error,
                    report.latency_ms,
                )
                metrics.attempts.labels(f"{status // 100}xx" if status else "error").inc(report.attempts)
                if latency is not None:
                    metrics.latency.observe(latency / 1000)
            result = DeliveryRecorded(
                causation_id=task.message_id,
                webhook_id=webhook_id,
                subject_id=task.task_id,
                unit_code=task.unit_code,
                endpoint_url=url,
                outcome=outcome,
                attempts=attempts,
                last_status=status,
                last_error=error,
                latency_ms=latency,
                finished_at=datetime.now(UTC),
            )
            await results_out.send(key=task.task_id.encode(), value=result.to_bytes())
            metrics.deliveries.labels(outcome.value).inc()
            if outcome is not DeliveryOutcome.DELIVERED:
                record = dead_letter(
                    stage=SERVICE,
                    reason=outcome.value,
                    detail=f"{url}: {error}",
                    topic=message.topic,
                    value=message.value,
                    key=message.key,
                    partition=message.partition,
                    offset=message.offset,
                    now=datetime.now(UTC),
                    causation_id=task.message_id,
                )
                await dead_out.send(key=message.key, value=record.to_bytes())
                log.warning("delivery failed", extra={"outcome": outcome.value, "unit": task.unit_code})

    return app


def main() -> None:
    """Entry point of `gridhub serve notifier`."""
    settings = NotifierSettings()
    run_worker(create_app(settings, CollectorRegistry()), settings.common, SERVICE)
