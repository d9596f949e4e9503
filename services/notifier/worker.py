"""Notifier's Kafka wiring: tasks.dispatched in, webhooks out, deliveries.results and dead letters recorded."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from functools import partial
from typing import Any

import aiohttp
import faust
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from gridhub.kernel.faust_app import make_faust_app
from gridhub.kernel.metrics import ServiceMetrics
from gridhub.kernel.problems import describe_validation_error
from gridhub.kernel.service import prepare, run_worker
from gridhub.kernel.streams import DeadLetters, bytes_topic
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

    tasks_in = bytes_topic(app, common, "tasks.dispatched")
    results_out = bytes_topic(app, common, "deliveries.results")
    dead_letters = DeadLetters(app, common, SERVICE, registry)

    def session() -> aiohttp.ClientSession:
        # Created on first use, inside the worker's running loop.
        if not sessions:
            sessions.append(new_session(settings.concurrency, settings.timeout_s))
        return sessions[0]

    @app.on_before_shutdown.connect  # type: ignore[arg-type]  # mode types async receivers too narrowly
    async def _close_session(app: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        for open_session in sessions:
            await open_session.close()

    async def deliver_task(task: TaskDispatched, body: bytes) -> DeliveryRecorded:
        url = settings.endpoint_for(task.unit_code)
        # The task id is deterministic, so a replayed task keeps its webhook-id and receivers dedupe.
        webhook_id = f"task_{task.task_id}"
        record = partial(
            DeliveryRecorded,
            causation_id=task.message_id,
            webhook_id=webhook_id,
            subject_id=task.task_id,
            unit_code=task.unit_code,
            endpoint_url=url,
        )
        if url is None:
            return record(
                outcome=DeliveryOutcome.NO_ENDPOINT,
                attempts=0,
                last_error="no webhook configured",
                finished_at=datetime.now(UTC),
            )
        report = await deliver(session(), url, key, webhook_id, body, settings.retry_schedule_s)
        for status in report.statuses:
            metrics.attempts.labels(f"{status // 100}xx" if status else "error").inc()
        if report.latency_ms is not None:
            metrics.latency.observe(report.latency_ms / 1000)
        return record(
            outcome=DeliveryOutcome.DELIVERED if report.delivered else DeliveryOutcome.EXHAUSTED,
            attempts=report.attempts,
            last_status=report.last.status,
            last_error=report.last.error,
            latency_ms=report.latency_ms,
            finished_at=datetime.now(UTC),
        )

    @app.agent(tasks_in, name="deliver-tasks", concurrency=settings.concurrency)
    async def deliver_tasks(stream: faust.StreamT[bytes]) -> None:
        async for item in stream.events():
            try:
                task = TaskDispatched.model_validate_json(item.value)
            except ValidationError as exc:
                await dead_letters.event(item, "malformed-task", describe_validation_error(exc))
                continue
            result = await deliver_task(task, item.value)
            await results_out.send(key=task.task_id.encode(), value=result.to_bytes())
            metrics.deliveries.labels(result.outcome.value).inc()
            if result.outcome is not DeliveryOutcome.DELIVERED:
                detail = f"{result.endpoint_url}: {result.last_status} {result.last_error}"
                await dead_letters.event(item, result.outcome.value, detail, causation_id=task.message_id)

    return app


def main() -> None:
    """Entry point of `gridhub serve notifier`."""
    settings = NotifierSettings()
    run_worker(create_app(settings, CollectorRegistry()), settings.common, SERVICE)
