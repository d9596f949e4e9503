"""`gridhub deadline`: every clock's due time with its explanation, without a broker.

Real 2026 calendar (chinesecalendar); tests/unit/data/sample-2027-holiday-cn.json is made-up TEST DATA
(2027-01-01..03 off, 2027-01-09 a make-up Saturday), not the real 2027 schedule.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gridhub.cli import app

runner = CliRunner()
SAMPLE_2027 = Path(__file__).parent / "data" / "sample-2027-holiday-cn.json"


def test_matter_prints_every_clock_with_its_explanation() -> None:
    result = runner.invoke(app, ["deadline", "--matter", "M08", "--received", "2026-09-30T10:00+08:00"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert (
        lines[0]
        == "事项 M08 供排水设施故障（下水道堵塞、污水反流、停水）；时限类别 public-service（平安县 清单 2026.11-47.2）"
    )
    assert lines[1] == "受理 received: 2026-09-30T10:00:00+08:00"
    assert lines[2] == "签收 ack      截止 due: 2026-09-30T11:00:00+08:00"
    assert lines[4] == "联系 contact  截止 due: 2026-09-30T11:00:00+08:00"
    assert lines[6] == "办结 resolve  截止 due: 2026-10-10T00:00:00+08:00"
    assert lines[7].strip() == (
        "2 个工作日：受理 2026-09-30 10:00，当日不计入，自次日起算（民法典第201条）；计入 2026-10-08..10-09；"
        "跳过 2026-10-01..10-07 国庆节；截止 2026-10-09 24:00，即 2026-10-10 00:00 (Asia/Shanghai) 前办结"
    )
    assert lines[8] == "回复 reply    截止 due: 办结后起算 starts when resolved"
    assert lines[9].strip().startswith("自办结时起算：1 个工作日，办结当日不计入")
    assert lines[10] == "日历 calendar: chinesecalendar"
    assert result.stderr == ""


def test_json_is_utf8_and_names_the_reply_clock_as_starting_at_resolution() -> None:
    result = runner.invoke(app, ["deadline", "--class", "urgent", "--received", "2026-02-16T23:30:00+08:00", "--json"])
    assert result.exit_code == 0, result.output
    assert "\\u" not in result.stdout and "签收" in result.stdout
    report = json.loads(result.stdout)
    assert report["deadline_class"] == "urgent" and report["matter"] is None
    assert [(c["kind"], c["due_at"]) for c in report["clocks"]] == [
        ("ack", "2026-02-17T00:30:00+08:00"),
        ("contact", "2026-02-17T00:30:00+08:00"),
        ("resolve", "2026-02-17T01:30:00+08:00"),  # 2 hours, wall clock, in the middle of 春节
        ("reply", None),
    ]
    reply = report["clocks"][3]
    assert (reply["starts"], reply["started_at"], reply["amount"], reply["unit"]) == (
        "resolved",
        None,
        1,
        "working-days",
    )
    assert report["calendar"] == {"files": [], "fallback_years": []}


def test_resolved_computes_the_reply_clock() -> None:
    result = runner.invoke(
        app,
        [
            "deadline",
            "--matter",
            "M08",
            "--received",
            "2026-02-12T09:00+08:00",
            "--resolved",
            "2026-02-13T18:00+08:00",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    resolve, reply = report["clocks"][2], report["clocks"][3]
    assert resolve["due_at"] == "2026-02-15T00:00:00+08:00"  # 02-13 and the make-up Saturday 02-14
    assert (reply["started_at"], reply["due_at"]) == ("2026-02-13T18:00:00+08:00", "2026-02-15T00:00:00+08:00")
    assert reply["explanation"].startswith("1 个工作日：办结 2026-02-13 18:00，当日不计入")
    assert report["resolved_at"] == "2026-02-13T18:00:00+08:00"


def test_2027_without_a_calendar_file_falls_back_and_warns() -> None:
    result = runner.invoke(app, ["deadline", "--class", "standard", "--received", "2026-12-30T09:00+08:00", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    resolve = report["clocks"][2]
    assert resolve["due_at"] == "2027-01-09T00:00:00+08:00"
    assert (resolve["calendar_fallback"], resolve["fallback_years"]) == (True, [2027])
    assert report["calendar"]["fallback_years"] == [2027]
    assert result.stderr.startswith("注意 warning: 2027 年无法定节假日数据，已按仅周末休息计算")
    assert "no statutory calendar for 2027" in result.stderr


def test_2027_with_a_calendar_file() -> None:
    result = runner.invoke(
        app,
        [
            "deadline",
            "--class",
            "standard",
            "--received",
            "2026-12-30T09:00+08:00",
            "--calendar",
            str(SAMPLE_2027),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    resolve = report["clocks"][2]
    # 12-31, then 01-01..03 off (test data), 01-04..08, 01-09 (make-up Saturday, test data): 7 days.
    assert resolve["due_at"] == "2027-01-10T00:00:00+08:00"
    assert resolve["calendar_fallback"] is False
    assert "跳过 2027-01-01..01-03 元旦" in resolve["explanation"]
    assert report["calendar"] == {"files": ["file:sample-2027-holiday-cn.json"], "fallback_years": []}
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--matter", "M99", "--received", "2026-09-30T10:00+08:00"], "未知事项 / unknown matter 'M99'"),
        (["--matter", "M08", "--received", "2026-09-30T10:00"], "--received 缺少时区 / needs a UTC offset"),
        (["--matter", "M08", "--received", "yesterday"], "--received 不是 ISO 8601 时间"),
        (["--received", "2026-09-30T10:00+08:00"], "给出 --matter 或 --class 之一"),
        (
            ["--matter", "M08", "--class", "urgent", "--received", "2026-09-30T10:00+08:00"],
            "give exactly one of --matter and --class",
        ),
        (
            ["--class", "urgent", "--received", "2026-09-30T10:00+08:00", "--resolved", "2026-09-30T09:00+08:00"],
            "--resolved 早于 --received",
        ),
        (
            ["--class", "urgent", "--received", "2026-09-30T10:00+08:00", "--list", "/nonexistent/list.json"],
            "无法读取清单 / cannot read duty list /nonexistent/list.json",
        ),
    ],
)
def test_errors_are_one_message_and_exit_2(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["deadline", *args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_bad_or_missing_calendar_file_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "2027.json"
    bad.write_text('{"year": 2027, "days": []}', encoding="utf-8")
    base = ["deadline", "--class", "standard", "--received", "2026-12-30T09:00+08:00"]
    result = runner.invoke(app, [*base, "--calendar", str(bad)])
    assert result.exit_code == 2
    assert result.stderr.startswith("日历文件无效 / bad calendar file: ")
    assert "'days' is empty" in result.stderr
    missing = runner.invoke(app, [*base, "--calendar", str(tmp_path / "none.json")])
    assert missing.exit_code == 2
    assert "无法读取日历文件 / cannot read calendar file" in missing.stderr


def test_unknown_class_is_a_usage_error() -> None:
    result = runner.invoke(app, ["deadline", "--class", "soon", "--received", "2026-09-30T10:00+08:00"])
    assert result.exit_code == 2
