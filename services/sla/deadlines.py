"""Turn a task's time limits (ClockTerm) into due times on China's statutory calendar.

All times are shown and computed in Asia/Shanghai; inputs must be timezone-aware.

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
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import assert_never
from zoneinfo import ZoneInfo

from schemas.sla import Clock
from schemas.task import ClockTerm, DurationUnit
from services.sla.calendar import WEEKEND, DayInfo, WorkingCalendar

TIME_ZONE_NAME = "Asia/Shanghai"
SHANGHAI = ZoneInfo(TIME_ZONE_NAME)

COUNTING_RULE = (
    "受理当日不计入，自次日起算（民法典第201条）；"
    "期限至受理日之后第 N 个工作日 24:00 届满，即次日 00:00 (Asia/Shanghai) 前办结为按时"
)


def _require_aware(start: datetime) -> None:
    """Reject naive datetimes: a wall time without a zone has no defined instant."""
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError(f"start must be timezone-aware, e.g. 2026-10-01T09:30:00+08:00; got naive {start!r}")


def _minute(moment: datetime) -> str:
    """Shanghai wall time to the minute."""
    return moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


def _span(first: date, last: date) -> str:
    """A date or a date range; the end drops its year when it is the start's."""
    if first == last:
        return first.isoformat()
    end = last.strftime("%m-%d") if last.year == first.year else last.isoformat()
    return f"{first.isoformat()}..{end}"


def _runs(days: Sequence[DayInfo]) -> list[list[DayInfo]]:
    """Group days into runs of consecutive calendar dates."""
    runs: list[list[DayInfo]] = []
    for info in days:
        if runs and runs[-1][-1].date + timedelta(days=1) == info.date:
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


def _hours_clock(term: ClockTerm, start: datetime) -> Clock:
    """Elapsed-time clock: start plus the hours, shown in Shanghai time."""
    # Add in UTC so the result is elapsed time even for zones with DST offsets in the input.
    due = (start.astimezone(UTC) + timedelta(hours=term.amount)).astimezone(SHANGHAI)
    explanation = (
        f"{term.amount} 小时（自然时间）: {_minute(start)} + {term.amount} h = {_minute(due)} ({TIME_ZONE_NAME})"
    )
    return Clock(kind=term.kind, due_at=due, explanation=explanation, calendar_fallback=False)


def _working_days_clock(term: ClockTerm, start: datetime, calendar: WorkingCalendar) -> Clock:
    """Working-day clock under COUNTING_RULE, with the days counted and skipped spelled out."""
    received = start.astimezone(SHANGHAI)
    counted: list[DayInfo] = []
    skipped: list[DayInfo] = []
    day = received.date()
    # Terminates: every year has working days (the fallback has 5 a week).
    while len(counted) < term.amount:
        day += timedelta(days=1)
        info = calendar.is_working_day(day)
        (counted if info.working else skipped).append(info)

    last = counted[-1].date
    due = datetime.combine(last + timedelta(days=1), time(0), tzinfo=SHANGHAI)
    fallback_years = sorted({info.date.year for info in (*counted, *skipped) if info.fallback})

    parts = [
        f"{term.amount} 个工作日：受理 {_minute(received)}，当日不计入，自次日起算（民法典第201条）",
        f"计入 {_describe_counted(counted)}",
        f"跳过 {_describe_skipped(skipped)}",
        f"截止 {last.isoformat()} 24:00，即 {_minute(due)} ({TIME_ZONE_NAME}) 前办结",
    ]
    if fallback_years:
        years = "、".join(str(y) for y in fallback_years)
        parts.append(f"{years} 年无法定节假日数据，按仅周末休息计算")
    return Clock(
        kind=term.kind,
        due_at=due,
        explanation="；".join(parts),
        calendar_fallback=bool(fallback_years),
    )


def compute_due(term: ClockTerm, start: datetime, calendar: WorkingCalendar) -> Clock:
    """Due time of one clock started at `start`, with a Chinese explanation of the count."""
    _require_aware(start)
    match term.unit:
        case DurationUnit.HOURS:
            return _hours_clock(term, start)
        case DurationUnit.WORKING_DAYS:
            return _working_days_clock(term, start, calendar)
        case _:
            assert_never(term.unit)


def compute_clocks(terms: Iterable[ClockTerm], start: datetime, calendar: WorkingCalendar) -> tuple[Clock, ...]:
    """Due times of all of a task's clocks, in the order the terms are given."""
    _require_aware(start)
    return tuple(compute_due(term, start, calendar) for term in terms)
