"""The router's fallbacks: likeness to the list's own matter texts settles a tie between units or a wordless report."""

from __future__ import annotations

import json
from itertools import pairwise
from typing import Any

import pytest

from gridhub.dutylist_cli import decision_dict
from schemas import DeadlineClass, TaskRole, Tier
from schemas.dutylist import DutyList, Matter, load_duty_list
from services.router.decide import classify, decide, router_index
from services.router.evaluation import DevEvent, figures, report_event, run
from services.router.fallback import (
    MIN_LEAD,
    break_tie,
    nearest,
    similarity_confidence,
    tie_confidence,
)
from services.router.similarity import SimilarityIndex, gram_set, ngrams, shared_words
from services.router.text import MatterScore, confidence


@pytest.fixture(scope="module")
def duty() -> DutyList:
    return load_duty_list()


def matter(code: str, name: str, description: str, keywords: dict[str, int], primary: str) -> Matter:
    return Matter(
        code=code,
        name=name,
        description=description,
        keywords=keywords,
        primary=primary,
        tier=Tier.COUNTY,
        deadline_class=DeadlineClass.STANDARD,
    )


# Three small matters: two units for water, one for roads.
WATER = matter("W1", "供水设施", "自来水管破裂、停水、水压低", {"停水": 2, "水管": 1}, "WATER-CO")
SEWER = matter("W2", "排水设施", "下水道堵塞、污水反流、雨水井", {"下水道": 2}, "TOWN")
ROAD = matter("R1", "道路", "路面坑洼、道路破损、井盖缺失", {"坑洼": 2, "井盖": 2}, "ROADS")


def score(m: Matter, weight: int) -> MatterScore:
    return MatterScore(m, weight, ())


# --- n-grams and the index ---------------------------------------------------------------------------------


def test_ngrams_stay_within_runs_of_characters_and_the_set_agrees() -> None:
    grams = ngrams("水管，破裂ab")
    assert {"水", "水管", "破裂", "ab"} <= set(grams)
    assert "管，" not in grams and "管破" not in grams  # never across punctuation
    for text in ("水管，破裂ab", "下水道反流了三天", "", "a"):
        assert gram_set(text) == set(ngrams(text))


def test_shared_words_join_overlapping_ngrams_into_what_a_person_reads() -> None:
    weights = {"防护": 0.2, "护用": 0.1, "用品": 0.1, "防护用": 0.1, "粉尘": 0.3, "粉": 0.05}
    assert shared_words("工人没戴防护用品，粉尘大", weights) == ("防护用品", "粉尘")
    assert shared_words("粉", {"粉": 0.1}) == ("粉",)  # only single characters: the weightiest shown


def test_the_most_similar_matter_ranks_first_and_unrelated_ones_are_left_out() -> None:
    index = SimilarityIndex((WATER, SEWER, ROAD))
    ranked = index.rank("家里自来水管裂了，没有水")
    codes = [s.matter.code for s in ranked]
    assert codes[0] == "W1" and "R1" not in codes
    assert all(a.score >= b.score for a, b in pairwise(ranked))
    assert index.rank("今天天气不错") == ()


def test_contest_gives_the_rival_of_another_unit_and_respects_candidates_and_exclusions() -> None:
    index = SimilarityIndex((WATER, SEWER, ROAD))
    contest = index.contest("水管破裂，下水道也堵了")
    assert contest is not None
    best, rival = contest
    assert {best.matter.code, rival.matter.code if rival else None} == {"W1", "W2"}
    only_road = index.contest("水管破裂，路面坑洼", among=[2])
    assert only_road is not None and only_road[0].matter.code == "R1" and only_road[1] is None
    without_water = index.contest("水管破裂，路面坑洼", excluded={"W1"})
    assert without_water is not None and without_water[0].matter.code == "R1"


def test_explain_names_the_shared_words() -> None:
    index = SimilarityIndex((WATER, SEWER, ROAD))
    best = index.rank("小区停水两天了，水压一直很低")[0]
    assert best.matter.code == "W1"
    assert "停水" in index.explain("小区停水两天了，水压一直很低", best).shared


# --- confidences --------------------------------------------------------------------------------------------


def test_a_settled_tie_is_less_sure_than_the_same_words_unrivalled() -> None:
    for weight in (1, 2, 3, 5):
        assert tie_confidence(weight, 1.0) < confidence(weight, 0)
        assert tie_confidence(weight, 0.3) <= tie_confidence(weight, 0.6) <= tie_confidence(weight, 1.0)
    # No lead to speak of settles nothing; one weight-1 word is too weak whatever the lead.
    assert tie_confidence(3, MIN_LEAD - 0.01) == 0.0
    assert tie_confidence(1, 1.0) < 0.5 <= tie_confidence(3, MIN_LEAD)


def test_similarity_alone_needs_a_clear_lead_and_a_strong_likeness() -> None:
    assert similarity_confidence(0.0, 1.0) == 0.0
    assert similarity_confidence(0.5, MIN_LEAD - 0.01) == 0.0
    assert similarity_confidence(0.05, 1.0) < 0.5  # a faint likeness never routes
    assert similarity_confidence(0.3, 0.5) >= 0.5
    assert similarity_confidence(0.3, 1.0) < confidence(2, 0)


# --- the fallbacks on their own -----------------------------------------------------------------------------


def test_a_tie_is_settled_only_among_the_tied_matters() -> None:
    index = SimilarityIndex((WATER, SEWER, ROAD))
    text = "停水了，下水道也反流，路面坑洼井盖缺失道路破损"  # most like the roads, which are not tied
    settled = break_tie(text, [score(WATER, 2), score(SEWER, 2)], index, 0.5)
    assert settled is not None
    found, chosen, other = settled
    assert found.matter.code == "W2" and chosen.matter is SEWER and other.matter is WATER
    assert found.confidence == tie_confidence(2, found.lead) and found.confidence >= 0.5
    assert found.reason.startswith("文本关键词 W1、W2 同分（2 分），按清单事项文本相似度")
    assert "次选 W1 供水设施" in found.reason and "共同字词" in found.reason


def test_a_tie_the_texts_cannot_tell_apart_stays_a_tie() -> None:
    index = SimilarityIndex((WATER, SEWER, ROAD))
    assert break_tie("今天天气不错", [score(WATER, 2), score(ROAD, 2)], index, 0.5) is None
    # 设施 is in both names: a lead of (0.203 − 0.188) / 0.203 settles nothing, however strong the words.
    assert break_tie("设施", [score(WATER, 5), score(SEWER, 5)], index, 0.5) is None
    # One weight-1 word each is too weak to route, however clear the likeness.
    assert break_tie("水管 下水道", [score(WATER, 1), score(SEWER, 1)], index, 0.5) is None
    assert break_tie("水管 下水道", [score(WATER, 3), score(SEWER, 3)], index, 0.5) is not None


def test_a_wordless_text_routes_only_when_clearly_like_one_matter() -> None:
    index = SimilarityIndex((WATER, SEWER, ROAD))
    found = nearest("路面到处坑坑洼洼，道路破损严重", (), index, 0.5)
    assert found is not None and found.matter.code == "R1"
    assert found.reason.startswith("未匹配任何事项关键词，按清单事项文本相似度")
    assert nearest("路面到处坑坑洼洼，道路破损严重", {"R1"}, index, 0.5) is None  # ruled out by an exclude word
    assert nearest("你们这个公众号能不能查快递", (), index, 0.5) is None
    # The list's threshold governs it as it does the words.
    assert nearest("路面到处坑坑洼洼，道路破损严重", (), index, 0.99) is None


# --- through decide() with the packaged list ------------------------------------------------------------------


def test_a_tie_between_units_settled_by_similarity_routes_with_its_reason(duty: DutyList) -> None:
    # 上坟烧纸 + 树林 (M04, 自然资源局) and 鞭炮 (M38, 应急管理局) weigh 3 each; M04's own text is about graves
    # in woods.
    event = report_event("12345", "清明上坟烧纸放鞭炮，坟就在树林里", address="北岗乡东岭村")
    decision = decide(event, duty)
    r = decision.routing
    assert (r.rule, r.matter_code, r.triage) == ("tie-similarity", "M04", False)
    assert 0.5 <= r.confidence < confidence(3, 0)
    assert decision.assignments[0].unit_code == "PA-ZRZYJ" and decision.assignments[0].role is TaskRole.PRIMARY
    assert r.reason.startswith("文本关键词 M04、M38 同分（3 分），按清单事项文本相似度（字符 n-gram TF-IDF）取 M04：")
    assert "共同字词 “上坟烧纸”" in r.reason and "次选 M38 安全生产" in r.reason
    assert r.reason.endswith(f"置信度 {r.confidence:.2f}；地址含“北岗乡东岭村”；县直部门办理；清单 {duty.version}")
    cls = decision.classification
    assert cls is not None and cls.runner_up is not None and cls.runner_up.matter.code == "M38"
    assert [h.word for h in cls.hits] == ["上坟烧纸", "树林"]


def test_a_tie_similarity_cannot_settle_still_goes_to_triage(duty: DutyList) -> None:
    decision = decide(report_event("12345", "村里的村道上积水半个月了", grid="PA-HX-02-001"), duty)
    assert decision.routing.triage and decision.routing.rule == "triage"
    assert decision.routing.confidence == 0.43


def test_a_wordless_report_clearly_like_one_matter_routes_at_a_lower_confidence(duty: DutyList) -> None:
    decision = decide(report_event("wechat", "劳动监察那边打电话一直没人接", address="城关镇"), duty)
    r = decision.routing
    assert (r.rule, r.matter_code, r.triage) == ("text-similarity", "M31", False)
    assert 0.5 <= r.confidence < 0.6
    assert r.reason.startswith("未匹配任何事项关键词，按清单事项文本相似度（字符 n-gram TF-IDF）取 M31：相似度 ")
    assert "共同字词 “劳动监察”" in r.reason
    assert decision.classification is not None and decision.classification.hits == ()


def test_a_wordless_report_like_nothing_in_particular_still_goes_to_triage(duty: DutyList) -> None:
    for text in ("你们这个公众号能不能查快递", "想问问维稳办在哪里办公"):
        cls = classify(report_event("wechat", text), duty)
        assert (cls.matter, cls.rule, cls.confidence) == (None, "triage", 0.0)


def test_the_similarity_index_is_built_with_the_routing_index(duty: DutyList) -> None:
    index = router_index(duty)
    assert len(index.similar.matters) == len(duty.matters) == 47
    assert index.similar.position["M04"] == index.order["M04"]


def test_route_json_and_evaluation_show_the_new_rules(duty: DutyList) -> None:
    event = report_event("12345", "清明上坟烧纸放鞭炮，坟就在树林里", address="北岗乡东岭村")
    shown = json.dumps(decision_dict(decide(event, duty), duty), ensure_ascii=False)
    out: dict[str, Any] = json.loads(shown)
    assert (out["rule"], out["triage"], out["matter"]["code"]) == ("tie-similarity", False, "M04")
    assert "按清单事项文本相似度" in shown and out["runner_up"]["code"] == "M38"

    def row(id_: str, text: str, matter: str | None, unit: str) -> DevEvent:
        return DevEvent(id_, "12345", text, None, None, None, None, "北岗乡东岭村", matter, unit, "PA-BG")

    rows = [
        row("t-1", "清明上坟烧纸放鞭炮，坟就在树林里", "M04", "PA-ZRZYJ"),
        row("t-2", "你们这个公众号能不能查快递", None, "PA-ZZZX"),
    ]
    f = figures(run(duty, rows), [m.code for m in duty.matters], duty.county.command_centre)
    assert f.rules == {"tie-similarity": 1, "triage": 1}
    assert f.as_dict()["rules_routed"] == {"tie-similarity": {"routed": 1, "correct_unit": 1, "unit_accuracy": 1.0}}
    assert (f.routed, f.correct_on_routed, f.triaged) == (1, 1, 1)
