"""The notifier service (`gridhub serve notifier`): its batch loop over tasks and alerts (`handler.py`), the delivery
engine beside it (`engine.py`), the endpoint registry's follower, and the web server (`/v1/endpoints`,
`/deliveries`, /metrics, /healthz, /readyz). How jobs, outbox and offsets fit together is told in `handler.py`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer
from prometheus_client import CollectorRegistry

from gridhub.kernel.batchout import KafkaDeadLetters
from gridhub.kernel.batchserve import BatchService, batch_service
from gridhub.kernel.health import Health
from schemas import (
    DeliveryAlertRaised,
    EndpointChannel,
    SlaAlertRaised,
    TaskDispatched,
)
from services.notifier.channels import Message, accepted, render
from services.notifier.deliveries_api import deliveries_router
from services.notifier.delivery_alerts import DELIVERY_ALERT_JOB
from services.notifier.endpoint_follower import EndpointFollower
from services.notifier.endpoints import registry_from_settings
from services.notifier.endpoints_api import endpoints_api
from services.notifier.engine import DeliveryEngine, NotifierMetrics
from services.notifier.handler import NotifierHandler
from services.notifier.http_client import HttpClient
from services.notifier.outbound import OutboundPolicy
from services.notifier.outbox import Job
from services.notifier.scheduler import Limits, Scheduler
from services.notifier.settings import NotifierSettings
from services.notifier.targets import RegistryTargets, Targets

SERVICE = "notifier"
log = logging.getLogger(__name__)

__all__ = ["create_app", "main"]

# What a job's body is, by its kind: robot cards are rendered from it.
MESSAGE_OF_JOB: dict[str, type[Message]] = {
    "task": TaskDispatched,
    "alert": SlaAlertRaised,
    DELIVERY_ALERT_JOB: DeliveryAlertRaised,
}


def create_app(settings: NotifierSettings, registry: CollectorRegistry, targets: Targets | None = None) -> BatchService:
    """The notifier: the batch loop filling the outbox, the delivery engine, the deliveries and endpoints APIs, and
    the endpoint registry's follower. `targets` replaces the registry (tests)."""
    common = settings.common
    metrics = NotifierMetrics(registry)
    dead_letters = KafkaDeadLetters(common, SERVICE, registry)
    service: BatchService | None = None
    endpoints_topic = common.topic("notifier.endpoints")

    def consumer() -> AIOKafkaConsumer | None:
        return service.loop.consumer if service is not None else None

    def producer() -> Any:
        return service.loop.producer if service is not None else None

    async def publish(key: str, value: bytes | None) -> None:
        sender = producer()
        if sender is None:
            raise RuntimeError("the producer is not started yet")
        await sender.send_and_wait(endpoints_topic, value=value, key=key.encode())

    endpoints = registry_from_settings(settings)
    follower = EndpointFollower(common, endpoints, registry, ready_timeout_s=settings.endpoint_ready_timeout_s)
    writer, endpoints_router = endpoints_api(settings, endpoints, publish)
    state_file = settings.outbox_dir() / "disabled-endpoints.json"
    chosen: Targets = targets or RegistryTargets(endpoints, writer.disable, state_file)
    limits = Limits(settings.endpoint_concurrency, settings.endpoint_rate_per_s, settings.endpoint_burst)
    # Every replica sends to every endpoint: each takes the share of the limits its partitions are of the whole.
    scheduler = Scheduler(lambda _endpoint: limits)

    def render_robot(job: Job) -> tuple[str, bytes, dict[str, str]]:
        endpoint = chosen.endpoint(job.endpoint_id) if isinstance(chosen, RegistryTargets) else None
        if endpoint is None:
            raise ValueError(f"endpoint {job.endpoint_id} is no longer registered")
        message: Message = MESSAGE_OF_JOB[job.kind].model_validate_json(job.body)
        request = render(
            endpoint, message, now=datetime.now(UTC), link_template=settings.task_link_template, body=job.body
        )
        return request.url, request.body, request.headers

    def accept_robot(job: Job, status: int, answer: bytes) -> tuple[bool, bool, str | None]:
        verdict = accepted(EndpointChannel(job.channel), status, answer)
        return verdict.ok, verdict.retryable, verdict.error

    async def endpoints_read() -> None:
        await follower.wait_ready(settings.endpoint_ready_timeout_s)

    handler = NotifierHandler(settings, chosen, scheduler, dead_letters, consumer, endpoints_read)
    engine = DeliveryEngine(
        common,
        scheduler=scheduler,
        outboxes=handler.outboxes,
        targets=chosen,
        metrics=metrics,
        producer=producer,
        schedule=settings.retry_schedule_s,
        concurrency=settings.concurrency,
        timeout_s=settings.timeout_s,
        slow_down_s=settings.slow_down_s,
        disable_after_s=settings.disable_after_s,
        record_every_ms=settings.record_every_ms,
        secrets_of=lambda job: chosen.secrets(job.endpoint_id),
        client_factory=lambda: HttpClient(
            policy=OutboundPolicy.from_settings(settings),
            timeout_s=settings.timeout_s,
            connect_timeout_s=settings.connect_timeout_s,
            max_idle_per_origin=settings.endpoint_concurrency,
        ),
        render=render_robot,
        accept=accept_robot,
        command_centre=settings.command_centre_unit(),
        outbox_retention_s=settings.outbox_retention_days * 86400,
    )
    handler.engine = engine
    health = Health(SERVICE)
    health.add("endpoints-read", lambda: follower.ready)
    service = batch_service(
        SERVICE,
        # The input consumer's own fetch wait: latency counts here (see NotifierSettings.fetch_max_wait_ms).
        common.model_copy(update={"kafka_fetch_max_wait_ms": settings.fetch_max_wait_ms}),
        handler.topics,
        handler,
        registry,
        host=settings.host,
        port=settings.port,
        dead_letters=dead_letters,
        routers=[deliveries_router(handler, engine, settings.api_keys), endpoints_router],
        components=[follower, engine],
        health=health,
    )
    return service


def main() -> None:
    """Entry point of `gridhub serve notifier`."""
    create_app(NotifierSettings(), CollectorRegistry()).run()
