"""What the router keeps per routed event, the inputs of its flow, and the pieces the flows build tasks with; pure.

See `flows.py` for what each input does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from ulid import ULID

from schemas import (
    DispatchTriagedEvent,
    EventNormalised,
    QueueForTriage,
    RoutingDecision,
    TaskDispatched,
    TaskRole,
    TaskUpdated,
    Tier,
)
from schemas.dutylist import DutyList
from services.router.decide import Assignment, Decision, place
from services.router.tasks import build_tasks


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskRef(_Frozen):
    """One task an event got."""

    task_id: str
    unit_code: str
    role: TaskRole
    round: int
    open: bool = True


class Routed(_Frozen):
    """The event's first routing, from the decide stage."""

    kind: Literal["routed"] = "routed"
    event: EventNormalised
    matter_code: str | None
    confidence: float
    triage: bool
    tasks: tuple[TaskRef, ...]


class UnitReported(_Frozen):
    """A unit returned its task, or reports a failed mediation, with its reason."""

    kind: Literal["returned", "mediation-failed"]
    task_id: str
    unit_code: str
    reason: str
    update_id: str


class Summoned(_Frozen):
    """A township centre summons departments onto its task (吹哨报到)."""

    kind: Literal["summoned"] = "summoned"
    task_id: str
    unit_code: str
    departments: tuple[str, ...]
    note: str | None
    command_id: str


class ManualDispatch(_Frozen):
    """A dispatcher routed a triaged event by hand; `round` is the triage task's round plus one."""

    kind: Literal["manual"] = "manual"
    round: int
    command: DispatchTriagedEvent


FlowInput = Annotated[Routed | UnitReported | Summoned | ManualDispatch, Field(discriminator="kind")]
FLOW_INPUT: TypeAdapter[FlowInput] = TypeAdapter(FlowInput)


class FlowState(_Frozen):
    """What the router remembers of one routed event."""

    event: EventNormalised | None = None
    matter_code: str | None = None
    confidence: float = 0.0
    round: int = 0
    triage: bool = False
    tasks: tuple[TaskRef, ...] = ()
    returned_by: tuple[str, ...] = ()
    returns: int = 0
    rung: tuple[int, int] | None = None  # mediation ladder: (level, failures there)
    applied: tuple[str, ...] = ()
    pending: tuple[FlowInput, ...] = ()


@dataclass(frozen=True)
class FlowPolicy:
    """Settings of the flows."""

    max_returns: int = 2


@dataclass
class Outcome:
    """The state after an input and what to publish; `refused` says why an input was not acted on."""

    state: FlowState
    tasks: list[TaskDispatched] = field(default_factory=list)
    triage: list[QueueForTriage] = field(default_factory=list)
    updates: list[TaskUpdated] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    refused: str | None = None


def input_id(item: FlowInput) -> str:
    """What makes an input the same input again."""
    if isinstance(item, Routed):
        return f"routed:{item.event.event_id}"
    if isinstance(item, UnitReported):
        return f"update:{item.update_id}"
    if isinstance(item, Summoned):
        return f"summons:{item.command_id}"
    return f"manual:{item.command.message_id}"


def derived_id(event_id: str, seed: str) -> str:
    """A ULID with the event's time, the same for the same seed (replays publish the same ids)."""
    digest = hashlib.sha256(f"{event_id}|{seed}".encode()).digest()[:10]
    return str(ULID.from_bytes(ULID.from_str(event_id).milliseconds.to_bytes(6, "big") + digest))


def task_of(state: FlowState, task_id: str) -> TaskRef | None:
    """The event's task with this id, if it has one."""
    return next((t for t in state.tasks if t.task_id == task_id), None)


def closed_tasks(state: FlowState, task_id: str) -> tuple[TaskRef, ...]:
    """The event's tasks with this one no longer open (returned, or handed up the ladder)."""
    return tuple(t.model_copy(update={"open": False}) if t.task_id == task_id else t for t in state.tasks)


def holding(state: FlowState) -> set[str]:
    """Units holding an open task of the event, in any role."""
    return {t.unit_code for t in state.tasks if t.open}


def build(
    state: FlowState,
    duty: DutyList,
    now: datetime,
    assignments: list[Assignment],
    *,
    matter_code: str | None,
    rule: str,
    reason: str,
    confidence: float,
    round_no: int,
    **extra: object,
) -> list[TaskDispatched]:
    """Tasks for the event, one per assignment, with a routing decision of this rule, reason and round."""
    event = state.event
    assert event is not None
    matter = duty.matter(matter_code) if matter_code else None
    if rule == "triage":
        tier = Tier.COMMAND_CENTRE
    elif matter is not None:
        tier = matter.tier
    else:
        kind = duty.unit(assignments[0].unit_code).kind
        tier = Tier.TOWNSHIP if kind in ("township-centre", "village-committee") else Tier.COUNTY
    where = place(event, duty)
    routing = RoutingDecision(
        matter_code=matter.code if matter else None,
        matter_name=matter.name if matter else None,
        rule=rule,
        confidence=confidence,
        reason=f"{reason}；清单 {duty.version}",
        duty_list_version=duty.version,
        triage=rule == "triage",
        township=where.township,
        village=where.village,
        grid_code=where.grid.code if where.grid else None,
        round=round_no,
        **extra,
    )
    return build_tasks(event, Decision(matter, tier, tuple(assignments), routing), duty, now)


def refs(tasks: list[TaskDispatched]) -> tuple[TaskRef, ...]:
    """What the state keeps of tasks just built."""
    return tuple(TaskRef(task_id=t.task_id, unit_code=t.unit_code, role=t.role, round=t.decision.round) for t in tasks)
