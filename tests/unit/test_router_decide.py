"""Router: matter, territory and units from the packaged duty list (平安县, 47 matters)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from importlib import resources
from typing import Any

import pytest
from pydantic import ValidationError
from ulid import ULID

from schemas import (
    Channel,
    ClockKind,
    ClockTerm,
    DeadlineClass,
    DurationUnit,
    EventNormalised,
    Location,
    Reporter,
    SourceRef,
    TaskRole,
    Tier,
    Urgency,
)
from schemas.dutylist import DutyList, load_duty_list
from services.router.decide import Assignment, classify, decide, locate
from services.router.tasks import build_tasks, task_id_for

CST = timezone(timedelta(hours=8))
EVENT_ID = "01KAFZ0M3DB3XG7M2Q4J8K6P1Z"
RAW_ID = "01KAFZ0M3D6YQ8W5C2N4R7T9VB"
RECEIVED = datetime(2026, 11, 20, 9, 31, tzinfo=CST)
NOW = datetime(2026, 11, 20, 1, 31, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
def duty() -> DutyList:
    return load_duty_list()


def sample_dict() -> dict[str, Any]:
    text = resources.files("schemas").joinpath("data/dutylist.json").read_text("utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


def event(
    title: str,
    description: str = "",
    *,
    source: Channel = Channel.HOTLINE_12345,
    category: str | None = None,
    urgency: Urgency = Urgency.NORMAL,
    **location: Any,
) -> EventNormalised:
    return EventNormalised(
        causation_id=RAW_ID,
        event_id=EVENT_ID,
        sources=(SourceRef(source=source, source_id="GD-2026-1120-00421", raw_message_id=RAW_ID),),
        type="投诉",
        title=title,
        description=description or title,
        location=Location(**location),
        reporter=Reporter(name="王秀兰", phone="13837124567"),
        reported_at=datetime(2026, 11, 20, 9, 30, tzinfo=CST),
        received_at=RECEIVED,
        urgency=urgency,
        declared_category=category,
    )


def units(decision: Any) -> list[tuple[str, TaskRole]]:
    return [(a.unit_code, a.role) for a in decision.assignments]


def matter_dict(data: dict[str, Any], code: str) -> dict[str, Any]:
    return next(m for m in data["matters"] if m["code"] == code)  # type: ignore[no-any-return]


def test_sample_duty_list_loads(duty: DutyList) -> None:
    assert duty.version == "2026.11-47.2"
    assert duty.county.command_centre == "PA-ZZZX"
    assert [m.code for m in duty.matters] == [f"M{n:02d}" for n in range(1, 48)]
    assert len(duty.units) == 55 and len(duty.grids) == 56
    assert duty.confidence_threshold == 0.5
    assert duty.contact_within_hours == 1
    # The foundation's six matters keep their units and deadline classes.
    m08 = duty.matter("M08")
    assert m08 is not None and (m08.primary, m08.co_operating, m08.tier) == ("township", ("PA-ZJJ",), Tier.TOWNSHIP)
    m30 = duty.matter("M30")
    assert m30 is not None and (m30.primary, m30.co_operating) == ("PA-RSJ", ("township",))
    assert all(g.village_code and g.code.startswith(g.village_code) for g in duty.grids)


def test_sewage_backflow_in_grid_goes_to_township_with_housing_bureau(duty: DutyList) -> None:
    ev = event("[投诉] 小区下水道反流", "幸福里小区3号楼下水道反流，单元门口全是水", grid_code="PA-CG-01-001")
    decision = decide(ev, duty)

    assert decision.matter is not None and decision.matter.code == "M08"
    assert decision.tier is Tier.TOWNSHIP
    assert units(decision) == [("PA-CG", TaskRole.PRIMARY), ("PA-ZJJ", TaskRole.CO_OPERATING)]
    r = decision.routing
    assert r.rule == "keywords"
    assert r.matter_code == "M08"
    assert r.confidence == 0.98  # 下水道 2 + 反流 2 = 4, no rival: 1 - e^-4
    assert r.triage is False
    assert r.duty_list_version == "2026.11-47.2"
    assert (r.township, r.village, r.grid_code) == ("PA-CG", "PA-CG-01", "PA-CG-01-001")
    assert r.reason == (
        "文本关键词 M08：下水道(2)、反流(2)，计 4 分；无次选；置信度 0.98；网格 PA-CG-01-001（城关镇东街社区）；"
        "乡镇属地办理；清单 2026.11-47.2"
    )


def test_unpaid_wages_goes_to_county_department_with_township(duty: DutyList) -> None:
    ev = event("[投诉] 工地拖欠工资", "河西乡王庄村砖厂拖欠工资三个月，十几个农民工讨不到钱", district="河西乡")
    decision = decide(ev, duty)

    assert decision.matter is not None and decision.matter.code == "M30"
    assert decision.tier is Tier.COUNTY
    assert units(decision) == [("PA-RSJ", TaskRole.PRIMARY), ("PA-HX", TaskRole.CO_OPERATING)]
    # 拖欠工资 3 (covering 工资) + 农民工 1 = 4 against M06's 工地 1 (from the title).
    assert decision.routing.confidence == 0.86
    assert decision.routing.triage is False
    assert decision.routing.reason.endswith("；地址含“河西乡”；县直部门办理；清单 2026.11-47.2")


def test_unpaid_wages_without_territory_still_goes_to_department_only(duty: DutyList) -> None:
    ev = event("[投诉] 拖欠工资", "包工头拖欠工资半年不给，电话也不接")
    decision = decide(ev, duty)

    assert units(decision) == [("PA-RSJ", TaskRole.PRIMARY)]
    assert decision.tier is Tier.COUNTY
    assert decision.routing.triage is False
    assert decision.routing.rule == "keywords"
    assert "无网格、坐标或乡镇信息" in decision.routing.reason


def test_explicit_matter_code_wins(duty: DutyList) -> None:
    ev = event("[求助] 楼道里有怪味", "楼道里有怪味，不知道是什么", category="M40", grid_code="PA-CG-02-001")
    decision = decide(ev, duty)

    assert decision.routing.rule == "explicit-category"
    assert decision.routing.confidence == 1.0
    assert decision.routing.matter_code == "M40"
    assert decision.routing.matter_name == "安全隐患与突发事件（燃气泄漏、火情、坍塌）"
    assert units(decision) == [("PA-YJJ", TaskRole.PRIMARY), ("PA-CG", TaskRole.CO_OPERATING)]
    assert decision.routing.reason.startswith("报送时已指定事项 M40；置信度 1.00；网格 PA-CG-02-001")


def test_channel_category_of_110(duty: DutyList) -> None:
    ev = event(
        "[非警务警情] 居民楼燃气泄漏",
        "居民报称楼道有煤气味",
        source=Channel.POLICE_110,
        category="燃气泄漏",
        district="城关镇",
    )
    cls = classify(ev, duty)
    assert cls.matter is not None and cls.matter.code == "M40"
    assert (cls.rule, cls.confidence) == ("channel-category", 0.9)
    assert cls.reason == "110 分类“燃气泄漏”对应事项 M40"

    decision = decide(ev, duty)
    assert units(decision) == [("PA-YJJ", TaskRole.PRIMARY), ("PA-CG", TaskRole.CO_OPERATING)]


def test_channel_category_is_per_channel(duty: DutyList) -> None:
    # 12345 does not map "燃气泄漏": it falls through to the words (燃气 2 + 泄漏 2; 泄漏 rules M43 out).
    ev = event("[投诉] 燃气泄漏", source=Channel.HOTLINE_12345, category="燃气泄漏")
    cls = classify(ev, duty)
    assert (cls.rule, cls.confidence) == ("keywords", 0.98)
    assert cls.matter is not None and cls.matter.code == "M40"
    assert "排除 M43（含“泄漏”）" in cls.reason


def test_territory_from_coordinates_near_a_grid(duty: DutyList) -> None:
    ev = event("[投诉] 邻里宅基地纠纷", "邻居盖房占了我家宅基地，双方吵架", lat=35.0612, lon=114.1304)
    grid, township, where = locate(ev, duty)
    assert grid is not None and grid.code == "PA-HX-01-001"
    assert township == "PA-HX"
    assert where == "坐标距网格 PA-HX-01-001（河西乡柳村）中心 0.0 km"

    decision = decide(ev, duty)
    assert decision.matter is not None and decision.matter.code == "M35"
    assert units(decision) == [("PA-HX", TaskRole.PRIMARY), ("PA-SFJ", TaskRole.CO_OPERATING)]


def test_coordinates_far_from_every_grid_do_not_place(duty: DutyList) -> None:
    ev = event("[投诉] 邻里宅基地纠纷", lat=39.9042, lon=116.4074)  # Beijing
    assert locate(ev, duty) == (None, None, "无网格、坐标或乡镇信息")


def test_territory_from_district_name(duty: DutyList) -> None:
    ev = event("[投诉] 物业费涨价", "小区物业费从每平米1元涨到1.8元，没开业主大会", district="河西乡")
    assert locate(ev, duty) == (None, "PA-HX", "地址含“河西乡”")
    decision = decide(ev, duty)
    assert decision.matter is not None and decision.matter.code == "M12"
    assert units(decision) == [("PA-HX", TaskRole.PRIMARY)]


def test_unknown_grid_code_falls_back_to_address(duty: DutyList) -> None:
    ev = event("[投诉] 小区下水道反流", grid_code="PA-XX-99-999", address="城关镇西关社区")
    assert locate(ev, duty) == (None, "PA-CG", "地址含“城关镇西关社区”")


def test_no_keyword_goes_to_command_centre_triage(duty: DutyList) -> None:
    ev = event("[建议] 希望增加公交班次", "县城到河西乡的公交一小时一班，太少了", grid_code="PA-HX-02-001")
    decision = decide(ev, duty)

    assert decision.matter is None
    assert decision.tier is Tier.COMMAND_CENTRE
    assert units(decision) == [("PA-ZZZX", TaskRole.PRIMARY)]
    r = decision.routing
    assert r.triage is True
    assert r.rule == "triage"
    assert r.confidence == 0.0
    assert r.matter_code is None and r.matter_name is None
    assert "阈值" in r.reason
    assert r.reason == (
        "转指挥中心人工分拨：置信度 0.00 低于阈值 0.50；未匹配任何事项关键词；网格 PA-HX-02-001（河西乡王庄村）；"
        "清单 2026.11-47.2"
    )


def test_a_tie_between_units_is_triaged_with_its_matter(duty: DutyList) -> None:
    # 村道 (M25, 交通运输局) and 积水 (M39, the township) weigh 2 each: the words cannot tell the unit.
    ev = event("[投诉] 村道积水", "村里的村道上积水半个月了", grid_code="PA-HX-02-001")
    decision = decide(ev, duty)
    assert decision.routing.triage is True
    assert decision.routing.matter_code == "M25"
    assert decision.routing.confidence == 0.43  # (1 - e^-2) / 2
    assert "置信度 0.43 低于阈值 0.50" in decision.routing.reason
    assert "次选 M39 防汛与自然灾害（内涝、积水、大风、冰雪）（2 分）" in decision.routing.reason
    assert units(decision) == [("PA-ZZZX", TaskRole.PRIMARY)]


def test_township_matter_without_territory_is_triaged(duty: DutyList) -> None:
    ev = event("[投诉] 小区下水道反流", "下水道反流好几天了")
    decision = decide(ev, duty)
    assert decision.routing.triage is True
    assert decision.routing.matter_code == "M08"
    assert decision.tier is Tier.COMMAND_CENTRE
    assert units(decision) == [("PA-ZZZX", TaskRole.PRIMARY)]
    assert "属地事项但无法确定乡镇（无网格、坐标或乡镇信息）" in decision.routing.reason


def test_urgent_report_gets_two_hour_class(duty: DutyList) -> None:
    ev = event("[投诉] 小区下水道反流", grid_code="PA-CG-01-001", urgency=Urgency.URGENT)
    tasks = build_tasks(ev, decide(ev, duty), duty, NOW)
    assert len(tasks) == 2
    for task in tasks:
        assert task.deadline_class is DeadlineClass.URGENT
        assert task.urgency is Urgency.URGENT
        assert task.deadlines == (
            ClockTerm(kind=ClockKind.CONTACT, amount=1, unit=DurationUnit.HOURS),
            ClockTerm(kind=ClockKind.RESOLVE, amount=2, unit=DurationUnit.HOURS),
        )


def test_build_tasks_one_per_assignment(duty: DutyList) -> None:
    ev = event("[投诉] 小区下水道反流", "幸福里小区下水道反流", grid_code="PA-CG-01-001")
    decision = decide(ev, duty)
    tasks = build_tasks(ev, decision, duty, NOW)

    assert [(t.unit_code, t.unit_name, t.role) for t in tasks] == [
        ("PA-CG", "城关镇综治中心", TaskRole.PRIMARY),
        ("PA-ZJJ", "平安县住房和城乡建设局", TaskRole.CO_OPERATING),
    ]
    for task, assignment in zip(tasks, decision.assignments, strict=True):
        assert task.task_id == task_id_for(EVENT_ID, assignment.unit_code, assignment.role)
        assert task.event_id == EVENT_ID
        assert task.causation_id == ev.message_id
        assert task.matter_code == "M08"
        assert task.tier is Tier.TOWNSHIP
        assert task.deadline_class is DeadlineClass.PUBLIC_SERVICE
        assert task.deadlines == (
            ClockTerm(kind=ClockKind.CONTACT, amount=1, unit=DurationUnit.HOURS),
            ClockTerm(kind=ClockKind.RESOLVE, amount=2, unit=DurationUnit.WORKING_DAYS),
        )
        assert task.received_at == RECEIVED
        assert task.dispatched_at == NOW
        assert task.title == "[投诉] 小区下水道反流"
        assert task.location.grid_code == "PA-CG-01-001"
        assert task.decision == decision.routing
        assert task.decision.duty_list_version == "2026.11-47.2"
    assert tasks[0].task_id != tasks[1].task_id


def test_triage_task_uses_standard_class_without_matter(duty: DutyList) -> None:
    ev = event("[建议] 希望增加公交班次")
    (task,) = build_tasks(ev, decide(ev, duty), duty, NOW)
    assert task.unit_code == "PA-ZZZX"
    assert task.unit_name == "平安县社会治理综合指挥中心"
    assert task.tier is Tier.COMMAND_CENTRE
    assert task.matter_code is None
    assert task.deadline_class is DeadlineClass.STANDARD
    assert task.deadlines[1] == ClockTerm(kind=ClockKind.RESOLVE, amount=7, unit=DurationUnit.WORKING_DAYS)
    assert task.decision.triage is True


def test_task_id_is_deterministic_ulid_with_event_timestamp() -> None:
    a = task_id_for(EVENT_ID, "PA-CG", TaskRole.PRIMARY)
    assert a == task_id_for(EVENT_ID, "PA-CG", TaskRole.PRIMARY)
    assert a != task_id_for(EVENT_ID, "PA-ZJJ", TaskRole.PRIMARY)
    assert a != task_id_for(EVENT_ID, "PA-CG", TaskRole.CO_OPERATING)
    assert a != task_id_for("01KAFZ0M3DB3XG7M2Q4J8K6P20", "PA-CG", TaskRole.PRIMARY)
    parsed = ULID.from_str(a)
    assert str(parsed) == a and len(a) == 26
    assert parsed.milliseconds == ULID.from_str(EVENT_ID).milliseconds
    assert a[:10] == EVENT_ID[:10]  # the 48-bit timestamp is the first 10 characters


def test_task_id_pinned_value() -> None:
    # Replays of an event must give the same task id across releases (webhook-id stability).
    assert task_id_for(EVENT_ID, "PA-CG", TaskRole.PRIMARY) == "01KAFZ0M3DY89XFXAKDNGGSZDK"


def test_task_id_keeps_exact_timestamp_after_2038() -> None:
    event_id = str(ULID.from_bytes((2147483920364).to_bytes(6, "big") + bytes(range(10))))
    assert ULID.from_str(event_id).milliseconds == 2147483920364
    task_id = task_id_for(event_id, "PA-CG", TaskRole.PRIMARY)
    assert ULID.from_str(task_id).milliseconds == 2147483920364


def test_assignment_dedupes_primary_from_co_operating(duty: DutyList) -> None:
    data = sample_dict()
    matter_dict(data, "M30")["co_operating"] = ["township", "PA-RSJ", "township"]
    modified = DutyList.model_validate(data)
    ev = event("[投诉] 拖欠工资", grid_code="PA-CG-01-001")
    assert decide(ev, modified).assignments == (
        Assignment("PA-RSJ", TaskRole.PRIMARY),
        Assignment("PA-CG", TaskRole.CO_OPERATING),
    )


def test_duty_list_rejects_unknown_unit_reference() -> None:
    data = sample_dict()
    matter_dict(data, "M08")["co_operating"] = ["PA-ZJJ", "PA-SWJ"]
    with pytest.raises(ValidationError) as info:
        DutyList.model_validate(data)
    assert "matter M08: unknown unit PA-SWJ" in str(info.value)


def test_duty_list_rejects_unknown_primary_and_command_centre() -> None:
    data = sample_dict()
    matter_dict(data, "M30")["primary"] = "PA-LDJCDD"
    data["county"]["command_centre"] = "PA-ZHZX"
    with pytest.raises(ValidationError) as info:
        DutyList.model_validate(data)
    text = str(info.value)
    assert "指挥中心 PA-ZHZX 不在单位表中 / command centre PA-ZHZX is not in units" in text
    assert "事项 M30 引用了不存在的单位 PA-LDJCDD / matter M30: unknown unit PA-LDJCDD" in text


def test_duty_list_rejects_missing_deadline_class() -> None:
    data = sample_dict()
    del data["deadline_classes"]["standard"]
    with pytest.raises(ValidationError) as info:
        DutyList.model_validate(data)
    assert "deadline class standard has no resolve term" in str(info.value)


def test_duty_list_rejects_unknown_channel_matter_and_orphan_grid() -> None:
    data = sample_dict()
    data["channel_categories"]["110"]["打架斗殴"] = "M99"
    data["grids"].append(
        {"code": "PA-DZ-01-001", "township": "PA-DZ", "village": "东寨镇东寨村", "lat": 35.2, "lon": 114.3}
    )
    with pytest.raises(ValidationError) as info:
        DutyList.model_validate(data)
    text = str(info.value)
    assert "grid PA-DZ-01-001: township PA-DZ has no centre" in text
    assert "110 category 打架斗殴: unknown matter M99" in text


def test_duty_list_rejects_duplicate_matter_codes() -> None:
    data = sample_dict()
    data["matters"].append(dict(matter_dict(data, "M12")))
    with pytest.raises(ValidationError) as info:
        DutyList.model_validate(data)
    assert "duplicate matter codes" in str(info.value)


def test_load_duty_list_from_path(tmp_path: Any) -> None:
    data = sample_dict()
    data["version"] = "2027.01-test"
    path = tmp_path / "dutylist.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    assert load_duty_list(path).version == "2027.01-test"
