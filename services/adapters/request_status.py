"""The 12345 life cycle of one report (受理→派单→签收→办理→回复→办结→回访) from its tasks; pure.

A report's stage is decided by its primary task (主办单位), the latest one dispatched that was not returned;
co-operating units' stages are listed beside it. A task's stage is the furthest one its facts reach, in the
order of the cycle, so a reply (回复) given after 办结 leaves the task at 办结, and a rating (回访) is last.
Open311 sees `closed` from 办结 on, `open` before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from schemas import TaskRole, TaskStatus


class Stage(StrEnum):
    """A stage of the 12345 life cycle, by its English code; STAGE_ZH holds the Chinese name."""

    RECEIVED = "received"
    DISPATCHED = "dispatched"
    ACKNOWLEDGED = "acknowledged"
    IN_PROGRESS = "in_progress"
    REPLIED = "replied"
    CLOSED = "closed"
    REVIEWED = "reviewed"


STAGE_ZH: dict[Stage, str] = {
    Stage.RECEIVED: "受理",
    Stage.DISPATCHED: "派单",
    Stage.ACKNOWLEDGED: "签收",
    Stage.IN_PROGRESS: "办理",
    Stage.REPLIED: "回复",
    Stage.CLOSED: "办结",
    Stage.REVIEWED: "回访",
}
ORDER: tuple[Stage, ...] = tuple(Stage)
CLOSED_STAGES = frozenset({Stage.CLOSED, Stage.REVIEWED})

# Chinese wording of status_notes, as data.
NOTES_ZH = {
    "received": "已受理，等待派单",
    "returned": "主办单位已退回，等待重新派单",
    "primary": "{stage}：主办单位 {unit}",
    "paused": "（办理暂停中）",
    "co_operating": "配合单位：{units}",
    "co_unit": "{unit}（{stage}）",
    "co_returned": "已退回",
    "separator": "；",
    "list_separator": "，",
}


@dataclass(frozen=True, slots=True)
class TaskProgress:
    """What is known of one task: its unit and role, and the facts of its status so far."""

    task_id: str
    unit_name: str
    role: TaskRole
    dispatched_at: datetime
    status: TaskStatus | None = None
    accepted_at: datetime | None = None
    contacted_at: datetime | None = None
    replied_at: datetime | None = None
    resolved_at: datetime | None = None
    satisfaction: int | None = None
    resolve_due: datetime | None = None
    changed_at: datetime | None = None


@dataclass(frozen=True)
class LifeCycle:
    """Where a report is: its stage, Open311 status, the primary unit, notes and times."""

    stage: Stage
    agency: str | None
    notes: str
    expected_at: datetime | None
    updated_at: datetime
    paused: bool = False
    returned: bool = False

    @property
    def open311_status(self) -> str:
        """GeoReport's two states: closed from 办结 on, open before."""
        return "closed" if self.stage in CLOSED_STAGES else "open"

    @property
    def stage_zh(self) -> str:
        """The stage's Chinese name."""
        return STAGE_ZH[self.stage]


def task_stage(task: TaskProgress) -> Stage:
    """The furthest stage one task's facts reach."""
    if task.satisfaction is not None:
        return Stage.REVIEWED
    if task.resolved_at is not None or task.status is TaskStatus.CLOSED:
        return Stage.CLOSED
    if task.replied_at is not None:
        return Stage.REPLIED
    if task.contacted_at is not None or task.status in (TaskStatus.IN_PROGRESS, TaskStatus.PAUSED):
        return Stage.IN_PROGRESS
    if task.accepted_at is not None or task.status is TaskStatus.ACCEPTED:
        return Stage.ACKNOWLEDGED
    return Stage.DISPATCHED


def deciding_task(tasks: Sequence[TaskProgress]) -> TaskProgress | None:
    """The primary task that decides the report's stage: the latest not returned, else the latest returned."""
    primaries = sorted((t for t in tasks if t.role is TaskRole.PRIMARY), key=lambda t: (t.dispatched_at, t.task_id))
    active = [t for t in primaries if t.status is not TaskStatus.RETURNED]
    chosen = active or primaries
    return chosen[-1] if chosen else None


def _latest(times: Sequence[datetime | None]) -> datetime | None:
    known = [t for t in times if t is not None]
    return max(known) if known else None


def life_cycle(received_at: datetime, tasks: Sequence[TaskProgress]) -> LifeCycle:
    """The report's life cycle from the time it was received and what is known of its tasks."""
    updated = _latest([received_at, *(t.dispatched_at for t in tasks), *(t.changed_at for t in tasks)])
    assert updated is not None  # received_at is always there
    primary = deciding_task(tasks)
    co_operating = [t for t in tasks if t.role is TaskRole.CO_OPERATING]
    co_note = _co_operating_note(co_operating)
    if primary is None:
        notes = NOTES_ZH["separator"].join([NOTES_ZH["received"], *co_note])
        return LifeCycle(Stage.RECEIVED, None, notes, None, updated)
    if primary.status is TaskStatus.RETURNED:
        notes = NOTES_ZH["separator"].join([NOTES_ZH["returned"], *co_note])
        return LifeCycle(Stage.RECEIVED, None, notes, None, updated, returned=True)
    stage = task_stage(primary)
    paused = primary.status is TaskStatus.PAUSED and stage not in CLOSED_STAGES
    head = NOTES_ZH["primary"].format(stage=STAGE_ZH[stage], unit=primary.unit_name)
    notes = NOTES_ZH["separator"].join([head + (NOTES_ZH["paused"] if paused else ""), *co_note])
    return LifeCycle(stage, primary.unit_name, notes, primary.resolve_due, updated, paused=paused)


def _co_operating_note(tasks: Sequence[TaskProgress]) -> list[str]:
    if not tasks:
        return []
    units = NOTES_ZH["list_separator"].join(
        NOTES_ZH["co_unit"].format(
            unit=t.unit_name,
            stage=NOTES_ZH["co_returned"] if t.status is TaskStatus.RETURNED else STAGE_ZH[task_stage(t)],
        )
        for t in sorted(tasks, key=lambda t: (t.dispatched_at, t.task_id))
    )
    return [NOTES_ZH["co_operating"].format(units=units)]
