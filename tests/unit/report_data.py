"""Real tasks.dispatched / tasks.status messages for the report tests, made from TaskFacts (test_sla_reports.py)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path

from ulid import ULID

from schemas.sla import Clock, TaskStatus, TaskStatusChanged
from schemas.task import (
    ClockKind,
    ClockTerm,
    DeadlineClass,
    DurationUnit,
    RoutingDecision,
    TaskDispatched,
    TaskReporter,
    Tier,
)
from services.sla.reports import TaskFacts


def ulid_of(name: str) -> str:
    """A stable ULID for a scenario's short task name."""
    return str(ULID.from_bytes(hashlib.sha256(name.encode()).digest()[:16]))


def dispatched(t: TaskFacts) -> TaskDispatched:
    """The TaskDispatched the router would have sent (with a reporter: the view must not keep it)."""
    return TaskDispatched(
        task_id=ulid_of(t.task_id),
        event_id=ulid_of("event-" + t.task_id),
        unit_code=t.unit_code,
        unit_name=t.unit_name,
        role=t.role,
        matter_code=t.matter_code,
        tier=Tier.COMMAND_CENTRE if t.triage else Tier.TOWNSHIP,
        deadline_class=DeadlineClass.STANDARD,
        urgency="normal",
        title="[投诉] 垃圾清运不及时",
        description="小区垃圾三天没人清运",
        location={"address": "城关镇东街社区幸福小区"},
        received_at=t.received_at,
        dispatched_at=t.received_at + timedelta(seconds=2),
        deadlines=(ClockTerm(kind=ClockKind.RESOLVE, amount=2, unit=DurationUnit.WORKING_DAYS),),
        decision=RoutingDecision(
            matter_code=t.matter_code,
            matter_name=t.matter_name,
            rule="triage" if t.triage else "keywords",
            confidence=0.9,
            reason="测试",
            duty_list_version="2026.11-47.2",
            triage=t.triage,
            township=t.township,
        ),
        reporter=TaskReporter(name="张先生", phone="13912345678", address="幸福小区3号楼"),
    )


def status(t: TaskFacts) -> TaskStatusChanged | None:
    """The latest TaskStatusChanged of the task, or None when it has no status."""
    if t.status is None or t.changed_at is None:
        return None
    clocks = ()
    if t.resolve_due is not None:
        clocks = (
            Clock(
                kind=ClockKind.RESOLVE,
                due_at=t.resolve_due,
                explanation="测试时限",
                paused_since=t.resolve_paused_since,
            ),
        )
    return TaskStatusChanged(
        task_id=ulid_of(t.task_id),
        unit_code=t.unit_code,
        status=TaskStatus(t.status),
        clocks=clocks,
        resolved_at=t.resolved_at,
        replied_at=t.replied_at,
        on_time=None if t.resolved_at is None or t.resolve_due is None else t.resolved_at < t.resolve_due,
        satisfaction=t.satisfaction,
        changed_at=t.changed_at,
    )


def write_dumps(tasks: Iterable[TaskFacts], directory: Path) -> tuple[Path, Path]:
    """tasks.dispatched and tasks.status as two JSON-lines files (one message value a line)."""
    tasks = list(tasks)
    dispatched_path, status_path = directory / "tasks.dispatched.jsonl", directory / "tasks.status.jsonl"
    dispatched_path.write_text("".join(dispatched(t).model_dump_json() + "\n" for t in tasks), encoding="utf-8")
    statuses = [s for s in (status(t) for t in tasks) if s is not None]
    status_path.write_text("".join(json.dumps(s.model_dump(mode="json"), ensure_ascii=False) + "\n" for s in statuses))
    return dispatched_path, status_path
