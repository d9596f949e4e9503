"""Cross-channel merging (案件归并): realistic reports of one incident from several channels become one case."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from ulid import ULID

from schemas import CaseLinked, Channel, EventNormalised, Location, Reporter, SourceRef, Urgency
from schemas.dutylist import DutyList, load_duty_list
from services.router.decide import decide
from services.router.merging import (
    Candidate,
    MergePolicy,
    Report,
    case_linked,
    case_sources,
    exclusion_reason,
    find_case,
    is_mergeable,
    link_id_for,
    link_record,
    prior,
    prune,
    report_features,
)
from services.router.settings import RouterSettings
from services.router.signature import TextRules, bigrams, dice, signature_text

CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 11, 20, 9, 30, tzinfo=CST)
POLICY = MergePolicy()
# Centre of grid PA-CG-01-001 (城关镇东街社区) in the sample duty list; 0.0009° of latitude is about 100 m.
LAT, LON = 35.1012, 114.2031


@pytest.fixture(scope="module")
def duty() -> DutyList:
    return load_duty_list()


@pytest.fixture(scope="module")
def rules() -> TextRules:
    return TextRules.load()


def event(
    text: str,
    *,
    source: Channel = Channel.HOTLINE_12345,
    source_id: str | None = None,
    minutes: float = 0,
    category: str | None = None,
    urgency: Urgency = Urgency.NORMAL,
    complained_unit: str | None = None,
    confidential: bool = False,
    **location: Any,
) -> EventNormalised:
    at = T0 + timedelta(minutes=minutes)
    event_id = str(ULID.from_datetime(at))
    return EventNormalised(
        causation_id=str(ULID()),
        event_id=event_id,
        sources=(
            SourceRef(source=source, source_id=source_id or f"{source.value}-{event_id[-6:]}", raw_message_id=event_id),
        ),
        type="投诉",
        title=f"[{source.value}] {text[:60]}",
        description=text,
        location=Location(**location),
        reporter=Reporter(name="王秀兰", confidential=confidential),
        reported_at=at,
        received_at=at + timedelta(seconds=20),
        urgency=urgency,
        declared_category=category,
        complained_unit=complained_unit,
    )


def features(e: EventNormalised, duty: DutyList, rules: TextRules) -> Report:
    """What the router's merge step derives from an event: its matter and grid, then the features."""
    d = decide(e, duty)
    return report_features(
        e,
        matter_code=d.matter.code if d.matter else None,
        matter_name=d.matter.name if d.matter else None,
        grid_code=d.grid.code if d.grid else None,
        rules=rules,
    )


def admit(rows: list[Candidate], report: Report, policy: MergePolicy = POLICY) -> Candidate:
    """What the router does with a report: link it to the case found, or open a case; the table grows."""
    match = find_case(report, rows, policy)
    if match is None:
        row = Candidate(case_id=report.event_id, report=report)
    else:
        row = Candidate(
            case_id=match.case_id,
            report=report,
            link=link_record(match),
        )
    rows.append(row)
    return row


# The burst pipe of the issue, from three channels within 35 minutes.
HOTLINE = "幸福小区3号楼下水管爆裂，水漫到路上，请尽快处理。"
WECHAT = "3号楼门口水管爆了好大水"
GRID_WORKER = "网格员巡查发现3号楼供水管破裂，已设置警示"


def burst_pipe(duty: DutyList, rules: TextRules) -> list[Report]:
    return [
        features(
            event(HOTLINE, address="城关镇东街社区幸福小区3号楼", district="城关镇", grid_code="PA-CG-01-001"),
            duty,
            rules,
        ),
        features(event(WECHAT, source=Channel.WECHAT, minutes=12, lat=LAT + 0.0003, lon=LON + 0.0003), duty, rules),
        features(
            event(
                GRID_WORKER,
                source=Channel.GRID_APP,
                minutes=35,
                category="设施故障",
                grid_code="PA-CG-01-001",
                lat=LAT + 0.0002,
                lon=LON + 0.0002,
            ),
            duty,
            rules,
        ),
    ]


def test_burst_pipe_from_three_channels_is_one_case_with_every_source(duty: DutyList, rules: TextRules) -> None:
    hotline, wechat, grid = burst_pipe(duty, rules)
    rows: list[Candidate] = []
    first = admit(rows, hotline)
    second = admit(rows, wechat)
    third = admit(rows, grid)

    assert first.link is None and first.case_id == hotline.event_id
    assert second.case_id == third.case_id == hotline.event_id
    assert second.link is not None and third.link is not None
    # The WeChat report has only coordinates; the router placed it in the hotline's grid.
    assert second.link.place == "grid" and second.link.distance_m is None
    assert "同一网格 PA-CG-01-001（按坐标推定）" in second.link.explanation
    # The grid worker stood 40 m from the WeChat reporter: the nearer, closer-in-time report wins.
    assert third.link.matched_event_id == wechat.event_id
    assert third.link.place == "distance" and third.link.distance_m is not None and third.link.distance_m < 50
    sources = case_linked(rows, third, str(ULID())).sources
    assert [ref.source for ref in sources] == [Channel.HOTLINE_12345, Channel.WECHAT, Channel.GRID_APP]
    assert case_sources(rows, hotline.event_id) == sources


def test_explanation_names_place_time_words_and_matter(duty: DutyList, rules: TextRules) -> None:
    hotline, wechat, grid = burst_pipe(duty, rules)
    rows = [Candidate(case_id=hotline.event_id, report=hotline), Candidate(case_id=hotline.event_id, report=wechat)]
    match = find_case(grid, rows, POLICY)

    assert match is not None
    text = match.explanation
    assert text.startswith(f"与案件 {hotline.event_id} 中的微信报料 wechat-")
    assert "同一网格 PA-CG-01-001 / 相距 " in text and " 米" in text
    assert "相隔 23 分钟" in text
    assert f"文本相似度 {match.similarity:.2f}（共同词：水管、破裂）" in text
    assert text.endswith("同一事项 M08 供排水设施故障")
    assert match.same_matter and match.minutes_apart == 23.0
    assert 0.3 <= match.similarity <= 1 and 0 < match.score <= 1


def test_seed_sewer_backflow_from_wechat_group_and_grid_worker_merges(duty: DutyList, rules: TextRules) -> None:
    # 海晏县 水利小区, 2020-06-05: residents post in the WeChat group, the grid worker reports it upward.
    group_post = features(
        event("小区内下水道反流，影响一楼住户正常生活", source=Channel.WECHAT, address="城关镇东街社区水利小区"),
        duty,
        rules,
    )
    worker = features(
        event(
            "水利小区下水道堵塞反流，污水漫进一楼",
            source=Channel.GRID_APP,
            minutes=50,
            category="设施故障",
            address="东街社区水利小区",
        ),
        duty,
        rules,
    )
    rows: list[Candidate] = []
    admit(rows, group_post)
    linked = admit(rows, worker)

    assert linked.link is not None and linked.link.place == "address"
    assert "同一地址“东街社区水利小区”" in linked.link.explanation
    assert "共同词：" in linked.link.explanation and "下水道" in linked.link.explanation


def test_same_building_other_incident_is_not_merged(duty: DutyList, rules: TextRules) -> None:
    hotline, _, _ = burst_pipe(duty, rules)
    rows = [Candidate(case_id=hotline.event_id, report=hotline)]
    fee = features(event("幸福小区3号楼物业乱收费，垃圾费涨价", minutes=20, grid_code="PA-CG-01-001"), duty, rules)
    sewer = features(event("3号楼下水道堵塞，污水反流到一楼", minutes=20, grid_code="PA-CG-01-001"), duty, rules)

    assert fee.matter_code == "M12" and find_case(fee, rows, POLICY) is None
    # Same matter (M08), same building, same hour: a blocked sewer is not the burst supply pipe.
    assert sewer.matter_code == "M08" and find_case(sewer, rows, POLICY) is None


def test_same_words_far_apart_are_two_incidents(duty: DutyList, rules: TextRules) -> None:
    here = features(event(WECHAT, source=Channel.WECHAT, lat=LAT, lon=LON), duty, rules)
    rows = [Candidate(case_id=here.event_id, report=here)]
    # 0.01° of latitude: 1.1 km away, yet nearest to the same grid centre; both have coordinates, so they decide.
    far = features(event(WECHAT, source=Channel.WECHAT, minutes=5, lat=LAT - 0.01, lon=LON), duty, rules)
    assert far.grid_code == here.grid_code == "PA-CG-01-001"
    assert find_case(far, rows, POLICY) is None
    near = features(event(WECHAT, source=Channel.WECHAT, minutes=5, lat=LAT + 0.0025, lon=LON), duty, rules)
    assert find_case(near, rows, POLICY) is not None  # 278 m: within the default 300 m
    assert find_case(near, rows, MergePolicy(distance_m=200)) is None


def test_declared_grids_place_reports_together_whatever_their_coordinates(duty: DutyList, rules: TextRules) -> None:
    a = features(event(WECHAT, grid_code="PA-CG-01-001", lat=LAT, lon=LON), duty, rules)
    b = features(event(WECHAT, minutes=5, grid_code="PA-CG-01-001", lat=LAT + 0.01, lon=LON), duty, rules)
    match = find_case(b, [Candidate(case_id=a.event_id, report=a)], POLICY)
    assert match is not None and match.place == "grid"
    assert "同一网格 PA-CG-01-001 / 相距 1112 米" in match.explanation


def test_outside_the_window_is_a_new_case(duty: DutyList, rules: TextRules) -> None:
    hotline, _, _ = burst_pipe(duty, rules)
    rows = [Candidate(case_id=hotline.event_id, report=hotline)]
    late = features(event(HOTLINE, minutes=6 * 60 + 1, grid_code="PA-CG-01-001"), duty, rules)
    assert find_case(late, rows, POLICY) is None
    in_time = features(event(HOTLINE, minutes=6 * 60, grid_code="PA-CG-01-001"), duty, rules)
    match = find_case(in_time, rows, POLICY)
    assert match is not None and "相隔 6 小时 0 分钟" in match.explanation


def test_no_place_never_merges(duty: DutyList, rules: TextRules) -> None:
    e = event(HOTLINE)
    assert exclusion_reason(e) == "无网格、坐标或地址，无法判断是否同一地点"
    bare = features(e, duty, rules)
    same_text = features(event(HOTLINE, minutes=1), duty, rules)
    assert find_case(same_text, [Candidate(case_id=bare.event_id, report=bare)], POLICY) is None


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"source": Channel.PETITION}, "信访件单独办理，不参与归并"),
        ({"complained_unit": "城关镇东街社区居委会"}, "含被投诉单位，单独办理，不参与归并"),
        ({"confidential": True}, "举报人身份保密，单独办理，不参与归并"),
    ],
)
def test_petitions_and_complaints_about_a_unit_stay_apart(kwargs: dict[str, Any], reason: str) -> None:
    assert exclusion_reason(event(HOTLINE, grid_code="PA-CG-01-001", **kwargs)) == reason


def test_the_same_source_report_twice_is_dedupe_not_a_merge(duty: DutyList, rules: TextRules) -> None:
    first = features(event(WECHAT, source=Channel.WECHAT, source_id="wx-msg-1", grid_code="PA-CG-01-001"), duty, rules)
    rows = [Candidate(case_id=first.event_id, report=first)]
    again = features(
        event(WECHAT, source=Channel.WECHAT, source_id="wx-msg-1", minutes=3, grid_code="PA-CG-01-001"), duty, rules
    )
    other = features(
        event(WECHAT, source=Channel.WECHAT, source_id="wx-msg-2", minutes=3, grid_code="PA-CG-01-001"), duty, rules
    )
    assert find_case(again, rows, POLICY) is None
    match = find_case(other, rows, POLICY)  # two residents posting on the same channel: one incident
    assert match is not None and match.case_id == first.event_id


def test_an_urgent_report_is_not_silenced_by_a_normal_case(duty: DutyList, rules: TextRules) -> None:
    normal = features(event(HOTLINE, grid_code="PA-CG-01-001"), duty, rules)
    urgent = features(event(HOTLINE, minutes=10, grid_code="PA-CG-01-001", urgency=Urgency.URGENT), duty, rules)
    assert find_case(urgent, [Candidate(case_id=normal.event_id, report=normal)], POLICY) is None
    assert find_case(normal, [Candidate(case_id=urgent.event_id, report=urgent)], POLICY) is not None


def test_different_matters_merge_only_on_nearly_the_same_text(duty: DutyList, rules: TextRules) -> None:
    gas = "楼下饭店燃气泄漏，人员已疏散"
    police = features(event(gas, source=Channel.POLICE_110, category="燃气泄漏", grid_code="PA-CG-01-002"), duty, rules)
    # The same text forwarded by a grid worker under 环境卫生 (M10): the channels disagree, the words do not.
    copy = features(
        event(gas, source=Channel.GRID_APP, minutes=8, category="环境卫生", grid_code="PA-CG-01-002"), duty, rules
    )
    assert (police.matter_code, copy.matter_code) == ("M40", "M10")
    police_urgent = police.model_copy(update={"urgent": True})
    match = find_case(copy, [Candidate(case_id=police.event_id, report=police_urgent)], POLICY)
    assert match is not None and not match.same_matter
    assert match.explanation.endswith("事项不同（M40 / M10），文本高度相似")
    smell = features(
        event(
            "闻到很大煤气味，楼下饭店好像漏气了",
            source=Channel.GRID_APP,
            minutes=8,
            category="环境卫生",
            grid_code="PA-CG-01-002",
        ),
        duty,
        rules,
    )
    assert find_case(smell, [Candidate(case_id=police.event_id, report=police_urgent)], POLICY) is None


def test_best_scoring_case_wins(duty: DutyList, rules: TextRules) -> None:
    hotline, wechat, grid = burst_pipe(duty, rules)
    far_case = hotline.model_copy(update={"event_id": str(ULID()), "reported_at": T0 - timedelta(hours=5)})
    rows = [Candidate(case_id=far_case.event_id, report=far_case), Candidate(case_id=wechat.event_id, report=wechat)]
    match = find_case(grid, rows, POLICY)
    assert match is not None and match.case_id == wechat.event_id


# Tuning set of the text thresholds (Dice of bigram signatures). Same incident told by two channels:
# 0.29-0.57. Another incident of the same matter at the same place: 0.00-0.18, so 0.25 sits in the gap.
# Other matters: up to 0.25 (a village name in both), far below the 0.6 asked across matters.
# Known miss: long narratives (the seed's 垃圾处理费/卫生费 complaint told twice: 0.20) stay two cases.
# Known limit: the same complaint against two employers in one grid (某工地/某超市拖欠工资三个月, 0.52) would merge.
SAME_INCIDENT = [
    (HOTLINE, WECHAT),
    (HOTLINE, GRID_WORKER),
    (WECHAT, GRID_WORKER),
    (
        "锦绣花园5号楼门口自来水管爆裂，水漫到路上，请尽快派人。",
        "网格员巡查发现锦绣花园5号楼供水管破裂，路面积水，已设置警示。",
    ),
    ("水利小区下水道反流，一楼住户没法住了", "小区内下水道反流，影响一楼住户正常生活"),
    ("小区内下水道反流，影响一楼住户正常生活", "水利小区5号楼下水道堵塞反流，污水漫进一楼"),
    ("小区停水两天了，没有任何通知", "停水两天了，物业也不说什么时候来水"),
    ("楼下饭店燃气泄漏，人员已疏散", "闻到很大煤气味，楼下饭店好像漏气了"),
    ("东街那边工地晚上一直施工，噪音太大睡不着", "东街工地夜间施工噪声扰民"),
    ("柳村东头小作坊晚上偷排污水，河沟有异味", "柳村河沟里死鱼，有股异味，怀疑有人偷排"),
    ("城关镇某工地拖欠农民工工资三个月", "工地包工头拖欠20多名农民工工资"),
    ("包工头拖欠工资三万多元，一直不给", "工地二十多个工人讨薪，包工头拖欠工资半年"),
    ("柳村村口大槐树被风刮倒，压住了电线", "网格员发现柳村村口槐树倒伏压在电线上"),
]
OTHER_INCIDENT_SAME_MATTER = [
    (HOTLINE, "3号楼下水道堵塞，污水反流到一楼"),
    ("广场舞音响噪音太大", "东街工地夜间施工噪声扰民"),
    ("邻居装修噪音太大，协商不成吵了起来", "东街工地夜间施工噪声扰民"),
    ("楼下饭店着火了", "楼下饭店燃气泄漏，人员已疏散"),
    ("物业费涨价没有公示", "物业不清运垃圾，楼道堆满"),
    ("两户因宅基地边界发生纠纷", "邻居因噪音吵架发生纠纷"),
    ("柳村东头小作坊晚上偷排污水", "柳村养猪场粪便异味很大"),
]
OTHER_MATTER = [
    (HOTLINE, "幸福小区3号楼物业乱收费"),
    (HOTLINE, "3号楼楼道灯坏了一个月没人修"),
    ("王庄村两户因宅基地边界发生纠纷", "王庄村有人拖欠农民工工资"),
    (WECHAT, "3号楼门口垃圾堆了好几天没人清运"),
    ("小区下水道堵塞，污水反流", "小区内路灯不亮，晚上出行不便"),
    ("小区停水两天了，没有任何通知", "幸福小区物业费涨价"),
]


def _similarity(a: str, b: str, rules: TextRules) -> float:
    return dice(bigrams(signature_text(a, a, (), rules)), bigrams(signature_text(b, b, (), rules)))


@pytest.mark.parametrize(("a", "b"), SAME_INCIDENT)
def test_tuning_same_incident_reaches_the_threshold(a: str, b: str, rules: TextRules) -> None:
    assert _similarity(a, b, rules) >= POLICY.min_similarity


@pytest.mark.parametrize(("a", "b"), OTHER_INCIDENT_SAME_MATTER)
def test_tuning_another_incident_of_the_matter_stays_below_with_a_margin(a: str, b: str, rules: TextRules) -> None:
    assert _similarity(a, b, rules) <= POLICY.min_similarity - 0.05


@pytest.mark.parametrize(("a", "b"), OTHER_MATTER)
def test_tuning_other_matters_stay_far_below_the_cross_matter_threshold(a: str, b: str, rules: TextRules) -> None:
    assert _similarity(a, b, rules) <= POLICY.cross_matter_similarity - 0.3


def test_signature_keeps_what_happened_not_where_or_who_reported(rules: TextRules) -> None:
    sig = signature_text(
        "[网格 PA-CG-01-001] 网格员巡查发现3号楼供水管破裂",
        "网格员巡查发现3号楼供水管破裂，已设置警示",
        ("城关镇东街社区幸福小区3号楼",),
        rules,
    )
    assert sig == "水管|破裂|已设置警示"
    assert signature_text("[投诉] 幸福小区停水", "城关镇东街社区幸福小区停水", ("城关镇东街社区幸福小区",), rules) == (
        "停水"
    )
    photo_only = signature_text("[网格 PA-CG-01-001] 3号楼", "3号楼", (), rules)
    assert photo_only == ""


def test_a_report_without_words_opens_no_shared_case(duty: DutyList, rules: TextRules) -> None:
    report = features(event("3号楼!", grid_code="PA-CG-01-001"), duty, rules)
    assert not is_mergeable(report)
    assert find_case(report, [], POLICY) is None


def test_a_replay_finds_its_link_and_publishes_the_same_message(duty: DutyList, rules: TextRules) -> None:
    hotline, wechat, grid = burst_pipe(duty, rules)
    rows: list[Candidate] = []
    admit(rows, hotline)
    linked = admit(rows, wechat)
    first_answer = case_linked(rows, linked, "01KAG0000000000000000000AA")
    admit(rows, grid)  # the case grows after the link; a replay still tells the case as it was then
    stored = [Candidate.model_validate(c.model_dump(mode="json")) for c in rows]  # through the table's JSON

    replayed = prior(stored, wechat.event_id)
    assert replayed is not None and replayed == linked
    first, second = (
        first_answer,
        case_linked(stored, replayed, "01KAG0000000000000000000AA"),
    )
    assert first == second and first.message_id == link_id_for(hotline.event_id, wechat.event_id)
    assert isinstance(CaseLinked.model_validate_json(first.to_bytes()), CaseLinked)
    assert [s.source for s in first.sources] == [Channel.HOTLINE_12345, Channel.WECHAT]
    assert prior(stored, hotline.event_id) is not None and prior(stored, hotline.event_id).link is None  # type: ignore[union-attr]
    assert prior(stored, str(ULID())) is None


def test_prune_keeps_recent_whole_cases_up_to_the_cap(duty: DutyList, rules: TextRules) -> None:
    hotline, wechat, grid = burst_pipe(duty, rules)
    old = hotline.model_copy(update={"event_id": str(ULID()), "received_at": hotline.received_at - timedelta(hours=13)})
    rows = [
        Candidate(case_id=old.event_id, report=old),
        Candidate(case_id=hotline.event_id, report=hotline),
        Candidate(case_id=hotline.event_id, report=wechat),
        Candidate(case_id=grid.event_id, report=grid),
    ]
    assert [c.report.event_id for c in prune(rows, grid.received_at, POLICY)] == [
        hotline.event_id,
        wechat.event_id,
        grid.event_id,
    ]
    # Over the cap the oldest case goes, both its reports together.
    capped = prune(rows, grid.received_at, MergePolicy(max_candidates=2))
    assert [c.report.event_id for c in capped] == [grid.event_id]
    assert POLICY.retention == timedelta(hours=12)


def test_settings_build_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDHUB_ROUTER_MERGE_DISTANCE_M", "150")
    monkeypatch.setenv("GRIDHUB_ROUTER_MERGE_WINDOW_H", "2.5")
    monkeypatch.setenv("GRIDHUB_ROUTER_MERGE_MIN_SIMILARITY", "0.35")
    policy = RouterSettings().merge_policy()
    assert (policy.distance_m, policy.window, policy.min_similarity) == (150, timedelta(hours=2.5), 0.35)
    assert policy.cross_matter_similarity == 0.6 and policy.max_candidates == 200
