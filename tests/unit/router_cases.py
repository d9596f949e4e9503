"""Events and flow helpers shared by the router flow tests (平安县's packaged duty list)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from schemas import (
    Channel,
    EventNormalised,
    Location,
    Reporter,
    SourceRef,
    TaskDispatched,
    TaskRole,
    TaskUpdated,
    UpdateKind,
    new_id,
)
from schemas.dutylist import DutyList
from services.router.decide import decide
from services.router.flows import (
    FlowInput,
    FlowPolicy,
    FlowState,
    Outcome,
    Routed,
    TaskRef,
    UnitReported,
    apply,
)
from services.router.tasks import build_tasks

CST = timezone(timedelta(hours=8))
EVENT_ID = "01KAFZ0M3DB3XG7M2Q4J8K6P1Z"
RECEIVED = datetime(2026, 11, 20, 9, 31, tzinfo=CST)
NOW = datetime(2026, 11, 20, 10, 5, tzinfo=CST)
PETITIONER = Reporter(
    name="王秀兰",
    phone="13837124567",
    address="城关镇东街社区幸福小区3号楼2单元501",
    confidential=True,
)
CALLER = Reporter(name="张建国", phone="13912345678")


def report(
    title: str,
    description: str = "",
    *,
    source: Channel = Channel.HOTLINE_12345,
    reporter: Reporter = CALLER,
    complained_unit: str | None = None,
    category: str | None = None,
    event_id: str = EVENT_ID,
    **location: Any,
) -> EventNormalised:
    """A normalised report as intake publishes it."""
    return EventNormalised(
        causation_id=new_id(),
        event_id=event_id,
        sources=(SourceRef(source=source, source_id=f"{source.value}-2026-1120-0042", raw_message_id=new_id()),),
        type="信访（来信）" if source is Channel.PETITION else "投诉",
        title=title,
        description=description or title,
        location=Location(**location),
        reporter=reporter,
        reported_at=RECEIVED - timedelta(minutes=1),
        received_at=RECEIVED,
        complained_unit=complained_unit,
        declared_category=category,
    )


def routed(event: EventNormalised, duty: DutyList) -> tuple[FlowState, list[TaskDispatched]]:
    """The flow state after the event's first routing, and its first tasks."""
    decision = decide(event, duty)
    tasks = build_tasks(event, decision, duty, NOW)
    first = Routed(
        event=event,
        matter_code=decision.routing.matter_code,
        confidence=decision.routing.confidence,
        triage=decision.routing.triage,
        tasks=tuple(TaskRef(task_id=t.task_id, unit_code=t.unit_code, role=t.role, round=0) for t in tasks),
    )
    return apply(None, first, duty, FlowPolicy(), NOW).state, tasks


def primary_of(tasks: list[TaskDispatched]) -> TaskDispatched:
    """The primary task of a list."""
    return next(t for t in tasks if t.role is TaskRole.PRIMARY)


def unit_update(task: TaskDispatched, kind: UpdateKind, reason: str) -> UnitReported:
    """A unit's returned or mediation-failed update on its task, as the task index forwards it."""
    update = TaskUpdated(
        update_id=new_id(), task_id=task.task_id, unit_code=task.unit_code, kind=kind, occurred_at=NOW, reason=reason
    )
    return UnitReported(
        kind="returned" if kind is UpdateKind.RETURNED else "mediation-failed",
        task_id=update.task_id,
        unit_code=update.unit_code,
        reason=reason,
        update_id=update.update_id,
    )


def step(state: FlowState, item: FlowInput, duty: DutyList, max_returns: int = 2) -> Outcome:
    """Apply one input at NOW."""
    return apply(state, item, duty, FlowPolicy(max_returns=max_returns), NOW)
