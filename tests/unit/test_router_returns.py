"""Returns (退回): re-routing never goes back to a unit that returned the event; after N returns, triage."""

from __future__ import annotations

import pytest

from schemas import TaskRole, TriageCause, UpdateKind
from schemas.dutylist import DutyList, load_duty_list
from services.router.flows import FlowState, Routed, TaskRef
from services.router.returns import Reroute, ReturnHistory, ToTriage, after_return
from services.router.tasks import task_id_for
from tests.unit.router_cases import EVENT_ID, primary_of, report, routed, step, unit_update

SEWER = "小区下水道反流，污水冒到路面，已经三天了"
BBQ = "楼下烧烤店油烟大，每天噪音扰民到凌晨两点"


@pytest.fixture(scope="module")
def duty() -> DutyList:
    return load_duty_list()


def test_township_returning_its_own_matter_goes_to_the_county_co_operating_unit(duty: DutyList) -> None:
    event = report(SEWER, grid_code="PA-CG-01-001")
    decision = after_return(
        event, "M08", "PA-CG", "主管网属县住建局市政管网，非我镇职责", ReturnHistory(), duty, max_returns=2
    )
    assert isinstance(decision, Reroute)
    assert (decision.matter.code, decision.primary, decision.co_operating) == ("M08", "PA-ZJJ", ())
    assert decision.returned_by == ("PA-CG",) and decision.returns == 1
    assert "城关镇综治中心（PA-CG）退回，理由：“主管网属县住建局市政管网，非我镇职责”" in decision.reason
    assert "乡镇退回，转县直部门" in decision.reason


def test_department_returning_goes_to_the_next_matter_the_words_speak_for(duty: DutyList) -> None:
    event = report(BBQ, grid_code="PA-CG-02-001")
    decision = after_return(event, "M13", "PA-ZHZF", "噪声扰民属生态环境部门", ReturnHistory(), duty, max_returns=3)
    assert isinstance(decision, Reroute)
    assert (decision.matter.code, decision.primary) == ("M21", "PA-STHJ")
    assert decision.co_operating == ("PA-CG",)  # M21's co-operating township
    assert "改派下一候选事项 M21" in decision.reason


def test_no_unit_left_that_has_not_returned_it_is_triage(duty: DutyList) -> None:
    event = report(BBQ, grid_code="PA-CG-02-001")
    history = ReturnHistory(returned_by=("PA-ZHZF",), returns=1)
    decision = after_return(event, "M21", "PA-STHJ", "不属于本局职责", history, duty, max_returns=5)
    assert isinstance(decision, ToTriage)
    assert "无其他未退回的候选单位" in decision.reason
    assert decision.returned_by == ("PA-ZHZF", "PA-STHJ")


def test_the_nth_return_goes_to_triage(duty: DutyList) -> None:
    event = report(SEWER, grid_code="PA-CG-01-001")
    history = ReturnHistory(returned_by=("PA-CG",), returns=1)
    decision = after_return(event, "M08", "PA-ZJJ", "小区内部管网归物业", history, duty, max_returns=2)
    assert isinstance(decision, ToTriage)
    assert decision.returns == 2
    assert decision.reason.startswith("退回 2 次（城关镇综治中心、平安县住房和城乡建设局），转指挥中心人工分拨")


def test_a_return_reroutes_with_new_task_ids_and_never_back(duty: DutyList) -> None:
    state, first = routed(report(SEWER, grid_code="PA-CG-01-001"), duty)
    assert [(t.unit_code, t.role) for t in first] == [("PA-CG", TaskRole.PRIMARY), ("PA-ZJJ", TaskRole.CO_OPERATING)]
    out = step(state, unit_update(first[0], UpdateKind.RETURNED, "主管网属县住建局市政管网，非我镇职责"), duty, 3)
    [task] = out.tasks
    assert (task.unit_code, task.role, task.decision.rule, task.decision.round) == (
        "PA-ZJJ",
        TaskRole.PRIMARY,
        "returned-reroute",
        1,
    )
    assert task.task_id == task_id_for(EVENT_ID, "PA-ZJJ", TaskRole.PRIMARY, 1) != first[1].task_id
    assert task.decision.returned_by == ("PA-CG",)
    assert task.decision.reason.startswith("退回后改派：城关镇综治中心（PA-CG）退回")
    assert task.reporter is not None and task.reporter.phone == "13912345678"  # the new unit can call back
    assert out.state.round == 1 and out.state.returns == 1

    # The department returns it too (max 3): the words speak for no other unit, so it is triaged, not sent back.
    again = step(out.state, unit_update(task, UpdateKind.RETURNED, "小区内部管网归物业，非市政管网"), duty, 3)
    [centre] = again.tasks
    assert (centre.unit_code, centre.decision.rule, centre.decision.triage) == ("PA-ZZZX", "triage", True)
    [queued] = again.triage
    assert (queued.event_id, queued.round, queued.cause) == (EVENT_ID, 2, TriageCause.RETURNS)
    units_ever = {t.unit_code for t in first + out.tasks + again.tasks[1:]}
    assert units_ever == {"PA-CG", "PA-ZJJ"}


def test_max_returns_sends_the_second_return_to_triage(duty: DutyList) -> None:
    state, first = routed(report(BBQ, grid_code="PA-CG-02-001"), duty)
    out = step(state, unit_update(primary_of(first), UpdateKind.RETURNED, "噪声扰民属生态环境部门"), duty)
    assert [(t.unit_code, t.role) for t in out.tasks] == [("PA-STHJ", TaskRole.PRIMARY)]  # PA-CG keeps its copy
    out2 = step(out.state, unit_update(out.tasks[0], UpdateKind.RETURNED, "餐饮油烟归城管"), duty)
    assert [t.unit_code for t in out2.tasks] == ["PA-ZZZX"]
    assert out2.triage[0].reason.startswith("退回 2 次（平安县城市管理综合行政执法局、平安县生态环境分局）")
    assert out2.state.triage is True and out2.state.returned_by == ("PA-ZHZF", "PA-STHJ")


def test_a_co_operating_return_only_drops_that_unit(duty: DutyList) -> None:
    state, first = routed(report(SEWER, grid_code="PA-CG-01-001"), duty)
    co_op = next(t for t in first if t.role is TaskRole.CO_OPERATING)
    out = step(state, unit_update(co_op, UpdateKind.RETURNED, "小区内部设施，由属地处理"), duty)
    assert out.tasks == [] and out.triage == []
    assert out.state.returned_by == ("PA-ZJJ",) and out.state.returns == 0
    # Later the township returns: the co-operating department that returned is not promoted; words have no other.
    out2 = step(out.state, unit_update(first[0], UpdateKind.RETURNED, "非我镇职责"), duty, 5)
    assert [t.unit_code for t in out2.tasks] == ["PA-ZZZX"]


def test_replayed_and_foreign_returns_change_nothing(duty: DutyList) -> None:
    state, first = routed(report(SEWER, grid_code="PA-CG-01-001"), duty)
    returned = unit_update(first[0], UpdateKind.RETURNED, "非我镇职责")
    out = step(state, returned, duty, 3)
    replay = step(out.state, returned, duty, 3)
    assert replay.tasks == [] and replay.state == out.state
    forged = returned.model_copy(update={"unit_code": "PA-HX", "update_id": "01KAFZ0M3DB3XG7M2Q4J8K6P99"})
    refused = step(out.state, forged, duty, 3)
    assert refused.tasks == [] and refused.refused is not None and "不属于单位 PA-HX" in refused.refused


def test_a_return_that_arrives_before_the_routing_is_held_then_applied(duty: DutyList) -> None:
    event = report(SEWER, grid_code="PA-CG-01-001")
    probe, first = routed(event, duty)
    early = unit_update(first[0], UpdateKind.RETURNED, "非我镇职责")
    held = step(FlowState(), early, duty, 3)
    assert held.tasks == [] and len(held.state.pending) == 1
    first_routing = Routed(
        event=event,
        matter_code="M08",
        confidence=probe.confidence,
        triage=False,
        tasks=tuple(TaskRef(task_id=t.task_id, unit_code=t.unit_code, role=t.role, round=0) for t in first),
    )
    out = step(held.state, first_routing, duty, 3)
    assert [t.unit_code for t in out.tasks] == ["PA-ZJJ"] and out.state.pending == ()
