"""What the SLA service publishes: alerts and each task's clock status."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from schemas.base import AwareDatetime, Message, UlidStr
from schemas.task import ClockKind


class Clock(BaseModel):
    """One running deadline on a task with the explanation of how it was computed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ClockKind
    due_at: AwareDatetime
    explanation: str
    calendar_fallback: bool = Field(
        False, description="True when a year had no statutory calendar data and weekends-only was used."
    )


class AlertKind(StrEnum):
    """预警, 超期, 升级督办."""

    WARNING = "warning"
    OVERDUE = "overdue"
    ESCALATION = "escalation"


class SlaAlertRaised(Message):
    """A warning, overdue alert or escalation on one clock of one task."""

    alert_id: UlidStr
    task_id: UlidStr
    unit_code: str
    kind: AlertKind
    clock: ClockKind
    due_at: AwareDatetime
    raised_at: AwareDatetime
    escalate_to: str | None = Field(None, description="Unit an escalation goes to.")
    message: str


class TaskStatus(StrEnum):
    """Where a task is in its life cycle, as the SLA service sees it."""

    OPEN = "open"
    ACCEPTED = "accepted"
    IN_PROGRESS = "in-progress"
    PAUSED = "paused"
    CLOSED = "closed"
    RETURNED = "returned"


class TaskStatusChanged(Message):
    """The SLA service's view of a task after each change (compacted: last one wins)."""

    task_id: UlidStr
    unit_code: str
    status: TaskStatus
    clocks: tuple[Clock, ...]
    accepted_at: AwareDatetime | None = None
    contacted_at: AwareDatetime | None = None
    resolved_at: AwareDatetime | None = None
    on_time: bool | None = Field(None, description="Resolved by the resolve deadline; None while open.")
    contact_on_time: bool | None = None
    satisfaction: int | None = None
    changed_at: AwareDatetime
