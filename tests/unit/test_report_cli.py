"""`gridhub report weekly --from-file`: CSV (UTF-8 with BOM), JSON and a PNG chart without tofu."""

from __future__ import annotations

import csv
import io
import json
import warnings
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from gridhub.cli import app
from services.sla.report_chart import cjk_font_path, render_chart
from services.sla.reports import GroupBy, Summary, summarise
from tests.unit.report_data import write_dumps
from tests.unit.test_sla_reports import AFTER, CAL, W47, week_tasks

NOW = "2026-11-30T09:00:00+08:00"
runner = CliRunner()


@pytest.fixture(scope="module")
def dumps(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_dumps(week_tasks(), tmp_path_factory.mktemp("dumps"))


def run_weekly(out: Path, dumps: tuple[Path, Path], *extra: str) -> str:
    args = ["report", "weekly", "--week", "2026-W47", "--out", str(out), "--now", NOW]
    for path in dumps:
        args += ["--from-file", str(path)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = runner.invoke(app, [*args, *extra], catch_exceptions=False)
    assert not [w for w in caught if "missing from font" in str(w.message)], [str(w.message) for w in caught]
    assert result.exit_code == 0, result.output
    return result.stdout


def test_weekly_writes_csv_json_and_png(tmp_path: Path, dumps: tuple[Path, Path]) -> None:
    out = tmp_path / "bulletin"
    stdout = run_weekly(out, dumps)
    assert "平安县周通报 2026-W47（2026-11-16 至 2026-11-22）" in stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "weekly-2026-W47.csv",
        "weekly-2026-W47.json",
        "weekly-2026-W47.png",
    ]

    raw = (out / "weekly-2026-W47.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs to read UTF-8
    lines = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert lines[0][:8] == ["排名", "编码", "名称", "受理", "办结", "应办结", "按期办结", "按期办结率(%)"]
    assert [line[:3] for line in lines[1:]] == [
        ["1", "PA-CG", "城关镇综治中心"],
        ["1", "PA-HX", "河西乡综治中心"],
        ["3", "PA-ZJJ", "平安县住房和城乡建设局"],
        ["", "PA-SCJGJ", "平安县市场监督管理局"],
        ["合计", "*", "平安县"],
    ]
    header = lines[0]
    cg = dict(zip(header, lines[1], strict=True))
    assert cg["按期办结率(%)"] == "66.7" and cg["回复率(%)"] == "66.7" and cg["满意度(%)"] == "50.0"
    assert cg["办理时长中位数(工作小时)"] == "24" and cg["办理时长P90(工作小时)"] == "62.4"
    assert cg["平均评分(1-5)"] == "3.5" and cg["在办"] == "1" and cg["超期"] == "0"
    scj = dict(zip(header, lines[4], strict=True))
    assert scj["按期办结率(%)"] == "" and scj["超期"] == "1"
    county = dict(zip(header, lines[5], strict=True))
    assert county["按期办结率(%)"] == "63.6" and county["应办结"] == "11" and county["超期"] == "2"

    # The JSON is the pure function's bulletin, figure for figure (task ids aside, nothing differs).
    document = json.loads((out / "weekly-2026-W47.json").read_text("utf-8"))
    expected = summarise(week_tasks(), W47, AFTER, CAL, county_name="平安县").as_dict()
    assert document["rows"] == expected["rows"]
    assert document["county"] == expected["county"]
    assert document["as_of"] == "2026-11-23T00:00:00+08:00"
    assert "城关镇综治中心" in (out / "weekly-2026-W47.json").read_text("utf-8")  # not \\u-escaped

    with Image.open(out / "weekly-2026-W47.png") as image:
        assert image.format == "PNG"
        width, height = image.size
        assert width == 1650 and 500 <= height <= 1200  # 11 in at 150 dpi; 2.2 in + 0.42 in per unit
        colours = {colour for _, colour in image.convert("RGB").getcolors(maxcolors=1 << 20) or []}
    assert (0x2E, 0x7D, 0x32) in colours and (0xEF, 0x6C, 0x00) in colours  # above and below the county


def test_weekly_json_on_stdout_and_other_groupings(tmp_path: Path, dumps: tuple[Path, Path]) -> None:
    stdout = run_weekly(tmp_path, dumps, "--json", "--by", "township", "--no-chart")
    document = json.loads(stdout)
    assert document["by"] == "township"
    assert [(r["key"], r["name"], r["rank"]) for r in document["rows"]] == [
        ("PA-HX", "河西乡", 1),
        ("PA-CG", "城关镇", 2),
        ("-", "未定位乡镇", None),
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "weekly-2026-W47-township.csv",
        "weekly-2026-W47-township.json",
    ]


def test_weekly_refuses_a_bad_week(tmp_path: Path, dumps: tuple[Path, Path]) -> None:
    args = [
        "report",
        "weekly",
        "--week",
        "2026-W50",
        "--now",
        NOW,
        "--out",
        str(tmp_path),
        "--from-file",
        str(dumps[0]),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "尚未开始" in result.output
    result = runner.invoke(app, [*args[:3], "47", *args[4:]])
    assert result.exit_code == 2 and "ISO 周" in result.output


def test_weekly_skips_lines_that_are_not_tasks(tmp_path: Path, dumps: tuple[Path, Path]) -> None:
    junk = tmp_path / "junk.jsonl"
    junk.write_text('not json\n{"hello": 1}\n\n[1, 2]\n', encoding="utf-8")
    result = runner.invoke(
        app,
        ["report", "weekly", "--week", "2026-W47", "--now", NOW, "--out", str(tmp_path), "--no-chart",
         "--from-file", str(junk), "--from-file", str(dumps[0]), "--from-file", str(dumps[1])],
    )  # fmt: skip
    assert result.exit_code == 0
    assert "skipped 3" in result.stderr and "junk.jsonl:1" in result.stderr


def summary_named(names: dict[str, str]) -> Summary:
    summary = summarise(week_tasks(), W47, AFTER, CAL, by=GroupBy.UNIT, county_name="平安县")
    for row in summary.rows:
        row.name = names.get(row.key, row.name)
    return summary


def test_the_packaged_font_draws_chinese() -> None:
    path = cjk_font_path()
    assert path is not None and path.endswith("NotoSansSC-Regular.otf")


def test_a_character_no_font_has_falls_back_to_the_code_without_tofu() -> None:
    # U+2A6D6 (CJK Extension B) is in no font here: that unit is shown by its code, with no glyph warning.
    summary = summary_named({"PA-CG": "\U0002a6d6家村综治中心"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        png = render_chart(summary)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


def test_without_any_cjk_font_the_chart_is_drawn_in_codes_and_english() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        png = render_chart(summary_named({}), use_packaged_font=False)
    with Image.open(io.BytesIO(png)) as image:
        assert image.size[0] == 1650
