"""Turn a task's time limits (ClockTerm) into due times on China's statutory calendar; pause, resume, recount.

Pure: no Kafka, no clock reads, no globals; the calendar is handed in. All times are shown and computed in
Asia/Shanghai; inputs must be timezone-aware.

Which clocks, which terms
    签收 ack       the unit's ``accepted`` update     ClockPolicy.ack, default 1 hour (wall clock), every class
    联系 contact   the unit's ``contacted`` update    the duty list's ``contact_within_hours`` (1 hour)
    办结 resolve   the unit's ``resolved`` update     the duty list's ``deadline_classes[class]["resolve"]``
    回复 reply     the unit's ``replied`` update      ClockPolicy.reply, default 1 working day, starts at 办结
The duty list is the county's own (one list per county), so its class terms are the county's; each matter
names its class. Ack and reply are not in the list: ``ClockPolicy`` gives them per class. A task's own
terms (``TaskDispatched.deadlines``) win over the policy when they name an ack or reply clock.
The ack default equals the contact term: a unit cannot contact the citizen within the hour before it knows
it holds the task, and contacting (or resolving) before a separate 签收 counts as the acknowledgement.

Hours (``DurationUnit.HOURS``) are elapsed wall-clock time: ``due_at = start + amount hours``,
nights, weekends and holidays included.

Working days (``DurationUnit.WORKING_DAYS``), the counting rule:
    受理当日不计入，自次日起算（民法典第201条：按日计算的期间，开始的当日不计入，自下一日开始计算）；
    期限至受理日之后第 N 个工作日 24:00 届满，即 due_at = 该日次日 00:00 (Asia/Shanghai)，
    在 due_at 之前办结即为按时（左闭右开）。
That is: the day of receipt (in Asia/Shanghai) is never counted, whatever the time of day;
counting starts with the next calendar day, skips non-working days (weekends not made up,
statutory holidays) and counts working days (including make-up working weekends, 调休上班);
the deadline is the end of the N-th counted working day. Receipt on a holiday, on a weekend or
after office hours therefore counts the same way: the first counted day is the next working day.
Receipt on a make-up working Saturday: that day is the receipt day, so it is not counted either.
Office hours play no part: a counted working day counts from 00:00 to 24:00.

Pause and resume (暂停/恢复, e.g. waiting for the citizen): a paused clock does not count. On resume its
due time moves by the paused span measured in the clock's own unit:
    hours         the wall-clock span: ``due_at += resumed_at - paused_at``;
    working days  the *counted working time* inside the pause: the part of the pause that falls on counted
                  days (working days after the start day, each 24 hours long; days off and the start day
                  itself count nothing). The due time moves forward by that much counted working time,
                  skipping days off again. Equivalently: the counted working time the clock had left when it
                  was paused is carried over and counted on from the resume. A 5-hour pause on a Tuesday
                  moves a Friday-24:00 deadline to Monday 05:00; a pause over a weekend moves nothing.
A working-day clock of N days is thus N x 24 hours of counted working time, plus what its pauses took.

A new calendar (a holiday-cn file for a year that fell back to weekends-only, say): ``recount`` rebuilds a
clock from its start, term and pauses on the new calendar and says so in its explanation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import assert_never
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from schemas.dutylist import DutyList, Term
from schemas.sla import Clock, ClockPause
from schemas.task import ClockKind, ClockTerm, DeadlineClass, DurationUnit, TaskDispatched
from services.sla.calendar import WEEKEND, DayInfo, WorkingCalendar

TIME_ZONE_NAME = "Asia/Shanghai"
SHANGHAI = ZoneInfo(TIME_ZONE_NAME)
DAY = timedelta(days=1)

COUNTING_RULE = (
    "受理当日不计入，自次日起算（民法典第201条）；"
    "期限至受理日之后第 N 个工作日 24:00 届满，即次日 00:00 (Asia/Shanghai) 前办结为按时"
)

KIND_LABELS: dict[ClockKind, str] = {
    ClockKind.ACK: "签收",
    ClockKind.CONTACT: "联系",
    ClockKind.RESOLVE: "办结",
    ClockKind.REPLY: "回复",
}
CLOCK_ORDER: tuple[ClockKind, ...] = (ClockKind.ACK, ClockKind.CONTACT, ClockKind.RESOLVE, ClockKind.REPLY)


@lru_cache(maxsize=256)
def _clock_term(kind: ClockKind, amount: int, unit: DurationUnit) -> ClockTerm:
    # Frozen, and the same few per deadline class: built and validated once each, not once per task.
    return ClockTerm(kind=kind, amount=amount, unit=unit)


def _every_class(amount: int, unit: DurationUnit) -> dict[DeadlineClass, Term]:
    return {c: Term(amount=amount, unit=unit) for c in DeadlineClass}


class ClockPolicy(BaseModel):
    """Terms of the clocks the duty list does not set, per deadline class: 签收 (ack) and 回复 (reply).

    Defaults: ack within 1 hour (wall clock) for every class, the same as the 131 rule's contact hour;
    reply within 1 working day of resolution (131: "1日内答复反馈"). A class missing from a mapping takes
    the default.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    ack: dict[DeadlineClass, Term] = Field(default_factory=lambda: _every_class(1, DurationUnit.HOURS))
    reply: dict[DeadlineClass, Term] = Field(default_factory=lambda: _every_class(1, DurationUnit.WORKING_DAYS))

    def ack_term(self, deadline_class: DeadlineClass) -> ClockTerm:
        """The acknowledgement (签收) term of a class."""
        term = self.ack.get(deadline_class) or Term(amount=1, unit=DurationUnit.HOURS)
        return _clock_term(ClockKind.ACK, term.amount, term.unit)

    def reply_term(self, deadline_class: DeadlineClass) -> ClockTerm:
        """The reply (回复) term of a class, counted from resolution."""
        term = self.reply.get(deadline_class) or Term(amount=1, unit=DurationUnit.WORKING_DAYS)
        return _clock_term(ClockKind.REPLY, term.amount, term.unit)


DEFAULT_POLICY = ClockPolicy()


def _ordered(terms: Iterable[ClockTerm]) -> tuple[ClockTerm, ...]:
    """One term per kind (the first given wins), in clock order: ack, contact, resolve, reply."""
    by_kind: dict[ClockKind, ClockTerm] = {}
    for term in terms:
        by_kind.setdefault(term.kind, term)
    return tuple(by_kind[k] for k in CLOCK_ORDER if k in by_kind)


def task_terms(task: TaskDispatched, policy: ClockPolicy = DEFAULT_POLICY) -> tuple[ClockTerm, ...]:
    """Every term of a task: its own (contact, resolve from the duty list) plus ack and reply from the policy."""
    return _ordered((*task.deadlines, policy.ack_term(task.deadline_class), policy.reply_term(task.deadline_class)))


def class_terms(
    duty: DutyList, deadline_class: DeadlineClass, policy: ClockPolicy = DEFAULT_POLICY
) -> tuple[ClockTerm, ...]:
    """The terms a task of this class gets under this county's duty list (as the router builds them) and policy."""
    resolve = duty.deadline_classes[deadline_class]["resolve"]
    return (
        policy.ack_term(deadline_class),
        ClockTerm(kind=ClockKind.CONTACT, amount=duty.contact_within_hours, unit=DurationUnit.HOURS),
        ClockTerm(kind=ClockKind.RESOLVE, amount=resolve.amount, unit=resolve.unit),
        policy.reply_term(deadline_class),
    )


def term_text(amount: int, unit: DurationUnit) -> str:
    """'2 小时' or '7 个工作日'."""
    match unit:
        case DurationUnit.HOURS:
            return f"{amount} 小时"
        case DurationUnit.WORKING_DAYS:
            return f"{amount} 个工作日"
        case _:
            assert_never(unit)


def _require_aware(start: datetime) -> None:
    """Reject naive datetimes: a wall time without a zone has no defined instant."""
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError(f"start must be timezone-aware, e.g. 2026-10-01T09:30:00+08:00; got naive {start!r}")


def _local(moment: datetime) -> datetime:
    return moment.astimezone(SHANGHAI)


def _minute(moment: datetime) -> str:
    """Shanghai wall time to the minute (to the second when it has seconds)."""
    t = _local(moment)
    # Formatted by hand: strftime costs about 10 µs a call, and every clock started or moved writes two or three.
    text = f"{t.year:04d}-{t.month:02d}-{t.day:02d} {t.hour:02d}:{t.minute:02d}"
    return f"{text}:{t.second:02d}" if t.second or t.microsecond else text


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=SHANGHAI)


def duration_text(span: timedelta) -> str:
    """A span in Chinese: '1 天 5 小时 30 分', '45 分', '20 秒', '0 分'."""
    seconds = int(span.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n} {label}" for n, label in ((days, "天"), (hours, "小时"), (minutes, "分")) if n]
    if secs and not days and not hours:
        parts.append(f"{secs} 秒")
    return sign + (" ".join(parts) or "0 分")


def _span(first: date, last: date) -> str:
    """A date or a date range; the end drops its year when it is the start's."""
    if first == last:
        return first.isoformat()
    end = f"{last.month:02d}-{last.day:02d}" if last.year == first.year else last.isoformat()
    return f"{first.isoformat()}..{end}"


def _runs(days: Sequence[DayInfo]) -> list[list[DayInfo]]:
    """Group days into runs of consecutive calendar dates."""
    runs: list[list[DayInfo]] = []
    for info in days:
        if runs and runs[-1][-1].date + DAY == info.date:
            runs[-1].append(info)
        else:
            runs.append([info])
    return runs


def _skip_label(info: DayInfo) -> str:
    """Short Chinese reason a day is not worked: its holiday's name, or 周末."""
    return info.holiday if info.holiday is not None else WEEKEND


def _describe_skipped(skipped: Sequence[DayInfo]) -> str:
    """Skipped days as ranges with reasons, e.g. '2026-10-01..10-07 国庆节、2026-10-11 周末'."""
    if not skipped:
        return "无"
    parts = []
    for run in _runs(skipped):
        labels = list(dict.fromkeys(_skip_label(info) for info in run))
        parts.append(f"{_span(run[0].date, run[-1].date)} {'/'.join(labels)}")
    return "、".join(parts)


def _describe_counted(counted: Sequence[DayInfo]) -> str:
    """Counted working days as ranges, naming make-up working weekends."""
    text = "、".join(_span(run[0].date, run[-1].date) for run in _runs(counted))
    make_up = [info.date.isoformat() for info in counted if info.holiday is not None]
    if make_up:
        text += f"（其中 {'、'.join(make_up)} 调休上班）"
    return text


def _fallback_note(years: Iterable[int]) -> str:
    return f"{'、'.join(str(y) for y in sorted(years))} 年无法定节假日数据，按仅周末休息计算"


# --- counted working time ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Counted:
    """Counted working time over a span, or the instant reached by counting, with the days looked at."""

    moment: datetime
    amount: timedelta
    skipped: tuple[DayInfo, ...]
    fallback_years: frozenset[int]


def counted_time(start_day: date, since: datetime, until: datetime, calendar: WorkingCalendar) -> Counted:
    """Counted working time in [since, until): time on working days after `start_day` (Shanghai dates)."""
    since, until = _local(since), _local(until)
    total = timedelta(0)
    skipped: list[DayInfo] = []
    years: set[int] = set()
    at = since
    while at < until:
        day = at.date()
        day_end = min(_midnight(day + DAY), until)
        if day > start_day:
            info = calendar.is_working_day(day)
            if info.fallback:
                years.add(day.year)
            if info.working:
                total += day_end - at
            else:
                skipped.append(info)
        at = day_end
    return Counted(until, total, tuple(skipped), frozenset(years))


def advance(start_day: date, since: datetime, amount: timedelta, calendar: WorkingCalendar) -> Counted:
    """The earliest instant after `since` by which `amount` of counted working time has passed."""
    at = _local(since)
    remaining = amount
    skipped: list[DayInfo] = []
    years: set[int] = set()
    # Terminates: every year has working days (the fallback has 5 a week).
    while remaining > timedelta(0):
        day = at.date()
        day_end = _midnight(day + DAY)
        info = calendar.is_working_day(day) if day > start_day else None
        if info is not None and info.fallback:
            years.add(day.year)
        if info is not None and info.working:
            available = day_end - at
            if remaining <= available:
                return Counted(at + remaining, amount, tuple(skipped), frozenset(years))
            remaining -= available
        elif info is not None:
            skipped.append(info)
        at = day_end
    return Counted(at, amount, tuple(skipped), frozenset(years))


# --- a clock's due time -------------------------------------------------------------------------


def _hours_clock(term: ClockTerm, start: datetime) -> Clock:
    """Elapsed-time clock: start plus the hours, shown in Shanghai time."""
    # Add in UTC so the result is elapsed time even for zones with DST offsets in the input.
    due = (start.astimezone(UTC) + timedelta(hours=term.amount)).astimezone(SHANGHAI)
    explanation = (
        f"{term.amount} 小时（自然时间）: {_minute(start)} + {term.amount} h = {_minute(due)} ({TIME_ZONE_NAME})"
    )
    return Clock(
        kind=term.kind,
        amount=term.amount,
        unit=term.unit,
        started_at=start,
        due_at=due,
        explanation=explanation,
        calendar_fallback=False,
    )


@dataclass(frozen=True, slots=True)
class _DayCount:
    """What a working-day count from one date gives, whatever the time of day the clock started."""

    due: datetime
    counted_text: str
    skipped_text: str
    last: date
    fallback_years: tuple[int, ...]


@lru_cache(maxsize=4096)
def _count_days(calendar: WorkingCalendar, received_day: date, amount: int) -> _DayCount:
    # The same few (day, amount) pairs recur for every task received that day: count once. A reloaded
    # calendar is a new object, so a new key; old entries age out of the LRU.
    counted: list[DayInfo] = []
    skipped: list[DayInfo] = []
    day = received_day
    # Terminates: every year has working days (the fallback has 5 a week).
    while len(counted) < amount:
        day += DAY
        info = calendar.is_working_day(day)
        (counted if info.working else skipped).append(info)
    last = counted[-1].date
    return _DayCount(
        due=_midnight(last + DAY),
        counted_text=_describe_counted(counted),
        skipped_text=_describe_skipped(skipped),
        last=last,
        fallback_years=tuple(sorted({info.date.year for info in (*counted, *skipped) if info.fallback})),
    )


def _working_days_clock(term: ClockTerm, start: datetime, calendar: WorkingCalendar) -> Clock:
    """Working-day clock under COUNTING_RULE, with the days counted and skipped spelled out."""
    received = _local(start)
    count = _count_days(calendar, received.date(), term.amount)
    what = "受理" if term.kind is not ClockKind.REPLY else "办结"
    parts = [
        f"{term.amount} 个工作日：{what} {_minute(received)}，当日不计入，自次日起算（民法典第201条）",
        f"计入 {count.counted_text}",
        f"跳过 {count.skipped_text}",
        f"截止 {count.last.isoformat()} 24:00，即 {_minute(count.due)} ({TIME_ZONE_NAME}) 前{KIND_LABELS[term.kind]}",
    ]
    if count.fallback_years:
        parts.append(_fallback_note(count.fallback_years))
    return Clock(
        kind=term.kind,
        amount=term.amount,
        unit=term.unit,
        started_at=start,
        due_at=count.due,
        explanation="；".join(parts),
        calendar_fallback=bool(count.fallback_years),
        fallback_years=count.fallback_years,
    )


def compute_due(term: ClockTerm, start: datetime, calendar: WorkingCalendar) -> Clock:
    """A clock started at `start`: its due time, with a Chinese explanation of the count."""
    _require_aware(start)
    match term.unit:
        case DurationUnit.HOURS:
            return _hours_clock(term, start)
        case DurationUnit.WORKING_DAYS:
            return _working_days_clock(term, start, calendar)
        case _:
            assert_never(term.unit)


def compute_clocks(terms: Iterable[ClockTerm], start: datetime, calendar: WorkingCalendar) -> tuple[Clock, ...]:
    """Clocks of all the given terms started at one time, in the order the terms are given."""
    _require_aware(start)
    return tuple(compute_due(term, start, calendar) for term in terms)


# --- pause, resume, meet, stop ------------------------------------------------------------------


def pause(clock: Clock, at: datetime, reason: str | None) -> Clock:
    """Stop an open clock's count at `at`; a clock already paused, met or stopped is returned as it is."""
    _require_aware(at)
    if not clock.running:
        return clock
    why = f"（{reason}）" if reason else ""
    return clock.model_copy(
        update={
            "paused_since": at,
            "pauses": (*clock.pauses, ClockPause(paused_at=at, reason=reason)),
            "explanation": f"{clock.explanation}；{_minute(at)} 暂停{why}，停止计时",
        }
    )


def resume(clock: Clock, at: datetime, calendar: WorkingCalendar) -> Clock:
    """Restart a paused clock at `at`, moving its due time by the paused span in the clock's own unit."""
    _require_aware(at)
    since = clock.paused_since
    if since is None or not clock.is_open:
        return clock
    note = ""
    if at < since:
        note = "（恢复时间早于暂停时间，按 0 计）"
        at = since
    wall = at - since
    old_due = clock.due_at
    years = set(clock.fallback_years)
    if clock.unit is DurationUnit.WORKING_DAYS and clock.started_at is not None:
        start_day = _local(clock.started_at).date()
        paused = counted_time(start_day, since, at, calendar)
        moved = advance(start_day, old_due, paused.amount, calendar)
        due = moved.moment
        years |= paused.fallback_years | moved.fallback_years
        skipped = f"，跳过 {_describe_skipped(moved.skipped)}" if moved.skipped else ""
        text = (
            f"{_minute(at)} 恢复{note}：暂停 {duration_text(wall)}，其中计时工作时间 "
            f"{duration_text(paused.amount)}（{'受理' if clock.kind is not ClockKind.REPLY else '办结'}当日"
            f"及非工作日不计），截止顺延工作时间 {duration_text(paused.amount)}{skipped}，"
            f"{_minute(old_due)} → {_minute(due)}"
        )
        if years - set(clock.fallback_years):
            text += f"（{_fallback_note(years - set(clock.fallback_years))}）"
    else:
        # Hours (and a clock recorded before clocks carried their term): the wall-clock span.
        due = _local(old_due + wall)
        text = (
            f"{_minute(at)} 恢复{note}：暂停 {duration_text(wall)}（自然时间），"
            f"截止顺延 {duration_text(wall)}，{_minute(old_due)} → {_minute(due)}"
        )
    closed = (*clock.pauses[:-1], clock.pauses[-1].model_copy(update={"resumed_at": at}))
    return clock.model_copy(
        update={
            "due_at": due,
            "paused_since": None,
            "paused_total": clock.paused_total + wall,
            "pauses": closed,
            "explanation": f"{clock.explanation}；{text}",
            "calendar_fallback": bool(years),
            "fallback_years": tuple(sorted(years)),
        }
    )


def meet(clock: Clock, at: datetime, calendar: WorkingCalendar, how: str = "") -> Clock:
    """Mark an open clock met at `at` (a paused one is resumed at `at` first); a closed clock stays as it is."""
    _require_aware(at)
    if not clock.is_open:
        return clock
    clock = resume(clock, at, calendar)
    late = at - clock.due_at
    verdict = "按时" if at < clock.due_at else f"超时 {duration_text(late)}"
    return clock.model_copy(
        update={
            "met_at": at,
            "explanation": f"{clock.explanation}；{_minute(at)} {KIND_LABELS[clock.kind]}{how}，{verdict}",
        }
    )


def stop(clock: Clock, at: datetime, calendar: WorkingCalendar, why: str) -> Clock:
    """Stop an open clock without it being met (a paused one is resumed at `at` first)."""
    _require_aware(at)
    if not clock.is_open:
        return clock
    clock = resume(clock, at, calendar)
    return clock.model_copy(
        update={"stopped_at": at, "explanation": f"{clock.explanation}；{_minute(at)} {why}，计时停止（未达成）"}
    )


def recount(clock: Clock, calendar: WorkingCalendar) -> Clock:
    """An open clock rebuilt from its start, term and pauses on `calendar`; unchanged when nothing differs.

    A clock that was met or stopped keeps what it was judged by.
    """
    if not clock.is_open or clock.amount is None or clock.unit is None or clock.started_at is None:
        return clock  # closed, or recorded before clocks carried their term: nothing to recount from
    term = ClockTerm(kind=clock.kind, amount=clock.amount, unit=clock.unit)
    fresh = compute_due(term, clock.started_at, calendar)
    for p in clock.pauses:
        fresh = pause(fresh, p.paused_at, p.reason)
        if p.resumed_at is not None:
            fresh = resume(fresh, p.resumed_at, calendar)
    if (fresh.due_at, fresh.fallback_years) == (clock.due_at, clock.fallback_years):
        return clock
    was = "，原按仅周末休息计算" if clock.calendar_fallback else ""
    note = f"日历更新后重新计算：原截止 {_minute(clock.due_at)}{was}，现截止 {_minute(fresh.due_at)}"
    return fresh.model_copy(update={"explanation": f"{fresh.explanation}；{note}"})
