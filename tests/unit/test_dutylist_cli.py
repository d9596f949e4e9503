"""`gridhub dutylist validate|evaluate` and `gridhub route`: problems found, figures printed, one decision shown."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from gridhub.cli import app
from schemas.dutylist import DutyList, Problem, advisories, load_duty_list, reference_problems

runner = CliRunner()


def sample() -> dict[str, Any]:
    return json.loads(resources.files("schemas").joinpath("data/dutylist.json").read_text("utf-8"))  # type: ignore[no-any-return]


def matter(data: dict[str, Any], code: str) -> dict[str, Any]:
    return next(m for m in data["matters"] if m["code"] == code)  # type: ignore[no-any-return]


def unit(data: dict[str, Any], code: str) -> dict[str, Any]:
    return next(u for u in data["units"] if u["code"] == code)  # type: ignore[no-any-return]


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "dutylist.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def test_packaged_list_has_no_problems() -> None:
    duty = load_duty_list()
    assert reference_problems(duty) == []
    assert advisories(duty) == []


def broken() -> dict[str, Any]:
    data = sample()
    matter(data, "M08")["keywords"]["下水道"] = 4
    matter(data, "M09")["phrases"]["井盖缺失"] = 6
    matter(data, "M10")["excludes"] = ["垃圾"]
    matter(data, "M12")["tier"] = "county"
    data["units"].append(dict(unit(data, "PA-FL")))
    data["units"].append(
        {"code": "PA-DZ-01", "name": "东寨村村民委员会", "kind": "village-committee", "township": "PA-DZ"}
    )
    data["grids"][0]["village_code"] = "PA-HX-01"
    data["grids"][1]["village_code"] = "PA-NOPE"
    del data["grids"][2]["village_code"]
    data["grids"].append(dict(data["grids"][3]))
    data["channel_categories"]["gridapp"]["设施故障"] = ["M08", "M99"]
    data["channel_categories"]["110"]["其他"] = []
    return data


EXPECTED = [
    "单位编码 PA-FL 重复 / duplicate unit code PA-FL",
    "网格编码 PA-CG-02-001 重复 / duplicate grid code PA-CG-02-001",
    "村（居）委会 PA-DZ-01 所属乡镇 PA-DZ 没有综治中心 / village committee PA-DZ-01: township PA-DZ has no centre",
    "事项 M08 关键词“下水道”权重 4 超出 1–3 / matter M08: keyword '下水道' weight 4 outside 1-3",
    "事项 M09 短语“井盖缺失”权重 6 超出 1–5 / matter M09: phrase '井盖缺失' weight 6 outside 1-5",
    "事项 M10 的排除词“垃圾”也是它的关键词 / matter M10: exclude '垃圾' is also a term",
    "事项 M12 的层级 county 与主办单位 township 不符 / matter M12: tier county does not fit primary township",
    "网格 PA-CG-01-001 属于 PA-CG，其村（居）委会 PA-HX-01 却属于 PA-HX / "
    "grid PA-CG-01-001: township PA-CG but its village committee is in PA-HX",
    "网格 PA-CG-01-002 的村（居）委会 PA-NOPE 不存在 / "
    "grid PA-CG-01-002: village committee PA-NOPE is not a village-committee unit",
    "网格 PA-CG-01-003 未填写村（居）委会 / grid PA-CG-01-003: no village committee (village_code)",
    "gridapp 分类“设施故障”对应的事项 M99 不存在 / gridapp category 设施故障: unknown matter M99",
    "110 分类“其他”没有候选事项 / 110 category 其他: no candidate matter",
]


def test_model_rejects_every_reference_problem_at_once() -> None:
    with pytest.raises(ValidationError) as info:
        DutyList.model_validate(broken())
    text = str(info.value)
    for problem in EXPECTED:
        assert problem in text


def test_problems_can_be_collected_one_by_one() -> None:
    found: list[Problem] = []
    DutyList.model_validate(broken(), context={"problems": found})
    assert sorted(map(str, found)) == sorted(EXPECTED)


def test_validate_packaged_list_exits_0_with_a_summary() -> None:
    result = runner.invoke(app, ["dutylist", "validate"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("清单 2026.11-47.2（平安县）有效 / valid: 47 个事项 matters（乡镇属地 township 13")
    assert "55 个单位 units" in result.output and "56 个网格 grids" in result.output


def test_validate_lists_each_problem_and_exits_1(tmp_path: Path) -> None:
    result = runner.invoke(app, ["dutylist", "validate", str(write(tmp_path, broken()))])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0] == f"清单无效 / invalid duty list: {tmp_path / 'dutylist.json'}（{len(EXPECTED)} 个问题 problems）"
    assert sorted(line.removeprefix("  - ") for line in lines[1:]) == sorted(EXPECTED)


def test_validate_reports_shape_errors_and_bad_json(tmp_path: Path) -> None:
    data = sample()
    del data["county"]["command_centre"]
    data["confidence_threshold"] = 2
    result = runner.invoke(app, ["dutylist", "validate", str(write(tmp_path, data))])
    assert result.exit_code == 1
    assert "county.command_centre: 必填字段缺失（Field required）" in result.output
    assert "confidence_threshold: 数值过大" in result.output

    bad = tmp_path / "bad.json"
    bad.write_text('{"version": ', encoding="utf-8")
    result = runner.invoke(app, ["dutylist", "validate", str(bad)])
    assert result.exit_code == 1 and "JSON 格式错误（第 1 行第 13 列）" in result.output

    result = runner.invoke(app, ["dutylist", "validate", str(tmp_path / "missing.json")])
    assert result.exit_code == 1 and "无法读取文件 / cannot read" in result.output


def test_validate_notes_advisories_without_failing(tmp_path: Path) -> None:
    data = sample()
    unit(data, "PA-SQ-04")["aliases"] = ["郭家庄村", "北街"]  # 北街 is also 城关镇's
    result = runner.invoke(app, ["dutylist", "validate", str(write(tmp_path, data))])
    assert result.exit_code == 0, result.output
    assert "提示 / note: 地名“北街”属于多个乡镇（PA-CG、PA-SQ）" in result.output


def test_route_prints_the_decision_as_json() -> None:
    args = [
        "route",
        "--source",
        "12345",
        "--text",
        "小区下水道反流，污水漫到一楼楼道",
        "--grid",
        "PA-CG-01-001",
        "--json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "下水道" in result.output  # ensure_ascii=False
    out = json.loads(result.output)
    assert out["matter"] == {"code": "M08", "name": "供排水设施故障（下水道堵塞、污水反流、停水）"}
    assert out["units"] == [
        {"code": "PA-CG", "name": "城关镇综治中心", "role": "primary"},
        {"code": "PA-ZJJ", "name": "平安县住房和城乡建设局", "role": "co-operating"},
    ]
    assert (out["tier"], out["rule"], out["triage"], out["duty_list_version"]) == (
        "township",
        "keywords",
        False,
        "2026.11-47.2",
    )
    assert (out["township"], out["village"], out["grid"]) == ("PA-CG", "PA-CG-01", "PA-CG-01-001")
    assert [h["word"] for h in out["hits"]] == ["下水道", "反流", "污水"]
    assert out["confidence"] == 0.89 and out["reason"].endswith("清单 2026.11-47.2")


def test_route_with_coordinates_category_and_plain_output() -> None:
    args = ["route", "--source", "110", "--text", "报警人称楼道有煤气味", "--category", "燃气泄漏"]
    result = runner.invoke(app, [*args, "--lat", "35.1013", "--lon", "114.2030"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:4] == [
        "事项 matter: M40 安全隐患与突发事件（燃气泄漏、火情、坍塌）",
        "层级 tier: county；规则 rule: channel-category；置信度 confidence: 0.90",
        "  primary       PA-YJJ     平安县应急管理局",
        "  co-operating  PA-CG      城关镇综治中心",
    ]


def test_route_with_another_list_and_bad_arguments(tmp_path: Path) -> None:
    data = sample()
    data["version"] = "2027.01-test"
    path = write(tmp_path, data)
    result = runner.invoke(app, ["route", "--source", "wechat", "--text", "查快递", "--list", str(path), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert (out["triage"], out["duty_list_version"], out["units"][0]["code"]) == (True, "2027.01-test", "PA-ZZZX")

    assert runner.invoke(app, ["route", "--source", "fax", "--text", "x"]).exit_code == 2
    assert runner.invoke(app, ["route", "--source", "wechat", "--text", "x", "--lat", "35.1"]).exit_code == 2


def test_evaluate_prints_both_parts_and_json() -> None:
    result = runner.invoke(app, ["dutylist", "evaluate"])
    assert result.exit_code == 0, result.output
    for heading in (
        "调参 tuning",
        "留出 held-out",
        "单位准确率（已分派）",
        "转人工分拨率",
        "每事项 per matter",
        "混淆前十",
    ):
        assert heading in result.output

    result = runner.invoke(app, ["dutylist", "evaluate", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["duty_list_version"] == "2026.11-47.2"
    assert set(out["parts"]) == {"tuning", "held-out", "all"}
    assert out["parts"]["all"]["events"] == 359
    assert set(out["parts"]["tuning"]["per_matter"]) == {f"M{n:02d}" for n in range(1, 48)}


def test_evaluate_lists_mistakes_of_one_part_on_request(tmp_path: Path) -> None:
    devset = tmp_path / "tiny.jsonl"
    row = {
        "id": "t-1",
        "channel": "12345",
        "text": "小区下水道反流",
        "category": None,
        "grid": None,
        "lat": None,
        "lon": None,
        "address": "石桥镇",
        "expected_matter": "M08",
        "expected_unit": "PA-HX",
        "expected_township": "PA-HX",
    }
    devset.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["dutylist", "evaluate", "--devset", str(devset), "--errors", "all"])
    assert result.exit_code == 0, result.output
    assert "t-1 [12345] 应为 M08/PA-HX 实为 M08/PA-SQ：小区下水道反流" in result.output
    assert runner.invoke(app, ["dutylist", "evaluate", "--errors", "some"]).exit_code == 2
