"""The weekly bulletin's figures on hand-made tasks, with exact expected numbers (services/sla/reports.py)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest

from schemas.task import TaskRole
from services.sla.calendar import WorkingCalendar
from services.sla.reports import (
    ALL_ROLES,
    GroupBy,
    GroupRow,
    Summary,
    TaskFacts,
    check_period,
    last_complete_week,
    parse_week,
    quantile,
    summarise,
    week_containing,
    working_hours,
)

SH = ZoneInfo("Asia/Shanghai")
CAL = WorkingCalendar.default()
W47 = parse_week("2026-W47")  # Monday 2026-11-16 .. Sunday 2026-11-22, no holiday
AFTER = datetime(2026, 11, 30, 9, 0, tzinfo=SH)  # computed a week later: as of the week's end all the same
TOWNSHIPS = {"PA-CG": "城关镇", "PA-HX": "河西乡"}


def at(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=SH)


def task(
    task_id: str,
    unit: tuple[str, str],
    received: datetime,
    *,
    due: datetime | None = None,
    resolved: datetime | None = None,
    replied: datetime | None = None,
    rating: int | None = None,
    status: str | None = None,
    changed: datetime | None = None,
    role: TaskRole = TaskRole.PRIMARY,
    matter: tuple[str, str] | None = ("M10", "环境卫生"),
    township: str | None = "PA-CG",
    triage: bool = False,
) -> TaskFacts:
    if status is None:
        status = "closed" if resolved else "open"
    return TaskFacts(
        task_id=task_id,
        unit_code=unit[0],
        unit_name=unit[1],
        role=role,
        matter_code=matter[0] if matter else None,
        matter_name=matter[1] if matter else None,
        township=township,
        received_at=received,
        triage=triage,
        status=status,
        resolve_due=due,
        resolved_at=resolved,
        replied_at=replied,
        satisfaction=rating,
        changed_at=changed or resolved or received,
    )


CG = ("PA-CG", "城关镇综治中心")
ZJJ = ("PA-ZJJ", "平安县住房和城乡建设局")
HX = ("PA-HX", "河西乡综治中心")
SCJ = ("PA-SCJGJ", "平安县市场监督管理局")
JTJ = ("PA-JTJ", "平安县交通运输局")
ZZZX = ("PA-ZZZX", "平安县社会治理综合指挥中心")
M08 = ("M08", "供排水设施故障")
M17 = ("M17", "消费维权与价格")


def week_tasks() -> list[TaskFacts]:
    """Units A (城关镇), B (住建局), C (河西乡), D (市场监管局, backlog only), and tasks that must not count."""
    thu19 = at(19, 0)
    tasks = [
        # A: 2 of 3 due on time, 2 of 3 resolved replied, ratings 5 and 2, one open not yet due.
        task("a1", CG, at(16, 9), due=thu19, resolved=at(17, 9), replied=at(17, 10), rating=5),
        task("a2", CG, at(16, 10), due=thu19, resolved=at(19, 10), rating=2),
        task("a3", CG, at(18, 8), due=at(18, 10), resolved=at(18, 9), replied=at(18, 9, 30)),
        task("a4", CG, at(20, 9), due=at(1, 0, month=12)),
        # B: received the Friday before, resolved Monday 08:00 (16 working hours over the weekend), on time.
        task("b1", ZJJ, at(13, 16), matter=M08, due=at(18, 0), resolved=at(16, 8), replied=at(16, 9), rating=4),
        task("b2", ZJJ, at(16, 11), matter=M08, due=thu19),  # open past its deadline: late and overdue
        task("b3", ZJJ, at(16, 9), role=TaskRole.CO_OPERATING, due=thu19, resolved=at(18, 9)),
        task("b4", ZJJ, at(17, 9), matter=M08, due=thu19, status="returned", changed=at(17, 12)),
        # D: an old task still open and overdue; nothing received, resolved or due this week: not ranked.
        task("d1", SCJ, at(1, 9, month=10), matter=M17, township=None, due=at(20, 0, month=10)),
        # Never counted: the command centre's triage task, and a task finished before the week.
        task("t1", ZZZX, at(16, 9), due=at(16, 11), resolved=at(16, 10), triage=True, matter=None),
        task("e1", JTJ, at(2, 9), due=at(5, 0), resolved=at(4, 9)),
    ]
    # C: 4 of 6 due on time, 4 of 6 replied, ratings 5 and 1: the same fractions as A (2/3, 2/3, 1/2).
    for n in range(6):
        on_time = n < 4
        tasks.append(
            task(
                f"c{n}",
                HX,
                at(16, 9),
                township="PA-HX",
                due=thu19,
                resolved=at(17, 9) if on_time else at(19, 9),
                replied=at(20, 9) if on_time else None,
                rating={0: 5, 5: 1}.get(n),
            )
        )
    return tasks


def by_key(summary: Summary) -> dict[str, GroupRow]:
    return {row.key: row for row in summary.rows}


def figures(row: GroupRow) -> dict[str, object]:
    d = row.as_dict()
    return {k: d[k] for k in ("rank", "received", "resolved", "due", "on_time", "open", "overdue")}


def test_week_parsing_and_cutoffs() -> None:
    assert W47.start == datetime(2026, 11, 16, tzinfo=SH)
    assert W47.end == datetime(2026, 11, 23, tzinfo=SH)
    assert W47.describe() == "2026-W47（2026-11-16 至 2026-11-22）"
    assert parse_week("2026-W01").start == datetime(2025, 12, 29, tzinfo=SH)  # ISO week 1 starts in December
    assert parse_week("2026-W53").start == datetime(2026, 12, 28, tzinfo=SH)  # 2026 has 53 ISO weeks
    with pytest.raises(ValueError, match="2025 年没有第 53 周"):
        parse_week("2025-W53")
    with pytest.raises(ValueError, match="应为 ISO 周"):
        parse_week("2026-47")
    # Monday 2026-11-23 01:00 Shanghai is still Sunday in UTC; the week is Shanghai's.
    monday = datetime(2026, 11, 23, 1, 0, tzinfo=SH)
    assert week_containing(monday).label == "2026-W48"
    assert last_complete_week(monday).label == "2026-W47"
    check_period(W47, W47.start)
    with pytest.raises(ValueError, match="尚未开始"):
        check_period(parse_week("2026-W49"), monday)


def test_working_hours_skip_weekends_and_holidays_and_count_make_up_days() -> None:
    # Friday 16:00 -> Monday 08:00: 8 h on Friday, the weekend 0, 8 h on Monday.
    assert working_hours(at(13, 16), at(16, 8), CAL) == (16.0, frozenset())
    # Spring Festival 2026: Fri 02-13 18:00 -> Tue 02-24 10:00: 6 h + Sat 02-14 (调休上班) 24 h + 02-15..23 off + 10 h.
    assert working_hours(at(13, 18, month=2), at(24, 10, month=2), CAL) == (40.0, frozenset())
    # National Day 2026: Wed 09-30 20:00 -> Sat 10-10 08:00 (调休上班): 4 + 10-08 24 + 10-09 24 + 8.
    assert working_hours(at(30, 20, month=9), datetime(2026, 10, 10, 8, tzinfo=SH), CAL) == (60.0, frozenset())
    # 2027 has no statutory data in the package: weekends only, and the year is named.
    hours, fallback = working_hours(datetime(2026, 12, 31, 12, tzinfo=SH), datetime(2027, 1, 4, 12, tzinfo=SH), CAL)
    assert (hours, fallback) == (12 + 24 + 12, frozenset({2027}))  # 2027-01-01 counts as a Friday worked
    assert working_hours(at(16, 9), at(16, 9), CAL) == (0.0, frozenset())
    # Any zone in, Shanghai days out: 01:00 UTC on Saturday is 09:00 Saturday in Shanghai: no working time.
    utc = ZoneInfo("UTC")
    assert working_hours(datetime(2026, 11, 21, 1, tzinfo=utc), datetime(2026, 11, 21, 5, tzinfo=utc), CAL)[0] == 0


def test_quantiles_match_excel() -> None:
    assert quantile([], 0.5) is None
    assert quantile([7.0], 0.9) == 7.0
    assert quantile([1.0, 24.0, 72.0], 0.5) == 24.0
    assert quantile([72.0, 1.0, 24.0], 0.9) == pytest.approx(62.4)  # PERCENTILE.INC({1,24,72}, 0.9)
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5


def test_units_of_a_finished_week() -> None:
    summary = summarise(week_tasks(), W47, AFTER, CAL, township_names=TOWNSHIPS, county_name="平安县")
    assert summary.as_of == W47.end  # a finished week stands as of Sunday 24:00
    rows = by_key(summary)
    assert list(rows) == ["PA-CG", "PA-HX", "PA-ZJJ", "PA-SCJGJ"]  # ranked (ties by code), then unranked
    assert "PA-ZZZX" not in rows and "PA-JTJ" not in rows  # triage task; a task finished before the week

    a = rows["PA-CG"]
    assert figures(a) == {"rank": 1, "received": 4, "resolved": 3, "due": 3, "on_time": 2, "open": 1, "overdue": 0}
    assert a.name == "城关镇综治中心"
    assert a.on_time_rate == Fraction(2, 3) and a.response_rate == Fraction(2, 3)
    assert (a.rated, a.satisfied, a.satisfaction_rate, a.satisfaction_mean) == (2, 1, Fraction(1, 2), Fraction(7, 2))
    assert sorted(a.hours) == [1.0, 24.0, 72.0]
    assert a.median_hours == 24.0 and a.p90_hours == pytest.approx(62.4)

    c = rows["PA-HX"]  # 4/6, 4/6, 1/2: exactly A's fractions, so the same rank
    assert figures(c) == {"rank": 1, "received": 6, "resolved": 6, "due": 6, "on_time": 4, "open": 0, "overdue": 0}
    assert c.ranking_key() == a.ranking_key()
    assert c.median_hours == 24.0 and c.p90_hours == 72.0

    b = rows["PA-ZJJ"]  # competition ranking: 1, 1, 3
    assert figures(b) == {"rank": 3, "received": 1, "resolved": 1, "due": 2, "on_time": 1, "open": 1, "overdue": 1}
    assert (b.supporting, b.returned, b.replied, b.satisfaction_rate) == (1, 1, 1, Fraction(1))
    assert b.hours == [16.0]

    d = rows["PA-SCJGJ"]
    assert figures(d) == {"rank": None, "received": 0, "resolved": 0, "due": 0, "on_time": 0, "open": 1, "overdue": 1}
    assert d.as_dict()["on_time_rate"] is None and d.median_hours is None

    county = summary.county
    assert county.name == "平安县"
    assert (county.received, county.resolved, county.due, county.on_time) == (11, 10, 11, 7)
    assert (county.replied, county.rated, county.satisfied, county.rating_sum) == (7, 5, 3, 17)
    assert (county.open, county.overdue, county.supporting, county.returned) == (3, 2, 1, 1)
    assert county.on_time_rate == Fraction(7, 11)  # pooled, not the mean of the units' rates
    assert county.median_hours == 24.0 and county.p90_hours == 72.0
    assert county.as_dict() | {} == {
        "rank": None,
        "key": "*",
        "name": "平安县",
        "received": 11,
        "supporting": 1,
        "returned": 1,
        "resolved": 10,
        "due": 11,
        "on_time": 7,
        "on_time_rate": 0.6364,
        "replied": 7,
        "response_rate": 0.7,
        "rated": 5,
        "satisfied": 3,
        "satisfaction_rate": 0.6,
        "satisfaction_mean": 3.4,
        "median_hours": 24.0,
        "p90_hours": 72.0,
        "open": 3,
        "overdue": 2,
    }


def test_the_same_bulletin_whenever_it_is_computed_after_the_week() -> None:
    later = summarise(week_tasks(), W47, AFTER + timedelta(days=30), CAL)
    right_after = summarise(week_tasks(), W47, W47.end, CAL)
    assert [r.as_dict() for r in later.rows] == [r.as_dict() for r in right_after.rows]


def test_townships_and_matters() -> None:
    townships = by_key(summarise(week_tasks(), W47, AFTER, CAL, by=GroupBy.TOWNSHIP, township_names=TOWNSHIPS))
    assert list(townships) == ["PA-HX", "PA-CG", "-"]
    assert [townships[k].name for k in townships] == ["河西乡", "城关镇", "未定位乡镇"]
    cg = townships["PA-CG"]  # 城关镇's own tasks and 住建局's there
    assert figures(cg) == {"rank": 2, "received": 5, "resolved": 4, "due": 5, "on_time": 3, "open": 2, "overdue": 1}
    assert (cg.replied, cg.rated, cg.satisfied, cg.supporting, cg.returned) == (3, 3, 2, 1, 1)
    assert townships["PA-HX"].rank == 1 and townships["-"].rank is None

    matters = by_key(summarise(week_tasks(), W47, AFTER, CAL, by=GroupBy.MATTER))
    assert list(matters) == ["M10", "M08", "M17"]
    assert matters["M10"].name == "环境卫生"
    assert (matters["M10"].due, matters["M10"].on_time, matters["M10"].rank) == (9, 6, 1)
    assert (matters["M08"].due, matters["M08"].on_time, matters["M08"].rank) == (2, 1, 2)
    assert matters["M17"].rank is None
    # Without a matter the group is named; a township name the caller does not know stays its code.
    odd = [task("x1", CG, at(16, 9), matter=None, township="PA-XX", due=at(17, 0), resolved=at(16, 12))]
    assert by_key(summarise(odd, W47, AFTER, CAL, by=GroupBy.MATTER))["-"].name == "未归类事项"
    assert by_key(summarise(odd, W47, AFTER, CAL, by=GroupBy.TOWNSHIP))["PA-XX"].name == "PA-XX"


def test_co_operating_tasks_count_when_asked() -> None:
    b = by_key(summarise(week_tasks(), W47, AFTER, CAL, roles=ALL_ROLES))["PA-ZJJ"]
    assert figures(b) == {"rank": 3, "received": 2, "resolved": 2, "due": 3, "on_time": 2, "open": 1, "overdue": 1}
    assert (b.supporting, b.replied, b.response_rate) == (1, 1, Fraction(1, 2))
    # 2/3 on time like A and C, but a lower response rate (1/2 < 2/3): third.
    assert b.on_time_rate == Fraction(2, 3)


def test_the_running_week_is_cut_at_now() -> None:
    now = at(18, 12)  # Wednesday noon
    summary = summarise(week_tasks(), W47, now, CAL)
    assert summary.as_of == now
    rows = by_key(summary)
    a = rows["PA-CG"]  # a4 is not received yet, a2 not resolved yet, only a3 (due 10:00 today) is due
    assert figures(a) == {"rank": 1, "received": 3, "resolved": 2, "due": 1, "on_time": 1, "open": 1, "overdue": 0}
    assert a.response_rate == Fraction(1)
    b = rows["PA-ZJJ"]  # b1 due Wednesday 00:00, on time; b2 not due until Thursday
    assert figures(b) == {"rank": 1, "received": 1, "resolved": 1, "due": 1, "on_time": 1, "open": 1, "overdue": 0}
    c = rows["PA-HX"]  # resolved four, nothing due yet: shown, not ranked
    assert figures(c) == {"rank": None, "received": 6, "resolved": 4, "due": 0, "on_time": 0, "open": 2, "overdue": 0}
    assert c.replied == 0  # their replies come on Friday


def test_a_deadline_at_the_weeks_end_belongs_to_the_week() -> None:
    # Due Monday 00:00 = Sunday 24:00: the term ended in this week. Due at the week's start ended in the last one.
    end_due = task("z1", CG, at(16, 9), due=W47.end)
    start_due = task("z2", CG, at(12, 9), due=W47.start, resolved=at(16, 1))
    row = by_key(summarise([end_due, start_due], W47, AFTER, CAL))["PA-CG"]
    assert (row.due, row.on_time, row.open, row.overdue, row.resolved) == (1, 0, 1, 1, 1)


def test_minimum_due_tasks_to_be_ranked() -> None:
    summary = summarise(week_tasks(), W47, AFTER, CAL, min_due=3)
    ranks = {row.key: row.rank for row in summary.rows}
    assert ranks == {"PA-CG": 1, "PA-HX": 1, "PA-ZJJ": None, "PA-SCJGJ": None}
    assert summary.as_dict()["min_due_for_rank"] == 3


def test_returned_later_than_the_cutoff_was_open_then() -> None:
    returned_late = task("r1", CG, at(16, 9), due=at(18, 0), status="returned", changed=at(24, 9))
    row = by_key(summarise([returned_late], W47, AFTER, CAL))["PA-CG"]
    assert (row.received, row.returned, row.due, row.on_time, row.open, row.overdue) == (1, 0, 1, 0, 1, 1)


def test_empty_input_and_empty_groups() -> None:
    summary = summarise([], W47, AFTER, CAL)
    assert summary.rows == ()
    d = summary.as_dict()
    assert d["county"]["received"] == 0 and d["county"]["on_time_rate"] is None
    assert d["county"]["median_hours"] is None and d["rows"] == []
    assert d["period"] == "2026-W47" and d["as_of"] == "2026-11-23T00:00:00+08:00"
    # A status-less task (the SLA service has not published yet): open, no deadline, not overdue.
    bare = TaskFacts("n1", CG[0], CG[1], TaskRole.PRIMARY, "M10", "环境卫生", "PA-CG", at(16, 9))
    row = by_key(summarise([bare], W47, AFTER, CAL))["PA-CG"]
    assert (row.received, row.open, row.overdue, row.due, row.rank) == (1, 1, 0, 0, None)
    assert row.as_dict()["response_rate"] is None and row.as_dict()["satisfaction_mean"] is None


def test_ties_and_absent_rates_in_the_ranking() -> None:
    # Same on-time rate; one has no resolved task this week (no response rate): it ranks below any value.
    x = task("x", CG, at(16, 9), due=at(17, 0))  # late, open
    y = task("y", HX, at(16, 9), due=at(17, 0))  # late, open
    z = task("z", ZJJ, at(16, 9), due=at(17, 0), resolved=at(18, 9))  # late, resolved, not replied
    ranks = {r.key: r.rank for r in summarise([x, y, z], W47, AFTER, CAL).rows}
    assert ranks == {"PA-ZJJ": 1, "PA-CG": 2, "PA-HX": 2}


def test_fallback_years_are_reported() -> None:
    new_year = [task("f1", CG, datetime(2026, 12, 31, 12, tzinfo=SH), resolved=datetime(2027, 1, 4, 12, tzinfo=SH))]
    week = parse_week("2027-W01")
    summary = summarise(new_year, week, datetime(2027, 1, 12, tzinfo=SH), CAL)
    assert summary.calendar_fallback_years == (2027,)
    assert summary.as_dict()["calendar_fallback_years"] == [2027]
    assert by_key(summary)["PA-CG"].hours == [48.0]


def test_definitions_are_in_chinese_and_cover_every_figure() -> None:
    d = summarise(week_tasks(), W47, AFTER, CAL).as_dict()
    for name in ("received", "resolved", "due", "on_time_rate", "response_rate", "satisfaction_rate", "open"):
        assert name in d["definitions"]
    assert "按期办结率" in d["definitions"]["on_time_rate"]
    assert d["roles"] == ["primary"]


def test_a_paused_clock_is_open_but_neither_due_nor_overdue() -> None:
    paused = TaskFacts(
        "p1", CG[0], CG[1], TaskRole.PRIMARY, "M10", "环境卫生", "PA-CG", at(16, 9),
        status="paused", resolve_due=at(18, 0), changed_at=at(17, 9), resolve_paused_since=at(17, 9),
    )  # fmt: skip
    row = by_key(summarise([paused], W47, AFTER, CAL))["PA-CG"]
    assert (row.received, row.open, row.due, row.overdue, row.rank) == (1, 1, 0, 0, None)
    # Paused only after the cut-off: as of Wednesday noon it was running and past its Wednesday 00:00 deadline.
    later = dataclasses.replace(paused, resolve_paused_since=at(20, 9))
    row = by_key(summarise([later], W47, at(18, 12), CAL))["PA-CG"]
    assert (row.due, row.on_time, row.overdue) == (1, 0, 1)
