"""What the SLA service publishes: alerts and each task's clock status."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from schemas.base import AwareDatetime, Message, UlidStr
from schemas.task import ClockKind, DurationUnit


class ClockPause(BaseModel):
    """One pause of a clock (暂停, e.g. waiting for the citizen) and its resume."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    paused_at: AwareDatetime
    resumed_at: AwareDatetime | None = Field(None, description="None while the pause lasts.")
    reason: str | None = Field(None, description="The unit's reason for the pause.")


class Clock(BaseModel):
    """One deadline on a task: when it started, when it is due, whether it was met, paused or stopped, and why.

    A clock runs from `started_at` to `due_at`; it is running unless met (`met_at`), stopped without being
    met (`stopped_at`: the task was returned, or resolved before this clock was met) or paused
    (`paused_since`). `due_at` already includes every finished pause; `explanation` says how it was
    computed (Chinese), pauses and resumes included.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ClockKind
    # amount, unit and started_at are set on every clock the SLA service computes; None only in records
    # written before they existed (tasks.status is compacted and kept).
    amount: int | None = Field(None, gt=0, description="The term: how many hours or working days.")
    unit: DurationUnit | None = Field(None, description="The term's unit: wall-clock hours or working days.")
    started_at: AwareDatetime | None = Field(
        None, description="When the clock started: receipt of the event; for reply, resolution of the task."
    )
    due_at: AwareDatetime
    met_at: AwareDatetime | None = Field(
        None, description="When the clock was met (签收, 联系, 办结, 回复); None while open."
    )
    stopped_at: AwareDatetime | None = Field(
        None, description="When the clock stopped without being met (task returned, or resolved first)."
    )
    paused_since: AwareDatetime | None = Field(None, description="Start of the pause in force; None unless paused.")
    paused_total: timedelta = Field(
        timedelta(0), description="Wall-clock length of the finished pauses (ISO 8601 duration)."
    )
    pauses: tuple[ClockPause, ...] = ()
    explanation: str
    calendar_fallback: bool = Field(
        False, description="True when a year had no statutory calendar data and weekends-only was used."
    )
    fallback_years: tuple[int, ...] = Field((), description="The years counted with the weekends-only fallback.")

    @property
    def running(self) -> bool:
        """Counting down now: not met, not stopped, not paused."""
        return self.met_at is None and self.stopped_at is None and self.paused_since is None

    @property
    def is_open(self) -> bool:
        """Not met and not stopped (running or paused)."""
        return self.met_at is None and self.stopped_at is None


class AlertKind(StrEnum):
    """预警, 超期, 升级督办."""

    WARNING = "warning"
    OVERDUE = "overdue"
    ESCALATION = "escalation"


class SlaAlertRaised(Message):
    """A warning, overdue alert, escalation or repeat reminder on one clock of one task (keyed by task id)."""

    alert_id: UlidStr = Field(
        description="Deterministic (task, clock, step, reminder, due instant): a repeat of an alert has the same id."
    )
    task_id: UlidStr
    unit_code: str = Field(description="The unit holding the task.")
    kind: AlertKind
    clock: ClockKind
    step: str = Field(
        description="warning-<percent> (e.g. warning-50), overdue, escalation-township, escalation-county, "
        "escalation-supervision."
    )
    reminder: int = Field(0, ge=0, description="0 for the step itself, n for its n-th repeat reminder.")
    due_at: AwareDatetime = Field(description="When this alert was due (its scheduled instant).")
    deadline_at: AwareDatetime = Field(description="The clock's deadline.")
    raised_at: AwareDatetime = Field(description="When the SLA service raised it (due_at + lateness).")
    escalate_to: str | None = Field(
        None, description="Unit (or the supervision office) an escalation goes to; None for warnings and overdue."
    )
    message: str = Field(description="What it says, in Chinese, for the people who receive it.")


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
    replied_at: AwareDatetime | None = Field(None, description="When the unit replied to the citizen (回复).")
    on_time: bool | None = Field(None, description="Resolved by the resolve deadline; None while open.")
    contact_on_time: bool | None = Field(None, description="Contacted by the contact deadline; None until contacted.")
    ack_on_time: bool | None = Field(
        None, description="Acknowledged (签收) by the ack deadline; None until acknowledged."
    )
    reply_on_time: bool | None = Field(
        None, description="Replied to the citizen by the reply deadline (counted from resolution); None until then."
    )
    satisfaction: int | None = None
    changed_at: AwareDatetime
