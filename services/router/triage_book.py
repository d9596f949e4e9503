"""The triage queue as a fold over `router.commands`: one command in, the changes and the answer out; pure.

Every router replica folds the same single-partition log with `step`: the queue's owner (the member of the
router's group holding that partition) to act on dispatches, every replica to answer `/triage` from its own copy.
The same log and the same pure step give every copy the same items and the same answers. Time comes from the
commands themselves (a dispatched item is dropped `KEEP_DISPATCHED` after its dispatch, measured at a later
queue command's `queued_at`, at one queue command in `SWEEP_EVERY`), never from a clock.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from schemas import DispatchTriagedEvent, QueueForTriage, TaskRole
from services.router import triage
from services.router.flow_state import ManualDispatch
from services.router.tasks import task_id_for
from services.router.triage import Refusal, TriageCommand, TriageItem, TriageState

Outcome = Literal["applied", "replay", "refused"]
SWEEP_EVERY = 32


@dataclass
class Step:
    """What one command does: item changes (None deletes), its outcome, the HTTP answer, a manual dispatch."""

    outcome: Outcome
    changes: dict[str, TriageItem | None] = field(default_factory=dict)
    status: int = 200
    body: dict[str, Any] = field(default_factory=dict)
    manual: ManualDispatch | None = None


def answer_body(item: TriageItem, command: TriageCommand) -> dict[str, Any]:
    """The item as the API shows it after a command; a dispatch also lists the tasks it makes."""
    body = item.model_dump(mode="json")
    if isinstance(command, DispatchTriagedEvent):
        round_no = item.round + 1
        roles = [(command.primary, TaskRole.PRIMARY)] + [(c, TaskRole.CO_OPERATING) for c in command.co_operating]
        body["tasks"] = [
            {"task_id": task_id_for(item.event_id, unit, role, round_no), "unit_code": unit, "role": role.value}
            for unit, role in roles
        ]
    return body


def step(items: Mapping[str, TriageItem], command: QueueForTriage | TriageCommand) -> Step:
    """Apply one command of the log to the queue's items."""
    current = items.get(command.event_id)
    if isinstance(command, QueueForTriage):
        queued = triage.queue(current, command)
        if queued is None:
            return Step("replay")
        changes: dict[str, TriageItem | None] = {}
        if zlib.crc32(command.event_id.encode()) % SWEEP_EVERY == 0:
            # The sweep walks every item: done at one queue command in SWEEP_EVERY, picked by the event id so every
            # replica's fold sweeps at the same commands (a dispatched item stays a little past its week).
            changes = {event_id: None for event_id in triage.expired(list(items.values()), command.queued_at)}
        changes[command.event_id] = queued
        return Step("applied", changes)
    if (
        isinstance(command, DispatchTriagedEvent)
        and current is not None
        and current.state is TriageState.DISPATCHED
        and current.dispatch_command_id == command.message_id
    ):
        # The same dispatch read again (a redelivery): answer and hand it on again; the flow ignores a repeat.
        return Step(
            "replay",
            body=answer_body(current, command),
            manual=ManualDispatch(round=current.round + 1, command=command),
        )
    result = triage.apply(current, command)
    if isinstance(result, Refusal):
        body = {"status": result.status, "detail": result.detail}
        return Step("refused", status=result.status, body=body)
    manual = None
    if isinstance(command, DispatchTriagedEvent) and current is not None:
        manual = ManualDispatch(round=current.round + 1, command=command)
    return Step("applied", {command.event_id: result}, body=answer_body(result, command), manual=manual)
