"""The mediation ladder: grid worker → villager group → village → township → county, up after two failures."""

from __future__ import annotations

import pytest

from schemas import DispatchTriagedEvent, TaskRole, TaskStatus, TaskUpdated, UpdateKind
from schemas.dutylist import DutyList, load_duty_list
from services.router.flows import ManualDispatch
from services.router.ladder import LEVELS, MoveUp, Rung, StayAt, after_failure, start_level, unit_for_level
from services.sla.calendar import WorkingCalendar
from services.sla.clocks import apply_update, start_clocks
from tests.unit.router_cases import NOW, report, routed, step, unit_update

NEIGHBOURS = "邻居盖房占了我家宅基地半米，两家吵架好几次，村里调解过没用"


@pytest.fixture(scope="module")
def duty() -> DutyList:
    return load_duty_list()


def test_the_sample_county_marks_its_township_disputes_for_the_ladder(duty: DutyList) -> None:
    assert [m.code for m in duty.matters if m.mediation] == ["M12", "M32", "M33", "M35"]
    assert duty.mediation_failures_per_level == 2
    assert [level.key for level in LEVELS] == [
        "grid-worker",
        "villager-group",
        "village-committee",
        "township-centre",
        "county-centre",
    ]


def test_which_unit_stands_for_each_level_in_the_sample_county(duty: DutyList) -> None:
    units = [unit_for_level(level, "PA-HX", "PA-HX-02", duty) for level in range(len(LEVELS))]
    assert units == ["PA-HX-02", "PA-HX-02", "PA-HX-02", "PA-HX", "PA-ZZZX"]
    assert [unit_for_level(level, "PA-HX", None, duty) for level in range(3)] == [None, None, None]
    assert start_level(duty.unit("PA-HX-02")) == 0 and start_level(duty.unit("PA-HX")) == 3
    assert start_level(duty.unit("PA-SFJ")) == start_level(duty.unit("PA-ZZZX")) == 4


def test_two_failures_at_a_level_move_the_dispute_up_one(duty: DutyList) -> None:
    village = duty.unit("PA-HX-02")
    first = after_failure(None, village, "PA-HX", "PA-HX-02", "双方各执一词，拒绝签字", duty)
    assert isinstance(first, StayAt) and first.rung == Rung(0, 1)
    assert "网格员（网格指导员）（河西乡王庄村村民委员会）第 1 次调解不成" in first.reason
    second = after_failure(first.rung, village, "PA-HX", "PA-HX-02", "对方不到场", duty)
    assert isinstance(second, MoveUp)
    assert (second.rung, second.unit_code) == (Rung(1, 0), "PA-HX-02")  # the villager group: the same committee
    assert "上移至村民小组（河西乡王庄村村民委员会）" in second.reason


def test_the_village_skips_to_the_township_when_no_village_is_known(duty: DutyList) -> None:
    step_up = after_failure(Rung(0, 1), duty.unit("PA-HX-02"), "PA-HX", None, "不同意方案", duty)
    assert isinstance(step_up, MoveUp) and (step_up.rung, step_up.unit_code) == (Rung(3, 0), "PA-HX")


def test_the_county_is_the_top(duty: DutyList) -> None:
    top = after_failure(Rung(4, 1), duty.unit("PA-ZZZX"), "PA-HX", "PA-HX-02", "当事人坚持诉讼", duty)
    assert isinstance(top, StayAt) and top.rung == Rung(4, 2)
    assert "无更高调解层级" in top.reason


def test_a_township_dispute_climbs_to_the_county_centre(duty: DutyList) -> None:
    state, first = routed(report(NEIGHBOURS, grid_code="PA-HX-02-001"), duty)
    township = first[0]
    assert (township.unit_code, township.matter_code, township.role) == ("PA-HX", "M35", TaskRole.PRIMARY)
    once = step(state, unit_update(township, UpdateKind.MEDIATION_FAILED, "双方对边界各执一词"), duty)
    assert once.tasks == [] and once.state.rung == (3, 1)
    twice = step(once.state, unit_update(township, UpdateKind.MEDIATION_FAILED, "对方拒不到场"), duty)
    [county] = twice.tasks
    assert (county.unit_code, county.role, county.decision.rule) == ("PA-ZZZX", TaskRole.PRIMARY, "mediation-ladder")
    assert county.decision.mediation_level == "county-centre" and county.decision.round == 1
    assert county.decision.reason.startswith("矛盾纠纷逐级调解：乡镇综治中心（河西乡综治中心）第 2 次调解不成")
    assert twice.state.rung == (4, 0)
    # The old level's task reporting again changes nothing: it is no longer the dispute's current task.
    late = step(twice.state, unit_update(township, UpdateKind.MEDIATION_FAILED, "再次调解不成"), duty)
    assert late.tasks == [] and late.state.rung == (4, 0)


def test_a_dispute_dispatched_to_the_village_climbs_every_level(duty: DutyList) -> None:
    state, first = routed(report(NEIGHBOURS, grid_code="PA-HX-02-001"), duty)
    to_village = DispatchTriagedEvent(
        event_id=first[0].event_id,
        dispatcher="zhangmin",
        primary="PA-HX-02",
        matter_code="M35",
        note="先由网格员和村里调解",
        requested_at=NOW,
    )
    out = step(state, ManualDispatch(round=1, command=to_village), duty)
    holder = out.tasks[0]
    climbed = []
    current = out.state
    for _level in range(4):
        for attempt in (1, 2):
            result = step(current, unit_update(holder, UpdateKind.MEDIATION_FAILED, f"第 {attempt} 次调解不成"), duty)
            current = result.state
        [holder] = result.tasks
        climbed.append((holder.unit_code, holder.decision.mediation_level))
    assert climbed == [
        ("PA-HX-02", "villager-group"),
        ("PA-HX-02", "village-committee"),
        ("PA-HX", "township-centre"),
        ("PA-ZZZX", "county-centre"),
    ]
    assert len({t for t, _ in climbed}) == 3 and current.round == 5


def test_a_failed_mediation_on_a_matter_not_on_the_ladder_is_recorded_only(duty: DutyList) -> None:
    state, first = routed(report("楼下烧烤店油烟大，每天噪音扰民到凌晨两点", grid_code="PA-CG-02-001"), duty)
    out = step(state, unit_update(first[0], UpdateKind.MEDIATION_FAILED, "商户拒不整改"), duty)
    assert out.tasks == [] and out.state.rung is None and "不是矛盾纠纷调解事项" in out.notes[0]


def test_the_sla_keeps_the_clocks_of_a_failed_mediation_and_of_a_summoned_task(duty: DutyList) -> None:
    _state, first = routed(report(NEIGHBOURS, grid_code="PA-HX-02-001"), duty)
    township = first[0]
    clocks = start_clocks(township, WorkingCalendar.default())
    failed = TaskUpdated(
        update_id="01KAFZ0M3DB3XG7M2Q4J8K6P77",
        task_id=township.task_id,
        unit_code="PA-HX",
        kind=UpdateKind.MEDIATION_FAILED,
        occurred_at=NOW,
        reason="双方各执一词",
    )
    after = apply_update(clocks, failed)
    assert after.status is TaskStatus.OPEN and after.applied_updates == (failed.update_id,)
    summoned = township.model_copy(update={"role": TaskRole.SUMMONED, "unit_code": "PA-SFJ"})
    assert start_clocks(summoned, WorkingCalendar.default()).clocks == clocks.clocks
