"""Router's Kafka wiring: events.normalised in, tasks.dispatched out."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import faust
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from gridhub.kernel.faust_app import make_faust_app
from gridhub.kernel.metrics import ServiceMetrics
from gridhub.kernel.problems import describe_validation_error
from gridhub.kernel.service import prepare, run_worker
from gridhub.kernel.streams import DeadLetters, bytes_topic
from schemas import EventNormalised
from schemas.dutylist import DutyList, load_duty_list
from services.router.decide import build_tasks, decide
from services.router.settings import RouterSettings

SERVICE = "router"
log = logging.getLogger(__name__)


class RouterMetrics:
    """Router's decision counters and latency histogram."""

    def __init__(self, registry: CollectorRegistry) -> None:
        m = ServiceMetrics(SERVICE, registry)
        self.decisions = m.counter(
            "decisions", "Routing decisions, by matter, tier and triage.", ("matter", "tier", "triage")
        )
        self.tasks = m.counter("tasks", "Tasks dispatched, by role.", ("role",))
        self.processing = m.histogram("processing", "Time to route one event.")


def create_app(settings: RouterSettings, registry: CollectorRegistry, duty: DutyList | None = None) -> faust.App:
    """The router Faust app: one decision per event, one task per unit and role."""
    common = settings.common
    duty = duty or load_duty_list(settings.duty_list)
    matter_codes = {m.code for m in duty.matters}
    app = make_faust_app(SERVICE, common, web_port=settings.port, web_host=settings.host)
    metrics = RouterMetrics(registry)
    prepare(app, SERVICE, registry)

    events_in = bytes_topic(app, common, "events.normalised")
    tasks_out = bytes_topic(app, common, "tasks.dispatched")
    dead_letters = DeadLetters(app, common, SERVICE, registry)

    @app.agent(events_in, name="route-events")
    async def route_events(stream: faust.StreamT[bytes]) -> None:
        async for item in stream.events():
            started = time.perf_counter()
            message = item.message
            try:
                event = EventNormalised.model_validate_json(message.value)
            except ValidationError as exc:
                await dead_letters.event(item, "malformed-event", describe_validation_error(exc))
                continue
            decision = decide(event, duty)
            for task in build_tasks(event, decision, duty, datetime.now(UTC)):
                await tasks_out.send(key=task.task_id.encode(), value=task.to_bytes())
                metrics.tasks.labels(task.role.value).inc()
            matter = decision.matter.code if decision.matter and decision.matter.code in matter_codes else "none"
            metrics.decisions.labels(matter, decision.tier.value, str(decision.routing.triage).lower()).inc()
            metrics.processing.observe(time.perf_counter() - started)
            log.debug(
                "routed",
                extra={
                    "event_id": event.event_id,
                    "units": [a.unit_code for a in decision.assignments],
                    "reason": decision.routing.reason,
                },
            )

    return app


def main() -> None:
    """Entry point of `gridhub serve router`."""
    settings = RouterSettings()
    run_worker(create_app(settings, CollectorRegistry()), settings.common, SERVICE)
