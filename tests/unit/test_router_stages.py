"""The router's batch-loop parts without a broker: records in, outputs and state out, rollback undoes state."""

from __future__ import annotations

import zlib
from datetime import timedelta
from typing import Any, NamedTuple

import pytest
from prometheus_client import CollectorRegistry

from gridhub.kernel.batchout import KafkaDeadLetters, Outgoing
from gridhub.kernel.errors import PermanentError
from gridhub.kernel.journal import Journal
from gridhub.kernel.settings import CommonSettings
from schemas import (
    CaseLinked,
    Channel,
    DispatchTriagedEvent,
    EventNormalised,
    TaskDispatched,
    TaskRole,
    TaskUpdated,
    UpdateKind,
    new_id,
)
from schemas.dutylist import DutyList, load_duty_list
from services.router.case_stage import CaseStage, routed_bytes
from services.router.decide import decide
from services.router.flow_stage import FlowStage
from services.router.flows import FLOW_INPUT, FlowPolicy, Routed, TaskRef, queue_command
from services.router.merging import MergePolicy
from services.router.signature import TextRules
from services.router.tasks import build_tasks
from services.router.triage_book import SWEEP_EVERY, step
from services.router.triage_stage import TriageOwner
from tests.unit.router_cases import NOW, PETITIONER, RECEIVED, report

COMMON = CommonSettings(mode="dev", topic_prefix="t.")
T = COMMON.topic


class Record(NamedTuple):
    """What the batch loop hands a handler (the fields the router reads)."""

    topic: str
    partition: int
    key: bytes | None
    value: bytes
    offset: int = 0
    timestamp: int = 0


@pytest.fixture(scope="module")
def duty() -> DutyList:
    return load_duty_list()


def on(topic: str, outs: Any) -> list[Outgoing]:
    """The outputs for one topic."""
    return [o for o in outs if o.topic == T(topic)]


def case_stage(duty: DutyList, journal: Journal, *, merge: bool = True) -> CaseStage:
    stage = CaseStage(COMMON, lambda: duty, MergePolicy(), TextRules.load(), journal, merge_enabled=merge)
    stage.open_cases[0] = {}
    return stage


def burst_pipe(channel: Channel, text: str, minutes: int) -> EventNormalised:
    event = report(
        text,
        source=channel,
        event_id=new_id(),
        address="城关镇东街社区幸福小区3号楼",
        district="城关镇",
        grid_code="PA-CG-01-001",
    )
    at = RECEIVED + timedelta(minutes=minutes)
    return event.model_copy(update={"received_at": at, "reported_at": at})


def test_routed_bytes_are_the_routed_model_around_the_events_own_bytes(duty: DutyList) -> None:
    events = [
        report("小区下水道堵了，污水漫到路上", grid_code="PA-CG-01-001", event_id=new_id()),
        report("有点事想问问", event_id=new_id()),  # vague: triage, no matter
        report("信访：反映村委会克扣补助", source=Channel.PETITION, reporter=PETITIONER, event_id=new_id()),
    ]
    for event in events:
        decision = decide(event, duty)
        tasks = build_tasks(event, decision, duty, NOW)
        parsed = FLOW_INPUT.validate_json(routed_bytes(event.to_bytes(), decision, tasks))
        cls = decision.classification
        assert parsed == Routed(
            event=event,
            matter_code=decision.routing.matter_code,
            confidence=cls.confidence if cls else decision.routing.confidence,
            triage=decision.routing.triage,
            tasks=tuple(TaskRef(task_id=t.task_id, unit_code=t.unit_code, role=t.role, round=0) for t in tasks),
        )


def test_territory_rekeys_by_township_or_routes_at_once_with_merging_off(duty: DutyList) -> None:
    event = burst_pipe(Channel.HOTLINE_12345, "幸福小区3号楼下水管爆裂，水漫到路上", 0)
    record = Record(T("events.normalised"), 3, event.event_id.encode(), event.to_bytes())
    (out,) = case_stage(duty, Journal()).territory(record)
    assert (out.topic, out.key, out.value) == (T("router.cases"), b"PA-CG", record.value)
    straight = case_stage(duty, Journal(), merge=False).territory(record)
    assert on("tasks.dispatched", straight) and on("router.flows", straight)
    assert not on("router.cases", straight)


def test_a_second_channels_report_is_linked_a_replay_repeats_and_a_rollback_forgets(duty: DutyList) -> None:
    journal = Journal()
    stage = case_stage(duty, journal)
    hotline = burst_pipe(Channel.HOTLINE_12345, "幸福小区3号楼下水管爆裂，水漫到路上，请尽快处理。", 0)
    wechat = burst_pipe(Channel.WECHAT, "3号楼门口水管爆了好大水", 12)

    def record(event: EventNormalised) -> Record:
        return Record(T("router.cases"), 0, b"PA-CG", event.to_bytes())

    first = stage.case(record(hotline))
    tasks = [TaskDispatched.model_validate_json(o.value or b"") for o in on("tasks.dispatched", first)]
    assert tasks and all(t.event_id == hotline.event_id for t in tasks)
    (state,) = on("router.open-cases", first)
    assert state.after_acks and state.partition == 0 and state.key == b"PA-CG|" + hotline.event_id.encode()
    assert on("router.flows", first)[0].key == hotline.event_id.encode()
    journal.seal()
    journal.commit_oldest()

    second = stage.case(record(wechat))
    assert not on("tasks.dispatched", second) and not on("router.flows", second)
    (link_out,) = on("cases.links", second)
    link = CaseLinked.model_validate_json(link_out.value or b"")
    assert link.case_id == hotline.event_id and link.event_id == wechat.event_id
    again = stage.case(record(wechat))  # redelivered before the commit
    assert on("cases.links", again)[0].value == link_out.value
    assert not on("router.open-cases", again)  # nothing new to keep

    journal.rollback()  # the batch is read again: the table is as before it
    assert [c.report.event_id for c in stage.open_cases[0][b"PA-CG"].rows] == [hotline.event_id]
    replayed = stage.case(record(hotline))  # the first report again: the same tasks, no new state
    assert [o.key for o in on("tasks.dispatched", replayed)] == [t.task_id.encode() for t in tasks]
    assert not on("router.open-cases", replayed)


def test_a_malformed_event_is_a_permanent_failure(duty: DutyList) -> None:
    with pytest.raises(PermanentError) as caught:
        case_stage(duty, Journal()).case(Record(T("router.cases"), 0, b"-", b'{"event_id": 1}'))
    assert caught.value.reason == "malformed-event"


def flow_stage(duty: DutyList, journal: Journal) -> FlowStage:
    dead = KafkaDeadLetters(COMMON, "router", CollectorRegistry())
    counts: list[tuple[str, str]] = []
    stage = FlowStage(COMMON, lambda: duty, FlowPolicy(), journal, dead, lambda k, o: counts.append((k, o)))
    stage.flows[1], stage.index[1], stage.pending[1] = {}, {}, {}
    stage.index[2], stage.pending[2] = {}, {}
    return stage


def test_a_return_that_beats_its_task_is_held_then_rerouted_never_back(duty: DutyList) -> None:
    journal = Journal()
    stage = flow_stage(duty, journal)
    event = report("村里的路灯坏了好几盏，晚上太黑", grid_code="PA-CG-01-001", event_id=new_id())
    decision = decide(event, duty)
    tasks = build_tasks(event, decision, duty, NOW)
    primary = next(t for t in tasks if t.role is TaskRole.PRIMARY)
    routed = routed_bytes(event.to_bytes(), decision, tasks)
    assert stage.flow(Record(T("router.flows"), 1, event.event_id.encode(), routed)) == ()
    assert stage.flows[1][event.event_id.encode()] == routed  # kept unparsed
    journal.seal()
    journal.commit_oldest()

    update = TaskUpdated(
        update_id=new_id(),
        task_id=primary.task_id,
        unit_code=primary.unit_code,
        kind=UpdateKind.RETURNED,
        occurred_at=NOW,
        reason="不属于本单位职责",
    )
    (held,) = stage.update(Record(T("tasks.updates"), 2, primary.task_id.encode(), update.to_bytes()))
    assert held.topic == T("router.flow-state") and held.key == b"pending:" + primary.task_id.encode()
    assert held.partition == 2 and held.after_acks
    other = update.model_copy(update={"kind": UpdateKind.ACCEPTED, "update_id": new_id()})
    assert stage.update(Record(T("tasks.updates"), 2, primary.task_id.encode(), other.to_bytes())) == ()

    relayed, tombstone = stage.task(Record(T("tasks.dispatched"), 2, primary.task_id.encode(), primary.to_bytes()))
    assert (relayed.topic, relayed.key) == (T("router.flows"), event.event_id.encode())
    assert (tombstone.key, tombstone.value) == (b"pending:" + primary.task_id.encode(), None)

    outs = stage.flow(Record(T("router.flows"), 1, event.event_id.encode(), relayed.value or b""))
    rerouted = [TaskDispatched.model_validate_json(o.value or b"") for o in on("tasks.dispatched", outs)]
    assert rerouted and primary.unit_code not in {t.unit_code for t in rerouted}
    (state,) = on("router.flow-state", outs)
    assert state.key == event.event_id.encode() and state.after_acks
    journal.rollback()  # the updates, the task and the return are read again: the state is as before them
    assert stage.flows[1][event.event_id.encode()] == routed
    assert not stage.index[2] and not stage.pending[2]


def test_the_queue_owner_hands_a_dispatch_on_once_and_again_on_a_replay(duty: DutyList) -> None:
    journal = Journal()
    owner = TriageOwner(COMMON, journal, lambda kind, outcome: None)
    owner.items[0] = {}
    event = report("有点事想问问", event_id=new_id())
    queued = queue_command(event, decide(event, duty), duty, NOW)
    assert owner.command(Record(T("router.commands"), 0, b"triage", queued.to_bytes())) == ()
    command = DispatchTriagedEvent(event_id=event.event_id, dispatcher="d1", requested_at=NOW, primary="PA-CG")
    record = Record(T("router.commands"), 0, b"triage", command.to_bytes())
    (manual,) = owner.command(record)
    assert manual.topic == T("router.flows") and manual.key == event.event_id.encode()
    assert owner.command(record) == (manual,)  # redelivered: handed on again, the flow ignores the repeat
    # Any replica's view folds the same log to the same items.
    view: dict[str, Any] = {}
    for c in (queued, command):
        for event_id, item in step(view, c).changes.items():
            view[event_id] = item
    assert view == owner.items[0]


def test_a_dispatched_item_is_dropped_a_week_after_at_a_sweeping_queue_command(duty: DutyList) -> None:
    items: dict[str, Any] = {}
    first = report("有点事想问问", event_id=new_id())
    items |= step(items, queue_command(first, decide(first, duty), duty, NOW)).changes
    done = DispatchTriagedEvent(event_id=first.event_id, dispatcher="d1", requested_at=NOW, primary="PA-CG")
    items |= step(items, done).changes
    sweeps = 0
    for n in range(400):  # later queue commands; the ones whose event id picks them sweep
        later = report(f"还有点事{n}", event_id=new_id())
        changes = step(items, queue_command(later, decide(later, duty), duty, NOW + timedelta(days=8))).changes
        swept = zlib.crc32(later.event_id.encode()) % SWEEP_EVERY == 0
        assert (first.event_id in changes) == (swept and first.event_id in items)
        sweeps += swept
        items = {k: v for k, v in (items | changes).items() if v is not None}
    assert sweeps and first.event_id not in items and len(items) == 400


def test_first_routings_are_counted_by_unit_and_role(duty: DutyList) -> None:
    stage = case_stage(duty, Journal(), merge=False)
    event = burst_pipe(Channel.HOTLINE_12345, "幸福小区3号楼下水管爆裂，水漫到路上", 0)
    outs = stage.territory(Record(T("events.normalised"), 3, event.event_id.encode(), event.to_bytes()))
    tasks = [TaskDispatched.model_validate_json(o.value) for o in on("tasks.dispatched", outs)]
    assert len(tasks) >= 2  # a primary and its co-operating units
    expected: dict[tuple[str, str], int] = {}
    for t in tasks:
        expected[(t.unit_code, t.role.value)] = expected.get((t.unit_code, t.role.value), 0) + 1
    assert stage.counts.unit_tasks == expected
    assert sum(stage.counts.tasks.values()) == len(tasks)
