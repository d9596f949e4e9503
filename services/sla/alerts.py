"""Which alerts a task's clocks still have to raise, and when; pure: no Kafka, no clock reads, no globals.

For every running clock (due at D, running for a span L in all: from its start to D, finished pauses left out),
in order:

* a warning (预警) at D − (1 − f) · L for each configured fraction f (default 0.5 and 0.8): when f of the
  clock's running time is used (for a clock never paused, S + f · L from its start S);
* an overdue alert (超期) at D, to the unit;
* escalation steps (升级) at D + the configured offsets: the unit's township centre (its own township for a
  village committee; skipped for a township centre, a county department or the command centre, which answer to
  the county, not a township), the county command centre (skipped when the unit is the command centre), the
  supervision office (督办, when the duty list names one);
* repeat reminders (提醒) of the overdue alert and of each escalation step every reminder interval until the
  next step; after the last step at most `final_reminders` of them, then the clock is quiet.

Each alert has a position (rank, reminder): warnings rank by their fraction in thousandths (1..999), the overdue
alert is 1000, escalations 1001 (township), 1002 (county), 1003 (supervision); reminder 0 is the step itself.
Positions do not move when settings change, so "fired through position p" (the store's mark per clock) stays
meaningful: the next alert is the first planned one after it. A paused or met clock plans nothing; a resumed
clock is planned again from its new due time, after its last fired position (nothing fires twice).

An alert's id derives from (task, clock, step, reminder, due instant): a replay raises the same id, and a
rescheduled step (a resume moved the deadline) a new one.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from schemas import AlertKind, ClockKind, SlaAlertRaised, TaskStatus
from schemas.dutylist import DutyList
from services.sla.clocks import TaskClockState, running

SHANGHAI = ZoneInfo("Asia/Shanghai")
OVERDUE_RANK = 1000
NOTHING_FIRED: tuple[int, int] = (0, 0)  # below every position: warnings rank from 1, reminders from 0

Position = tuple[int, int]


class Level(StrEnum):
    """Rungs of the escalation ladder above the unit."""

    TOWNSHIP = "township"
    COUNTY = "county"
    SUPERVISION = "supervision"


LEVEL_RANK = {Level.TOWNSHIP: 1001, Level.COUNTY: 1002, Level.SUPERVISION: 1003}
LEVEL_ZH = {Level.TOWNSHIP: "乡镇综治中心", Level.COUNTY: "县社会治理综合指挥中心", Level.SUPERVISION: "督办部门"}
CLOCK_ZH = {"ack": "签收", "contact": "联系群众", "resolve": "办结", "reply": "回复群众"}


@dataclass(frozen=True, slots=True)
class Rung:
    """One unit on the escalation ladder."""

    level: Level
    unit_code: str
    unit_name: str


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    """Warning fractions, escalation offsets after the deadline (township, county, supervision), reminders."""

    warning_fractions: tuple[float, ...] = (0.5, 0.8)
    escalate_after: tuple[timedelta, timedelta, timedelta] = (
        timedelta(hours=4),
        timedelta(hours=24),
        timedelta(hours=72),
    )
    reminder_interval: timedelta = timedelta(hours=24)
    final_reminders: int = 7

    def __post_init__(self) -> None:
        for f in self.warning_fractions:
            if not 0.001 <= f < 1:
                raise ValueError(f"warning fraction {f} must lie in [0.001, 1)")
        if len({_warning_rank(f) for f in self.warning_fractions}) != len(self.warning_fractions):
            raise ValueError(f"warning fractions {self.warning_fractions} repeat (to a thousandth)")
        if len(self.escalate_after) != 3:
            raise ValueError("escalate_after needs three offsets: township, county, supervision")
        offsets = list(self.escalate_after)
        if offsets[0] <= timedelta(0) or offsets != sorted(set(offsets)):
            raise ValueError(f"escalation offsets must be positive and increasing, got {offsets}")
        if self.reminder_interval <= timedelta(0):
            raise ValueError("reminder_interval must be positive")
        if self.final_reminders < 0:
            raise ValueError("final_reminders must not be negative")


@dataclass(frozen=True, slots=True)
class ClockTimes:
    """What planning needs of one clock: when it is due, how long it runs in all (its span, pauses left out),
    whether it runs now."""

    kind: ClockKind
    due_at: datetime
    span: timedelta
    running: bool


@dataclass(frozen=True, slots=True)
class TaskFacts:
    """What an alert says about its task (kept by the store beside the clock state)."""

    task_id: str
    unit_code: str
    unit_name: str
    title: str
    chain: tuple[Rung, ...]
    causation_id: str | None = None


@dataclass(frozen=True, slots=True)
class PlannedAlert:
    """One alert a clock will raise, at `due_at`."""

    kind: AlertKind
    clock: ClockKind
    step: str
    rank: int
    reminder: int
    due_at: datetime
    deadline_at: datetime
    fraction: float | None = None
    escalate_to: Rung | None = None

    @property
    def position(self) -> Position:
        """Where it stands in its clock's sequence."""
        return (self.rank, self.reminder)


def _warning_rank(fraction: float) -> int:
    return round(fraction * 1000)


@functools.lru_cache(maxsize=32)
def _layout(policy: AlertPolicy) -> tuple[tuple[tuple[float, int, str], ...], dict[Level, timedelta]]:
    """The policy's warnings (fraction, rank, step name), sorted, and the escalation offsets by level."""
    warnings = tuple(
        (f, _warning_rank(f), f"warning-{_warning_rank(f) / 10:g}") for f in sorted(policy.warning_fractions)
    )
    return warnings, dict(zip(Level, policy.escalate_after, strict=True))


# kind, step name, rank, instant, fraction, rung, repeats
_Step = tuple[AlertKind, str, int, datetime, float | None, Rung | None, bool]


def _steps(clock: ClockTimes, chain: Sequence[Rung], policy: AlertPolicy) -> list[_Step]:
    warnings, offsets = _layout(policy)
    steps: list[_Step] = []
    if clock.span > timedelta(0):
        # A warning at fraction f comes when (1 - f) of the clock's running span is left: after a pause that is
        # the due time (moved by the pause) minus the rest of the span, the same instant as counting running time.
        steps += [
            (AlertKind.WARNING, name, rank, clock.due_at - clock.span * (1 - f), f, None, False)
            for f, rank, name in warnings
        ]
    steps.append((AlertKind.OVERDUE, "overdue", OVERDUE_RANK, clock.due_at, None, None, True))
    for rung in chain:
        at = clock.due_at + offsets[rung.level]
        name = f"escalation-{rung.level.value}"
        steps.append((AlertKind.ESCALATION, name, LEVEL_RANK[rung.level], at, None, rung, True))
    return steps


def plan(
    clock: ClockTimes, chain: Sequence[Rung], policy: AlertPolicy, after: Position = NOTHING_FIRED
) -> Iterator[PlannedAlert]:
    """Every alert the clock still raises after position `after`, in due order; nothing when it is not running."""
    if not clock.running:
        return
    steps = _steps(clock, chain, policy)
    interval = policy.reminder_interval
    for index, (kind, name, rank, first, fraction, rung, repeats) in enumerate(steps):
        if rank < after[0] or (rank == after[0] and not repeats):
            continue
        following = steps[index + 1][3] if index + 1 < len(steps) else None
        reminder = after[1] + 1 if rank == after[0] else 0
        while True:
            at = first + interval * reminder
            if reminder > 0 and (
                not repeats
                or (following is not None and at >= following)
                or (following is None and reminder > policy.final_reminders)
            ):
                break
            yield PlannedAlert(
                kind=kind,
                clock=clock.kind,
                step=name,
                rank=rank,
                reminder=reminder,
                due_at=at,
                deadline_at=clock.due_at,
                fraction=fraction,
                escalate_to=rung,
            )
            if not repeats:
                break
            reminder += 1


def next_alert(
    clock: ClockTimes, chain: Sequence[Rung], policy: AlertPolicy, after: Position = NOTHING_FIRED
) -> PlannedAlert | None:
    """The first alert the clock still raises after `after`, if any."""
    return next(plan(clock, chain, policy, after), None)


def next_two(
    clock: ClockTimes, chain: Sequence[Rung], policy: AlertPolicy, after: Position = NOTHING_FIRED
) -> tuple[PlannedAlert | None, PlannedAlert | None]:
    """The next alert after `after` and the one after it (the timer needs both: to supersede, to plan on)."""
    upcoming = plan(clock, chain, policy, after)
    return next(upcoming, None), next(upcoming, None)


def position_of(step: str, reminder: int) -> Position:
    """The position of an alert from its message's step and reminder (warning-50 → (500, 0))."""
    if step == "overdue":
        return (OVERDUE_RANK, reminder)
    if step.startswith("warning-"):
        return (round(float(step.removeprefix("warning-")) * 10), reminder)
    if step.startswith("escalation-"):
        return (LEVEL_RANK[Level(step.removeprefix("escalation-"))], reminder)
    raise ValueError(f"unknown alert step {step!r}")


def superseded(alert: PlannedAlert, following: PlannedAlert | None, now: datetime) -> bool:
    """A warning is not raised once a later alert of its clock is already due: "80 % used" is no news then.

    Overdue alerts, escalations and reminders always fire, however late (no alert lost)."""
    return alert.kind is AlertKind.WARNING and following is not None and following.due_at <= now


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)  # every 10-bit value as two characters


def _ulid(ms: int, digest: bytes) -> str:
    value = (ms << 80) | int.from_bytes(digest[:10], "big")
    p = _PAIRS
    return (
        f"{p[value >> 120]}{p[(value >> 110) & 1023]}{p[(value >> 100) & 1023]}{p[(value >> 90) & 1023]}"
        f"{p[(value >> 80) & 1023]}{p[(value >> 70) & 1023]}{p[(value >> 60) & 1023]}{p[(value >> 50) & 1023]}"
        f"{p[(value >> 40) & 1023]}{p[(value >> 30) & 1023]}{p[(value >> 20) & 1023]}{p[(value >> 10) & 1023]}"
        f"{p[value & 1023]}"
    )


def alert_id(task_id: str, clock: ClockKind, step: str, reminder: int, due_at: datetime) -> str:
    """Deterministic ULID of an alert: its time part is the due instant, the rest a digest of what it is."""
    ms = int(due_at.timestamp() * 1000)
    digest = hashlib.sha256(f"{task_id}|{clock.value}|{step}|{reminder}|{ms}".encode()).digest()
    return _ulid(max(0, ms), digest)


def message_id_of(alert_id_value: str, ms: int | None = None) -> str:
    """Deterministic message id of the record that carries an alert (a repeat is byte-identical but raised_at)."""
    at = _decode_ms(alert_id_value) if ms is None else max(0, ms)
    return _ulid(at, hashlib.sha256(f"message|{alert_id_value}".encode()).digest())


def _decode_ms(ulid: str) -> int:
    value = 0
    for char in ulid[:10]:
        value = value * 32 + _CROCKFORD.index(char)
    return value


def _minute(moment: datetime) -> str:
    local = moment.astimezone(SHANGHAI)
    return f"{local.year:04d}-{local.month:02d}-{local.day:02d} {local.hour:02d}:{local.minute:02d}"


def duration_zh(delta: timedelta) -> str:
    """A duration in Chinese, to the minute (seconds under two minutes)."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 120:
        return f"{seconds} 秒"
    minutes = seconds // 60
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days} 天" if days else "", f"{hours} 小时" if hours else "", f"{minutes} 分钟" if minutes else ""]
    return " ".join(p for p in parts if p)


def describe(alert: PlannedAlert, facts: TaskFacts) -> str:
    """The alert in Chinese, as a person reads it: who, which task, which limit, what happens next."""
    what = CLOCK_ZH.get(alert.clock.value, alert.clock.value)
    task = f"工单「{facts.title}」（{facts.task_id}）"
    deadline = _minute(alert.deadline_at)
    repeat = f"（第 {alert.reminder} 次提醒）" if alert.reminder else ""
    late = duration_zh(alert.due_at - alert.deadline_at)
    if alert.kind is AlertKind.WARNING:
        share = round((alert.fraction or 0) * 100)
        left = duration_zh(alert.deadline_at - alert.due_at)
        return (
            f"【预警】{facts.unit_name}：{task}的{what}时限已用去 {share}%，"
            f"将于 {deadline} 到期（剩余约 {left}），请抓紧办理。"
        )
    if alert.kind is AlertKind.OVERDUE:
        head = "【超期提醒】" if alert.reminder else "【超期】"
        tail = f"已超期 {late}，" if alert.reminder else ""
        return (
            f"{head}{facts.unit_name}：{task}的{what}时限已于 {deadline} 到期，{tail}"
            f"尚未完成，请立即办理并说明原因。{repeat}"
        )
    rung = alert.escalate_to
    target = rung.unit_name if rung is not None else "上级"
    action = "提请督办" if rung is not None and rung.level is Level.SUPERVISION else "升级至"
    head = "【督办提醒】" if alert.reminder else "【升级督办】"
    return (
        f"{head}{task}（承办单位：{facts.unit_name}）的{what}时限已于 {deadline} 到期，"
        f"超期 {late} 仍未完成，已{action}{target}，请督促承办单位办理。{repeat}"
    )


def raise_alert(alert: PlannedAlert, facts: TaskFacts, raised_at: datetime) -> SlaAlertRaised:
    """The SlaAlertRaised for a planned alert (deterministic ids; `raised_at` is when it fired)."""
    identity = alert_id(facts.task_id, alert.clock, alert.step, alert.reminder, alert.due_at)
    # Built without validation: every field comes from this module's own typed values (a unit test checks the
    # bytes validate); the timer builds thousands a second.
    return SlaAlertRaised.model_construct(
        schema_version=1,
        message_id=message_id_of(identity),
        causation_id=facts.causation_id,
        alert_id=identity,
        task_id=facts.task_id,
        unit_code=facts.unit_code,
        kind=alert.kind,
        clock=alert.clock,
        step=alert.step,
        reminder=alert.reminder,
        due_at=alert.due_at,
        deadline_at=alert.deadline_at,
        raised_at=raised_at,
        escalate_to=alert.escalate_to.unit_code if alert.escalate_to is not None else None,
        message=describe(alert, facts),
    )


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def alert_record(alert: PlannedAlert, facts: TaskFacts, raised_at: datetime) -> bytes:
    """The same message as raise_alert(...).to_bytes(), serialised straight from a dict (the timer's hot path:
    thousands a second; a unit test checks it validates as SlaAlertRaised and equals raise_alert's)."""
    identity = alert_id(facts.task_id, alert.clock, alert.step, alert.reminder, alert.due_at)
    body = {
        "schema_version": 1,
        "message_id": message_id_of(identity, int(alert.due_at.timestamp() * 1000)),
        "causation_id": facts.causation_id,
        "alert_id": identity,
        "task_id": facts.task_id,
        "unit_code": facts.unit_code,
        "kind": alert.kind.value,
        "clock": alert.clock.value,
        "step": alert.step,
        "reminder": alert.reminder,
        "due_at": _iso(alert.due_at),
        "deadline_at": _iso(alert.deadline_at),
        "raised_at": _iso(raised_at),
        "escalate_to": alert.escalate_to.unit_code if alert.escalate_to is not None else None,
        "message": describe(alert, facts),
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def escalation_chain(duty: DutyList, unit_code: str) -> tuple[Rung, ...]:
    """The unit's escalation ladder: its township centre, the county command centre, the supervision office.

    A village committee escalates to its township's centre; a township centre, a county department, the command
    centre or a unit the list does not know skips that rung (none of them answers to a township). The command
    centre skips the county rung too; a list without a supervision office has no 督办 rung.
    """
    units = {u.code: u for u in duty.units}
    unit = units.get(unit_code)
    chain: list[Rung] = []
    if unit is not None and unit.kind == "village-committee" and unit.township:
        centre = next((u for u in duty.units if u.kind == "township-centre" and u.township == unit.township), None)
        if centre is not None:
            chain.append(Rung(Level.TOWNSHIP, centre.code, centre.name))
    command = duty.county.command_centre
    if unit_code != command:
        name = units[command].name if command in units else command
        chain.append(Rung(Level.COUNTY, command, name))
    office = duty.county.supervision_office
    if office is not None and office.code != unit_code:
        chain.append(Rung(Level.SUPERVISION, office.code, office.name))
    return tuple(chain)


# --- reading clocks ---------------------------------------------------------------------------------------


def clock_times(state: TaskClockState) -> tuple[ClockTimes, ...]:
    """The planning view of every started clock of a task (a clock alerts while `running`: not met, stopped
    or paused; services.sla.clocks keeps those facts on each Clock)."""
    return tuple(
        ClockTimes(
            kind=clock.kind,
            due_at=clock.due_at,
            span=clock.due_at - (clock.started_at or state.received_at) - clock.paused_total,
            running=running(clock) and state.status is not TaskStatus.RETURNED,
        )
        for clock in state.clocks
    )
