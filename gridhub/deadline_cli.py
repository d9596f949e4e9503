"""`gridhub deadline`: every clock's due time for a matter or a deadline class, with its explanation; no broker.

    gridhub deadline --matter M08 --received 2026-09-30T10:00+08:00
    gridhub deadline --class standard --received 2026-12-30T09:00+08:00 --calendar 2027.json --json

The terms come from the duty list (the packaged 平安县 list unless --list) and the SLA's clock policy (签收 and
回复); working days from the chinesecalendar package plus the holiday-cn files given with --calendar. The reply
clock starts when the task is resolved: it is explained, and computed only with --resolved. Errors (unknown
matter, a time without a UTC offset, a bad calendar or duty-list file) are one message and exit code 2.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from schemas.task import DeadlineClass

if TYPE_CHECKING:
    from schemas.dutylist import DutyList
    from schemas.sla import Clock
    from schemas.task import ClockTerm
    from services.sla.calendar import WorkingCalendar

USAGE_ERROR = 2


def _fail(message: str) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(USAGE_ERROR)


def _moment(text: str, option: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        _fail(f"{option} 不是 ISO 8601 时间 / not an ISO 8601 time: {text!r} (e.g. 2026-09-30T10:00+08:00)")
    if moment.tzinfo is None or moment.utcoffset() is None:
        _fail(f"{option} 缺少时区 / needs a UTC offset: {text!r} (e.g. {text}+08:00)")
    return moment


def _duty_list(path: Path | None) -> DutyList:
    from pydantic import ValidationError

    from schemas.dutylist import load_duty_list

    try:
        return load_duty_list(path)
    except OSError as exc:
        _fail(f"无法读取清单 / cannot read duty list {path}: {exc.strerror}")
    except (ValidationError, ValueError) as exc:
        _fail(f"清单无效 / invalid duty list {path or '(packaged)'}: {exc}")


def _calendar(files: list[Path]) -> WorkingCalendar:
    from services.sla.calendar import WorkingCalendar

    try:
        return WorkingCalendar.with_files(files)
    except OSError as exc:
        _fail(f"无法读取日历文件 / cannot read calendar file {exc.filename}: {exc.strerror}")
    except ValueError as exc:
        _fail(f"日历文件无效 / bad calendar file: {exc}")


def _reply_rule(term: ClockTerm) -> str:
    from schemas.task import DurationUnit

    if term.unit is DurationUnit.HOURS:
        return f"自办结时起算：{term.amount} 小时（自然时间），办结时间 + {term.amount} h"
    return (
        f"自办结时起算：{term.amount} 个工作日，办结当日不计入，自次日起算（民法典第201条），"
        f"至其后第 {term.amount} 个工作日 24:00 届满；用 --resolved 计算具体截止时间"
    )


def _clock_dict(clock: Clock, starts: str) -> dict[str, Any]:
    from services.sla.deadlines import KIND_LABELS

    return {
        "kind": clock.kind.value,
        "label": KIND_LABELS[clock.kind],
        "amount": clock.amount,
        "unit": clock.unit.value if clock.unit else None,
        "starts": starts,
        "started_at": clock.started_at.isoformat() if clock.started_at else None,
        "due_at": clock.due_at.isoformat(),
        "explanation": clock.explanation,
        "calendar_fallback": clock.calendar_fallback,
        "fallback_years": list(clock.fallback_years),
    }


def deadline_report(
    duty: DutyList,
    deadline_class: DeadlineClass,
    received: datetime,
    calendar: WorkingCalendar,
    resolved: datetime | None = None,
    matter_code: str | None = None,
) -> dict[str, Any]:
    """Every clock of a task of this class received at `received` (reply too when `resolved` is given)."""
    from schemas.task import ClockKind
    from services.sla.deadlines import KIND_LABELS, SHANGHAI, class_terms, compute_due

    clocks: list[dict[str, Any]] = []
    for term in class_terms(duty, deadline_class):
        if term.kind is not ClockKind.REPLY:
            clocks.append(_clock_dict(compute_due(term, received, calendar), "received"))
        elif resolved is not None:
            clocks.append(_clock_dict(compute_due(term, resolved, calendar), "resolved"))
        else:
            clocks.append(
                {
                    "kind": term.kind.value,
                    "label": KIND_LABELS[term.kind],
                    "amount": term.amount,
                    "unit": term.unit.value,
                    "starts": "resolved",
                    "started_at": None,
                    "due_at": None,
                    "explanation": _reply_rule(term),
                    "calendar_fallback": False,
                    "fallback_years": [],
                }
            )
    matter = duty.matter(matter_code) if matter_code else None
    years = sorted({y for c in clocks for y in c["fallback_years"]})
    return {
        "received_at": received.astimezone(SHANGHAI).isoformat(),
        "resolved_at": resolved.astimezone(SHANGHAI).isoformat() if resolved else None,
        "matter": {"code": matter.code, "name": matter.name} if matter else None,
        "deadline_class": deadline_class.value,
        "duty_list_version": duty.version,
        "county": duty.county.name,
        "calendar": {"files": list(calendar.sources().values()), "fallback_years": years},
        "clocks": clocks,
    }


def _print_text(report: dict[str, Any]) -> None:
    matter = report["matter"]
    head = f"事项 {matter['code']} {matter['name']}；" if matter else ""
    typer.echo(f"{head}时限类别 {report['deadline_class']}（{report['county']} 清单 {report['duty_list_version']}）")
    typer.echo(f"受理 received: {report['received_at']}")
    for clock in report["clocks"]:
        due = clock["due_at"] or "办结后起算 starts when resolved"
        typer.echo(f"{clock['label']} {clock['kind']:8} 截止 due: {due}")
        typer.echo(f"    {clock['explanation']}")
    files = report["calendar"]["files"]
    typer.echo(f"日历 calendar: chinesecalendar{' + ' + '、'.join(files) if files else ''}")


def _warn_fallback(report: dict[str, Any]) -> None:
    if report["calendar"]["fallback_years"]:
        years = "、".join(str(y) for y in report["calendar"]["fallback_years"])
        typer.echo(
            f"注意 warning: {years} 年无法定节假日数据，已按仅周末休息计算；用 --calendar 提供该年的 holiday-cn 文件 / "
            f"no statutory calendar for {years}: counted weekends-only; give its holiday-cn file with --calendar",
            err=True,
        )


def deadline_command(
    received: Annotated[str, typer.Option(help="When the event was received, ISO 8601 with offset.")],
    matter: Annotated[str | None, typer.Option(help="Matter code of the duty list, e.g. M08.")] = None,
    deadline_class: Annotated[
        DeadlineClass | None, typer.Option("--class", help="Deadline class, instead of a matter.")
    ] = None,
    calendar: Annotated[
        list[Path] | None,
        typer.Option("--calendar", help="holiday-cn JSON file filling or overriding a year (repeatable)."),
    ] = None,
    resolved: Annotated[
        str | None, typer.Option(help="When the task was resolved, to compute the reply clock too.")
    ] = None,
    duty_list: Annotated[
        Path | None, typer.Option("--list", dir_okay=False, help="Duty-list JSON file; the packaged list when unset.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print every clock's due time (签收, 联系, 办结, 回复) for a matter or class, with explanations; no broker."""
    if (matter is None) == (deadline_class is None):
        _fail("给出 --matter 或 --class 之一 / give exactly one of --matter and --class")
    received_at = _moment(received, "--received")
    resolved_at = _moment(resolved, "--resolved") if resolved is not None else None
    if resolved_at is not None and resolved_at < received_at:
        _fail("--resolved 早于 --received / --resolved is before --received")
    duty = _duty_list(duty_list)
    if matter is not None:
        found = duty.matter(matter)
        if found is None:
            _fail(f"未知事项 / unknown matter {matter!r} in duty list {duty.version}")
        chosen = found.deadline_class
    else:
        assert deadline_class is not None
        chosen = deadline_class
    # The calendar logs a fallback year for the service's log; here the warning below says it once, in Chinese too.
    calendar_log = logging.getLogger("services.sla.calendar")
    level = calendar_log.level
    calendar_log.setLevel(logging.ERROR)
    try:
        report = deadline_report(duty, chosen, received_at, _calendar(calendar or []), resolved_at, matter)
    finally:
        calendar_log.setLevel(level)
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        _print_text(report)
    _warn_fallback(report)
