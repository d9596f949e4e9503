"""Tasks for the SLA's alert and store tests: a TaskDispatched with chosen unit, terms and receipt."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from gridhub.demo.tasks import sample_task
from schemas import (
    ClockKind,
    ClockTerm,
    DurationUnit,
    TaskDispatched,
    TaskUpdated,
    UpdateKind,
    new_id,
)

SH = ZoneInfo("Asia/Shanghai")
HOURS = DurationUnit.HOURS


def task(
    received_at: datetime,
    *,
    unit: str = "PA-CG-01",
    unit_name: str = "城关镇东街社区居民委员会",
    contact_h: int = 1,
    resolve_h: int = 2,
    task_id: str | None = None,
) -> TaskDispatched:
    """An urgent task (hours-only clocks: ack 1 h by policy, contact and resolve as given)."""
    return sample_task(
        received_at,
        unit=unit,
        unit_name=unit_name,
        deadlines=(
            ClockTerm(kind=ClockKind.CONTACT, amount=contact_h, unit=HOURS),
            ClockTerm(kind=ClockKind.RESOLVE, amount=resolve_h, unit=HOURS),
        ),
        task_id=task_id,
    )


def update(t: TaskDispatched, kind: UpdateKind, at: datetime, unit: str | None = None) -> TaskUpdated:
    """A unit's update of the task."""
    extra = {"reason": "等待群众补充材料"} if kind in (UpdateKind.PAUSED, UpdateKind.RETURNED) else {}
    return TaskUpdated(
        update_id=new_id(),
        task_id=t.task_id,
        unit_code=unit or t.unit_code,
        kind=kind,
        occurred_at=at,
        **extra,
    )
