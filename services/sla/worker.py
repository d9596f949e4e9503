"""SLA's Kafka wiring: tasks.dispatched + tasks.updates in, tasks.status out, state in a Faust table."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

import faust
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from gridhub.kernel.errors import PermanentError
from gridhub.kernel.faust_app import make_faust_app
from gridhub.kernel.metrics import ServiceMetrics
from gridhub.kernel.problems import describe_validation_error
from gridhub.kernel.service import prepare, run_worker
from gridhub.kernel.streams import DeadLetters, bytes_topic
from schemas import TaskDispatched, TaskStatus, TaskUpdated
from services.sla.calendar import WorkingCalendar
from services.sla.clocks import TaskClockState, apply_update, start_clocks, status_event
from services.sla.settings import SlaSettings

SERVICE = "sla"
log = logging.getLogger(__name__)
PENDING = b"pending:"


class SlaMetrics:
    """SLA counters, gauges and latency histogram."""

    def __init__(self, registry: CollectorRegistry) -> None:
        m = ServiceMetrics(SERVICE, registry)
        self.started = m.counter("clocks_started", "Task clocks started, by deadline class.", ("deadline_class",))
        self.updates = m.counter("updates", "Unit updates applied, by kind and outcome.", ("kind", "outcome"))
        self.closed = m.counter("tasks_closed", "Tasks closed, by whether on time.", ("on_time",))
        self.calendar_fallback = m.counter(
            "calendar_fallback_clocks", "Clocks computed with the weekends-only fallback (no calendar data)."
        )
        self.processing = m.histogram("processing", "Time to process one task or update.")


def create_app(
    settings: SlaSettings, registry: CollectorRegistry, calendar: WorkingCalendar | None = None
) -> faust.App:
    """The SLA Faust app: a clock per task, updates applied in order, status published."""
    common = settings.common
    calendar = calendar or WorkingCalendar.with_files(settings.calendar_files)
    app = make_faust_app(SERVICE, common, web_port=settings.port, web_host=settings.host)
    metrics = SlaMetrics(registry)
    prepare(app, SERVICE, registry)

    dispatched_name = common.topic("tasks.dispatched")
    inputs = bytes_topic(app, common, "tasks.dispatched", "tasks.updates")
    status_out = bytes_topic(app, common, "tasks.status")
    dead_letters = DeadLetters(app, common, SERVICE, registry)
    # task_id -> TaskClockState as JSON-able dict; b"pending:"+task_id -> updates that arrived before their task.
    clocks = app.Table("task-clocks", default=None, key_type=bytes)

    async def reject_pending(update: TaskUpdated, exc: PermanentError) -> None:
        # A held update has no Kafka position any more; the dead letter keeps its bytes and topic.
        await dead_letters.record(
            reason=exc.reason,
            detail=exc.detail,
            topic=common.topic("tasks.updates"),
            value=update.to_bytes(),
            key=update.task_id.encode(),
            causation_id=update.message_id,
        )
        metrics.updates.labels(update.kind.value, "rejected").inc()

    async def publish(state: TaskClockState, causation_id: str) -> None:
        key = state.task_id.encode()
        clocks[key] = state.model_dump(mode="json")
        event = status_event(state, datetime.now(UTC), causation_id)
        await status_out.send(key=key, value=event.to_bytes())
        if state.status is TaskStatus.CLOSED and event.on_time is not None:
            metrics.closed.labels(str(event.on_time).lower()).inc()

    async def on_update(item: Any, update: TaskUpdated) -> None:
        key = update.task_id.encode()
        current = clocks.get(key)
        if current is None:
            # The unit can be faster than this partition; keep the update until its task arrives.
            clocks[PENDING + key] = [*(clocks.get(PENDING + key) or []), update.model_dump(mode="json")]
            metrics.updates.labels(update.kind.value, "pending").inc()
            return
        try:
            state = apply_update(TaskClockState.model_validate(current), update)
        except PermanentError as exc:
            metrics.updates.labels(update.kind.value, "rejected").inc()
            await dead_letters.event(item, exc.reason, exc.detail)
            return
        metrics.updates.labels(update.kind.value, "applied").inc()
        await publish(state, update.message_id)

    async def on_task(task: TaskDispatched) -> None:
        key = task.task_id.encode()
        if clocks.get(key) is not None:
            return  # a redelivered task: its clocks are already running
        state = start_clocks(task, calendar)
        metrics.started.labels(task.deadline_class.value).inc()
        if any(c.calendar_fallback for c in state.clocks):
            metrics.calendar_fallback.inc()
        for raw in clocks.pop(PENDING + key, None) or []:
            update = TaskUpdated.model_validate(raw)
            try:
                state = apply_update(state, update)
            except PermanentError as exc:
                await reject_pending(update, exc)
                continue
            metrics.updates.labels(update.kind.value, "applied").inc()
        await publish(state, task.message_id)

    @app.agent(inputs, name="task-clocks")
    async def task_clocks(stream: faust.StreamT[bytes]) -> None:
        async for item in stream.events():
            started = time.perf_counter()
            is_task = item.message.topic == dispatched_name
            try:
                if is_task:
                    await on_task(TaskDispatched.model_validate_json(item.value))
                else:
                    await on_update(item, TaskUpdated.model_validate_json(item.value))
            except ValidationError as exc:
                await dead_letters.event(
                    item, "malformed-task" if is_task else "malformed-update", describe_validation_error(exc)
                )
            metrics.processing.observe(time.perf_counter() - started)

    @app.page("/tasks/{task_id}")
    class TaskClockPage(View):
        # Forwarded to the worker that owns the task's partition when that is another replica.
        @app.table_route(table=clocks, match_info="task_id")  # type: ignore[arg-type]  # faust types views without path args
        async def get(self, request: Request, task_id: str) -> Response:
            value = clocks.get(task_id.encode())
            if value is None:
                problem = {
                    "type": "about:blank",
                    "title": "未找到该任务",
                    "status": 404,
                    "detail": f"SLA 服务没有任务 {task_id} 的计时（编号错误，或尚未派发）。",
                }
                return self.bytes(
                    json.dumps(problem, ensure_ascii=False).encode(),
                    content_type="application/problem+json",
                    status=404,
                )
            state = TaskClockState.model_validate(value)
            event = status_event(state, datetime.now(UTC), None)
            return self.bytes(event.to_bytes(), content_type="application/json")

    return app


def main() -> None:
    """Entry point of `gridhub serve sla`."""
    settings = SlaSettings()
    run_worker(create_app(settings, CollectorRegistry()), settings.common, SERVICE)
