"""The router's Kafka wiring of what happens after the first routing: returns, ladder, summons, manual dispatch.

Two agents and an internal topic:

* `task-index` reads `tasks.dispatched`, `tasks.updates` and `tasks.summons` (all keyed by task id, so
  co-partitioned) into the table `task-index` (task id → event id and unit). A unit's `returned` or
  `mediation-failed` update, and a township's `SummonDepartments`, are forwarded to the event's flow, keyed by
  event id, on `<prefix>router-flows`; one that arrives before its task is held in the table until it does.
* `event-flows` reads `<prefix>router-flows` (the first routing of each event from the decide stage, the
  forwarded updates and summons, and the dispatchers' manual dispatches from the triage queue) into the table
  `routed-events` (event id → `FlowState`) and publishes what `flows.apply` decides: tasks, triage queue
  commands, the update that closes the command centre's triage task. Outputs go out before the state is
  saved; their ids are deterministic, so a replayed input publishes the same tasks again at worst.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import faust
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from gridhub.kernel.metrics import ServiceMetrics
from gridhub.kernel.problems import describe_validation_error
from gridhub.kernel.settings import CommonSettings
from gridhub.kernel.streams import DeadLetters, bytes_topic
from schemas import (
    TRIAGE_KEY,
    EventNormalised,
    SummonDepartments,
    TaskDispatched,
    TaskUpdated,
    UpdateKind,
)
from schemas.catalogue import PARTITIONS
from schemas.dutylist import DutyList
from services.router.decide import Decision
from services.router.flows import (
    FLOW_INPUT,
    FlowInput,
    FlowPolicy,
    FlowState,
    Routed,
    Summoned,
    TaskRef,
    UnitReported,
    apply,
    queue_command,
)

log = logging.getLogger(__name__)
PENDING = b"pending:"
FLOW_KINDS = {UpdateKind.RETURNED: "returned", UpdateKind.MEDIATION_FAILED: "mediation-failed"}


class Flows:
    """Handles of the flows wiring the rest of the router uses."""

    def __init__(self, topic: faust.TopicT, commands: faust.TopicT) -> None:
        self.topic = topic
        self.commands = commands

    async def send(self, event_id: str, item: FlowInput) -> None:
        """Put an input on the event's flow."""
        await self.topic.send(key=event_id.encode(), value=FLOW_INPUT.dump_json(item))

    async def routed(
        self, event: EventNormalised, decision: Decision, tasks: list[TaskDispatched], duty: DutyList
    ) -> None:
        """Record an event's first routing; a triage decision also queues it for the dispatchers."""
        cls = decision.classification
        routed = Routed(
            event=event,
            matter_code=decision.routing.matter_code,
            confidence=cls.confidence if cls else decision.routing.confidence,
            triage=decision.routing.triage,
            tasks=tuple(TaskRef(task_id=t.task_id, unit_code=t.unit_code, role=t.role, round=0) for t in tasks),
        )
        await self.send(event.event_id, routed)
        if decision.routing.triage:
            command = queue_command(event, decision, duty, datetime.now(UTC))
            await self.commands.send(key=TRIAGE_KEY.encode(), value=command.to_bytes())


def install_flows(
    app: faust.App,
    common: CommonSettings,
    duty: DutyList,
    policy: FlowPolicy,
    dead_letters: DeadLetters,
    tasks_out: faust.TopicT,
    registry: CollectorRegistry,
) -> Flows:
    """Add the task-index and event-flows agents to the router app."""
    counted = ServiceMetrics("router", registry).counter(
        "flow_inputs",
        "Inputs to events' flows (routed, returned, mediation-failed, summoned, manual), by outcome.",
        ("input", "outcome"),
    )
    flows_topic = app.topic(
        common.topic("router-flows"),
        internal=True,
        partitions=PARTITIONS,
        key_serializer="raw",
        value_serializer="raw",
    )
    commands_out = bytes_topic(app, common, "router.commands")
    updates_out = bytes_topic(app, common, "tasks.updates")
    flows = Flows(flows_topic, commands_out)
    dispatched_name = common.topic("tasks.dispatched")
    updates_name = common.topic("tasks.updates")
    task_inputs = bytes_topic(app, common, "tasks.dispatched", "tasks.updates", "tasks.summons")
    # task id -> {"event_id", "unit_code"}; b"pending:" + task id -> updates and summons that came first.
    task_index = app.Table("task-index", default=None, key_type=bytes, partitions=PARTITIONS)
    # event id -> FlowState as JSON.
    routed_events = app.Table("routed-events", default=None, key_type=bytes, partitions=PARTITIONS)

    async def relay(entry: dict[str, Any], message: TaskUpdated | SummonDepartments) -> None:
        item: FlowInput
        if isinstance(message, TaskUpdated):
            item = UnitReported(
                kind=FLOW_KINDS[message.kind],
                task_id=message.task_id,
                unit_code=message.unit_code,
                reason=message.reason or "",
                update_id=message.update_id,
            )
        else:
            item = Summoned(
                task_id=message.task_id,
                unit_code=message.unit_code,
                departments=message.departments,
                note=message.note,
                command_id=message.message_id,
            )
        await flows.send(entry["event_id"], item)

    async def on_message(message: TaskUpdated | SummonDepartments) -> None:
        key = message.task_id.encode()
        entry = task_index.get(key)
        if entry is None:  # the unit was faster than this partition's copy of tasks.dispatched
            held = {"summons" if isinstance(message, SummonDepartments) else "update": message.model_dump(mode="json")}
            task_index[PENDING + key] = [*(task_index.get(PENDING + key) or []), held]
            return
        await relay(entry, message)

    async def on_task(task: TaskDispatched) -> None:
        key = task.task_id.encode()
        entry = task_index.get(key)
        if entry is None:
            entry = {"event_id": task.event_id, "unit_code": task.unit_code}
            task_index[key] = entry
        for held in task_index.pop(PENDING + key, None) or []:
            if "update" in held:
                await relay(entry, TaskUpdated.model_validate(held["update"]))
            else:
                await relay(entry, SummonDepartments.model_validate(held["summons"]))

    @app.agent(task_inputs, name="task-index")
    async def index_tasks(stream: faust.StreamT[bytes]) -> None:
        async for item in stream.events():
            topic = item.message.topic
            try:
                if topic == dispatched_name:
                    await on_task(TaskDispatched.model_validate_json(item.value))
                elif topic == updates_name:
                    update = TaskUpdated.model_validate_json(item.value)
                    if update.kind in FLOW_KINDS:
                        await on_message(update)
                else:
                    await on_message(SummonDepartments.model_validate_json(item.value))
            except ValidationError as exc:
                # Malformed tasks and updates are the SLA service's to dead-letter; summons are the router's.
                if topic not in (dispatched_name, updates_name):
                    await dead_letters.event(item, "malformed-summons", describe_validation_error(exc))

    @app.agent(flows_topic, name="event-flows")
    async def event_flows(stream: faust.StreamT[bytes]) -> None:
        async for item in stream.events():
            key = item.message.key or b""
            try:
                flow_input = FLOW_INPUT.validate_json(item.message.value)
            except ValidationError as exc:  # only bytes this app wrote arrive here; kept for safety
                await dead_letters.event(item, "malformed-flow-input", describe_validation_error(exc))
                continue
            raw = routed_events.get(key)
            state = FlowState.model_validate(raw) if raw is not None else None
            out = apply(state, flow_input, duty, policy, datetime.now(UTC))
            for task in out.tasks:
                await tasks_out.send(key=task.task_id.encode(), value=task.to_bytes())
            for command in out.triage:
                await commands_out.send(key=TRIAGE_KEY.encode(), value=command.to_bytes())
            for update in out.updates:
                await updates_out.send(key=update.task_id.encode(), value=update.to_bytes())
            if out.refused is not None:
                await dead_letters.event(item, f"{flow_input.kind}-refused", out.refused)
            outcome = "refused" if out.refused else "acted" if out.tasks or out.triage else "recorded"
            counted.labels(flow_input.kind, outcome).inc()
            if out.state != state:
                routed_events[key] = out.state.model_dump(mode="json")
            log.info(
                "flow",
                extra={
                    "event_id": key.decode(),
                    "input": flow_input.kind,
                    "tasks": [(t.unit_code, t.role.value, t.task_id) for t in out.tasks],
                    "notes": out.notes,
                    "refused": out.refused,
                },
            )

    return flows
