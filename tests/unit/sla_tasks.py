"""Tasks for the SLA's alert and store tests: a TaskDispatched with chosen unit, terms and receipt."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from schemas import (
    ClockKind,
    ClockTerm,
    DeadlineClass,
    DurationUnit,
    Location,
    RoutingDecision,
    TaskDispatched,
    TaskRole,
    TaskUpdated,
    Tier,
    UpdateKind,
    Urgency,
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
    return TaskDispatched(
        causation_id=new_id(),
        task_id=task_id or new_id(),
        event_id=new_id(),
        unit_code=unit,
        unit_name=unit_name,
        role=TaskRole.PRIMARY,
        matter_code="M08",
        tier=Tier.TOWNSHIP,
        deadline_class=DeadlineClass.URGENT,
        urgency=Urgency.URGENT,
        title="幸福小区3号楼下水管爆裂",
        description="幸福小区3号楼下水管爆裂，水漫到路上",
        location=Location(grid_code="PA-CG-01-001"),
        received_at=received_at,
        dispatched_at=received_at + timedelta(seconds=2),
        deadlines=(
            ClockTerm(kind=ClockKind.CONTACT, amount=contact_h, unit=HOURS),
            ClockTerm(kind=ClockKind.RESOLVE, amount=resolve_h, unit=HOURS),
        ),
        decision=RoutingDecision(
            matter_code="M08",
            matter_name="供排水设施",
            rule="keywords",
            confidence=0.9,
            reason="测试",
            duty_list_version="2026.11-47.2",
        ),
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
