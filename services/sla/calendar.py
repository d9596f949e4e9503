"""China's statutory working-day calendar: chinesecalendar data plus holiday-cn override files.

Sources, in order of precedence for a given year:

1. An override file in the holiday-cn JSON format (https://github.com/NateScarlet/holiday-cn),
   ``{"year": 2027, "papers": [...], "days": [{"name": "元旦", "date": "2027-01-01",
   "isOffDay": true}, ...]}``. It replaces the package data for that year entirely: listed days
   with ``isOffDay`` true are statutory days off, listed days with ``isOffDay`` false are make-up
   working days (调休上班) on a weekend; unlisted weekdays work and unlisted weekends rest.
   Dates must lie in that year, except December of the year before: the notice for year Y
   covers 元旦, which may start then (upstream 2012.json and 2023.json list such days).
2. The ``chinesecalendar`` package (import name ``chinese_calendar``). Version 1.11 covers
   2004–2026 and raises ``NotImplementedError("no available data for year 2027, only year
   between [2004, 2026] supported")`` outside that range.
3. Weekends-only fallback (Monday–Friday work). Never raises; every such day is marked
   ``fallback=True`` so a clock computed from it can say its due time may be wrong (``Clock.calendar_fallback``
   and ``Clock.fallback_years``). The first use of a fallback year by a calendar logs one warning
   (``services.sla.calendar``), and ``WorkingCalendar.fallback_years_used()`` lists those years for the
   service to expose (the worker owns the metric, ``gridhub_sla_calendar_fallbacks_total``).

Loading a newer calendar (a file for a year that fell back) does not change clocks by itself: the service
calls ``services.sla.clocks.recompute`` on every open task with the new calendar.

This module is pure: no clock reads, no environment, no I/O except reading the files it is given (and
the warning log line above).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import chinese_calendar

log = logging.getLogger(__name__)

PACKAGE_SOURCE = "chinesecalendar"
FALLBACK_SOURCE = "weekends-only fallback"

WORKDAY = "工作日"
WEEKEND = "周末"
MAKE_UP = "调休上班"

# chinesecalendar names days by English enum value. Map them to the names the State Council
# notices (and holiday-cn) use, so a reason reads the same whichever source it came from.
_PACKAGE_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "New Year's Day": "元旦",
        "Spring Festival": "春节",
        "Tomb-sweeping Day": "清明节",
        "Labour Day": "劳动节",
        "Dragon Boat Festival": "端午节",
        "National Day": "国庆节",
        "Mid-autumn Festival": "中秋节",
    }
)

# Years probed for covered_years(). The package only knows whole years, contiguous, and its
# other data (solar terms) stops at 1900–2100, so nothing outside this window can be covered.
_PROBE_YEARS = range(1900, 2101)

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True, slots=True)
class DayInfo:
    """Whether one calendar day is a working day, why, and where that fact came from."""

    date: date
    working: bool
    reason: str
    source: str
    fallback: bool
    # Statutory holiday this day belongs to (a day off, or a make-up working day for it).
    holiday: str | None = None


@dataclass(frozen=True, slots=True)
class StatutoryDay:
    """One listed day of a holiday-cn file: a day off or a make-up working day."""

    date: date
    off: bool
    name: str


@dataclass(frozen=True, slots=True)
class YearCalendar:
    """One year's statutory days loaded from a holiday-cn file."""

    year: int
    source: str
    days: tuple[StatutoryDay, ...]


def _chinese_name(package_name: str) -> str:
    """Chinese name for a chinesecalendar holiday value (English enum value)."""
    if package_name in _PACKAGE_NAMES:
        return _PACKAGE_NAMES[package_name]
    try:
        # Special one-off holidays (e.g. the 2015 anti-fascist 70th anniversary) are only in
        # the package's own enum.
        return str(chinese_calendar.Holiday(package_name).chinese)
    except ValueError:
        return package_name


def _package_has_year(year: int) -> bool:
    """Whether chinesecalendar has statutory data for the year (it raises otherwise)."""
    try:
        chinese_calendar.is_workday(date(year, 1, 1))
    except NotImplementedError:
        return False
    return True


def _plain_day(d: date, source: str, fallback: bool) -> DayInfo:
    """A day no statutory rule mentions: weekdays work, weekends rest."""
    weekend = d.weekday() >= 5
    return DayInfo(d, not weekend, WEEKEND if weekend else WORKDAY, source, fallback)


def _statutory_day(d: date, off: bool, name: str, source: str) -> DayInfo:
    """A day a statutory rule names: a holiday day off or a make-up working day."""
    if off:
        return DayInfo(d, False, f"{name} holiday", source, False, name)
    return DayInfo(d, True, f"{MAKE_UP} make-up working day ({name})", source, False, name)


def _days_of(year: int) -> Iterable[date]:
    """Every calendar day of the year."""
    day = date(year, 1, 1)
    while day.year == year:
        yield day
        day += timedelta(days=1)


def load_holiday_cn(path: Path) -> YearCalendar:
    """Load and strictly validate one holiday-cn JSON file; raise ValueError naming the file."""
    path = Path(path)
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{where}: not UTF-8 text ({exc.reason})") from exc
    try:
        raw: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: bad JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: top level must be a JSON object, got {type(raw).__name__}")

    if "year" not in raw:
        raise ValueError(f"{where}: missing 'year'")
    year = raw["year"]
    # bool is an int subclass; `"year": true` must not pass as year 1.
    if isinstance(year, bool) or not isinstance(year, int) or not 1 < year < 9999:
        raise ValueError(f"{where}: 'year' must be an integer year, got {year!r}")

    papers = raw.get("papers", [])
    if not isinstance(papers, list) or not all(isinstance(p, str) for p in papers):
        raise ValueError(f"{where}: 'papers' must be a list of URLs (strings)")

    if "days" not in raw:
        raise ValueError(f"{where}: missing 'days'")
    entries = raw["days"]
    if not isinstance(entries, list):
        raise ValueError(f"{where}: 'days' must be a list, got {type(entries).__name__}")
    if not entries:
        # holiday-cn publishes an empty placeholder file before the State Council notice is out;
        # accepting it would mark the year "covered" while it holds no holidays at all.
        raise ValueError(f"{where}: 'days' is empty; the {year} notice is probably not published yet")

    days: dict[date, StatutoryDay] = {}
    for index, entry in enumerate(entries):
        at = f"{where}: days[{index}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{at} must be an object, got {type(entry).__name__}")
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{at}: 'name' must be a non-empty string, got {name!r}")
        text_date = entry.get("date")
        if not isinstance(text_date, str) or not _ISO_DATE.fullmatch(text_date):
            raise ValueError(f"{at}: 'date' must be YYYY-MM-DD, got {text_date!r}")
        try:
            day = date.fromisoformat(text_date)
        except ValueError as exc:
            raise ValueError(f"{at}: 'date' {text_date!r} is not a calendar date") from exc
        at = f"{where}: days[{index}] ({text_date})"
        # The State Council notice for year Y covers 元旦, which can start in late December of
        # Y-1; upstream holiday-cn lists such days in Y's file (2012.json has 2011-12-31,
        # 2023.json has 2022-12-31). Accept exactly that spill-over and nothing else.
        spill_over = day.year == year - 1 and day.month == 12
        if day.year != year and not spill_over:
            raise ValueError(f"{at}: date is not in year {year}")
        off = entry.get("isOffDay")
        if not isinstance(off, bool):
            raise ValueError(f"{at}: 'isOffDay' must be true or false, got {off!r}")
        if not off and day.weekday() < 5:
            raise ValueError(f"{at}: make-up working day (isOffDay false) must be a weekend")
        if day in days:
            raise ValueError(f"{at}: duplicate date")
        days[day] = StatutoryDay(day, off, name.strip())

    return YearCalendar(year, f"file:{path.name}", tuple(sorted(days.values(), key=_by_date)))


def _by_date(day: StatutoryDay) -> date:
    """Sort key for statutory days."""
    return day.date


class WorkingCalendar:
    """Working days on China's statutory calendar; immutable, with a per-year lazy cache."""

    __slots__ = ("_cache", "_fallback_years", "_overrides", "_package_years")

    def __init__(self, overrides: Mapping[int, YearCalendar] | None = None) -> None:
        """Build from package data plus optional per-year overrides (prefer the factories)."""
        self._overrides: Mapping[int, YearCalendar] = MappingProxyType(dict(overrides or {}))
        # Caches only: filled on first use, never change what a day is.
        self._cache: dict[int, Mapping[date, DayInfo]] = {}
        self._package_years: frozenset[int] | None = None
        # Years this calendar has answered from the weekends-only fallback so far (for a metric).
        self._fallback_years: set[int] = set()

    @classmethod
    def default(cls) -> WorkingCalendar:
        """Calendar from the chinesecalendar package only."""
        return cls()

    @classmethod
    def with_files(cls, paths: Iterable[Path]) -> WorkingCalendar:
        """Package calendar overridden by holiday-cn files; two files for one year is an error."""
        loaded: dict[int, YearCalendar] = {}
        for path in paths:
            year_calendar = load_holiday_cn(Path(path))
            previous = loaded.get(year_calendar.year)
            if previous is not None:
                raise ValueError(f"{path}: year {year_calendar.year} is already given by {previous.source}")
            loaded[year_calendar.year] = year_calendar
        return cls(loaded)

    def with_year(self, year_calendar: YearCalendar) -> WorkingCalendar:
        """New calendar with this year's data replaced by the given file's."""
        overrides = dict(self._overrides)
        overrides[year_calendar.year] = year_calendar
        return WorkingCalendar(overrides)

    def covered_years(self) -> set[int]:
        """Years with real statutory data (package or file), i.e. not the weekends-only fallback."""
        if self._package_years is None:
            self._package_years = frozenset(y for y in _PROBE_YEARS if _package_has_year(y))
        return set(self._package_years) | set(self._overrides)

    def fallback_years_used(self) -> frozenset[int]:
        """Years this calendar has answered with the weekends-only fallback so far."""
        return frozenset(self._fallback_years)

    def sources(self) -> dict[int, str]:
        """Override files by year (``file:<name>``); other years come from the package or the fallback."""
        return {year: cal.source for year, cal in sorted(self._overrides.items())}

    def is_working_day(self, d: date) -> DayInfo:
        """Whether the day is a working day, with reason and source; never raises for a year."""
        if isinstance(d, datetime):
            # A datetime's calendar day depends on its zone; make the caller pick Asia/Shanghai.
            raise TypeError("pass a date, not a datetime (convert to Asia/Shanghai first)")
        year = self._cache.get(d.year)
        if year is None:
            year = self._build_year(d.year)
            self._cache[d.year] = year
        return year[d]

    def _build_year(self, year: int) -> Mapping[date, DayInfo]:
        """All days of one year from the highest-precedence source that has it."""
        override = self._overrides.get(year)
        infos: dict[date, DayInfo] = {}
        if override is not None:
            listed = {s.date: s for s in override.days if s.date.year == year}
            for d in _days_of(year):
                s = listed.get(d)
                infos[d] = (
                    _plain_day(d, override.source, False)
                    if s is None
                    else _statutory_day(d, s.off, s.name, override.source)
                )
        elif _package_has_year(year):
            for d in _days_of(year):
                is_off, package_name = chinese_calendar.get_holiday_detail(d)
                infos[d] = (
                    _plain_day(d, PACKAGE_SOURCE, False)
                    if package_name is None
                    else _statutory_day(d, bool(is_off), _chinese_name(str(package_name)), PACKAGE_SOURCE)
                )
        else:
            self._fallback_years.add(year)
            log.warning(
                "no statutory calendar data for %d: counting weekends-only (Monday-Friday work); "
                "load a holiday-cn file for %d (GRIDHUB_SLA_CALENDAR_FILES) and recompute open clocks",
                year,
                year,
            )
            for d in _days_of(year):
                infos[d] = _plain_day(d, FALLBACK_SOURCE, True)

        # Next year's file may name late-December days of this year (元旦 spill-over); it is the
        # later, more specific notice, so it wins for those days.
        following = self._overrides.get(year + 1)
        if following is not None:
            for s in following.days:
                if s.date.year == year:
                    infos[s.date] = _statutory_day(s.date, s.off, s.name, following.source)
        return MappingProxyType(infos)
