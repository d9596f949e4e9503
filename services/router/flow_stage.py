"""The router's flows on the batch loop: the task index and each event's flow after its first routing.

Inputs (one member of the router's group owns partition p of each, so the state of p lives in one process):

* `tasks.dispatched` → the task index of p (task id → event id, unit), rebuilt on assignment by reading the
  topic's partition p: it is its own state. A held update of the task (see below) is handed on now.
* `tasks.updates` (only `returned` and `mediation-failed` matter here) and `tasks.summons` → handed to the
  event's flow on `router.flows`, keyed by event id; one that beats its task is held, and the held list is
  kept on `router.flow-state` under `pending:<task id>` until the task arrives.
* `router.flows` → `flows.apply` on the event's `FlowState`; its tasks, queue commands and closing updates
  are published. A first routing (`Routed`) is kept as the bytes it came in (parsed only when a later input
  arrives, which most events never get), so routing an event costs the flows no parse: on assignment the
  Routed records of p are read back as the base state, and the states later inputs changed are read from the
  compacted `router.flow-state` over them.

Outputs go out with the batch; state records (`after_acks`) only once those are acked, the offsets after both:
a crash in between replays inputs, which `flows.apply` recognises by their ids.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition
from pydantic import BaseModel, ConfigDict, ValidationError

from gridhub.kernel.batchloop import read_to_end
from gridhub.kernel.batchout import KafkaDeadLetters, Outgoing
from gridhub.kernel.errors import PermanentError
from gridhub.kernel.journal import Journal
from gridhub.kernel.problems import describe_validation_error
from gridhub.kernel.settings import CommonSettings
from schemas import TRIAGE_KEY, SummonDepartments, TaskUpdated, UpdateKind
from schemas.dutylist import DutyList
from services.router.flows import FLOW_INPUT, FlowInput, FlowPolicy, FlowState, Routed, Summoned, UnitReported, apply

log = logging.getLogger(__name__)
PENDING = b"pending:"
ROUTED_PREFIX = b'{"kind":"routed"'
FLOW_KINDS = {UpdateKind.RETURNED: "returned", UpdateKind.MEDIATION_FAILED: "mediation-failed"}
# Byte markers of the update kinds the flows act on; other updates (most of them) are skipped unparsed.
FLOW_KIND_MARKERS = (b'"returned"', b'"mediation-failed"')
Counter = Callable[[str, str], None]


class TaskKey(BaseModel):
    """The fields of a TaskDispatched the index needs (the rest of the message is skipped by the parser)."""

    model_config = ConfigDict(extra="ignore")

    task_id: str
    event_id: str
    unit_code: str


class FlowStage:
    """Task index and flows of the partitions this worker owns."""

    def __init__(
        self,
        common: CommonSettings,
        lists: Callable[[], DutyList],
        policy: FlowPolicy,
        journal: Journal,
        dead_letters: KafkaDeadLetters,
        count: Counter,
    ) -> None:
        self.common = common
        self.dead_letters = dead_letters
        self.lists = lists
        self.policy = policy
        self.journal = journal
        self.count = count
        self.flows_topic = common.topic("router.flows")
        self.state_topic = common.topic("router.flow-state")
        self.tasks_topic = common.topic("tasks.dispatched")
        self.updates_topic = common.topic("tasks.updates")
        self.commands_topic = common.topic("router.commands")
        # partition -> event id -> Routed bytes (not parsed yet) or FlowState
        self.flows: dict[int, dict[bytes, bytes | FlowState]] = {}
        # partition -> task id -> (event id, unit code)
        self.index: dict[int, dict[bytes, tuple[str, str]]] = {}
        # partition -> task id -> held messages, as {"update": {...}} or {"summons": {...}}
        self.pending: dict[int, dict[bytes, list[dict[str, Any]]]] = {}

    # --- state of partitions -------------------------------------------------------------------------

    async def restore(self, partitions: set[int]) -> None:
        """Rebuild the index, held updates and flow states of newly assigned partitions from their topics."""
        wanted = sorted(partitions - self.flows.keys())
        if not wanted:
            return
        flows: dict[int, dict[bytes, bytes | FlowState]] = {p: {} for p in wanted}
        index: dict[int, dict[bytes, tuple[str, str]]] = {p: {} for p in wanted}
        pending: dict[int, dict[bytes, list[dict[str, Any]]]] = {p: {} for p in wanted}

        def base(record: Any) -> None:
            if record.topic == self.tasks_topic:
                task = TaskKey.model_validate_json(record.value)
                index[record.partition][record.key] = (task.event_id, task.unit_code)
            elif record.value.startswith(ROUTED_PREFIX) and record.key is not None:
                flows[record.partition].setdefault(record.key, record.value)

        def overlay(record: Any) -> None:
            key = record.key or b""
            if key.startswith(PENDING):
                if record.value is None:
                    pending[record.partition].pop(key[len(PENDING) :], None)
                else:
                    pending[record.partition][key[len(PENDING) :]] = json.loads(record.value)
            elif record.value is not None:
                flows[record.partition][key] = FlowState.model_validate_json(record.value)

        topics = (self.tasks_topic, self.flows_topic)
        await read_to_end(self.common, [TopicPartition(t, p) for t in topics for p in wanted], base)
        await read_to_end(self.common, [TopicPartition(self.state_topic, p) for p in wanted], overlay)
        self.flows.update(flows)
        self.index.update(index)
        self.pending.update(pending)
        log.info(
            "flows restored",
            extra={
                "partitions": wanted,
                "events": sum(len(f) for f in flows.values()),
                "tasks": sum(len(i) for i in index.values()),
            },
        )

    def revoked(self, partitions: set[int]) -> None:
        """Drop the state of partitions given away."""
        for p in partitions:
            self.flows.pop(p, None)
            self.index.pop(p, None)
            self.pending.pop(p, None)

    # --- inputs --------------------------------------------------------------------------------------

    def task(self, record: Any) -> Sequence[Outgoing]:
        """A task dispatched (by this router): index it, and hand on what was held for it."""
        try:
            task = TaskKey.model_validate_json(record.value)
        except ValidationError:
            return ()  # a malformed task is the SLA service's to dead-letter
        key = task.task_id.encode()
        index = self.index[record.partition]
        entry = (task.event_id, task.unit_code)
        if index.get(key) != entry:
            self.journal.set(index, key, entry)
        held = self.pending[record.partition].get(key)
        if not held:
            return ()
        self.journal.delete(self.pending[record.partition], key)
        outs = [self._relay(task.event_id, _held_message(h)) for h in held]
        outs.append(Outgoing(self.state_topic, None, PENDING + key, partition=record.partition, after_acks=True))
        return outs

    def update(self, record: Any) -> Sequence[Outgoing]:
        """A unit's update: a return or a failed mediation goes to the event's flow."""
        value = record.value
        if not any(marker in value for marker in FLOW_KIND_MARKERS):
            return ()
        try:
            update = TaskUpdated.model_validate_json(value)
        except ValidationError:
            return ()  # the SLA service dead-letters malformed updates
        if update.kind not in FLOW_KINDS:
            return ()
        return self._to_flow(record.partition, update)

    def summons(self, record: Any) -> Sequence[Outgoing]:
        """A township centre's summons of departments goes to the event's flow."""
        try:
            summons = SummonDepartments.model_validate_json(record.value)
        except ValidationError as exc:
            raise PermanentError("malformed-summons", describe_validation_error(exc)) from exc
        return self._to_flow(record.partition, summons)

    def flow(self, record: Any) -> Sequence[Outgoing]:
        """One input of an event's flow: apply it and publish what it decides."""
        key: bytes = record.key or b""
        states = self.flows[record.partition]
        current = states.get(key)
        value: bytes = record.value
        if current is None and value.startswith(ROUTED_PREFIX):
            self.journal.set(states, key, value)  # the first routing: kept as it came, parsed on demand
            self.count("routed", "recorded")
            return ()
        try:
            item = FLOW_INPUT.validate_json(value)
        except ValidationError as exc:  # only bytes this router wrote arrive here; kept for safety
            raise PermanentError("malformed-flow-input", describe_validation_error(exc)) from exc
        state = self._state(current)
        out = apply(state, item, self.lists(), self.policy, datetime.now(UTC))
        outs: list[Outgoing] = [Outgoing(self.tasks_topic, t.to_bytes(), t.task_id.encode()) for t in out.tasks]
        outs += [Outgoing(self.commands_topic, c.to_bytes(), TRIAGE_KEY.encode()) for c in out.triage]
        outs += [Outgoing(self.updates_topic, u.to_bytes(), u.task_id.encode()) for u in out.updates]
        if out.refused is not None:
            outs.append(self.dead_letters.of(record, f"{item.kind}-refused", out.refused))
        outcome = "refused" if out.refused else "acted" if out.tasks or out.triage else "recorded"
        self.count(item.kind, outcome)
        if out.state != state:
            self.journal.set(states, key, out.state)
            outs.append(
                Outgoing(
                    self.state_topic,
                    out.state.model_dump_json().encode(),
                    key,
                    partition=record.partition,
                    after_acks=True,
                )
            )
        log.info(
            "flow",
            extra={
                "event_id": key.decode(),
                "input": item.kind,
                "tasks": [(t.unit_code, t.role.value, t.task_id) for t in out.tasks],
                "notes": out.notes,
                "refused": out.refused,
            },
        )
        return outs

    # --- helpers -------------------------------------------------------------------------------------

    def _state(self, current: bytes | FlowState | None) -> FlowState | None:
        if isinstance(current, bytes):
            routed = FLOW_INPUT.validate_json(current)
            assert isinstance(routed, Routed)
            return apply(None, routed, self.lists(), self.policy, datetime.now(UTC)).state
        return current

    def _to_flow(self, partition: int, message: TaskUpdated | SummonDepartments) -> Sequence[Outgoing]:
        key = message.task_id.encode()
        entry = self.index[partition].get(key)
        if entry is not None:
            return (self._relay(entry[0], message),)
        # The unit was faster than this partition's copy of tasks.dispatched: hold it until the task comes.
        kind = "summons" if isinstance(message, SummonDepartments) else "update"
        pending = self.pending[partition]
        held = [*pending.get(key, []), {kind: message.model_dump(mode="json")}]
        self.journal.set(pending, key, held)
        self.count("summoned" if isinstance(message, SummonDepartments) else FLOW_KINDS[message.kind], "held")
        value = json.dumps(held, ensure_ascii=False).encode()
        return (Outgoing(self.state_topic, value, PENDING + key, partition=partition, after_acks=True),)

    def _relay(self, event_id: str, message: TaskUpdated | SummonDepartments) -> Outgoing:
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
        return Outgoing(self.flows_topic, FLOW_INPUT.dump_json(item), event_id.encode())


def _held_message(held: dict[str, Any]) -> TaskUpdated | SummonDepartments:
    if "update" in held:
        return TaskUpdated.model_validate(held["update"])
    return SummonDepartments.model_validate(held["summons"])
