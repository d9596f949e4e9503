"""Working-day calendar and deadline computation against China's real 2026 statutory calendar.

2026 facts used here (chinesecalendar 1.11.0, identical to holiday-cn 2026.json from the State
Council notice https://www.gov.cn/zhengce/zhengceku/202511/content_7047091.htm):
  元旦 01-01..01-03 off, 01-04 (Sun) worked;
  春节 02-15..02-23 off, 02-14 (Sat) and 02-28 (Sat) worked;
  中秋节 09-25..09-27 off; 国庆节 10-01..10-07 off, 09-20 (Sun) and 10-10 (Sat) worked.
The package has no data after 2026, so 2027 exercises the weekends-only fallback.

data/holiday-cn-2026.json is a verbatim copy of holiday-cn's 2026.json (real data).
data/sample-2027-holiday-cn.json is TEST DATA ONLY (made up, not the 2027 schedule).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import chinese_calendar
import pytest

from schemas.task import ClockKind, ClockTerm, DurationUnit
from services.sla.calendar import (
    FALLBACK_SOURCE,
    PACKAGE_SOURCE,
    DayInfo,
    WorkingCalendar,
    load_holiday_cn,
)
from services.sla.deadlines import (
    advance,
    compute_clocks,
    compute_due,
    counted_time,
    duration_text,
    meet,
    pause,
    recount,
    resume,
)

SH = ZoneInfo("Asia/Shanghai")
DATA = Path(__file__).parent / "data"
OFFICIAL_2026 = DATA / "holiday-cn-2026.json"
SAMPLE_2027 = DATA / "sample-2027-holiday-cn.json"

CAL = WorkingCalendar.default()


def wd(amount: int) -> ClockTerm:
    """A resolve clock of `amount` working days."""
    return ClockTerm(kind=ClockKind.RESOLVE, amount=amount, unit=DurationUnit.WORKING_DAYS)


def hours(amount: int) -> ClockTerm:
    """A contact clock of `amount` wall-clock hours."""
    return ClockTerm(kind=ClockKind.CONTACT, amount=amount, unit=DurationUnit.HOURS)


def sh(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A datetime in Asia/Shanghai."""
    return datetime(year, month, day, hour, minute, tzinfo=SH)


def write_json(tmp_path: Path, name: str, content: Any) -> Path:
    """Write a JSON (or raw text) file under tmp_path."""
    path = tmp_path / name
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    path.write_text(text, encoding="utf-8")
    return path


# --- the package itself: what it raises and what it covers -----------------------------------


def test_package_raises_not_implemented_outside_its_years() -> None:
    with pytest.raises(NotImplementedError, match=r"only year between \[2004, 2026\]"):
        chinese_calendar.is_workday(date(2027, 1, 4))


def test_covered_years_default_is_package_range() -> None:
    assert CAL.covered_years() == set(range(2004, 2027))


def test_covered_years_include_file_years() -> None:
    cal = WorkingCalendar.with_files([SAMPLE_2027])
    assert cal.covered_years() == set(range(2004, 2028))


# --- days of 2026 ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "working", "reason"),
    [
        (date(2026, 9, 20), True, "调休上班 make-up working day (国庆节)"),
        (date(2026, 9, 25), False, "中秋节 holiday"),
        (date(2026, 9, 27), False, "中秋节 holiday"),
        (date(2026, 9, 30), True, "工作日"),
        (date(2026, 10, 1), False, "国庆节 holiday"),
        (date(2026, 10, 3), False, "国庆节 holiday"),
        (date(2026, 10, 7), False, "国庆节 holiday"),
        (date(2026, 10, 8), True, "工作日"),
        (date(2026, 10, 10), True, "调休上班 make-up working day (国庆节)"),
        (date(2026, 10, 11), False, "周末"),
        (date(2026, 2, 14), True, "调休上班 make-up working day (春节)"),
        (date(2026, 2, 15), False, "春节 holiday"),
        (date(2026, 2, 23), False, "春节 holiday"),
        (date(2026, 2, 24), True, "工作日"),
        (date(2026, 2, 28), True, "调休上班 make-up working day (春节)"),
        (date(2026, 1, 4), True, "调休上班 make-up working day (元旦)"),
    ],
)
def test_2026_days_from_package(day: date, working: bool, reason: str) -> None:
    info = CAL.is_working_day(day)
    assert (info.working, info.reason, info.source, info.fallback) == (
        working,
        reason,
        PACKAGE_SOURCE,
        False,
    )


def test_package_agrees_with_official_2026_file_on_every_day() -> None:
    from_file = WorkingCalendar.default().with_year(load_holiday_cn(OFFICIAL_2026))
    day = date(2026, 1, 1)
    while day.year == 2026:
        a, b = CAL.is_working_day(day), from_file.is_working_day(day)
        assert (a.working, a.reason, a.holiday) == (b.working, b.reason, b.holiday), day
        assert b.source == "file:holiday-cn-2026.json"
        day += timedelta(days=1)


def test_datetime_is_not_a_day() -> None:
    with pytest.raises(TypeError, match="not a datetime"):
        CAL.is_working_day(sh(2026, 10, 1, 9, 0))


# --- missing years: weekends-only fallback, never an exception --------------------------------


@pytest.mark.parametrize(
    ("day", "working", "reason"),
    [
        (date(2027, 1, 1), True, "工作日"),  # 元旦 in reality, but there is no data
        (date(2027, 1, 2), False, "周末"),
        (date(2003, 10, 1), True, "工作日"),
        (date(2100, 1, 2), False, "周末"),
    ],
)
def test_missing_year_falls_back_to_weekends_only(day: date, working: bool, reason: str) -> None:
    assert CAL.is_working_day(day) == DayInfo(day, working, reason, FALLBACK_SOURCE, True)


# --- override files ---------------------------------------------------------------------------


def test_sample_2027_file_is_honoured() -> None:
    cal = WorkingCalendar.with_files([SAMPLE_2027])
    src = "file:sample-2027-holiday-cn.json"
    assert cal.is_working_day(date(2027, 1, 1)) == DayInfo(date(2027, 1, 1), False, "元旦 holiday", src, False, "元旦")
    assert cal.is_working_day(date(2027, 1, 9)) == DayInfo(
        date(2027, 1, 9), True, "调休上班 make-up working day (元旦)", src, False, "元旦"
    )
    assert cal.is_working_day(date(2027, 1, 4)) == DayInfo(date(2027, 1, 4), True, "工作日", src, False)
    assert cal.is_working_day(date(2027, 1, 16)) == DayInfo(date(2027, 1, 16), False, "周末", src, False)
    # Other years keep their sources.
    assert cal.is_working_day(date(2026, 10, 1)).source == PACKAGE_SOURCE
    assert cal.is_working_day(date(2028, 1, 3)).fallback is True


def test_file_replaces_package_year_entirely(tmp_path: Path) -> None:
    path = write_json(
        tmp_path,
        "2026-only-oct1.json",
        {"year": 2026, "days": [{"name": "国庆节", "date": "2026-10-01", "isOffDay": True}]},
    )
    cal = WorkingCalendar.default().with_year(load_holiday_cn(path))
    src = "file:2026-only-oct1.json"
    assert cal.is_working_day(date(2026, 10, 1)).working is False
    # Package says 国庆节 off and 10-10 make-up; the file does not, so its year wins.
    assert cal.is_working_day(date(2026, 10, 2)) == DayInfo(date(2026, 10, 2), True, "工作日", src, False)
    assert cal.is_working_day(date(2026, 10, 10)) == DayInfo(date(2026, 10, 10), False, "周末", src, False)


def test_with_year_returns_new_calendar() -> None:
    base = WorkingCalendar.default()
    derived = base.with_year(load_holiday_cn(SAMPLE_2027))
    assert base.is_working_day(date(2027, 1, 1)).fallback is True
    assert derived.is_working_day(date(2027, 1, 1)).fallback is False
    assert 2027 not in base.covered_years()


def test_previous_december_spill_over_is_applied(tmp_path: Path) -> None:
    # Like upstream 2023.json listing 2022-12-31: 元旦 of year Y may start in December of Y-1.
    path = write_json(
        tmp_path,
        "2028.json",
        {
            "year": 2028,
            "days": [
                {"name": "元旦", "date": "2027-12-31", "isOffDay": True},
                {"name": "元旦", "date": "2028-01-01", "isOffDay": True},
            ],
        },
    )
    cal = WorkingCalendar.with_files([path])
    assert cal.is_working_day(date(2027, 12, 31)) == DayInfo(
        date(2027, 12, 31), False, "元旦 holiday", "file:2028.json", False, "元旦"
    )
    assert cal.is_working_day(date(2027, 12, 30)).fallback is True
    assert 2027 not in cal.covered_years()


def test_two_files_for_one_year_rejected(tmp_path: Path) -> None:
    copy = write_json(tmp_path, "again.json", SAMPLE_2027.read_text(encoding="utf-8"))
    with pytest.raises(ValueError, match=r"again\.json: year 2027 is already given by file:sample"):
        WorkingCalendar.with_files([SAMPLE_2027, copy])


def _day(date_text: Any, off: Any = True, name: Any = "元旦") -> dict[str, Any]:
    return {"name": name, "date": date_text, "isOffDay": off}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"year": 2027, "days": [', r"bad JSON: Expecting value at line 1 column 25"),
        ([2027], r"top level must be a JSON object, got list"),
        ({"days": [_day("2027-01-01")]}, r"missing 'year'"),
        ({"year": "2027", "days": [_day("2027-01-01")]}, r"'year' must be an integer year"),
        ({"year": True, "days": [_day("2027-01-01")]}, r"'year' must be an integer year"),
        ({"year": 2027}, r"missing 'days'"),
        ({"year": 2027, "days": []}, r"'days' is empty"),
        ({"year": 2027, "days": {}}, r"'days' must be a list"),
        ({"year": 2027, "papers": "x", "days": [_day("2027-01-01")]}, r"'papers' must be"),
        ({"year": 2027, "days": ["2027-01-01"]}, r"days\[0\] must be an object"),
        ({"year": 2027, "days": [_day("2026-05-01")]}, r"\(2026-05-01\): date is not in year 2027"),
        ({"year": 2027, "days": [_day("2028-01-01")]}, r"\(2028-01-01\): date is not in year 2027"),
        ({"year": 2027, "days": [_day("2026-11-30")]}, r"\(2026-11-30\): date is not in year 2027"),
        ({"year": 2027, "days": [_day("2027/01/01")]}, r"days\[0\]: 'date' must be YYYY-MM-DD"),
        ({"year": 2027, "days": [_day("2027-02-30")]}, r"'2027-02-30' is not a calendar date"),
        (
            {"year": 2027, "days": [_day("2027-01-01"), _day("2027-01-02"), _day("2027-01-01")]},
            r"days\[2\] \(2027-01-01\): duplicate date",
        ),
        ({"year": 2027, "days": [_day("2027-01-01", "true")]}, r"'isOffDay' must be true or false"),
        ({"year": 2027, "days": [_day("2027-01-01", 1)]}, r"'isOffDay' must be true or false"),
        ({"year": 2027, "days": [_day("2027-01-01", None)]}, r"'isOffDay' must be true or false"),
        ({"year": 2027, "days": [_day("2027-01-04", False)]}, r"must be a weekend"),
        ({"year": 2027, "days": [_day("2027-01-01", True, "")]}, r"'name' must be a non-empty"),
    ],
)
def test_invalid_files_rejected_naming_the_file(tmp_path: Path, content: Any, message: str) -> None:
    path = write_json(tmp_path, "bad-2027.json", content)
    with pytest.raises(ValueError, match=r"bad-2027\.json: .*" + message):
        load_holiday_cn(path)
    with pytest.raises(ValueError, match=r"bad-2027\.json"):
        WorkingCalendar.with_files([path])


# --- working-day deadlines on the real 2026 calendar -----------------------------------------


def test_seven_working_days_across_national_day() -> None:
    clock = compute_due(wd(7), sh(2026, 9, 30, 10, 0), CAL)
    assert clock.due_at == sh(2026, 10, 16, 0, 0)
    assert str(clock.due_at.tzinfo) == "Asia/Shanghai"
    assert clock.kind is ClockKind.RESOLVE
    assert clock.calendar_fallback is False
    assert clock.explanation == (
        "7 个工作日：受理 2026-09-30 10:00，当日不计入，自次日起算（民法典第201条）；"
        "计入 2026-10-08..10-10、2026-10-12..10-15（其中 2026-10-10 调休上班）；"
        "跳过 2026-10-01..10-07 国庆节、2026-10-11 周末；"
        "截止 2026-10-15 24:00，即 2026-10-16 00:00 (Asia/Shanghai) 前办结"
    )


def test_spring_festival_counts_make_up_saturday_and_skips_holiday() -> None:
    clock = compute_due(wd(2), sh(2026, 2, 13, 16, 0), CAL)
    assert clock.due_at == sh(2026, 2, 25, 0, 0)
    assert "计入 2026-02-14、2026-02-24（其中 2026-02-14 调休上班）" in clock.explanation
    assert "跳过 2026-02-15..02-23 春节" in clock.explanation


def test_mid_autumn_then_national_day() -> None:
    # Receipt Thu 09-24: 09-25..27 中秋节, 09-28..30 worked, then 国庆节, 10-08 is the 4th.
    clock = compute_due(wd(4), sh(2026, 9, 24, 11, 0), CAL)
    assert clock.due_at == sh(2026, 10, 9, 0, 0)
    assert "跳过 2026-09-25..09-27 中秋节、2026-10-01..10-07 国庆节" in clock.explanation


def test_receipt_on_a_holiday() -> None:
    clock = compute_due(wd(2), sh(2026, 10, 3, 10, 0), CAL)
    assert clock.due_at == sh(2026, 10, 10, 0, 0)
    assert "计入 2026-10-08..10-09；跳过 2026-10-04..10-07 国庆节" in clock.explanation


def test_receipt_on_a_make_up_working_saturday_is_not_counted() -> None:
    clock = compute_due(wd(2), sh(2026, 10, 10, 9, 0), CAL)
    assert clock.due_at == sh(2026, 10, 14, 0, 0)
    assert "计入 2026-10-12..10-13；跳过 2026-10-11 周末" in clock.explanation


def test_receipt_after_hours_on_friday_counts_like_friday_morning() -> None:
    evening = compute_due(wd(2), sh(2026, 10, 16, 19, 30), CAL)
    morning = compute_due(wd(2), sh(2026, 10, 16, 9, 0), CAL)
    assert evening.due_at == morning.due_at == sh(2026, 10, 21, 0, 0)
    assert "跳过 2026-10-17..10-18 周末" in evening.explanation


def test_no_skipped_days_said_so() -> None:
    clock = compute_due(wd(1), sh(2026, 10, 12, 9, 0), CAL)
    assert clock.due_at == sh(2026, 10, 14, 0, 0)
    assert "计入 2026-10-13；跳过 无；" in clock.explanation


def test_receipt_day_is_the_shanghai_calendar_day() -> None:
    # 15:59 UTC is 23:59 Friday 10-09 in Shanghai: the next working day is make-up Saturday.
    friday = compute_due(wd(1), datetime(2026, 10, 9, 15, 59, tzinfo=UTC), CAL)
    assert friday.due_at == sh(2026, 10, 11, 0, 0)
    # 16:00 UTC is already Saturday 10-10 in Shanghai: that day is not counted.
    saturday = compute_due(wd(1), datetime(2026, 10, 9, 16, 0, tzinfo=UTC), CAL)
    assert saturday.due_at == sh(2026, 10, 13, 0, 0)


# --- hour clocks ------------------------------------------------------------------------------


def test_two_hours_across_midnight_on_a_holiday() -> None:
    clock = compute_due(hours(2), sh(2026, 10, 1, 23, 15), CAL)
    assert clock.due_at == sh(2026, 10, 2, 1, 15)
    assert clock.kind is ClockKind.CONTACT
    assert clock.calendar_fallback is False
    assert clock.explanation == ("2 小时（自然时间）: 2026-10-01 23:15 + 2 h = 2026-10-02 01:15 (Asia/Shanghai)")


def test_hours_from_utc_input_are_shown_in_shanghai() -> None:
    clock = compute_due(hours(2), datetime(2026, 10, 1, 15, 15, tzinfo=UTC), CAL)
    assert clock.due_at == sh(2026, 10, 2, 1, 15)
    assert str(clock.due_at.tzinfo) == "Asia/Shanghai"
    assert "2026-10-01 23:15 + 2 h = 2026-10-02 01:15" in clock.explanation


# --- 2027: no package data ---------------------------------------------------------------------


def test_2027_without_file_uses_weekends_only_and_flags_it() -> None:
    clock = compute_due(wd(3), sh(2026, 12, 30, 9, 0), CAL)
    # 12-31 (2026 data), 2027-01-01 (fallback: Friday works), 01-04.
    assert clock.due_at == sh(2027, 1, 5, 0, 0)
    assert clock.calendar_fallback is True
    assert "计入 2026-12-31..2027-01-01、2027-01-04；跳过 2027-01-02..01-03 周末" in (clock.explanation)
    assert clock.explanation.endswith("2027 年无法定节假日数据，按仅周末休息计算")


def test_2026_only_count_is_not_flagged() -> None:
    clock = compute_due(wd(1), sh(2026, 12, 30, 9, 0), CAL)
    assert clock.due_at == sh(2027, 1, 1, 0, 0)
    assert clock.calendar_fallback is False
    assert "无法定节假日数据" not in clock.explanation


def test_2027_with_sample_file_honours_its_days() -> None:
    cal = WorkingCalendar.with_files([SAMPLE_2027])
    clock = compute_due(wd(3), sh(2026, 12, 30, 9, 0), cal)
    assert clock.due_at == sh(2027, 1, 6, 0, 0)
    assert clock.calendar_fallback is False
    assert "计入 2026-12-31、2027-01-04..01-05；跳过 2027-01-01..01-03 元旦" in clock.explanation
    make_up = compute_due(wd(1), sh(2027, 1, 8, 17, 0), cal)
    assert make_up.due_at == sh(2027, 1, 10, 0, 0)
    assert "（其中 2027-01-09 调休上班）" in make_up.explanation


# --- several clocks, naive input ---------------------------------------------------------------


def test_compute_clocks_keeps_term_order() -> None:
    clocks = compute_clocks([hours(1), wd(7)], sh(2026, 9, 30, 10, 0), CAL)
    assert [(c.kind, c.due_at) for c in clocks] == [
        (ClockKind.CONTACT, sh(2026, 9, 30, 11, 0)),
        (ClockKind.RESOLVE, sh(2026, 10, 16, 0, 0)),
    ]


@pytest.mark.parametrize("term", [hours(2), wd(2)])
def test_naive_start_rejected(term: ClockTerm) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        compute_due(term, datetime(2026, 10, 1, 9, 30), CAL)
    with pytest.raises(ValueError, match="timezone-aware"):
        compute_clocks([term], datetime(2026, 10, 1, 9, 30), CAL)


# --- the counting rule around the 2026 Spring Festival and National Day ---------------------------


def test_spring_festival_receipt_on_a_holiday_counts_from_the_first_working_day() -> None:
    clock = compute_due(wd(2), sh(2026, 2, 18, 10, 0), CAL)  # 初二, a day off
    assert clock.due_at == sh(2026, 2, 26, 0, 0)
    assert "计入 2026-02-24..02-25；跳过 2026-02-19..02-23 春节" in clock.explanation


def test_spring_festival_receipt_on_the_make_up_saturday_is_not_counted() -> None:
    clock = compute_due(wd(2), sh(2026, 2, 14, 9, 0), CAL)
    assert clock.due_at == sh(2026, 2, 26, 0, 0)
    assert "受理 2026-02-14 09:00，当日不计入" in clock.explanation


def test_spring_festival_receipt_after_hours_counts_the_make_up_saturday() -> None:
    evening = compute_due(wd(2), sh(2026, 2, 13, 20, 30), CAL)
    morning = compute_due(wd(2), sh(2026, 2, 13, 8, 0), CAL)
    assert evening.due_at == morning.due_at == sh(2026, 2, 25, 0, 0)


def test_second_make_up_saturday_after_spring_festival() -> None:
    # Thu 02-26: 02-27 (Fri), 02-28 (make-up Sat), 03-01 Sunday off, 03-02 (Mon).
    clock = compute_due(wd(3), sh(2026, 2, 26, 15, 0), CAL)
    assert clock.due_at == sh(2026, 3, 3, 0, 0)
    assert "计入 2026-02-27..02-28、2026-03-02（其中 2026-02-28 调休上班）；跳过 2026-03-01 周末" in clock.explanation


def test_national_day_make_up_sunday_before_the_holiday() -> None:
    # Fri 09-18: 09-19 Saturday off, 09-20 a make-up working Sunday, 09-21 Monday.
    clock = compute_due(wd(2), sh(2026, 9, 18, 17, 0), CAL)
    assert clock.due_at == sh(2026, 9, 22, 0, 0)
    assert "计入 2026-09-20..09-21（其中 2026-09-20 调休上班）；跳过 2026-09-19 周末" in clock.explanation


def test_a_working_day_term_is_n_days_of_counted_working_time() -> None:
    # The pause rule counts in the same measure as the term: N working days = N x 24 h of counted time.
    day = date(2026, 1, 1)
    while day.year == 2026:
        for hour in (0, 9, 23):
            start = datetime.combine(day, datetime.min.time(), tzinfo=SH).replace(hour=hour, minute=30)
            for amount in (1, 2, 7):
                due = compute_due(wd(amount), start, CAL).due_at
                reached = advance(day, start, timedelta(days=amount), CAL).moment
                assert reached == due, (start, amount)
                assert counted_time(day, start, due, CAL).amount == timedelta(days=amount)
        day += timedelta(days=1)


def test_counted_time_over_the_spring_festival() -> None:
    counted = counted_time(date(2026, 2, 12), sh(2026, 2, 13, 12, 0), sh(2026, 2, 25, 12, 0), CAL)
    # 02-13 12 h, 02-14 (make-up) 24 h, 02-15..23 off, 02-24 24 h, 02-25 12 h.
    assert counted.amount == timedelta(hours=72)
    assert [info.date for info in counted.skipped] == [date(2026, 2, d) for d in range(15, 24)]
    assert counted.fallback_years == frozenset()
    # The start day itself never counts, even when it is a working day.
    assert counted_time(date(2026, 2, 13), sh(2026, 2, 13, 9), sh(2026, 2, 13, 18), CAL).amount == timedelta(0)


def test_advance_by_nothing_stays_put_and_never_skips_ahead() -> None:
    # Due at the end of Friday 10-09 with nothing to add: still 10-10 00:00, not the next working day.
    assert advance(date(2026, 9, 30), sh(2026, 10, 10), timedelta(0), CAL).moment == sh(2026, 10, 10)
    assert advance(date(2026, 9, 30), sh(2026, 10, 17), timedelta(hours=1), CAL).moment == sh(2026, 10, 19, 1)


def test_hours_pause_over_the_spring_festival_is_wall_clock() -> None:
    clock = pause(compute_due(hours(2), sh(2026, 2, 13, 17, 0), CAL), sh(2026, 2, 13, 18, 0), "等待当事人返乡")
    resumed = resume(clock, sh(2026, 2, 24, 9, 0), CAL)
    assert resumed.due_at == sh(2026, 2, 24, 10, 0)
    assert resumed.paused_total == timedelta(days=10, hours=15)
    assert resumed.explanation == (
        "2 小时（自然时间）: 2026-02-13 17:00 + 2 h = 2026-02-13 19:00 (Asia/Shanghai)；"
        "2026-02-13 18:00 暂停（等待当事人返乡），停止计时；"
        "2026-02-24 09:00 恢复：暂停 10 天 15 小时（自然时间），截止顺延 10 天 15 小时，"
        "2026-02-13 19:00 → 2026-02-24 10:00"
    )


def test_working_days_pause_over_the_spring_festival_counts_only_working_time() -> None:
    # Received Wed 02-11 10:00, 7 working days: 02-12, 02-13, 02-14 (make-up), 02-24..02-27 → due 02-28 00:00.
    clock = compute_due(wd(7), sh(2026, 2, 11, 10, 0), CAL)
    assert clock.due_at == sh(2026, 2, 28, 0, 0)
    # Paused Fri 02-13 16:00 .. Tue 02-24 10:00: 8 h + 24 h (make-up Sat) + 10 h = 42 h of counted time.
    paused = pause(clock, sh(2026, 2, 13, 16, 0), None)
    resumed = resume(paused, sh(2026, 2, 24, 10, 0), CAL)
    # From 02-28 00:00 (a make-up Saturday, counted): 24 h, 03-01 Sunday off, 03-02 18 h → 03-02 18:00.
    assert resumed.due_at == sh(2026, 3, 2, 18, 0)
    assert resumed.explanation.endswith(
        "；2026-02-24 10:00 恢复：暂停 10 天 18 小时，其中计时工作时间 1 天 18 小时（受理当日及非工作日不计），"
        "截止顺延工作时间 1 天 18 小时，跳过 2026-03-01 周末，2026-02-28 00:00 → 2026-03-02 18:00"
    )


def test_national_day_pause_and_recount_agree() -> None:
    clock = compute_due(wd(2), sh(2026, 9, 29, 10, 0), CAL)
    assert clock.due_at == sh(2026, 10, 9, 0, 0)  # 09-30 and 10-08
    clock = resume(pause(clock, sh(2026, 9, 30, 12, 0), "等待群众"), sh(2026, 10, 8, 9, 0), CAL)
    # Counted: 09-30 12:00..24:00 and 10-08 00:00..09:00 = 21 h; 国庆节 counts nothing.
    assert clock.due_at == sh(2026, 10, 9, 21, 0)
    assert recount(clock, CAL) is clock
    assert recount(clock, WorkingCalendar.with_files([OFFICIAL_2026])) is clock


# --- 2027: missing year, warning, metric hook, recount ---------------------------------------------


def test_fallback_year_is_logged_once_and_listed(caplog: pytest.LogCaptureFixture) -> None:
    cal = WorkingCalendar.default()
    with caplog.at_level(logging.WARNING, logger="services.sla.calendar"):
        assert cal.fallback_years_used() == frozenset()
        compute_due(wd(3), sh(2026, 12, 30, 9, 0), cal)
        compute_due(wd(5), sh(2027, 3, 1, 9, 0), cal)
    messages = [r.getMessage() for r in caplog.records if r.name == "services.sla.calendar"]
    assert messages == [
        "no statutory calendar data for 2027: counting weekends-only (Monday-Friday work); "
        "load a holiday-cn file for 2027 (GRIDHUB_SLA_CALENDAR_FILES) and recompute open clocks"
    ]
    assert all(r.levelno == logging.WARNING for r in caplog.records)
    assert cal.fallback_years_used() == {2027}
    assert cal.sources() == {}
    with_file = WorkingCalendar.with_files([SAMPLE_2027])
    compute_due(wd(3), sh(2026, 12, 30, 9, 0), with_file)
    assert with_file.fallback_years_used() == frozenset()
    assert with_file.sources() == {2027: "file:sample-2027-holiday-cn.json"}


def test_2027_clock_is_recounted_when_a_file_arrives() -> None:
    without = compute_due(wd(3), sh(2026, 12, 30, 9, 0), CAL)
    assert (without.due_at, without.fallback_years) == (sh(2027, 1, 5, 0, 0), (2027,))
    recounted = recount(without, WorkingCalendar.with_files([SAMPLE_2027]))
    assert (recounted.due_at, recounted.calendar_fallback, recounted.fallback_years) == (
        sh(2027, 1, 6, 0, 0),
        False,
        (),
    )
    assert recounted.explanation.endswith(
        "；日历更新后重新计算：原截止 2027-01-05 00:00，原按仅周末休息计算，现截止 2027-01-06 00:00"
    )
    # A met clock keeps what it was judged by.
    met = meet(without, sh(2027, 1, 4, 10, 0), CAL)
    assert recount(met, WorkingCalendar.with_files([SAMPLE_2027])) is met


def test_pause_counted_in_a_fallback_year_flags_the_clock() -> None:
    clock = compute_due(wd(1), sh(2026, 12, 29, 9, 0), CAL)  # 12-30: 2026 data, not flagged
    assert clock.calendar_fallback is False
    resumed = resume(pause(clock, sh(2026, 12, 30, 12, 0), None), sh(2026, 12, 31, 12, 0), CAL)
    # 24 counted hours move 12-31 00:00 to 2027-01-01 00:00: counting stops at the year's edge, no 2027 day used.
    assert resumed.due_at == sh(2027, 1, 1, 0, 0)
    assert resumed.calendar_fallback is False
    longer = resume(pause(clock, sh(2026, 12, 30, 12, 0), None), sh(2026, 12, 31, 13, 0), CAL)
    assert longer.due_at == sh(2027, 1, 1, 1, 0)  # 2027-01-01 works in the weekends-only fallback
    assert (longer.calendar_fallback, longer.fallback_years) == (True, (2027,))
    assert "（2027 年无法定节假日数据，按仅周末休息计算）" in longer.explanation


@pytest.mark.parametrize(
    ("span", "text"),
    [
        (timedelta(0), "0 分"),
        (timedelta(seconds=20), "20 秒"),
        (timedelta(minutes=45), "45 分"),
        (timedelta(hours=5, minutes=30), "5 小时 30 分"),
        (timedelta(days=1, hours=18), "1 天 18 小时"),
        (timedelta(hours=-2), "-2 小时"),
    ],
)
def test_duration_text(span: timedelta, text: str) -> None:
    assert duration_text(span) == text
