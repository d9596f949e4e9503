"""`gridhub report weekly`: the weekly bulletin (周通报) as CSV, JSON and a chart, from the broker or from files.

The tasks come from `tasks.dispatched` and `tasks.status`, read group-less from the start (settings from the
GRIDHUB_* environment, as every command), or with `--from-file` from JSON-lines dumps of the two topics (one
message value a line, either topic, in any order: a line with `decision` is a task, one with `clocks` a status).
The figures are computed by the same function as `GET /reports/summary` (services/sla/report_view.summary_of).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from collections.abc import Callable

    from aiokafka import ConsumerRecord

    from services.sla.report_view import ReportStore
    from services.sla.reports import GroupRow, Summary

report_app = typer.Typer(
    help="Reports: the weekly bulletin (周通报) of units, townships and matters.", no_args_is_help=True
)

CSV_HEADER = (
    "排名",
    "编码",
    "名称",
    "受理",
    "办结",
    "应办结",
    "按期办结",
    "按期办结率(%)",
    "已回复",
    "回复率(%)",
    "已评价",
    "满意",
    "满意度(%)",
    "平均评分(1-5)",
    "办理时长中位数(工作小时)",
    "办理时长P90(工作小时)",
    "在办",
    "超期",
    "配合/报到",
    "退回",
)


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.1f}"


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def csv_row(row: GroupRow, rank: str | None = None) -> list[str]:
    """One CSV line of the bulletin table (rates in percent, one decimal; empty when there is nothing to measure)."""
    d = row.as_dict()
    return [
        rank if rank is not None else ("" if row.rank is None else str(row.rank)),
        row.key,
        row.name,
        str(row.received),
        str(row.resolved),
        str(row.due),
        str(row.on_time),
        _percent(d["on_time_rate"]),
        str(row.replied),
        _percent(d["response_rate"]),
        str(row.rated),
        str(row.satisfied),
        _percent(d["satisfaction_rate"]),
        _number(d["satisfaction_mean"]),
        _number(d["median_hours"]),
        _number(d["p90_hours"]),
        str(row.open),
        str(row.overdue),
        str(row.supporting),
        str(row.returned),
    ]


def render_csv(summary: Summary) -> bytes:
    """The ranking table: a header, one line per group (ranked first), the county's line last; UTF-8 with BOM.

    The BOM (EF BB BF) is what makes Excel on Windows read the file as UTF-8: without it Excel takes a CSV for
    the local code page (GBK on a Chinese Windows) and the Chinese is garbled.
    """
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for row in summary.rows:
        writer.writerow(csv_row(row))
    writer.writerow(csv_row(summary.county, rank="合计"))
    return text.getvalue().encode("utf-8-sig")


def render_json(summary: Summary) -> bytes:
    """The bulletin as JSON (the same document GET /reports/summary answers), Chinese unescaped."""
    return (json.dumps(summary.as_dict(), ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def load_dumps(store: ReportStore, paths: list[Path]) -> tuple[int, int]:
    """Read JSON-lines dumps of tasks.dispatched and tasks.status into the store; (applied, skipped) lines."""
    from services.sla.report_view import DISPATCHED_TOPIC, STATUS_TOPIC

    applied = skipped = 0
    for path in paths:
        with path.open("rb") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    fields = json.loads(line)
                except ValueError:
                    fields = None
                if not isinstance(fields, dict):
                    typer.echo(f"{path}:{number}: 不是 JSON 对象，已跳过 / not a JSON object, skipped", err=True)
                    skipped += 1
                    continue
                topic = DISPATCHED_TOPIC if "decision" in fields else STATUS_TOPIC if "clocks" in fields else None
                if topic is None or not store.apply_value(topic, None, line):
                    typer.echo(
                        f"{path}:{number}: 不是任务或任务状态，已跳过 / not a task or a status, skipped", err=True
                    )
                    skipped += 1
                    continue
                applied += 1
    return applied, skipped


async def load_broker(store: ReportStore) -> int:
    """Read both topics from the broker (group-less, from the start to their end) into the store."""
    from gridhub.kernel.follower import read_window
    from gridhub.kernel.settings import CommonSettings
    from services.sla.report_view import DISPATCHED_TOPIC, STATUS_TOPIC

    def applier(topic: str) -> Callable[[ConsumerRecord[bytes, bytes]], None]:
        def apply(record: ConsumerRecord[bytes, bytes]) -> None:
            store.apply_value(topic, record.key, record.value)

        return apply

    common = CommonSettings()
    total = 0
    for topic in (DISPATCHED_TOPIC, STATUS_TOPIC):
        count = await read_window(common, common.topic(topic), applier(topic))
        if count is None:
            typer.echo(f"主题 {common.topic(topic)} 不存在 / topic missing (gridhub topics create)", err=True)
            raise typer.Exit(2)
        total += count
    return total


def _when(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise typer.BadParameter("需要带时区的时间，如 2026-11-23T08:00:00+08:00", param_hint="--now")
    return moment


def print_table(summary: Summary) -> None:
    """A short human-readable ranking on stdout."""
    typer.echo(f"{summary.county.name}周通报 {summary.period.describe()}，截至 {summary.as_of.isoformat()}")
    for row in (*summary.rows, summary.county):
        d = row.as_dict()
        rank = "合计" if row is summary.county else (str(row.rank) if row.rank is not None else "-")
        on_time, response, satisfied = (
            f"{_percent(d[name])}%" if d[name] is not None else "—"
            for name in ("on_time_rate", "response_rate", "satisfaction_rate")
        )
        typer.echo(
            f"{rank:>4} {row.name}: 按期办结率 {on_time} ({row.on_time}/{row.due}) 回复率 {response} "
            f"满意度 {satisfied} 在办 {row.open} 超期 {row.overdue}"
        )


@report_app.command("weekly")
def weekly(
    week: Annotated[
        str | None, typer.Option(help="ISO week, e.g. 2026-W47; the last complete week when unset.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Directory the CSV, JSON and PNG are written to.")] = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="Print the bulletin's JSON on stdout.")] = False,
    from_file: Annotated[
        list[Path] | None,
        typer.Option(
            "--from-file",
            exists=True,
            dir_okay=False,
            help="JSON-lines dump of tasks.dispatched and/or tasks.status (repeatable); no broker is used.",
        ),
    ] = None,
    by: Annotated[str, typer.Option(help="Rows by unit, township or matter.")] = "unit",
    roles: Annotated[str, typer.Option(help="primary (default) or all: co-operating and summoned tasks too.")] = (
        "primary"
    ),
    calendar: Annotated[
        list[Path] | None,
        typer.Option("--calendar", exists=True, dir_okay=False, help="holiday-cn JSON file for a year (repeatable)."),
    ] = None,
    duty_list: Annotated[
        Path | None,
        typer.Option("--list", exists=True, dir_okay=False, help="Duty-list JSON (township names); packaged if unset."),
    ] = None,
    now: Annotated[
        str | None, typer.Option(help="Compute as of this time (ISO, with zone) instead of now, to reproduce one.")
    ] = None,
    chart: Annotated[bool, typer.Option(help="Draw the PNG chart.")] = True,
) -> None:
    """Write weekly-<week>.csv (UTF-8 with BOM, for Excel), weekly-<week>.json and weekly-<week>.png."""
    from schemas.dutylist import load_duty_list
    from services.sla.calendar import WorkingCalendar
    from services.sla.report_api import ROLE_CHOICES
    from services.sla.report_view import ReportStore, summary_of
    from services.sla.reports import GroupBy, check_period, last_complete_week, parse_week

    moment = _when(now)
    try:
        period = last_complete_week(moment) if week is None else parse_week(week)
        check_period(period, moment)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--week") from exc
    try:
        group = GroupBy(by)
    except ValueError as exc:
        raise typer.BadParameter("应为 unit、township 或 matter", param_hint="--by") from exc
    if roles not in ROLE_CHOICES:
        raise typer.BadParameter("应为 primary 或 all", param_hint="--roles")
    try:
        working = WorkingCalendar.with_files(calendar or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--calendar") from exc

    store = ReportStore(":memory:")
    if from_file:
        applied, skipped = load_dumps(store, from_file)
        typer.echo(f"read {applied} records from {len(from_file)} file(s), skipped {skipped}", err=True)
    else:
        applied = asyncio.run(load_broker(store))
        typer.echo(f"read {applied} records from the broker", err=True)
    summary = summary_of(
        store, period, moment, working, by=group, roles=ROLE_CHOICES[roles], duty=load_duty_list(duty_list)
    )
    store.close()

    out.mkdir(parents=True, exist_ok=True)
    stem = f"weekly-{period.label}" + ("" if group is GroupBy.UNIT else f"-{group.value}")
    written = [out / f"{stem}.csv", out / f"{stem}.json"]
    written[0].write_bytes(render_csv(summary))
    written[1].write_bytes(render_json(summary))
    if chart:
        from services.sla.report_chart import render_chart

        written.append(out / f"{stem}.png")
        written[2].write_bytes(render_chart(summary))
    if as_json:
        typer.echo(render_json(summary).decode("utf-8"), nl=False)
    else:
        print_table(summary)
        for path in written:
            typer.echo(f"wrote {path}")
