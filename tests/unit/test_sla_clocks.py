"""SLA clocks: start a routed task's clocks on the 2026 statutory calendar, then apply unit updates.

Calendar facts used (State Council notice for 2026): 国庆节 10-01..10-07 off, 10-10 (Sat) a
make-up working day. 2026-10-01 is a Thursday, so 10-08 (Thu) and 10-09 (Fri) are working days.
The package has no data for 2027; tests/unit/data/sample-2027-holiday-cn.json is made-up TEST DATA
(2027-01-01..03 off, 2027-01-09 a make-up Saturday), not the real 2027 schedule.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gridhub.kernel.errors import PermanentError
from schemas import (
    Channel,
    Clock,
    ClockKind,
    ClockTerm,
    DeadlineClass,
    DurationUnit,
    EventNormalised,
    Location,
    Reporter,
    SourceRef,
    TaskDispatched,
    TaskRole,
    TaskStatusChanged,
    TaskUpdated,
    UpdateKind,
)
from schemas.dutylist import Term, load_duty_list
from services.router.decide import decide
from services.router.tasks import build_tasks
from services.sla.calendar import WorkingCalendar
from services.sla.clocks import (
    TaskClockState,
    TaskStatus,
    apply_update,
    fallback_years,
    recompute,
    running,
    start_clocks,
    status_event,
)
from services.sla.deadlines import ClockPolicy

SH = ZoneInfo("Asia/Shanghai")
CAL = WorkingCalendar.default()
SAMPLE_2027 = Path(__file__).parent / "data" / "sample-2027-holiday-cn.json"
EVENT_ID = "01KAFZ0M3DB3XG7M2Q4J8K6P1Z"
RAW_ID = "01KAFZ0M3D6YQ8W5C2N4R7T9VB"
RECEIVED = datetime(2026, 9, 30, 10, 0, tzinfo=SH)

_ids = iter(f"01KAG{n:021d}" for n in range(1, 1000))


def uid() -> str:
    return next(_ids)


def sh(month: int, day: int, hour: int = 0, minute: int = 0, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SH)


def routed(received: datetime) -> list[TaskDispatched]:
    """小区下水道反流 in grid PA-CG-01-001: M08, public-service, 2 working days."""
    event = EventNormalised(
        causation_id=RAW_ID,
        event_id=EVENT_ID,
        sources=(SourceRef(source=Channel.HOTLINE_12345, source_id="GD-2026-0930-00107", raw_message_id=RAW_ID),),
        type="投诉",
        title="[投诉] 小区下水道反流",
        description="幸福里小区3号楼下水道反流，污水漫到单元门口",
        location=Location(grid_code="PA-CG-01-001", address="城关镇东街幸福里小区3号楼"),
        reporter=Reporter(name="王秀兰", phone="13837124567"),
        reported_at=received - timedelta(minutes=2),
        received_at=received,
    )
    duty = load_duty_list()
    return build_tasks(event, decide(event, duty), duty, received + timedelta(seconds=3))


@pytest.fixture(scope="module")
def tasks() -> list[TaskDispatched]:
    """Received the day before 国庆节."""
    return routed(RECEIVED)


@pytest.fixture()
def task(tasks: list[TaskDispatched]) -> TaskDispatched:
    assert (tasks[0].unit_code, tasks[0].role) == ("PA-CG", TaskRole.PRIMARY)
    assert tasks[0].deadline_class is DeadlineClass.PUBLIC_SERVICE
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
    if kind in (UpdateKind.PAUSED, UpdateKind.RETURNED, UpdateKind.MEDIATION_FAILED):
        extra.setdefault("reason", "等待群众补充材料")
    return TaskUpdated(
        update_id=update_id or uid(),
        task_id=state.task_id,
        unit_code=unit or state.unit_code,
        kind=kind,
        occurred_at=at,
        **extra,  # type: ignore[arg-type]
    )


def run(state: TaskClockState, *steps: tuple[UpdateKind, datetime], calendar: WorkingCalendar = CAL) -> TaskClockState:
    for kind, at in steps:
        state = apply_update(state, update(state, kind, at), calendar)
    return state


def clock(state: TaskClockState, kind: ClockKind) -> Clock:
    found = state.clock(kind)
    assert found is not None, kind
    return found


# --- starting -------------------------------------------------------------------------------------


def test_start_clocks_over_national_day(task: TaskDispatched, opened: TaskClockState) -> None:
    assert opened.task_id == task.task_id
    assert opened.unit_code == "PA-CG"
    assert opened.status is TaskStatus.OPEN
    assert opened.received_at == RECEIVED
    # ack, contact and resolve start at receipt; reply waits for resolution but its term is known.
    assert [c.kind for c in opened.clocks] == [ClockKind.ACK, ClockKind.CONTACT, ClockKind.RESOLVE]
    assert [(t.kind, t.amount, t.unit) for t in opened.terms] == [
        (ClockKind.ACK, 1, DurationUnit.HOURS),
        (ClockKind.CONTACT, 1, DurationUnit.HOURS),
        (ClockKind.RESOLVE, 2, DurationUnit.WORKING_DAYS),
        (ClockKind.REPLY, 1, DurationUnit.WORKING_DAYS),
    ]
    assert opened.clock(ClockKind.REPLY) is None
    with pytest.raises(KeyError, match="no reply clock"):
        opened.due(ClockKind.REPLY)
    assert all(c.started_at == RECEIVED and running(c) and c.running for c in opened.clocks)
    assert opened.due(ClockKind.ACK) == sh(9, 30, 11, 0)
    # contact: 1 wall-clock hour
    assert opened.due(ClockKind.CONTACT) == datetime(2026, 9, 30, 11, 0, tzinfo=SH)
    # resolve: receipt day 09-30 not counted; 10-01..10-07 off; counts 10-08 (Thu), 10-09 (Fri);
    # due at the end of 10-09, i.e. 10-10 00:00 Shanghai.
    assert opened.due(ClockKind.RESOLVE) == datetime(2026, 10, 10, 0, 0, tzinfo=SH)
    assert opened.due(ClockKind.RESOLVE) == datetime(2026, 10, 9, 16, 0, tzinfo=UTC)
    resolve = clock(opened, ClockKind.RESOLVE)
    assert (resolve.amount, resolve.unit) == (2, DurationUnit.WORKING_DAYS)
    assert (resolve.met_at, resolve.stopped_at, resolve.paused_since, resolve.pauses) == (None, None, None, ())
    assert resolve.paused_total == timedelta(0)
    assert resolve.calendar_fallback is False
    assert "计入 2026-10-08..10-09" in resolve.explanation
    assert "跳过 2026-10-01..10-07 国庆节" in resolve.explanation
    assert "截止 2026-10-09 24:00，即 2026-10-10 00:00 (Asia/Shanghai) 前办结" in resolve.explanation
    assert opened.applied_updates == ()


def test_co_operating_task_gets_same_clocks(tasks: list[TaskDispatched]) -> None:
    co_op = start_clocks(tasks[1], CAL)
    assert (co_op.unit_code, tasks[1].role) == ("PA-ZJJ", TaskRole.CO_OPERATING)
    assert co_op.due(ClockKind.RESOLVE) == sh(10, 10)
    assert co_op.clocks == start_clocks(tasks[0], CAL).clocks


def test_policy_sets_ack_and_reply_terms_per_class(task: TaskDispatched) -> None:
    policy = ClockPolicy(
        ack={DeadlineClass.PUBLIC_SERVICE: Term(amount=2, unit=DurationUnit.HOURS)},
        reply={DeadlineClass.PUBLIC_SERVICE: Term(amount=24, unit=DurationUnit.HOURS)},
    )
    state = start_clocks(task, CAL, policy)
    assert state.due(ClockKind.ACK) == sh(9, 30, 12, 0)
    assert state.term(ClockKind.REPLY) == ClockTerm(kind=ClockKind.REPLY, amount=24, unit=DurationUnit.HOURS)
    closed = run(state, (UpdateKind.RESOLVED, sh(10, 8, 15)))
    assert closed.due(ClockKind.REPLY) == sh(10, 9, 15)
    # A class the policy does not name keeps the defaults.
    assert policy.ack_term(DeadlineClass.URGENT).amount == 1


def test_naive_received_at_cannot_start_clocks(task: TaskDispatched) -> None:
    naive = task.model_construct(**{**dict(task), "received_at": datetime(2026, 9, 30, 10, 0)})
    with pytest.raises(ValueError, match="timezone-aware"):
        start_clocks(naive, CAL)


# --- meeting clocks -------------------------------------------------------------------------------


def test_accept_contact_resolve_reply_meets_each_clock(opened: TaskClockState) -> None:
    accepted = run(opened, (UpdateKind.ACCEPTED, sh(9, 30, 10, 20)))
    assert accepted.status is TaskStatus.ACCEPTED
    assert accepted.accepted_at == sh(9, 30, 10, 20)
    ack = clock(accepted, ClockKind.ACK)
    assert ack.met_at == sh(9, 30, 10, 20) and not running(ack)
    assert ack.explanation.endswith("；2026-09-30 10:20 签收，按时")

    contacted = run(accepted, (UpdateKind.CONTACTED, sh(9, 30, 10, 45)))
    assert contacted.status is TaskStatus.IN_PROGRESS
    assert contacted.contacted_at == sh(9, 30, 10, 45)
    assert clock(contacted, ClockKind.ACK) == ack  # a met clock stays as it was

    closed = run(contacted, (UpdateKind.RESOLVED, sh(10, 9, 23, 59)))
    assert closed.status is TaskStatus.CLOSED
    assert closed.resolved_at == sh(10, 9, 23, 59)
    assert clock(closed, ClockKind.RESOLVE).met_at == sh(10, 9, 23, 59)
    # The reply clock starts at resolution: Fri 10-09 not counted, 10-10 is a make-up working Saturday.
    reply = clock(closed, ClockKind.REPLY)
    assert [c.kind for c in closed.clocks] == [ClockKind.ACK, ClockKind.CONTACT, ClockKind.RESOLVE, ClockKind.REPLY]
    assert (reply.started_at, reply.due_at, running(reply)) == (sh(10, 9, 23, 59), sh(10, 11), True)
    assert reply.explanation.startswith("1 个工作日：办结 2026-10-09 23:59，当日不计入")
    assert "（其中 2026-10-10 调休上班）" in reply.explanation
    assert reply.explanation.endswith("前回复")

    now = datetime(2026, 10, 9, 16, 0, 5, tzinfo=UTC)
    ev = status_event(closed, now, causation_id="01KAG000000000000000000999")
    assert ev.status == "closed"
    assert (ev.on_time, ev.contact_on_time, ev.ack_on_time, ev.reply_on_time) == (True, True, True, None)
    assert ev.accepted_at == sh(9, 30, 10, 20)
    assert ev.resolved_at == sh(10, 9, 23, 59)
    assert ev.clocks == closed.clocks
    assert ev.changed_at == now
    assert ev.causation_id == "01KAG000000000000000000999"
    assert ev.task_id == opened.task_id
    assert ev.unit_code == "PA-CG"

    replied = run(closed, (UpdateKind.REPLIED, sh(10, 11, 0, 0)))
    assert clock(replied, ClockKind.REPLY).met_at == sh(10, 11)
    assert status_event(replied, sh(10, 11), None).reply_on_time is False  # at the due instant: late
    assert clock(replied, ClockKind.REPLY).explanation.endswith("；2026-10-11 00:00 回复，超时 0 分")
    assert len(replied.applied_updates) == 4


def test_resolved_at_due_instant_is_late(opened: TaskClockState) -> None:
    closed = run(opened, (UpdateKind.ACCEPTED, sh(9, 30, 10, 5)), (UpdateKind.RESOLVED, sh(10, 10, 0, 0)))
    ev = status_event(closed, sh(10, 10, 0, 1), None)
    assert ev.status == "closed"
    assert ev.on_time is False
    assert ev.contact_on_time is None
    assert clock(closed, ClockKind.RESOLVE).explanation.endswith("；2026-10-10 00:00 办结，超时 0 分")


def test_open_task_has_no_verdict(opened: TaskClockState) -> None:
    ev = status_event(opened, sh(9, 30, 10, 1), None)
    assert (ev.status, ev.on_time, ev.contact_on_time, ev.ack_on_time, ev.reply_on_time, ev.satisfaction) == (
        "open",
        None,
        None,
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("contacted", "on_time"),
    [(sh(9, 30, 10, 59), True), (sh(9, 30, 11, 0), False), (sh(10, 8, 9, 0), False)],
)
def test_contact_on_time(opened: TaskClockState, contacted: datetime, on_time: bool) -> None:
    state = run(opened, (UpdateKind.CONTACTED, contacted))
    assert status_event(state, contacted, None).contact_on_time is on_time


def test_contact_before_accept_counts_as_the_acknowledgement(opened: TaskClockState) -> None:
    state = run(opened, (UpdateKind.CONTACTED, sh(9, 30, 10, 30)))
    ack = clock(state, ClockKind.ACK)
    assert ack.met_at == sh(9, 30, 10, 30)
    assert "签收（未单独签收，以联系视为签收），按时" in ack.explanation
    assert state.accepted_at is None  # no 签收 update came
    assert status_event(state, sh(9, 30, 10, 31), None).ack_on_time is True
    # A later 签收 changes neither the clock nor the status.
    later = run(state, (UpdateKind.ACCEPTED, sh(9, 30, 10, 40)))
    assert clock(later, ClockKind.ACK) == ack
    assert later.status is TaskStatus.IN_PROGRESS
    assert later.accepted_at == sh(9, 30, 10, 40)


def test_resolving_without_contact_stops_the_contact_clock_unmet(opened: TaskClockState) -> None:
    closed = run(opened, (UpdateKind.RESOLVED, sh(9, 30, 10, 40)))
    contact = clock(closed, ClockKind.CONTACT)
    assert (contact.met_at, contact.stopped_at, running(contact)) == (None, sh(9, 30, 10, 40), False)
    assert contact.explanation.endswith("2026-09-30 10:40 已办结而未记录联系，计时停止（未达成）")
    assert clock(closed, ClockKind.ACK).met_at == sh(9, 30, 10, 40)
    ev = status_event(closed, sh(9, 30, 10, 41), None)
    assert (ev.on_time, ev.contact_on_time, ev.ack_on_time) == (True, None, True)


def test_first_contact_time_is_kept(opened: TaskClockState) -> None:
    state = run(opened, (UpdateKind.CONTACTED, sh(9, 30, 10, 30)), (UpdateKind.CONTACTED, sh(10, 8, 9, 0)))
    assert state.contacted_at == sh(9, 30, 10, 30)
    assert clock(state, ClockKind.CONTACT).met_at == sh(9, 30, 10, 30)
    assert status_event(state, sh(10, 8, 9, 1), None).contact_on_time is True


def test_contact_time_in_utc_compares_as_instant(opened: TaskClockState) -> None:
    state = run(opened, (UpdateKind.CONTACTED, datetime(2026, 9, 30, 2, 59, tzinfo=UTC)))  # 10:59 Shanghai
    assert status_event(state, sh(9, 30, 11), None).contact_on_time is True


def test_replied_before_resolving_is_recorded_but_the_reply_clock_starts_at_resolution(
    opened: TaskClockState,
) -> None:
    state = run(opened, (UpdateKind.REPLIED, sh(10, 8, 17)))
    assert state.replied_at == sh(10, 8, 17)
    assert state.status is TaskStatus.OPEN
    assert state.clock(ClockKind.REPLY) is None
    assert state.due(ClockKind.RESOLVE) - state.due(ClockKind.CONTACT) == timedelta(days=9, hours=13)
    closed = run(state, (UpdateKind.RESOLVED, sh(10, 9, 10)))
    reply = clock(closed, ClockKind.REPLY)
    assert (reply.started_at, reply.met_at, running(reply)) == (sh(10, 9, 10), None, True)


def test_reply_at_the_resolution_instant_meets_the_reply_clock(opened: TaskClockState) -> None:
    # A unit posting 回复 and 办结 together, 回复 first: the reply is not before the resolution.
    state = run(opened, (UpdateKind.REPLIED, sh(10, 9, 10)), (UpdateKind.RESOLVED, sh(10, 9, 10)))
    assert clock(state, ClockKind.REPLY).met_at == sh(10, 9, 10)
    assert status_event(state, sh(10, 9, 10), None).reply_on_time is True


# --- refusals, idempotence ------------------------------------------------------------------------


def test_duplicate_update_id_is_ignored(opened: TaskClockState) -> None:
    first = update(opened, UpdateKind.ACCEPTED, sh(9, 30, 10, 20))
    once = apply_update(opened, first, CAL)
    twice = apply_update(once, first, CAL)
    assert twice is once
    assert twice.applied_updates == (first.update_id,)
    # the same id even with another kind is treated as the already-applied update
    replay = update(once, UpdateKind.RESOLVED, sh(10, 8), update_id=first.update_id)
    assert apply_update(once, replay, CAL).status is TaskStatus.ACCEPTED


def test_update_from_another_unit_is_refused(opened: TaskClockState) -> None:
    with pytest.raises(PermanentError) as info:
        apply_update(opened, update(opened, UpdateKind.RESOLVED, sh(10, 8), unit="PA-ZJJ"), CAL)
    assert info.value.reason == "not-task-owner"
    assert info.value.detail == f"unit PA-ZJJ does not hold task {opened.task_id}"


def test_update_after_closed_is_refused(opened: TaskClockState) -> None:
    closed = run(opened, (UpdateKind.RESOLVED, sh(10, 8, 15)))
    for kind in (UpdateKind.ACCEPTED, UpdateKind.RESOLVED, UpdateKind.RESUMED, UpdateKind.PAUSED):
        with pytest.raises(PermanentError) as info:
            apply_update(closed, update(closed, kind, sh(10, 8, 16)), CAL)
        assert info.value.reason == "task-finished"
        assert info.value.detail == f"task {opened.task_id} is closed; {kind.value} refused"


def test_feedback_after_closed_records_satisfaction(opened: TaskClockState) -> None:
    closed = run(opened, (UpdateKind.RESOLVED, sh(10, 8, 15)))
    rated = apply_update(closed, update(closed, UpdateKind.FEEDBACK, sh(10, 9, 10), satisfaction=4), CAL)
    assert rated.status is TaskStatus.CLOSED
    assert rated.satisfaction == 4
    assert rated.clocks == closed.clocks
    assert status_event(rated, sh(10, 9, 10), None).satisfaction == 4


def test_returned_is_terminal_and_stops_every_clock(opened: TaskClockState) -> None:
    accepted = run(opened, (UpdateKind.ACCEPTED, sh(9, 30, 10, 10)))
    returned = apply_update(
        accepted,
        update(accepted, UpdateKind.RETURNED, sh(9, 30, 10, 30), reason="不属于本镇管辖，应由河西乡办理"),
        CAL,
    )
    assert returned.status is TaskStatus.RETURNED
    assert not any(running(c) for c in returned.clocks)
    assert clock(returned, ClockKind.ACK).met_at == sh(9, 30, 10, 10)  # met before: stays met
    for kind in (ClockKind.CONTACT, ClockKind.RESOLVE):
        stopped = clock(returned, kind)
        assert (stopped.met_at, stopped.stopped_at) == (None, sh(9, 30, 10, 30))
        assert stopped.explanation.endswith("2026-09-30 10:30 任务已退回，计时停止（未达成）")
    with pytest.raises(PermanentError) as info:
        apply_update(returned, update(returned, UpdateKind.ACCEPTED, sh(9, 30, 11)), CAL)
    assert info.value.reason == "task-finished"
    assert "is returned" in info.value.detail


def test_mediation_failed_moves_no_clock(opened: TaskClockState) -> None:
    after = run(opened, (UpdateKind.MEDIATION_FAILED, sh(10, 8, 9)))
    assert after.clocks == opened.clocks
    assert after.status is TaskStatus.OPEN


def test_state_is_not_mutated(opened: TaskClockState) -> None:
    run(opened, (UpdateKind.ACCEPTED, sh(9, 30, 10, 20)), (UpdateKind.PAUSED, sh(10, 8)))
    assert opened.status is TaskStatus.OPEN
    assert opened.accepted_at is None
    assert opened.applied_updates == ()
    assert all(running(c) for c in opened.clocks)


def test_apply_update_without_a_calendar_uses_the_package(opened: TaskClockState) -> None:
    closed = apply_update(opened, update(opened, UpdateKind.RESOLVED, sh(10, 9, 23, 59)))
    assert closed.due(ClockKind.REPLY) == sh(10, 11)


# --- pause and resume -----------------------------------------------------------------------------


def test_pause_stops_every_running_clock_and_resume_moves_each_in_its_unit(opened: TaskClockState) -> None:
    accepted = run(opened, (UpdateKind.ACCEPTED, sh(9, 30, 10, 20)))
    paused = apply_update(
        accepted, update(accepted, UpdateKind.PAUSED, sh(9, 30, 10, 30), reason="等待住建局检测管网"), CAL
    )
    assert paused.status is TaskStatus.PAUSED
    assert clock(paused, ClockKind.ACK) == clock(accepted, ClockKind.ACK)  # met: not paused
    for kind in (ClockKind.CONTACT, ClockKind.RESOLVE):
        c = clock(paused, kind)
        assert (c.paused_since, running(c), c.is_open) == (sh(9, 30, 10, 30), False, True)
        assert c.due_at == opened.due(kind)  # pausing alone moves nothing
        assert c.explanation.endswith("；2026-09-30 10:30 暂停（等待住建局检测管网），停止计时")

    resumed = run(paused, (UpdateKind.RESUMED, sh(10, 8, 14)))
    assert resumed.status is TaskStatus.IN_PROGRESS
    contact = clock(resumed, ClockKind.CONTACT)
    resolve = clock(resumed, ClockKind.RESOLVE)
    assert all(running(c) for c in (contact, resolve))
    # Hours: the wall-clock span (7 days 3.5 hours) is added.
    span = sh(10, 8, 14) - sh(9, 30, 10, 30)
    assert contact.paused_total == span == timedelta(days=8, hours=3, minutes=30)
    assert contact.due_at == sh(9, 30, 11) + span == sh(10, 8, 14, 30)
    assert contact.explanation.endswith(
        "；2026-10-08 14:00 恢复：暂停 8 天 3 小时 30 分（自然时间），截止顺延 8 天 3 小时 30 分，"
        "2026-09-30 11:00 → 2026-10-08 14:30"
    )
    # Working days: only counted working time inside the pause: 10-08 00:00..14:00 (receipt day 09-30 and
    # 国庆节 count nothing), so 14 hours from 10-10 00:00 on the make-up working Saturday 10-10.
    assert resolve.due_at == sh(10, 10, 14)
    assert resolve.explanation.endswith(
        "；2026-10-08 14:00 恢复：暂停 8 天 3 小时 30 分，其中计时工作时间 14 小时（受理当日及非工作日不计），"
        "截止顺延工作时间 14 小时，2026-10-10 00:00 → 2026-10-10 14:00"
    )
    assert resolve.pauses[0].model_dump() == {
        "paused_at": sh(9, 30, 10, 30),
        "resumed_at": sh(10, 8, 14),
        "reason": "等待住建局检测管网",
    }
    closed = run(resumed, (UpdateKind.RESOLVED, sh(10, 10, 13)))
    assert status_event(closed, sh(10, 10, 13), None).on_time is True  # on time only thanks to the pause


def test_pause_counts_only_working_time_and_a_weekend_pause_moves_nothing(task: TaskDispatched) -> None:
    # Received Mon 10-12 09:00, 7 working days: 10-13..16, 10-19..21, due Thu 10-22 00:00.
    seven = ClockTerm(kind=ClockKind.RESOLVE, amount=7, unit=DurationUnit.WORKING_DAYS)
    standard = task.model_copy(
        update={
            "received_at": sh(10, 12, 9),
            "deadlines": (task.deadlines[0], seven),
            "deadline_class": DeadlineClass.STANDARD,
        }
    )
    state = start_clocks(standard, CAL)
    assert state.due(ClockKind.RESOLVE) == sh(10, 22)
    weekend = run(state, (UpdateKind.PAUSED, sh(10, 17, 9)), (UpdateKind.RESUMED, sh(10, 18, 20)))
    assert weekend.due(ClockKind.RESOLVE) == sh(10, 22)
    assert "其中计时工作时间 0 分" in clock(weekend, ClockKind.RESOLVE).explanation
    assert weekend.due(ClockKind.CONTACT) == state.due(ClockKind.CONTACT) + timedelta(hours=35)  # wall clock
    # Fri 18:00 to Mon 09:00: 6 h of Friday and 9 h of Monday count, the weekend does not.
    friday = run(state, (UpdateKind.PAUSED, sh(10, 16, 18)), (UpdateKind.RESUMED, sh(10, 19, 9)))
    resolve = clock(friday, ClockKind.RESOLVE)
    assert resolve.due_at == sh(10, 22, 15)
    assert resolve.paused_total == timedelta(days=2, hours=15)
    assert "暂停 2 天 15 小时，其中计时工作时间 15 小时" in resolve.explanation


def test_shift_past_a_weekend_skips_it(task: TaskDispatched) -> None:
    # Received Tue 10-13 09:00, 2 working days: due Fri 10-16 00:00 (end of Thu 10-15). A 5-hour pause on
    # Thu 10-15 moves it 5 working hours: Fri 10-16 05:00.
    state = start_clocks(task.model_copy(update={"received_at": sh(10, 13, 9)}), CAL)
    assert state.due(ClockKind.RESOLVE) == sh(10, 16)
    state = run(state, (UpdateKind.PAUSED, sh(10, 15, 10)), (UpdateKind.RESUMED, sh(10, 15, 15)))
    assert state.due(ClockKind.RESOLVE) == sh(10, 16, 5)
    # Received Wed 10-14: due Sat 10-17 00:00; a 5-hour pause moves it past the weekend to Mon 10-19 05:00.
    later = start_clocks(task.model_copy(update={"received_at": sh(10, 14, 9)}), CAL)
    later = run(later, (UpdateKind.PAUSED, sh(10, 15, 10)), (UpdateKind.RESUMED, sh(10, 15, 15)))
    assert later.due(ClockKind.RESOLVE) == sh(10, 19, 5)
    assert "截止顺延工作时间 5 小时，跳过 2026-10-17..10-18 周末，2026-10-17 00:00 → 2026-10-19 05:00" in (
        clock(later, ClockKind.RESOLVE).explanation
    )


def test_met_while_paused_ends_the_pause_at_that_moment(opened: TaskClockState) -> None:
    state = run(opened, (UpdateKind.CONTACTED, sh(9, 30, 10, 30)), (UpdateKind.PAUSED, sh(10, 8, 9)))
    closed = run(state, (UpdateKind.RESOLVED, sh(10, 8, 12)))
    resolve = clock(closed, ClockKind.RESOLVE)
    assert (resolve.met_at, resolve.paused_since) == (sh(10, 8, 12), None)
    assert resolve.pauses[0].resumed_at == sh(10, 8, 12)
    assert resolve.due_at == sh(10, 10, 3)  # moved by the 3 paused working hours before it was met
    assert resolve.explanation.endswith("2026-10-08 12:00 办结，按时")


def test_pause_while_paused_and_resume_while_running_change_no_clock(opened: TaskClockState) -> None:
    paused = run(opened, (UpdateKind.PAUSED, sh(10, 8, 9)))
    again = run(paused, (UpdateKind.PAUSED, sh(10, 8, 11)))
    assert again.clocks == paused.clocks
    assert again.status is TaskStatus.PAUSED
    unpaused = run(opened, (UpdateKind.ACCEPTED, sh(9, 30, 10, 5)), (UpdateKind.RESUMED, sh(10, 8, 9)))
    assert unpaused.status is TaskStatus.ACCEPTED
    assert unpaused.clocks[1:] == opened.clocks[1:]


def test_updates_while_paused_keep_the_task_paused(opened: TaskClockState) -> None:
    paused = run(opened, (UpdateKind.PAUSED, sh(9, 30, 10, 10)))
    contacted = run(paused, (UpdateKind.CONTACTED, sh(9, 30, 10, 50)))
    assert contacted.status is TaskStatus.PAUSED
    contact = clock(contacted, ClockKind.CONTACT)
    assert contact.met_at == sh(9, 30, 10, 50)
    assert contact.due_at == sh(9, 30, 11, 40)  # the 40 paused minutes count for it
    assert clock(contacted, ClockKind.RESOLVE).paused_since == sh(9, 30, 10, 10)


def test_resume_before_the_pause_counts_nothing(opened: TaskClockState) -> None:
    state = run(opened, (UpdateKind.PAUSED, sh(10, 8, 9)), (UpdateKind.RESUMED, sh(10, 8, 8)))
    contact = clock(state, ClockKind.CONTACT)
    assert contact.due_at == opened.due(ClockKind.CONTACT)
    assert contact.paused_total == timedelta(0)
    assert "恢复（恢复时间早于暂停时间，按 0 计）" in contact.explanation


# --- a new calendar -------------------------------------------------------------------------------


def test_recompute_with_a_2027_file_moves_open_clocks_and_keeps_pauses(
    task: TaskDispatched, caplog: pytest.LogCaptureFixture
) -> None:
    calendar = WorkingCalendar.default()
    with caplog.at_level(logging.WARNING, logger="services.sla.calendar"):
        state = start_clocks(task.model_copy(update={"received_at": sh(12, 30, 9)}), calendar)
    assert [r.getMessage().startswith("no statutory calendar data for 2027") for r in caplog.records] == [True]
    assert calendar.fallback_years_used() == {2027}
    # 2 working days from Wed 12-30: 12-31 and, without 2027 data, Fri 2027-01-01.
    assert state.due(ClockKind.RESOLVE) == sh(1, 2, year=2027)
    assert clock(state, ClockKind.RESOLVE).calendar_fallback is True
    assert fallback_years(state) == {2027}
    state = run(state, (UpdateKind.CONTACTED, sh(12, 30, 9, 30)), calendar=calendar)
    state = run(state, (UpdateKind.PAUSED, sh(12, 31, 12)), (UpdateKind.RESUMED, sh(12, 31, 18)), calendar=calendar)
    assert state.due(ClockKind.RESOLVE) == sh(1, 4, 6, year=2027)  # +6 h past the weekend
    caplog.clear()

    loaded = WorkingCalendar.with_files([SAMPLE_2027])
    new = recompute(state, loaded)
    resolve = clock(new, ClockKind.RESOLVE)
    # 2027-01-01..03 off in the file: 12-31 and 01-04 are the two days, due 01-05 00:00, plus the 6 paused hours.
    assert resolve.due_at == sh(1, 5, 6, year=2027)
    assert (resolve.calendar_fallback, resolve.fallback_years) == (False, ())
    assert resolve.pauses == clock(state, ClockKind.RESOLVE).pauses
    assert "跳过 2027-01-01..01-03 元旦" in resolve.explanation
    assert "2026-12-31 12:00 暂停（等待群众补充材料），停止计时；2026-12-31 18:00 恢复" in resolve.explanation
    assert resolve.explanation.endswith(
        "日历更新后重新计算：原截止 2027-01-04 06:00，原按仅周末休息计算，现截止 2027-01-05 06:00"
    )
    assert clock(new, ClockKind.CONTACT) == clock(state, ClockKind.CONTACT)  # met: judged as it was
    assert fallback_years(new) == frozenset()
    assert caplog.records == []
    # Nothing moves on a second load of the same data: the very same state comes back.
    assert recompute(new, loaded) is new


def test_recompute_keeps_an_open_pause(task: TaskDispatched) -> None:
    state = start_clocks(task.model_copy(update={"received_at": sh(12, 30, 9)}), CAL)
    state = run(state, (UpdateKind.PAUSED, sh(12, 31, 12)))
    new = recompute(state, WorkingCalendar.with_files([SAMPLE_2027]))
    resolve = clock(new, ClockKind.RESOLVE)
    assert (resolve.paused_since, resolve.due_at) == (sh(12, 31, 12), sh(1, 5, year=2027))
    assert new.status is TaskStatus.PAUSED
    resumed = run(
        new, (UpdateKind.RESUMED, sh(1, 4, 12, year=2027)), calendar=WorkingCalendar.with_files([SAMPLE_2027])
    )
    # Paused 12-31 12:00..2027-01-04 12:00: counted 12 h on 12-31 and 12 h on 01-04 (01-01..03 off).
    assert resumed.due(ClockKind.RESOLVE) == sh(1, 6, year=2027)


def test_recompute_without_change_is_the_same_state(opened: TaskClockState) -> None:
    assert recompute(opened, WorkingCalendar.with_files([SAMPLE_2027])) is opened


# --- stored and published shapes ------------------------------------------------------------------


def test_state_round_trips_through_json(opened: TaskClockState) -> None:
    state = run(
        opened,
        (UpdateKind.CONTACTED, sh(9, 30, 10, 30)),
        (UpdateKind.PAUSED, sh(10, 8, 9)),
        (UpdateKind.RESUMED, sh(10, 8, 11)),
        (UpdateKind.RESOLVED, sh(10, 9, 9)),
    )
    assert TaskClockState.model_validate(state.model_dump(mode="json")) == state
    event = status_event(state, sh(10, 9, 9), None)
    assert TaskStatusChanged.model_validate_json(event.to_bytes()) == event
    assert '"paused_total":"PT2H"' in event.to_bytes().decode()


def test_records_written_before_clocks_carried_their_term_still_parse() -> None:
    legacy = Clock.model_validate(
        {"kind": "resolve", "due_at": "2026-10-10T00:00:00+08:00", "explanation": "2 个工作日"}
    )
    assert (legacy.started_at, legacy.amount, legacy.unit, legacy.running) == (None, None, None, True)
    state = TaskClockState(
        task_id="01KAG000000000000000000001",
        unit_code="PA-CG",
        status=TaskStatus.OPEN,
        received_at=RECEIVED,
        clocks=(legacy,),
    )
    assert recompute(state, WorkingCalendar.with_files([SAMPLE_2027])) is state
    paused = run(state, (UpdateKind.PAUSED, sh(10, 8, 9)), (UpdateKind.RESUMED, sh(10, 8, 10)))
    assert paused.due(ClockKind.RESOLVE) == sh(10, 10, 1)  # no term known: the wall-clock span
    closed = run(paused, (UpdateKind.RESOLVED, sh(10, 9)))
    assert closed.clock(ClockKind.REPLY) is None  # no reply term known either
