"""The command centre's triage queue: claim, release, dispatch by hand, the dispatcher recorded on the tasks."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from gridhub.kernel.keys import holder_of_key
from schemas import (
    Channel,
    ClaimTriagedEvent,
    DispatchTriagedEvent,
    QueueForTriage,
    ReleaseTriagedEvent,
    TaskRole,
    TriageCause,
    UpdateKind,
)
from schemas.command import TRIAGE_COMMANDS
from schemas.dutylist import DutyList, load_duty_list
from services.router.decide import decide
from services.router.flows import ManualDispatch, queue_command
from services.router.settings import RouterSettings
from services.router.tasks import task_id_for
from services.router.triage import (
    Refusal,
    TriageItem,
    TriageState,
    apply,
    dispatch_problems,
    expired,
    listing,
    queue,
)
from tests.unit.router_cases import EVENT_ID, NOW, report, routed, step

VAGUE = "家门口那块地方一直有问题，反映好几次了没人管"


@pytest.fixture(scope="module")
def duty() -> DutyList:
    return load_duty_list()


def queued_item(duty: DutyList) -> TriageItem:
    event = report(VAGUE, grid_code="PA-HX-02-001")
    command = queue_command(event, decide(event, duty), duty, NOW)
    item = queue(None, command)
    assert item is not None
    return item


def claim(who: str, minutes: int = 1) -> ClaimTriagedEvent:
    return ClaimTriagedEvent(event_id=EVENT_ID, dispatcher=who, requested_at=NOW + timedelta(minutes=minutes))


def dispatch(who: str, **choice: object) -> DispatchTriagedEvent:
    fields = {"primary": "PA-HX", "co_operating": ("PA-SFJ",), "matter_code": "M35", "note": "电话回访确认系宅基地纠纷"}
    return DispatchTriagedEvent(
        event_id=EVENT_ID, dispatcher=who, requested_at=NOW + timedelta(minutes=5), **(fields | choice)
    )


def test_a_vague_report_is_queued_with_its_guess_reason_and_age(duty: DutyList) -> None:
    item = queued_item(duty)
    assert (item.state, item.cause, item.round, item.channel) == (
        TriageState.QUEUED,
        TriageCause.LOW_CONFIDENCE,
        0,
        Channel.HOTLINE_12345,
    )
    assert item.reason.startswith("转指挥中心人工分拨：")
    [shown] = listing([item], NOW + timedelta(minutes=42))
    assert shown["age_minutes"] == 42.0 and shown["event_id"] == EVENT_ID and shown["state"] == "queued"


def test_a_township_matter_without_a_place_is_queued_as_no_territory(duty: DutyList) -> None:
    event = report("小区下水道反流，污水冒到路面")
    command = queue_command(event, decide(event, duty), duty, NOW)
    assert (command.cause, command.matter_code) == (TriageCause.NO_TERRITORY, "M08")


def test_claim_release_dispatch_state_machine(duty: DutyList) -> None:
    item = queued_item(duty)
    mine = apply(item, claim("zhangmin"))
    assert isinstance(mine, TriageItem) and (mine.state, mine.claimed_by) == (TriageState.CLAIMED, "zhangmin")
    assert apply(mine, claim("zhangmin")) == mine  # claiming again changes nothing
    taken = apply(mine, claim("liqiang"))
    assert isinstance(taken, Refusal) and taken.status == 409
    assert taken.detail.startswith(f"事件 {EVENT_ID} 已由调度员 zhangmin 于")
    assert isinstance(apply(mine, dispatch("liqiang")), Refusal)
    back = apply(
        mine,
        ReleaseTriagedEvent(event_id=EVENT_ID, dispatcher="zhangmin", note="需乡镇核实", requested_at=NOW),
    )
    assert isinstance(back, TriageItem) and (back.state, back.claimed_by) == (TriageState.QUEUED, None)
    assert back.history[-1].endswith("调度员 zhangmin 放回队列：需乡镇核实")
    done = apply(back, dispatch("liqiang"))  # an unclaimed item may be dispatched at once
    assert isinstance(done, TriageItem)
    assert (done.state, done.dispatched_by, done.claimed_by) == (TriageState.DISPATCHED, "liqiang", "liqiang")
    assert listing([done], NOW) == []
    gone = apply(done, claim("zhangmin"))
    assert isinstance(gone, Refusal) and gone.status == 404
    assert expired([done], NOW + timedelta(days=8)) == [EVENT_ID] and expired([done], NOW + timedelta(days=1)) == []


def test_replayed_queue_command_does_nothing_and_a_later_round_requeues(duty: DutyList) -> None:
    item = queued_item(duty)
    event = report(VAGUE, grid_code="PA-HX-02-001")
    command = queue_command(event, decide(event, duty), duty, NOW)
    assert queue(item, command) is None
    later = queue(item, command.model_copy(update={"round": 3, "cause": TriageCause.RETURNS}))
    assert later is not None and later.round == 3 and later.state is TriageState.QUEUED


def test_commands_share_one_topic_told_apart_by_kind(duty: DutyList) -> None:
    for command in (
        claim("zhangmin"),
        dispatch("zhangmin"),
        queue_command(report(VAGUE), decide(report(VAGUE), duty), duty, NOW),
    ):
        assert TRIAGE_COMMANDS.validate_json(command.to_bytes()) == command
    assert isinstance(TRIAGE_COMMANDS.validate_json(claim("x").to_bytes()), ClaimTriagedEvent)
    assert QueueForTriage.model_fields["kind"].default == "queue"


def test_dispatch_problems_name_unknown_units_and_matters(duty: DutyList) -> None:
    assert dispatch_problems(duty, "M35", "PA-HX", ("PA-SFJ",)) == []
    assert dispatch_problems(duty, "M99", "PA-XX", ("PA-HX", "PA-YY")) == [
        {"field": "matter_code", "message": "事项 M99 不在权责清单中"},
        {"field": "primary", "message": "单位 PA-XX 不在单位表中"},
        {"field": "co_operating.1", "message": "单位 PA-YY 不在单位表中"},
    ]
    assert dispatch_problems(duty, None, "PA-ZZZX", ())[0]["message"] == "不能派回指挥中心本身"


def test_manual_dispatch_publishes_tasks_with_the_dispatcher_and_closes_the_centres_task(duty: DutyList) -> None:
    state, first = routed(report(VAGUE, grid_code="PA-HX-02-001"), duty)
    [centre] = first
    assert centre.unit_code == "PA-ZZZX" and state.triage is True
    out = step(state, ManualDispatch(round=1, command=dispatch("zhangmin")), duty)
    assert [(t.unit_code, t.role) for t in out.tasks] == [
        ("PA-HX", TaskRole.PRIMARY),
        ("PA-SFJ", TaskRole.CO_OPERATING),
    ]
    for task in out.tasks:
        assert task.decision.rule == "manual" and task.decision.dispatcher == "zhangmin"
        assert task.decision.round == 1 and task.matter_code == "M35"
        assert task.decision.reason.startswith(
            "人工派单：调度员 zhangmin 派至 河西乡综治中心 主办，平安县司法局 配合；事项 M35"
        )
        assert "说明：电话回访确认系宅基地纠纷" in task.decision.reason
    assert out.tasks[0].task_id == task_id_for(EVENT_ID, "PA-HX", TaskRole.PRIMARY, 1)
    [closing] = out.updates
    assert (closing.task_id, closing.unit_code, closing.kind) == (centre.task_id, "PA-ZZZX", UpdateKind.RESOLVED)
    assert out.state.triage is False and out.state.matter_code == "M35"
    # The same dispatch again (redelivered) publishes nothing new.
    assert step(out.state, ManualDispatch(round=1, command=dispatch("zhangmin")), duty).tasks == []


def test_dispatcher_keys_dev_defaults_and_prod_requirement(monkeypatch: pytest.MonkeyPatch) -> None:
    assert holder_of_key({}, "dev-zhangmin", dev_mode=True) == "zhangmin"
    assert holder_of_key({}, "dev-zhangmin", dev_mode=False) is None
    keys = {"zhangmin": "k-7f3a9c", "liqiang": "k-11b2e0"}
    assert holder_of_key(keys, "k-11b2e0", dev_mode=True) == "liqiang"
    assert holder_of_key(keys, "dev-zhangmin", dev_mode=True) is None
    assert holder_of_key(keys, None, dev_mode=True) is None
    for name in ("GRIDHUB_MODE", "GRIDHUB_KAFKA_REPLICATION_FACTOR", "GRIDHUB_ROUTER_DISPATCHER_KEYS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GRIDHUB_MODE", "prod")
    monkeypatch.setenv("GRIDHUB_KAFKA_REPLICATION_FACTOR", "3")
    with pytest.raises(ValidationError, match="GRIDHUB_ROUTER_DISPATCHER_KEYS"):
        RouterSettings()
    monkeypatch.setenv("GRIDHUB_ROUTER_DISPATCHER_KEYS", '{"zhangmin": "dev-zhangmin"}')
    with pytest.raises(ValidationError, match="GRIDHUB_ROUTER_DISPATCHER_KEYS"):
        RouterSettings()
    monkeypatch.setenv("GRIDHUB_ROUTER_DISPATCHER_KEYS", '{"zhangmin": "6f1d0c2e9b"}')
    assert RouterSettings().dispatcher_keys == {"zhangmin": "6f1d0c2e9b"}


def test_the_views_backlog_gauges_count_waiting_events_by_state_and_cause(duty: DutyList) -> None:
    from types import SimpleNamespace

    from prometheus_client import CollectorRegistry

    from gridhub.kernel.settings import CommonSettings
    from services.router.triage_stage import TriageView

    registry = CollectorRegistry()
    view = TriageView(CommonSettings(), registry)

    def backlog(state: str, cause: str) -> float | None:
        return registry.get_sample_value("gridhub_router_triage_backlog_events", {"state": state, "cause": cause})

    assert backlog("queued", "low-confidence") == 0  # before any record: zero, not absent
    event = report(VAGUE, grid_code="PA-HX-02-001")
    command = queue_command(event, decide(event, duty), duty, NOW)
    view._apply([SimpleNamespace(value=command.to_bytes())])
    assert backlog("queued", "low-confidence") == 1
    assert registry.get_sample_value("gridhub_router_triage_oldest_queued_timestamp_seconds") == pytest.approx(
        NOW.timestamp()
    )
    view._apply([SimpleNamespace(value=claim("dev-1").to_bytes())])
    assert (backlog("queued", "low-confidence"), backlog("claimed", "low-confidence")) == (0, 1)
    view._apply([SimpleNamespace(value=dispatch("dev-1").to_bytes())])
    assert backlog("claimed", "low-confidence") == 0
    assert registry.get_sample_value("gridhub_router_triage_oldest_queued_timestamp_seconds") == 0
