"""The weekly bulletin's figures (周通报): per unit, township or matter; pure, no Kafka, no clock reads.

Input: one `TaskFacts` per task, the routing facts of its `TaskDispatched` joined with its latest
`TaskStatusChanged` (tasks.status is compacted: the last status wins), a period (an ISO week in Asia/Shanghai)
and `now`. Output: a `Summary` with one `GroupRow` per group, ranked, and the county's own row.

Cut-off (as_of): ``min(now, end of the week)``. A finished week is computed as it stood on Sunday 24:00, so the
bulletin reads the same whenever it is produced (every time it uses is on the task; only a rating has no time
of its own and counts when present); the running week is computed up to now.

The cohorts (all times Asia/Shanghai, a week is Monday 00:00 to the next Monday 00:00):

- received (受理): tasks received in the week (returned ones apart, see below).
- resolved (办结): tasks resolved in the week (before as_of), whenever received. Response rate, satisfaction
  and handling times are taken over these.
- due (应办结): tasks whose resolve deadline fell in the week: after Monday 00:00 and no later than Sunday 24:00
  (working-day deadlines end at 24:00 of a day, i.e. the next day's 00:00), and no later than as_of.
  Every task is due in exactly one week, so it counts once, in the week its term ended; by then whether it
  was on time is settled.
- backlog: tasks open at as_of, whenever received (open: received, neither resolved nor returned before
  as_of); overdue: open and past the resolve deadline. A task whose resolve clock is paused at as_of (waiting
  for the citizen) is open but neither overdue nor due: its deadline moves on by the pause when it resumes,
  and it counts as due in the week the moved deadline falls in. The latest status's deadline is the one used.

The figures:

- 按期办结率 on-time closure rate = due tasks resolved before their deadline / due tasks (the SLA service's
  `on_time`: resolved_at < due). The seeds' 办结率 (e.g. 巨鹿 330,153 reported, 317,000 solved, 95.94 %, seed
  004) is a long-run resolved/reported share; per week the deadline is what a unit can be held to
  (限时办结, seed 004), so the ranking uses the on-time share.
- 回复率 response rate = resolved tasks replied to the citizen before as_of / resolved tasks. Source: results
  are "及时将结果回复网格员和群众" and units are assessed "依据回复率、办结率、满意度" (seed 004); the "131" rule's
  last 1 is the reply within a day of solving ("1日内向群众答复反馈", 海晏, seed 002).
- 满意度 satisfaction = resolved tasks rated 4 or 5 (of 1–5) / resolved tasks rated: a share, as the seeds
  quote it ("群众满意度达到100%", seed 002); the mean rating is given beside it. A rating has no timestamp of
  its own: it counts when present.
- handling time (办理时长) = received → resolved in working hours: the part of that interval falling on
  working days of the statutory calendar (`WorkingCalendar`, 调休 included), each working day counting its
  whole 24 hours, weekends and holidays 0. Whole working days, not office hours: deadlines are counted in
  whole working days ending at 24:00 (deadlines.py), units work evenings, and office hours differ by county
  and season. Median and p90 interpolate linearly between ranks (Excel MEDIAN and PERCENTILE.INC).
- open, overdue: the backlog at as_of.

Which tasks count: primary tasks (主体责任) by default, so an event counts once per matter and township.
Co-operating (配合) and summoned (吹哨报到) tasks have clocks of their own; `roles` may include them, and each
group's `supporting` says how many of them it received in the week either way. A task the command centre
holds for triage (分拨, `decision.triage`) is sorting, not handling: it is left out (its event counts through
the task it is dispatched to). A returned task (退回) is left out of every figure but `returned` (tasks received
in the week and returned before as_of): the event is re-routed and counts at the unit that takes it.

Ranking (排名): by on-time closure rate, then response rate, then satisfaction (rates compared exactly, as
fractions; a rate with nothing to measure ranks below any value); groups equal on all three share a rank
(1, 2, 2, 4) and are listed by code. A group with fewer than `min_due` due tasks is not ranked (rank None,
listed after the ranked ones by code). The county row pools every task (total on time / total due), it is
not a mean of the groups' rates.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from fractions import Fraction
from typing import Any, Protocol

from schemas.sla import TaskStatus
from schemas.task import TaskRole
from services.sla.calendar import WorkingCalendar
from services.sla.deadlines import SHANGHAI

SATISFIED_FROM = 4  # ratings 4 (满意) and 5 (非常满意) of 1-5 count as satisfied
PRIMARY_ONLY: frozenset[TaskRole] = frozenset({TaskRole.PRIMARY})
SUPPORTING: frozenset[TaskRole] = frozenset({TaskRole.CO_OPERATING, TaskRole.SUMMONED})
ALL_ROLES: frozenset[TaskRole] = frozenset(TaskRole)
NO_TOWNSHIP = "-"
NO_MATTER = "-"
COUNTY_KEY = "*"

_WEEK = re.compile(r"(\d{4})-W(\d{2})")


class GroupBy(StrEnum):
    """What the rows of a summary are: units (单位), townships (乡镇) or matters (事项)."""

    UNIT = "unit"
    TOWNSHIP = "township"
    MATTER = "matter"


GROUP_LABELS = {GroupBy.UNIT: "单位", GroupBy.TOWNSHIP: "乡镇", GroupBy.MATTER: "事项"}


@dataclass(frozen=True, slots=True)
class TaskFacts:
    """What the reports need of one task: its routing facts and its latest status; no personal data."""

    task_id: str
    unit_code: str
    unit_name: str
    role: TaskRole
    matter_code: str | None
    matter_name: str | None
    township: str | None
    received_at: datetime
    triage: bool = False
    # From the latest TaskStatusChanged; all None until the SLA service has published one (the task counts as
    # open, with no deadline known yet).
    status: str | None = None  # a TaskStatus value; a str so a status added later still reads
    resolve_due: datetime | None = None
    resolved_at: datetime | None = None
    replied_at: datetime | None = None
    satisfaction: int | None = None
    changed_at: datetime | None = None
    # Start of the pause the resolve clock is in (待群众补充材料, say); its due_at does not include it yet.
    resolve_paused_since: datetime | None = None


@dataclass(frozen=True, slots=True)
class Backlog:
    """Open tasks counted, not listed: those open at the cut-off that fall in no cohort of the week (received,
    resolved or due in it). A store with 10^6 open tasks hands these in per group instead of every task; the
    figures are the same as from the tasks themselves (`open`, `overdue` as `_counts` would count them)."""

    unit_code: str
    unit_name: str
    role: TaskRole
    matter_code: str | None
    matter_name: str | None
    township: str | None
    triage: bool
    open: int
    overdue: int


class _Grouped(Protocol):
    @property
    def unit_code(self) -> str: ...
    @property
    def unit_name(self) -> str: ...
    @property
    def matter_code(self) -> str | None: ...
    @property
    def matter_name(self) -> str | None: ...
    @property
    def township(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Period:
    """An ISO week in Asia/Shanghai: [start, end), Monday 00:00 to the next Monday 00:00."""

    label: str
    start: datetime
    end: datetime

    @property
    def first_day(self) -> date:
        """Monday."""
        return self.start.date()

    @property
    def last_day(self) -> date:
        """Sunday."""
        return (self.end - timedelta(days=1)).date()

    def describe(self) -> str:
        """E.g. '2026-W47（2026-11-16 至 2026-11-22）'."""
        return f"{self.label}（{self.first_day.isoformat()} 至 {self.last_day.isoformat()}）"


def week_of(year: int, week: int) -> Period:
    """The ISO week `week` of `year`; ValueError (in Chinese) for a week the year does not have."""
    try:
        monday = date.fromisocalendar(year, week, 1)
    except ValueError as exc:
        raise ValueError(f"{year} 年没有第 {week} 周（ISO 周从 1 到 52 或 53）") from exc
    start = datetime.combine(monday, time(0), tzinfo=SHANGHAI)
    return Period(f"{year}-W{week:02d}", start, start + timedelta(days=7))


def parse_week(text: str) -> Period:
    """Parse '2026-W47' (ISO 8601 week); ValueError with a Chinese message otherwise."""
    match = _WEEK.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"周期 {text!r} 格式不对，应为 ISO 周，如 2026-W47")
    return week_of(int(match.group(1)), int(match.group(2)))


def week_containing(moment: datetime) -> Period:
    """The ISO week (Asia/Shanghai) a moment falls in."""
    iso = moment.astimezone(SHANGHAI).isocalendar()
    return week_of(iso.year, iso.week)


def last_complete_week(now: datetime) -> Period:
    """The latest week that has ended by now: the week a Monday bulletin reports on."""
    return week_containing(week_containing(now).start - timedelta(days=1))


def check_period(period: Period, now: datetime) -> None:
    """ValueError (Chinese) when the week has not begun yet: there is nothing to report."""
    if now < period.start:
        raise ValueError(f"{period.describe()} 尚未开始，无法统计")


def working_hours(start: datetime, end: datetime, calendar: WorkingCalendar) -> tuple[float, frozenset[int]]:
    """Hours of [start, end) on working days (Asia/Shanghai), and the years of it that had no statutory data."""
    if end <= start:
        return 0.0, frozenset()
    local_start, local_end = start.astimezone(SHANGHAI), end.astimezone(SHANGHAI)
    seconds = 0.0
    fallback: set[int] = set()
    day = local_start.date()
    while day <= local_end.date():
        info = calendar.is_working_day(day)
        if info.fallback:
            fallback.add(day.year)
        if info.working:
            midnight = datetime.combine(day, time(0), tzinfo=SHANGHAI)
            lo = max(local_start, midnight)
            hi = min(local_end, midnight + timedelta(days=1))
            seconds += max(0.0, (hi - lo).total_seconds())
        day += timedelta(days=1)
    return seconds / 3600.0, frozenset(fallback)


def quantile(values: list[float], q: float) -> float | None:
    """The q-quantile with linear interpolation between closest ranks (Excel PERCENTILE.INC); None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _rate(numerator: int, denominator: int) -> Fraction | None:
    return Fraction(numerator, denominator) if denominator else None


def _rounded(value: Fraction | float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


@dataclass(slots=True)
class GroupRow:
    """One row of the bulletin: the counts and figures of one unit, township or matter."""

    key: str
    name: str
    received: int = 0
    supporting: int = 0
    returned: int = 0
    resolved: int = 0
    due: int = 0
    on_time: int = 0
    replied: int = 0
    rated: int = 0
    satisfied: int = 0
    rating_sum: int = 0
    open: int = 0
    overdue: int = 0
    hours: list[float] = field(default_factory=list)
    rank: int | None = None

    @property
    def on_time_rate(self) -> Fraction | None:
        """按期办结率: due tasks resolved before their deadline / due tasks."""
        return _rate(self.on_time, self.due)

    @property
    def response_rate(self) -> Fraction | None:
        """回复率: resolved tasks replied to the citizen / resolved tasks."""
        return _rate(self.replied, self.resolved)

    @property
    def satisfaction_rate(self) -> Fraction | None:
        """满意度: ratings of 4 or 5 / ratings."""
        return _rate(self.satisfied, self.rated)

    @property
    def satisfaction_mean(self) -> Fraction | None:
        """Mean rating, 1-5."""
        return _rate(self.rating_sum, self.rated)

    @property
    def median_hours(self) -> float | None:
        """Median handling time of the resolved tasks, in working hours."""
        return quantile(self.hours, 0.5)

    @property
    def p90_hours(self) -> float | None:
        """90th percentile handling time of the resolved tasks, in working hours."""
        return quantile(self.hours, 0.9)

    def ranking_key(self) -> tuple[Fraction, bool, Fraction, bool, Fraction]:
        """Higher is better: on-time rate, then response rate, then satisfaction (absent below any value)."""
        on_time = self.on_time_rate or Fraction(0)
        response, satisfaction = self.response_rate, self.satisfaction_rate
        return (
            on_time,
            response is not None,
            response or Fraction(0),
            satisfaction is not None,
            satisfaction or Fraction(0),
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-able figures: counts, rates as fractions 0-1 (4 places), hours (1 place)."""
        return {
            "rank": self.rank,
            "key": self.key,
            "name": self.name,
            "received": self.received,
            "supporting": self.supporting,
            "returned": self.returned,
            "resolved": self.resolved,
            "due": self.due,
            "on_time": self.on_time,
            "on_time_rate": _rounded(self.on_time_rate, 4),
            "replied": self.replied,
            "response_rate": _rounded(self.response_rate, 4),
            "rated": self.rated,
            "satisfied": self.satisfied,
            "satisfaction_rate": _rounded(self.satisfaction_rate, 4),
            "satisfaction_mean": _rounded(self.satisfaction_mean, 2),
            "median_hours": _rounded(self.median_hours, 1),
            "p90_hours": _rounded(self.p90_hours, 1),
            "open": self.open,
            "overdue": self.overdue,
        }


DEFINITIONS_ZH = {
    "received": "受理：本周受理（received_at 在本周）的工单数，不含已退回的",
    "supporting": "配合/报到：本周收到的配合责任、吹哨报到工单数（默认不计入其他各项）",
    "returned": "退回：本周受理且在截止时点前退回的工单数（不计入其他各项）",
    "resolved": "办结：本周（截止时点前）办结的工单数，不论何时受理",
    "due": "应办结：办结时限在本周届满（周一 00:00 之后、周日 24:00 之前，且不晚于截止时点）的工单数",
    "on_time_rate": "按期办结率：应办结工单中在时限前办结的比例",
    "response_rate": "回复率：本周办结工单中已向群众回复（回复时间早于截止时点）的比例",
    "satisfaction_rate": "满意度：本周办结且已评价的工单中评 4、5 分（满意、非常满意）的比例；另列平均分（1–5）",
    "median_hours": (
        "办理时长中位数：本周办结工单自受理至办结的工作小时（仅计法定工作日，含调休上班日，每个工作日计 24 小时）"
    ),
    "p90_hours": "办理时长 P90：同上，第 90 百分位（线性插值，同 Excel PERCENTILE.INC）",
    "open": "在办：截止时点仍未办结、未退回的工单数（不论何时受理）",
    "overdue": "超期：在办工单中已过办结时限的数量（办结时钟暂停中的不计）",
    "rank": "排名：按按期办结率，其次回复率，再次满意度；三项均相同者并列（1、2、2、4）；应办结不足规定件数者不排名",
}


@dataclass(frozen=True)
class Summary:
    """One bulletin: the period, the cut-off, one row per group (ranked first) and the county's row."""

    period: Period
    as_of: datetime
    by: GroupBy
    rows: tuple[GroupRow, ...]
    county: GroupRow
    roles: frozenset[TaskRole]
    min_due: int
    calendar_fallback_years: tuple[int, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The JSON of the bulletin and of GET /reports/summary (the same figures)."""
        return {
            "period": self.period.label,
            "period_start": self.period.start.isoformat(),
            "period_end": self.period.end.isoformat(),
            "as_of": self.as_of.astimezone(SHANGHAI).isoformat(),
            "by": self.by.value,
            "roles": sorted(r.value for r in self.roles),
            "min_due_for_rank": self.min_due,
            "calendar_fallback_years": list(self.calendar_fallback_years),
            "county": self.county.as_dict(),
            "rows": [row.as_dict() for row in self.rows],
            "definitions": DEFINITIONS_ZH,
        }


def _group_of(
    by: GroupBy, township_names: Mapping[str, str], matter_names: Mapping[str, str]
) -> Callable[[_Grouped], tuple[str, str]]:
    if by is GroupBy.UNIT:
        return lambda t: (t.unit_code, t.unit_name)
    if by is GroupBy.TOWNSHIP:

        def township(t: _Grouped) -> tuple[str, str]:
            if t.township is None:
                return NO_TOWNSHIP, "未定位乡镇"
            return t.township, township_names.get(t.township, t.township)

        return township

    def matter(t: _Grouped) -> tuple[str, str]:
        if t.matter_code is None:
            return NO_MATTER, "未归类事项"
        return t.matter_code, t.matter_name or matter_names.get(t.matter_code, t.matter_code)

    return matter


@dataclass(frozen=True, slots=True)
class _Counts:
    """What one counted task adds to its group's row and to the county's."""

    received: bool
    returned: bool
    resolved: bool
    replied: bool
    rating: int | None
    hours: float | None
    due: bool
    on_time: bool
    open: bool
    overdue: bool
    fallback_years: frozenset[int]

    def add_to(self, row: GroupRow) -> None:
        row.received += self.received
        row.returned += self.returned
        row.resolved += self.resolved
        row.replied += self.replied
        if self.rating is not None:
            row.rated += 1
            row.rating_sum += self.rating
            row.satisfied += self.rating >= SATISFIED_FROM
        if self.hours is not None:
            row.hours.append(self.hours)
        row.due += self.due
        row.on_time += self.on_time
        row.open += self.open
        row.overdue += self.overdue


_NOTHING = _Counts(False, False, False, False, None, None, False, False, False, False, frozenset())


def _counts(t: TaskFacts, period: Period, as_of: datetime, calendar: WorkingCalendar) -> _Counts:
    """Which cohorts one task of a counted role falls in, as of the cut-off."""
    received = period.start <= t.received_at < period.end and t.received_at < as_of
    if t.status == TaskStatus.RETURNED and (t.changed_at is None or t.changed_at < as_of):
        return _Counts(False, received, False, False, None, None, False, False, False, False, frozenset())
    resolved_by_cutoff = t.resolved_at is not None and t.resolved_at < as_of
    resolved = t.resolved_at is not None and resolved_by_cutoff and t.resolved_at >= period.start
    hours: float | None = None
    fallback: frozenset[int] = frozenset()
    if resolved and t.resolved_at is not None:
        hours, fallback = working_hours(t.received_at, t.resolved_at, calendar)
    # A clock paused at the cut-off is not running out: its deadline moves on by the pause once it resumes.
    paused = t.resolve_paused_since is not None and t.resolve_paused_since < as_of and not resolved_by_cutoff
    due = not paused and t.resolve_due is not None and period.start < t.resolve_due <= min(period.end, as_of)
    is_open = t.received_at < as_of and not resolved_by_cutoff
    return _Counts(
        received=received,
        returned=False,
        resolved=resolved,
        replied=resolved and t.replied_at is not None and t.replied_at < as_of,
        rating=t.satisfaction if resolved else None,
        hours=hours,
        due=due,
        on_time=due and t.resolved_at is not None and t.resolve_due is not None and t.resolved_at < t.resolve_due,
        open=is_open,
        overdue=is_open and not paused and t.resolve_due is not None and t.resolve_due <= as_of,
        fallback_years=fallback,
    )


def _rank(rows: list[GroupRow], min_due: int) -> list[GroupRow]:
    ranked = sorted((r for r in rows if r.due >= max(min_due, 1)), key=lambda r: r.key)
    ranked.sort(key=GroupRow.ranking_key, reverse=True)  # stable: equal keys stay in code order
    for position, row in enumerate(ranked, start=1):
        previous = ranked[position - 2] if position > 1 else None
        same = previous is not None and previous.ranking_key() == row.ranking_key()
        row.rank = previous.rank if same and previous is not None else position
    unranked = sorted((r for r in rows if r.rank is None), key=lambda r: r.key)
    return ranked + unranked


def summarise(
    facts: Iterable[TaskFacts],
    period: Period,
    now: datetime,
    calendar: WorkingCalendar,
    *,
    by: GroupBy = GroupBy.UNIT,
    roles: Collection[TaskRole] = PRIMARY_ONLY,
    min_due: int = 1,
    township_names: Mapping[str, str] | None = None,
    matter_names: Mapping[str, str] | None = None,
    county_name: str = "全县",
    backlog: Iterable[Backlog] = (),
) -> Summary:
    """The bulletin of one week as of min(now, end of week): rows by unit, township or matter, ranked.

    `facts` may be every task or only those that can count (received, resolved or due in the week, or open at
    the cut-off); open tasks in no cohort of the week may come counted in `backlog` instead.
    """
    as_of = min(now, period.end)
    counted = frozenset(roles)
    group = _group_of(by, township_names or {}, matter_names or {})
    rows: dict[str, GroupRow] = {}
    county = GroupRow(COUNTY_KEY, county_name)
    fallback_years: set[int] = set()
    for t in facts:
        if t.triage:
            continue
        key, name = group(t)
        if t.role in SUPPORTING and period.start <= t.received_at < min(period.end, as_of):
            rows.setdefault(key, GroupRow(key, name)).supporting += 1
            county.supporting += 1
        if t.role not in counted:
            continue
        counts = _counts(t, period, as_of, calendar)
        if counts == _NOTHING:
            continue
        counts.add_to(rows.setdefault(key, GroupRow(key, name)))
        counts.add_to(county)
        fallback_years |= counts.fallback_years
    for b in backlog:
        if b.triage or b.role not in counted or not b.open:
            continue
        key, name = group(b)
        for row in (rows.setdefault(key, GroupRow(key, name)), county):
            row.open += b.open
            row.overdue += b.overdue
    return Summary(
        period=period,
        as_of=as_of,
        by=by,
        rows=tuple(_rank(list(rows.values()), min_due)),
        county=county,
        roles=counted,
        min_due=min_due,
        calendar_fallback_years=tuple(sorted(fallback_years)),
    )
