"""Router rules on the packaged 47-matter list: explicit code, channel category (mapped or coarse), words, place."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import pytest

from schemas import EventNormalised, TaskRole, Tier
from schemas.dutylist import DutyList, load_duty_list
from services.router.decide import (
    CATEGORY_DEFAULT_CONFIDENCE,
    classify,
    decide,
    place,
    router_index,
)
from services.router.evaluation import report_event
from services.router.tasks import build_tasks
from services.router.text import Occurrences, confidence, event_text, normalise

NOW = datetime(2026, 11, 20, 1, 31, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
def duty() -> DutyList:
    return load_duty_list()


def ev(source: str, text: str, **kwargs: Any) -> EventNormalised:
    return report_event(source, text, **kwargs)


def roles(decision: Any) -> list[tuple[str, TaskRole]]:
    return [(a.unit_code, a.role) for a in decision.assignments]


# --- classification rules, in order ---------------------------------------------------------------------


def test_explicit_matter_code_wins_over_channel_and_words(duty: DutyList) -> None:
    cls = classify(ev("gridapp", "小区下水道反流", category="m42", grid="PA-CG-01-001"), duty)
    assert cls.matter is not None and cls.matter.code == "M42"
    assert (cls.rule, cls.confidence, cls.reason) == ("explicit-category", 1.0, "报送时已指定事项 M42")


def test_mapped_channel_category_decides(duty: DutyList) -> None:
    cls = classify(ev("110", "报警人称电梯停在两层之间，内有3人", category="电梯困人"), duty)
    assert cls.matter is not None and cls.matter.code == "M18"
    assert (cls.rule, cls.confidence) == ("channel-category", 0.9)
    assert cls.reason == "110 分类“电梯困人”对应事项 M18"


def test_coarse_channel_category_narrows_and_the_words_choose(duty: DutyList) -> None:
    # 设施故障 covers water, streets, power and telecoms: the words pick the street light (M09).
    decision = decide(ev("gridapp", "东街十字路口路灯不亮已经一周", category="设施故障", grid="PA-CG-01-002"), duty)
    r = decision.routing
    assert (r.rule, r.matter_code, r.triage) == ("channel-candidates", "M09", False)
    assert roles(decision) == [("PA-ZJJ", TaskRole.PRIMARY), ("PA-CG", TaskRole.CO_OPERATING)]
    assert r.reason.startswith("网格通 分类“设施故障”限定候选 M08、M09、M42、M44（各加 2 分）；文本关键词 M09：")
    assert "分类“设施故障”+2" in r.reason


def test_coarse_110_noise_category_is_a_neighbour_dispute_when_the_words_say_so(duty: DutyList) -> None:
    text = "报警人称楼上邻居深夜吵闹，双方多次吵架"
    decision = decide(ev("110", text, category="噪声扰民", address="城关镇西关社区锦绣花园"), duty)
    assert decision.routing.matter_code == "M35"
    assert roles(decision) == [("PA-CG", TaskRole.PRIMARY), ("PA-SFJ", TaskRole.CO_OPERATING)]


def test_coarse_category_without_words_takes_its_first_candidate(duty: DutyList) -> None:
    cls = classify(ev("gridapp", "现场已拍照，请处理", category="安全隐患", grid="PA-SQ-01-001"), duty)
    assert cls.matter is not None and cls.matter.code == "M40"
    assert (cls.rule, cls.confidence) == ("channel-category", CATEGORY_DEFAULT_CONFIDENCE)
    assert "正文无关键词，取首选 M40" in cls.reason


def test_unmapped_channel_category_counts_as_words(duty: DutyList) -> None:
    # 110 "纠纷" is not in the list: the word itself (M35 纠纷 1) adds to the text.
    cls = classify(ev("110", "报警人称与邻居发生争执", category="纠纷"), duty)
    assert cls.matter is not None and cls.matter.code == "M35"
    assert cls.rule == "keywords" and "纠纷(1)" in cls.reason


def test_text_reason_names_words_weights_runner_up_and_list_version(duty: DutyList) -> None:
    decision = decide(ev("12345", "村东头小作坊偷排污水，河沟里有异味", address="河西乡柳村"), duty)
    r = decision.routing
    assert (r.rule, r.matter_code) == ("keywords", "M21")
    assert r.reason == (
        "文本关键词 M21：偷排(2)、异味(2)，计 4 分；次选 M22 河湖坑塘管护（河长制）（2 分）；置信度 0.74；"
        "地址含“河西乡柳村”；县直部门办理；清单 2026.11-47.2"
    )
    assert r.confidence == confidence(4, 2) == 0.74


def test_runner_up_with_the_same_primary_unit_does_not_lower_confidence(duty: DutyList) -> None:
    # 社保 and 断缴 (M29) beat 拖欠工资 (M30); both go to 人社局, so the unit is sure.
    cls = classify(ev("petition", "单位拖欠工资还给我断缴社保"), duty)
    assert cls.matter is not None and cls.matter.code == "M29"
    assert cls.confidence == confidence(6, 0) == 1.0
    assert "次选 M30 拖欠农民工工资（3 分，主办单位相同）" in cls.reason


def test_a_word_counts_where_the_segmenter_agrees(duty: DutyList) -> None:
    index = router_index(duty).text
    # 口角 (M35) straddles 路口/角落; 安检 (M43) straddles 公安/检查: neither counts.
    assert index.find("路口角落有人抽烟，公安检查")[0] == []
    # 拉沙 (M02) counts at the start of 拉/沙子; 被狗咬 covers 狗咬 and 狗.
    assert index.find("有人在河里拉沙子")[0] == ["河里", "拉沙"]
    assert index.find("孩子被狗咬了")[0] == ["被狗咬"]


def test_words_are_found_around_emoji_and_full_width_text(duty: DutyList) -> None:
    index = router_index(duty).text
    # An emoji is two UTF-16 units: the search falls back to characters, offsets stay right.
    assert index.find("😀孩子被狗咬了😀有人在河里拉沙子")[0] == ["被狗咬", "河里", "拉沙"]
    assert normalise("ＫＴＶ噪音，Ａ栋　３号") == "ktv噪音,a栋 3号"


def test_occurrences_are_whole_characters_overlapping_ones_too() -> None:
    words = Occurrences({"狗咬": 1, "被狗咬": 2, "\u2d65": 3})
    assert sorted(words.of("被狗咬了")) == [(3, 1), (3, 2)]  # both end after 咬
    # "中文" is 4E 2D 65 87 in UTF-16: U+2D65 (2D 65) sits across the two characters, so it is no match.
    assert words.of("中文") == []
    assert words.of("中\u2d65") == [(2, 3)]
    assert words.of("😀狗咬") == [(3, 1)]


def test_phrases_count_anywhere_and_outweigh(duty: DutyList) -> None:
    scores = router_index(duty).text.score("路边井盖缺失了")
    best = scores.best
    assert best is not None and best.matter.code == "M09"
    assert [h.label() for h in best.hits] == ["「井盖缺失」(3)"]


def test_an_exclude_word_rules_a_matter_out(duty: DutyList) -> None:
    cls = classify(ev("12345", "孩子被狗咬了，去打狂犬疫苗，狗主人不管"), duty)
    assert cls.matter is not None and cls.matter.code == "M15"
    assert "排除 M46（含“被狗咬”）" in cls.reason


def test_no_word_and_a_tie_go_to_triage(duty: DutyList) -> None:
    nothing = decide(ev("wechat", "你们这个公众号能不能查快递"), duty)
    assert nothing.routing.triage and nothing.routing.rule == "triage" and nothing.matter is None
    assert roles(nothing) == [("PA-ZZZX", TaskRole.PRIMARY)]
    assert nothing.tier is Tier.COMMAND_CENTRE
    assert confidence(3, 3) < duty.confidence_threshold <= confidence(1, 0)


def test_event_text_drops_the_channel_tag_and_a_repeated_headline() -> None:
    assert event_text("[110 燃气泄漏] 楼道有煤气味", "楼道有煤气味") == "楼道有煤气味"
    assert event_text("[投诉] 小区停水", "两天了没人管") == "小区停水\n两天了没人管"


# --- territory --------------------------------------------------------------------------------------------


def test_grid_code_places_township_and_village(duty: DutyList) -> None:
    p = place(ev("gridapp", "路灯不亮", grid="PA-SM-04-003"), duty)
    assert (p.grid and p.grid.code, p.township, p.village) == ("PA-SM-04-003", "PA-SM", "PA-SM-04")
    assert p.where == "网格 PA-SM-04-003（双庙乡孙寨村）"


def test_coordinates_place_by_the_nearest_grid_centre(duty: DutyList) -> None:
    p = place(ev("wechat", "垃圾没人清运", lat=35.1722, lon=114.2881), duty)
    assert (p.grid and p.grid.code, p.township, p.village) == ("PA-SQ-03-002", "PA-SQ", "PA-SQ-03")
    assert p.where.startswith("坐标距网格 PA-SQ-03-002（石桥镇马营村）中心 0.")


def test_coordinates_beyond_the_lists_distance_place_nothing(duty: DutyList) -> None:
    strict = duty.model_copy(update={"max_grid_distance_km": 0.05})
    assert place(ev("wechat", "垃圾", lat=35.1722, lon=114.2881), strict).township is None
    assert place(ev("wechat", "垃圾", lat=35.1730, lon=114.2895), strict).township == "PA-SQ"


@pytest.mark.parametrize(
    ("address", "township", "village", "where"),
    [
        ("华府名苑7号楼", "PA-CG", "PA-CG-03", "地址含“华府名苑”"),  # a landmark (小区) only
        ("王庄村", "PA-HX", "PA-HX-02", "地址含“王庄村”"),  # a village only
        ("黄庄镇李寨村", "PA-HZ", "PA-HZ-04", "地址含“黄庄镇李寨村”"),  # the grid registry's village name
        ("黄庄镇高庄村东头", "PA-HZ", "PA-HZ-02", "地址含“黄庄镇高庄村”"),
        ("城关镇人民广场", "PA-CG", "PA-CG-01", "地址含“城关镇”“人民广场”"),
        ("石桥镇北街", "PA-SQ", None, "地址含“石桥镇”"),  # 北街 is also 城关镇's: the township named wins
        ("北京市朝阳区", None, None, "无网格、坐标或乡镇信息"),
    ],
)
def test_names_in_the_address_place_township_and_village(
    duty: DutyList, address: str, township: str | None, village: str | None, where: str
) -> None:
    p = place(ev("12345", "路灯不亮", address=address), duty)
    assert (p.grid, p.township, p.village, p.where) == (None, township, village, where)


def test_a_township_named_only_in_the_text_places_the_event(duty: DutyList) -> None:
    decision = decide(ev("wechat", "北岗那边又有人焚烧秸秆，浓烟很大"), duty)
    assert (decision.township, decision.routing.matter_code) == ("PA-BG", "M19")
    assert roles(decision) == [
        ("PA-BG", TaskRole.PRIMARY),
        ("PA-STHJ", TaskRole.CO_OPERATING),
        ("PA-NYNCJ", TaskRole.CO_OPERATING),
    ]
    assert "正文提到“北岗”" in decision.routing.reason


# --- assignment -------------------------------------------------------------------------------------------


def test_township_matter_goes_to_its_centre_and_co_operating_units_get_copies(duty: DutyList) -> None:
    event = ev("12345", "暴雨后村里积水内涝，好几户进水", address="双庙乡孙寨村")
    decision = decide(event, duty)
    assert (decision.routing.matter_code, decision.tier, decision.village) == ("M39", Tier.TOWNSHIP, "PA-SM-04")
    tasks = build_tasks(event, decision, duty, NOW)
    assert [(t.unit_code, t.role) for t in tasks] == [
        ("PA-SM", TaskRole.PRIMARY),
        ("PA-YJJ", TaskRole.CO_OPERATING),
        ("PA-SLJ", TaskRole.CO_OPERATING),
        ("PA-ZJJ", TaskRole.CO_OPERATING),
    ]
    assert {t.decision.village for t in tasks} == {"PA-SM-04"}


def test_township_matter_without_territory_is_triaged(duty: DutyList) -> None:
    decision = decide(ev("12345", "暴雨后村里积水内涝，好几户进水"), duty)
    assert decision.routing.triage and decision.routing.matter_code == "M39"
    assert "属地事项但无法确定乡镇" in decision.routing.reason
    assert roles(decision) == [("PA-ZZZX", TaskRole.PRIMARY)]


def test_county_matter_without_territory_goes_to_the_department_alone(duty: DutyList) -> None:
    decision = decide(ev("wechat", "超市卖过期变质的熟食"), duty)
    assert (decision.routing.matter_code, decision.routing.triage, decision.tier) == ("M16", False, Tier.COUNTY)
    assert roles(decision) == [("PA-SCJGJ", TaskRole.PRIMARY)]  # no township to copy


def test_every_matter_routes_by_its_own_code(duty: DutyList) -> None:
    for matter in duty.matters:
        decision = decide(ev("12345", "请处理", category=matter.code, address="河西乡柳村"), duty)
        primary = "PA-HX" if matter.primary == "township" else matter.primary
        assert decision.assignments[0].unit_code == primary, matter.code
        assert decision.tier is matter.tier


def test_the_packaged_file_is_the_list_loaded() -> None:
    data = json.loads(resources.files("schemas").joinpath("data/dutylist.json").read_text("utf-8"))
    assert DutyList.model_validate(data) == load_duty_list()


def test_coarse_category_whose_candidates_are_all_ruled_out_goes_to_triage() -> None:
    data = json.loads(resources.files("schemas").joinpath("data/dutylist.json").read_text("utf-8"))
    next(m for m in data["matters"] if m["code"] == "M46")["excludes"] = ["口罩"]
    data["channel_categories"]["gridapp"]["卫生防疫"] = ["M46"]
    custom = DutyList.model_validate(data)
    decision = decide(ev("gridapp", "有人在卖口罩", category="卫生防疫", grid="PA-CG-01-001"), custom)
    assert decision.routing.triage and decision.matter is None
    assert "候选均被排除" in decision.routing.reason
