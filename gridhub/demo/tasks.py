"""A sample dispatched task (a burst water pipe in 平安县) for benchmarks and tests that need tasks without a router."""

from __future__ import annotations

from datetime import datetime, timedelta

from schemas import (
    ClockKind,
    ClockTerm,
    DeadlineClass,
    DurationUnit,
    Location,
    RoutingDecision,
    TaskDispatched,
    TaskRole,
    Tier,
    Urgency,
    new_id,
)

URGENT_HOURS = (
    ClockTerm(kind=ClockKind.CONTACT, amount=1, unit=DurationUnit.HOURS),
    ClockTerm(kind=ClockKind.RESOLVE, amount=2, unit=DurationUnit.HOURS),
)


def sample_task(
    received_at: datetime,
    *,
    unit: str = "PA-CG-01",
    unit_name: str = "城关镇东街社区居民委员会",
    deadlines: tuple[ClockTerm, ...] = URGENT_HOURS,
    deadline_class: DeadlineClass = DeadlineClass.URGENT,
    urgency: Urgency = Urgency.URGENT,
    dispatched_after: timedelta = timedelta(seconds=2),
    title: str = "幸福小区3号楼下水管爆裂",
    description: str = "幸福小区3号楼下水管爆裂，水漫到路上",
    address: str | None = None,
    reason: str = "测试",
    task_id: str | None = None,
) -> TaskDispatched:
    """A primary task of matter M08 (供排水设施) for one unit, received at the given time."""
    return TaskDispatched(
        causation_id=new_id(),
        task_id=task_id or new_id(),
        event_id=new_id(),
        unit_code=unit,
        unit_name=unit_name,
        role=TaskRole.PRIMARY,
        matter_code="M08",
        tier=Tier.TOWNSHIP,
        deadline_class=deadline_class,
        urgency=urgency,
        title=title,
        description=description,
        location=Location(grid_code="PA-CG-01-001", address=address),
        received_at=received_at,
        dispatched_at=received_at + dispatched_after,
        deadlines=deadlines,
        decision=RoutingDecision(
            matter_code="M08",
            matter_name="供排水设施",
            rule="keywords",
            confidence=0.9,
            reason=reason,
            duty_list_version="2026.11-47.2",
        ),
    )
