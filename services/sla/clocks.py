"""A task's clock state and how unit updates move it; pure, no Kafka, no clock reads."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from gridhub.kernel.errors import PermanentError
from schemas import Clock, ClockKind, TaskDispatched, TaskStatus, TaskStatusChanged, TaskUpdated, UpdateKind
from services.sla.calendar import WorkingCalendar
from services.sla.deadlines import compute_clocks

TERMINAL = {TaskStatus.CLOSED, TaskStatus.RETURNED}
AFTER_CLOSE = {UpdateKind.REPLIED, UpdateKind.FEEDBACK}


class TaskClockState(BaseModel):
    """What the SLA service keeps per task (one table row)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task_id: str
    unit_code: str
    status: TaskStatus
    received_at: datetime
    clocks: tuple[Clock, ...]
    accepted_at: datetime | None = None
    contacted_at: datetime | None = None
    resolved_at: datetime | None = None
    replied_at: datetime | None = None
    satisfaction: int | None = None
    applied_updates: tuple[str, ...] = ()

    def due(self, kind: ClockKind) -> datetime:
        """Due time of one clock."""
        return next(c.due_at for c in self.clocks if c.kind is kind)


def start_clocks(task: TaskDispatched, calendar: WorkingCalendar) -> TaskClockState:
    """Start a task's clocks at the time GridHub received its event."""
    return TaskClockState(
        task_id=task.task_id,
        unit_code=task.unit_code,
        status=TaskStatus.OPEN,
        received_at=task.received_at,
        clocks=compute_clocks(task.deadlines, task.received_at, calendar),
    )


def apply_update(state: TaskClockState, update: TaskUpdated) -> TaskClockState:
    """Apply one unit update; the same update twice changes nothing; a wrong unit is refused."""
    if update.update_id in state.applied_updates:
        return state
    if update.unit_code != state.unit_code:
        raise PermanentError("not-task-owner", f"unit {update.unit_code} does not hold task {state.task_id}")
    # The "131" rule's reply (回复) and the citizen's rating (回访) come after 办结.
    if state.status in TERMINAL and update.kind not in AFTER_CLOSE:
        raise PermanentError(
            "task-finished", f"task {state.task_id} is {state.status.value}; {update.kind.value} refused"
        )
    at = update.occurred_at
    changes: dict[str, object] = {"applied_updates": (*state.applied_updates, update.update_id)}
    match update.kind:
        case UpdateKind.ACCEPTED:
            changes |= {"accepted_at": state.accepted_at or at, "status": TaskStatus.ACCEPTED}
        case UpdateKind.CONTACTED:
            changes |= {"contacted_at": state.contacted_at or at, "status": TaskStatus.IN_PROGRESS}
        case UpdateKind.RESOLVED:
            changes |= {"resolved_at": at, "status": TaskStatus.CLOSED}
        case UpdateKind.REPLIED:
            changes |= {"replied_at": at}
        case UpdateKind.RETURNED:
            changes |= {"status": TaskStatus.RETURNED}
        case UpdateKind.PAUSED:
            changes |= {"status": TaskStatus.PAUSED}
        case UpdateKind.RESUMED:
            changes |= {"status": TaskStatus.IN_PROGRESS}
        case UpdateKind.FEEDBACK:
            changes |= {"satisfaction": update.satisfaction}
    return state.model_copy(update=changes)


def status_event(state: TaskClockState, now: datetime, causation_id: str | None) -> TaskStatusChanged:
    """The TaskStatusChanged that publishes a state, with on-time flags once they are known."""
    resolve_due = state.due(ClockKind.RESOLVE)
    contact_due = state.due(ClockKind.CONTACT)
    return TaskStatusChanged(
        causation_id=causation_id,
        task_id=state.task_id,
        unit_code=state.unit_code,
        status=state.status,
        clocks=state.clocks,
        accepted_at=state.accepted_at,
        contacted_at=state.contacted_at,
        resolved_at=state.resolved_at,
        on_time=None if state.resolved_at is None else state.resolved_at < resolve_due,
        contact_on_time=None if state.contacted_at is None else state.contacted_at < contact_due,
        satisfaction=state.satisfaction,
        changed_at=now,
    )
