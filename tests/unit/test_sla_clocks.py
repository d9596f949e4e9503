"""SLA clocks: start a routed task's clocks on the 2026 statutory calendar, then apply unit updates.

Calendar facts used (State Council notice for 2026): 国庆节 10-01..10-07 off, 10-10 (Sat) a
make-up working day. 2026-10-01 is a Thursday, so 10-08 (Thu) and 10-09 (Fri) are working days.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from gridhub.kernel.errors import PermanentError
from schemas import (
    Channel,
    ClockKind,
    EventNormalised,
    Location,
    Reporter,
    SourceRef,
    TaskDispatched,
    TaskRole,
    TaskUpdated,
    UpdateKind,
)
from schemas.dutylist import load_duty_list
from services.router.decide import decide
from services.router.tasks import build_tasks
from services.sla.calendar import WorkingCalendar
from services.sla.clocks import TaskClockState, TaskStatus, apply_update, start_clocks, status_event

SH = ZoneInfo("Asia/Shanghai")
CAL = WorkingCalendar.default()
EVENT_ID = "01KAFZ0M3DB3XG7M2Q4J8K6P1Z"
RAW_ID = "01KAFZ0M3D6YQ8W5C2N4R7T9VB"
RECEIVED = datetime(2026, 9, 30, 10, 0, tzinfo=SH)

_ids = iter(f"01KAG{n:021d}" for n in range(1, 1000))


def uid() -> str:
    return next(_ids)


def sh(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=SH)


@pytest.fixture(scope="module")
def tasks() -> list[TaskDispatched]:
    """小区下水道反流 in grid PA-CG-01-001, received the day before 国庆节: M08, 2 working days."""
    event = EventNormalised(
        causation_id=RAW_ID,
        event_id=EVENT_ID,
        sources=(SourceRef(source=Channel.HOTLINE_12345, source_id="GD-2026-0930-00107", raw_message_id=RAW_ID),),
        type="投诉",
        title="[投诉] 小区下水道反流",
        description="幸福里小区3号楼下水道反流，污水漫到单元门口",
        location=Location(grid_code="PA-CG-01-001", address="城关镇东街幸福里小区3号楼"),
        reporter=Reporter(name="王秀兰", phone="13837124567"),
        reported_at=datetime(2026, 9, 30, 9, 58, tzinfo=SH),
        received_at=RECEIVED,
    )
    duty = load_duty_list()
    return build_tasks(event, decide(event, duty), duty, datetime(2026, 9, 30, 2, 0, 3, tzinfo=UTC))


@pytest.fixture()
def task(tasks: list[TaskDispatched]) -> TaskDispatched:
    assert (tasks[0].unit_code, tasks[0].role) == ("PA-CG", TaskRole.PRIMARY)
    return tasks[0]


@pytest.fixture()
def opened(task: TaskDispatched) -> TaskClockState:
    return start_clocks(task, CAL)


def update(
    state: TaskClockState,
    kind: UpdateKind,
    at: datetime,
    unit: str | None = None,
    update_id: str | None = None,
    **extra: object,
) -> TaskUpdated:
    return TaskUpdated(
        update_id=update_id or uid(),
        task_id=state.task_id,
        unit_code=unit or state.unit_code,
        kind=kind,
        occurred_at=at,
        **extra,  # type: ignore[arg-type]
    )


def run(state: TaskClockState, *steps: tuple[UpdateKind, datetime]) -> TaskClockState:
    for kind, at in steps:
        state = apply_update(state, update(state, kind, at))
    return state


def test_start_clocks_over_national_day(task: TaskDispatched, opened: TaskClockState) -> None:
    assert opened.task_id == task.task_id
    assert opened.unit_code == "PA-CG"
    assert opened.status is TaskStatus.OPEN
    assert opened.received_at == RECEIVED
    assert [c.kind for c in opened.clocks] == [ClockKind.CONTACT, ClockKind.RESOLVE]
    # contact: 1 wall-clock hour
    assert opened.due(ClockKind.CONTACT) == datetime(2026, 9, 30, 11, 0, tzinfo=SH)
    # resolve: receipt day 09-30 not counted; 10-01..10-07 off; counts 10-08 (Thu), 10-09 (Fri);
    # due at the end of 10-09, i.e. 10-10 00:00 Shanghai.
    assert opened.due(ClockKind.RESOLVE) == datetime(2026, 10, 10, 0, 0, tzinfo=SH)
    assert opened.due(ClockKind.RESOLVE) == datetime(2026, 10, 9, 16, 0, tzinfo=UTC)
    resolve = opened.clocks[1]
    assert resolve.calendar_fallback is False
    assert "计入 2026-10-08..10-09" in resolve.explanation
    assert "跳过 2026-10-01..10-07 国庆节" in resolve.explanation
    assert "截止 2026-10-09 24:00，即 2026-10-10 00:00 (Asia/Shanghai) 前办结" in resolve.explanation
    assert opened.applied_updates == ()


def test_co_operating_task_gets_same_clocks(tasks: list[TaskDispatched]) -> None:
    co_op = start_clocks(tasks[1], CAL)
    assert (co_op.unit_code, tasks[1].role) == ("PA-ZJJ", TaskRole.CO_OPERATING)
    assert co_op.due(ClockKind.RESOLVE) == sh(10, 10)


def test_accept_contact_resolve_closes_on_time(opened: TaskClockState) -> None:
    accepted = run(opened, (UpdateKind.ACCEPTED, sh(9, 30, 10, 20)))
    assert accepted.status is TaskStatus.ACCEPTED
    assert accepted.accepted_at == sh(9, 30, 10, 20)

    contacted = run(accepted, (UpdateKind.CONTACTED, sh(9, 30, 10, 45)))
    assert contacted.status is TaskStatus.IN_PROGRESS
    assert contacted.contacted_at == sh(9, 30, 10, 45)

    closed = run(contacted, (UpdateKind.RESOLVED, sh(10, 9, 23, 59)))
    assert closed.status is TaskStatus.CLOSED
    assert closed.resolved_at == sh(10, 9, 23, 59)
    assert len(closed.applied_updates) == 3

    now = datetime(2026, 10, 9, 16, 0, 5, tzinfo=UTC)
    ev = status_event(closed, now, causation_id="01KAG000000000000000000999")
    assert ev.status == "closed"
    assert ev.on_time is True
    assert ev.contact_on_time is True
    assert ev.accepted_at == sh(9, 30, 10, 20)
    assert ev.resolved_at == sh(10, 9, 23, 59)
    assert ev.clocks == opened.clocks
    assert ev.changed_at == now
    assert ev.causation_id == "01KAG000000000000000000999"
    assert ev.task_id == opened.task_id
    assert ev.unit_code == "PA-CG"


def test_resolved_at_due_instant_is_late(opened: TaskClockState) -> None:
    closed = run(opened, (UpdateKind.ACCEPTED, sh(9, 30, 10, 5)), (UpdateKind.RESOLVED, sh(10, 10, 0, 0)))
    ev = status_event(closed, sh(10, 10, 0, 1), None)
    assert ev.status == "closed"
    assert ev.on_time is False
    assert ev.contact_on_time is None


def test_open_task_has_no_verdict(opened: TaskClockState) -> None:
    ev = status_event(opened, sh(9, 30, 10, 1), None)
    assert (ev.status, ev.on_time, ev.contact_on_time, ev.satisfaction) == ("open", None, None, None)


@pytest.mark.parametrize(
    ("contacted", "on_time"),
    [(sh(9, 30, 10, 59), True), (sh(9, 30, 11, 0), False), (sh(10, 8, 9, 0), False)],
)
def test_contact_on_time(opened: TaskClockState, contacted: datetime, on_time: bool) -> None:
    state = run(opened, (UpdateKind.CONTACTED, contacted))
    assert status_event(state, contacted, None).contact_on_time is on_time


def test_first_contact_time_is_kept(opened: TaskClockState) -> None:
    state = run(opened, (UpdateKind.CONTACTED, sh(9, 30, 10, 30)), (UpdateKind.CONTACTED, sh(10, 8, 9, 0)))
    assert state.contacted_at == sh(9, 30, 10, 30)
    assert status_event(state, sh(10, 8, 9, 1), None).contact_on_time is True


def test_contact_time_in_utc_compares_as_instant(opened: TaskClockState) -> None:
    state = run(opened, (UpdateKind.CONTACTED, datetime(2026, 9, 30, 2, 59, tzinfo=UTC)))  # 10:59 Shanghai
    assert status_event(state, sh(9, 30, 11), None).contact_on_time is True


def test_duplicate_update_id_is_ignored(opened: TaskClockState) -> None:
    first = update(opened, UpdateKind.ACCEPTED, sh(9, 30, 10, 20))
    once = apply_update(opened, first)
    twice = apply_update(once, first)
    assert twice is once
    assert twice.applied_updates == (first.update_id,)
    # the same id even with another kind is treated as the already-applied update
    replay = update(once, UpdateKind.RESOLVED, sh(10, 8), update_id=first.update_id)
    assert apply_update(once, replay).status is TaskStatus.ACCEPTED


def test_update_from_another_unit_is_refused(opened: TaskClockState) -> None:
    with pytest.raises(PermanentError) as info:
        apply_update(opened, update(opened, UpdateKind.RESOLVED, sh(10, 8), unit="PA-ZJJ"))
    assert info.value.reason == "not-task-owner"
    assert info.value.detail == f"unit PA-ZJJ does not hold task {opened.task_id}"


def test_update_after_closed_is_refused(opened: TaskClockState) -> None:
    closed = run(opened, (UpdateKind.RESOLVED, sh(10, 8, 15)))
    for kind in (UpdateKind.ACCEPTED, UpdateKind.RESOLVED, UpdateKind.RESUMED):
        with pytest.raises(PermanentError) as info:
            apply_update(closed, update(closed, kind, sh(10, 8, 16)))
        assert info.value.reason == "task-finished"
        assert info.value.detail == f"task {opened.task_id} is closed; {kind.value} refused"


def test_feedback_after_closed_records_satisfaction(opened: TaskClockState) -> None:
    closed = run(opened, (UpdateKind.RESOLVED, sh(10, 8, 15)))
    rated = apply_update(closed, update(closed, UpdateKind.FEEDBACK, sh(10, 9, 10), satisfaction=4))
    assert rated.status is TaskStatus.CLOSED
    assert rated.satisfaction == 4
    assert status_event(rated, sh(10, 9, 10), None).satisfaction == 4


def test_returned_is_terminal(opened: TaskClockState) -> None:
    returned = apply_update(
        opened, update(opened, UpdateKind.RETURNED, sh(9, 30, 10, 30), reason="不属于本镇管辖，应由河西乡办理")
    )
    assert returned.status is TaskStatus.RETURNED
    with pytest.raises(PermanentError) as info:
        apply_update(returned, update(returned, UpdateKind.ACCEPTED, sh(9, 30, 11)))
    assert info.value.reason == "task-finished"
    assert "is returned" in info.value.detail


def test_pause_and_resume(opened: TaskClockState) -> None:
    paused = apply_update(opened, update(opened, UpdateKind.PAUSED, sh(10, 8, 9), reason="等待住建局检测管网"))
    assert paused.status is TaskStatus.PAUSED
    resumed = run(paused, (UpdateKind.RESUMED, sh(10, 8, 14)))
    assert resumed.status is TaskStatus.IN_PROGRESS
    # pausing does not move the clocks
    assert resumed.clocks == opened.clocks


def test_state_is_not_mutated(opened: TaskClockState) -> None:
    run(opened, (UpdateKind.ACCEPTED, sh(9, 30, 10, 20)))
    assert opened.status is TaskStatus.OPEN
    assert opened.accepted_at is None
    assert opened.applied_updates == ()


def test_naive_received_at_cannot_start_clocks(task: TaskDispatched) -> None:
    naive = task.model_construct(**{**dict(task), "received_at": datetime(2026, 9, 30, 10, 0)})
    with pytest.raises(ValueError, match="timezone-aware"):
        start_clocks(naive, CAL)


def test_reply_after_resolving_is_recorded(opened: TaskClockState) -> None:
    closed = run(opened, (UpdateKind.RESOLVED, sh(10, 8, 15)))
    replied = apply_update(closed, update(closed, UpdateKind.REPLIED, sh(10, 8, 17)))
    assert replied.replied_at == sh(10, 8, 17)


def test_replied_before_resolving_is_recorded(opened: TaskClockState) -> None:
    state = run(opened, (UpdateKind.REPLIED, sh(10, 8, 17)))
    assert state.replied_at == sh(10, 8, 17)
    assert state.status is TaskStatus.OPEN
    assert state.due(ClockKind.RESOLVE) - state.due(ClockKind.CONTACT) == timedelta(days=9, hours=13)
