"""SLA alert planning (services/sla/alerts.py): warnings, overdue, escalation chain, reminders, pause and resume."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import pytest

from schemas import AlertKind, ClockKind, SlaAlertRaised, UpdateKind
from schemas.dutylist import load_duty_list
from services.sla.alerts import (
    NOTHING_FIRED,
    AlertPolicy,
    ClockTimes,
    Level,
    PlannedAlert,
    Rung,
    TaskFacts,
    alert_id,
    alert_record,
    clock_times,
    duration_zh,
    escalation_chain,
    next_alert,
    next_two,
    plan,
    position_of,
    raise_alert,
    superseded,
)
from services.sla.calendar import WorkingCalendar
from services.sla.clocks import apply_update, start_clocks
from tests.unit.sla_tasks import SH, task, update

CAL = WorkingCalendar.default()
DUTY = load_duty_list()
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=SH)
H = timedelta(hours=1)
POLICY = AlertPolicy(
    warning_fractions=(0.5, 0.8),
    escalate_after=(4 * H, 24 * H, 72 * H),
    reminder_interval=8 * H,
    final_reminders=2,
)
CHAIN = escalation_chain(DUTY, "PA-CG-01")


def two_hours() -> ClockTimes:
    return ClockTimes(ClockKind.RESOLVE, T0 + 2 * H, 2 * H, True)


def steps(alerts: list[PlannedAlert]) -> list[tuple[str, int, datetime]]:
    return [(a.step, a.reminder, a.due_at) for a in alerts]


# --- the plan --------------------------------------------------------------------------------------------


def test_warnings_at_fractions_of_the_span_then_overdue_at_the_deadline() -> None:
    alerts = list(plan(two_hours(), (), POLICY))
    assert steps(alerts)[:3] == [
        ("warning-50", 0, T0 + H),
        ("warning-80", 0, T0 + timedelta(minutes=96)),
        ("overdue", 0, T0 + 2 * H),
    ]
    assert [a.kind for a in alerts[:3]] == [AlertKind.WARNING, AlertKind.WARNING, AlertKind.OVERDUE]
    assert all(a.deadline_at == T0 + 2 * H for a in alerts)
    # No chain: the overdue alert is the last step; it repeats final_reminders times, then the clock is quiet.
    assert steps(alerts)[3:] == [("overdue", 1, T0 + 10 * H), ("overdue", 2, T0 + 18 * H)]


def test_configured_fractions_are_used_and_checked() -> None:
    policy = AlertPolicy(warning_fractions=(0.25, 0.9), escalate_after=POLICY.escalate_after)
    warnings = [a for a in plan(two_hours(), (), policy) if a.kind is AlertKind.WARNING]
    assert steps(warnings) == [
        ("warning-25", 0, T0 + timedelta(minutes=30)),
        ("warning-90", 0, T0 + timedelta(minutes=108)),
    ]
    with pytest.raises(ValueError, match="fraction"):
        AlertPolicy(warning_fractions=(1.0,))
    with pytest.raises(ValueError, match="increasing"):
        AlertPolicy(escalate_after=(24 * H, 4 * H, 72 * H))


def test_escalation_chain_of_a_village_committee_runs_township_county_supervision() -> None:
    assert (
        Rung(Level.TOWNSHIP, "PA-CG", "城关镇综治中心"),
        Rung(Level.COUNTY, "PA-ZZZX", "平安县社会治理综合指挥中心"),
        Rung(Level.SUPERVISION, "PA-DCS", "平安县人民政府督查室"),
    ) == CHAIN
    after_deadline = [a for a in plan(two_hours(), CHAIN, POLICY) if a.rank >= 1000]
    d = T0 + 2 * H
    assert steps(after_deadline) == [
        ("overdue", 0, d),  # reminders every 8 h: none fits before the township step at +4 h
        ("escalation-township", 0, d + 4 * H),
        ("escalation-township", 1, d + 12 * H),
        ("escalation-township", 2, d + 20 * H),
        ("escalation-county", 0, d + 24 * H),
        *[("escalation-county", n, d + 24 * H + n * 8 * H) for n in range(1, 6)],  # +32 ... +64 h
        ("escalation-supervision", 0, d + 72 * H),
        ("escalation-supervision", 1, d + 80 * H),
        ("escalation-supervision", 2, d + 88 * H),
    ]
    assert [a.escalate_to.unit_code if a.escalate_to else None for a in after_deadline][:2] == [None, "PA-CG"]
    assert {a.kind for a in after_deadline[1:]} == {AlertKind.ESCALATION}


@pytest.mark.parametrize(
    ("unit", "levels"),
    [
        ("PA-CG", [Level.COUNTY, Level.SUPERVISION]),  # a township centre: no township rung above itself
        ("PA-ZJJ", [Level.COUNTY, Level.SUPERVISION]),  # a county department answers to the county
        ("PA-ZZZX", [Level.SUPERVISION]),  # the command centre: straight to 督办
        ("PA-HX-02", [Level.TOWNSHIP, Level.COUNTY, Level.SUPERVISION]),
        ("XX-UNKNOWN", [Level.COUNTY, Level.SUPERVISION]),
    ],
)
def test_escalation_chain_skips_rungs_a_unit_does_not_answer_to(unit: str, levels: list[Level]) -> None:
    chain = escalation_chain(DUTY, unit)
    assert [r.level for r in chain] == levels
    if unit == "PA-HX-02":
        assert chain[0].unit_code == "PA-HX"


def test_a_county_department_reaches_the_county_at_the_county_offset() -> None:
    chain = escalation_chain(DUTY, "PA-ZJJ")
    first = next(a for a in plan(two_hours(), chain, POLICY) if a.kind is AlertKind.ESCALATION)
    assert (first.step, first.due_at, first.escalate_to) == (
        "escalation-county",
        T0 + 2 * H + 24 * H,
        Rung(Level.COUNTY, "PA-ZZZX", "平安县社会治理综合指挥中心"),
    )


def test_next_alert_continues_after_the_fired_position_and_positions_read_back() -> None:
    alerts = list(plan(two_hours(), CHAIN, POLICY))
    assert [a.position for a in alerts] == sorted(a.position for a in alerts)
    assert [a.due_at for a in alerts] == sorted(a.due_at for a in alerts)
    for before, after in itertools.pairwise(alerts):
        assert next_alert(two_hours(), CHAIN, POLICY, before.position) == after
        assert next_two(two_hours(), CHAIN, POLICY, before.position)[0] == after
    assert next_alert(two_hours(), CHAIN, POLICY, alerts[-1].position) is None
    assert next_alert(two_hours(), CHAIN, POLICY, NOTHING_FIRED) == alerts[0]
    for a in alerts:
        assert position_of(a.step, a.reminder) == a.position


def test_a_clock_not_running_plans_nothing() -> None:
    stopped = ClockTimes(ClockKind.RESOLVE, T0 + 2 * H, 2 * H, False)
    assert list(plan(stopped, CHAIN, POLICY)) == []


# --- clocks of a real task: pause, resume, met -----------------------------------------------------------


def test_a_met_clock_cancels_its_alerts_and_the_others_go_on() -> None:
    t = task(T0)
    state = start_clocks(t, CAL)
    assert {c.kind for c in clock_times(state) if c.running} == {ClockKind.ACK, ClockKind.CONTACT, ClockKind.RESOLVE}
    state = apply_update(state, update(t, UpdateKind.CONTACTED, T0 + timedelta(minutes=20)), CAL)
    running = {c.kind: c for c in clock_times(state)}
    assert not running[ClockKind.CONTACT].running and not running[ClockKind.ACK].running  # contact counts as 签收
    assert running[ClockKind.RESOLVE].running
    state = apply_update(state, update(t, UpdateKind.RESOLVED, T0 + H), CAL)
    times = clock_times(state)
    assert not any(c.running for c in times if c.kind is not ClockKind.REPLY)
    # The reply clock starts at resolution (1 working day) and alerts like any other.
    reply = next(c for c in times if c.kind is ClockKind.REPLY)
    assert reply.running and next_alert(reply, CHAIN, POLICY) is not None


def test_a_returned_task_raises_nothing() -> None:
    t = task(T0)
    state = apply_update(start_clocks(t, CAL), update(t, UpdateKind.RETURNED, T0 + H), CAL)
    assert all(next_alert(c, CHAIN, POLICY) is None for c in clock_times(state))


def test_pause_raises_nothing_and_resume_reschedules_after_what_fired() -> None:
    t = task(T0, resolve_h=2)
    state = start_clocks(t, CAL)
    resolve = next(c for c in clock_times(state) if c.kind is ClockKind.RESOLVE)
    first = next_alert(resolve, CHAIN, POLICY)
    assert first is not None and (first.step, first.due_at) == ("warning-50", T0 + H)

    # warning-50 fired at 10:00; paused at 10:30 (waiting for the citizen), resumed at 11:30.
    paused = apply_update(state, update(t, UpdateKind.PAUSED, T0 + timedelta(minutes=90)), CAL)
    assert not any(c.running for c in clock_times(paused))
    assert all(next_alert(c, CHAIN, POLICY, first.position) is None for c in clock_times(paused))

    resumed = apply_update(paused, update(t, UpdateKind.RESUMED, T0 + timedelta(minutes=150)), CAL)
    clock = next(c for c in clock_times(resumed) if c.kind is ClockKind.RESOLVE)
    assert clock.running
    assert clock.due_at == T0 + 3 * H  # moved by the hour paused
    assert clock.span == 2 * H  # the pause is not running time
    following = next_alert(clock, CHAIN, POLICY, first.position)
    # 80 % of the running time is used 24 minutes before the moved deadline; warning-50 is not raised again.
    assert following is not None
    assert (following.step, following.due_at) == ("warning-80", T0 + 3 * H - timedelta(minutes=24))
    overdue = next_alert(clock, CHAIN, POLICY, following.position)
    assert overdue is not None and (overdue.step, overdue.due_at) == ("overdue", T0 + 3 * H)


# --- ids, superseding, the message ---------------------------------------------------------------------


def test_alert_ids_are_deterministic_ulids_per_task_clock_step_reminder_and_due_time() -> None:
    a = alert_id("01KAFZ0M3DB3XG7M2Q4J8K6P1Z", ClockKind.RESOLVE, "overdue", 0, T0)
    assert a == alert_id("01KAFZ0M3DB3XG7M2Q4J8K6P1Z", ClockKind.RESOLVE, "overdue", 0, T0)
    others = {
        alert_id("01KAFZ0M3DB3XG7M2Q4J8K6P1Y", ClockKind.RESOLVE, "overdue", 0, T0),
        alert_id("01KAFZ0M3DB3XG7M2Q4J8K6P1Z", ClockKind.CONTACT, "overdue", 0, T0),
        alert_id("01KAFZ0M3DB3XG7M2Q4J8K6P1Z", ClockKind.RESOLVE, "overdue", 1, T0),
        alert_id("01KAFZ0M3DB3XG7M2Q4J8K6P1Z", ClockKind.RESOLVE, "overdue", 0, T0 + timedelta(milliseconds=1)),
    }
    assert a not in others and len(others) == 4
    assert len(a) == 26
    # The time part is the due instant: ids sort by due time.
    later = alert_id("01KAFZ0M3DB3XG7M2Q4J8K6P1Z", ClockKind.RESOLVE, "overdue", 0, T0 + H)
    assert a[:10] < later[:10]


def test_a_warning_is_superseded_when_a_later_alert_is_already_due_others_never() -> None:
    w50, w80, overdue, *_ = plan(two_hours(), CHAIN, POLICY)
    assert superseded(w50, w80, T0 + 2 * H)
    assert not superseded(w50, w80, T0 + timedelta(minutes=90))
    assert not superseded(overdue, _[0], T0 + 100 * H)  # overdue and escalations fire however late


def test_raised_alert_validates_and_speaks_chinese() -> None:
    facts = TaskFacts("01KAFZ0M3DB3XG7M2Q4J8K6P1Z", "PA-CG-01", "城关镇东街社区居民委员会", "下水管爆裂", CHAIN, None)
    alerts = list(plan(two_hours(), CHAIN, POLICY))
    raised = [raise_alert(a, facts, a.due_at + timedelta(seconds=1)) for a in alerts]
    for alert, record in zip(alerts, raised, strict=True):
        again = SlaAlertRaised.model_validate_json(record.to_bytes())
        assert again == record
        assert record.alert_id == alert_id(facts.task_id, alert.clock, alert.step, alert.reminder, alert.due_at)
        assert record.deadline_at == T0 + 2 * H
    assert raised[0].message.startswith("【预警】城关镇东街社区居民委员会：工单「下水管爆裂」")
    assert "已用去 50%" in raised[0].message and "2026-11-20 11:00 到期" in raised[0].message
    assert raised[2].message.startswith("【超期】") and "请立即办理" in raised[2].message
    township = next(r for r in raised if r.step == "escalation-township")
    assert township.escalate_to == "PA-CG" and "已升级至城关镇综治中心" in township.message
    assert "超期 4 小时" in township.message
    supervision = next(r for r in raised if r.step == "escalation-supervision")
    assert supervision.escalate_to == "PA-DCS" and "提请督办" in supervision.message
    reminder = next(r for r in raised if r.reminder == 1)
    assert "第 1 次提醒" in reminder.message
    # The same alert raised again (after a crash) is the same record but for raised_at.
    repeat = raise_alert(alerts[0], facts, alerts[0].due_at + timedelta(seconds=5))
    assert (repeat.alert_id, repeat.message_id) == (raised[0].alert_id, raised[0].message_id)


def test_the_timers_fast_record_is_the_same_message() -> None:
    facts = TaskFacts(
        "01KAFZ0M3DB3XG7M2Q4J8K6P1Z",
        "PA-CG-01",
        "城关镇东街社区居民委员会",
        "下水管爆裂",
        CHAIN,
        "01KAFZ0M3DB3XG7M2Q4J8K6P1Y",
    )
    for alert in plan(two_hours(), CHAIN, POLICY):
        at = alert.due_at + timedelta(milliseconds=350)
        fast = SlaAlertRaised.model_validate_json(alert_record(alert, facts, at))
        assert fast == raise_alert(alert, facts, at)
        assert "\\u" not in alert_record(alert, facts, at).decode()  # Chinese as UTF-8, not escaped


def test_durations_in_chinese() -> None:
    assert duration_zh(timedelta(seconds=45)) == "45 秒"
    assert duration_zh(timedelta(hours=4)) == "4 小时"
    assert duration_zh(timedelta(days=1, hours=2, minutes=5)) == "1 天 2 小时 5 分钟"
