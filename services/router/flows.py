"""An event's life after its first routing: returns, manual dispatch, the mediation ladder, summons; pure.

The router keeps one `FlowState` per routed event (the event, its matter, every task it got, who returned
it, where it is on the mediation ladder) and feeds it `FlowInput`s: `Routed` (the first routing), a unit's
`UnitReported` update (returned, mediation-failed), a township's `Summoned` departments and a dispatcher's
`ManualDispatch`. `apply` answers with the new state and what to publish: tasks, triage queue commands, and
the update closing the command centre's triage task. Inputs that reach an event before its `Routed` are held
and applied after it; an input applied before (same update or command id) changes nothing, so replays are
harmless. No Kafka, no clock: `now` is handed in.
"""

from __future__ import annotations

from datetime import datetime

from schemas import EventNormalised, QueueForTriage, TaskRole, TaskUpdated, TriageCause, UpdateKind
from schemas.dutylist import DutyList
from services.router import ladder
from services.router.decide import Assignment, Decision, place
from services.router.flow_state import (
    FLOW_INPUT,
    FlowInput,
    FlowPolicy,
    FlowState,
    ManualDispatch,
    Outcome,
    Routed,
    Summoned,
    TaskRef,
    UnitReported,
    build,
    closed_tasks,
    derived_id,
    holding,
    input_id,
    refs,
    task_of,
)
from services.router.returns import Reroute, ReturnHistory, after_return
from services.router.triage import dispatch_problems

__all__ = [
    "FLOW_INPUT",
    "FlowInput",
    "FlowPolicy",
    "FlowState",
    "ManualDispatch",
    "Outcome",
    "Routed",
    "Summoned",
    "TaskRef",
    "UnitReported",
    "apply",
    "queue_command",
]


def queue_command(
    event: EventNormalised, decision: Decision, duty: DutyList, now: datetime, round_no: int = 0
) -> QueueForTriage:
    """The queue command for an event the decide stage sent to triage."""
    cls = decision.classification
    sure = cls is not None and cls.matter is not None and cls.confidence >= duty.confidence_threshold
    routing = decision.routing
    return QueueForTriage(
        causation_id=event.message_id,
        event_id=event.event_id,
        round=round_no,
        title=event.title,
        channel=event.sources[0].source,
        matter_code=routing.matter_code,
        matter_name=routing.matter_name,
        confidence=routing.confidence,
        cause=TriageCause.NO_TERRITORY if sure else TriageCause.LOW_CONFIDENCE,
        reason=routing.reason,
        township=routing.township,
        received_at=event.received_at,
        queued_at=now,
    )


def apply(state: FlowState | None, item: FlowInput, duty: DutyList, policy: FlowPolicy, now: datetime) -> Outcome:
    """The state after one input, and what to publish."""
    state = state or FlowState()
    if isinstance(item, Routed):
        if state.event is not None:
            return Outcome(state, notes=["已记录首次派单（重放）"])
        out = Outcome(
            state.model_copy(
                update={
                    "event": item.event,
                    "matter_code": item.matter_code,
                    "confidence": item.confidence,
                    "triage": item.triage,
                    "tasks": item.tasks,
                    "applied": (input_id(item),),
                    "pending": (),
                }
            )
        )
        for held in state.pending:  # inputs that arrived first, in their order
            step = apply(out.state, held, duty, policy, now)
            notes = out.notes + step.notes + ([step.refused] if step.refused else [])
            out = Outcome(
                step.state, out.tasks + step.tasks, out.triage + step.triage, out.updates + step.updates, notes
            )
        return out
    if state.event is None:
        if any(input_id(p) == input_id(item) for p in state.pending):
            return Outcome(state)
        return Outcome(state.model_copy(update={"pending": (*state.pending, item)}), notes=["事件尚未记录，暂存"])
    if input_id(item) in state.applied:
        return Outcome(state, notes=["已处理（重放）"])
    if isinstance(item, UnitReported):
        out = _returned(state, item, duty, policy, now) if item.kind == "returned" else _failed(state, item, duty, now)
    elif isinstance(item, Summoned):
        out = _summoned(state, item, duty, now)
    else:
        out = _manual(state, item, duty, now)
    out.state = out.state.model_copy(update={"applied": (*out.state.applied, input_id(item))})
    return out


def _to_triage(state: FlowState, reason: str, duty: DutyList, now: datetime, **changes: object) -> Outcome:
    event = state.event
    assert event is not None
    round_no = state.round + 1
    centre = Assignment(duty.county.command_centre, TaskRole.PRIMARY)
    tasks = build(
        state,
        duty,
        now,
        [centre],
        matter_code=state.matter_code,
        rule="triage",
        reason=f"转指挥中心人工分拨：{reason}",
        confidence=state.confidence,
        round_no=round_no,
        returned_by=changes.get("returned_by", state.returned_by),
    )
    matter = duty.matter(state.matter_code) if state.matter_code else None
    command = QueueForTriage(
        causation_id=event.message_id,
        event_id=event.event_id,
        round=round_no,
        title=event.title,
        channel=event.sources[0].source,
        matter_code=matter.code if matter else None,
        matter_name=matter.name if matter else None,
        confidence=state.confidence,
        cause=TriageCause.RETURNS,
        reason=reason,
        township=place(event, duty).township,
        received_at=event.received_at,
        queued_at=now,
    )
    new = state.model_copy(
        update={"round": round_no, "triage": True, "tasks": state.tasks + refs(tasks), "rung": None} | changes
    )
    return Outcome(new, tasks=tasks, triage=[command], notes=[reason])


def _returned(state: FlowState, item: UnitReported, duty: DutyList, policy: FlowPolicy, now: datetime) -> Outcome:
    task = task_of(state, item.task_id)
    if task is None or task.unit_code != item.unit_code:
        return Outcome(state, refused=f"任务 {item.task_id} 不属于单位 {item.unit_code} 或不属于该事件")
    closed = state.model_copy(update={"tasks": closed_tasks(state, task.task_id)})
    if task.unit_code == duty.county.command_centre:
        return Outcome(closed, notes=["指挥中心的分拨任务不退回：由调度员在分拨队列中派单"])
    current = task.role is TaskRole.PRIMARY and task.round == state.round and task.open
    if not current:
        # A co-operating or summoned copy (or an older round's task): that unit is never routed to again.
        returned_by = tuple(dict.fromkeys((*state.returned_by, task.unit_code)))
        return Outcome(closed.model_copy(update={"returned_by": returned_by}), notes=[f"{task.unit_code} 退回其副本"])
    event = state.event
    assert event is not None
    history = ReturnHistory(state.returned_by, state.returns)
    next_step = after_return(
        event, state.matter_code, task.unit_code, item.reason, history, duty, policy.max_returns, state.confidence
    )
    counts = {"returned_by": next_step.returned_by, "returns": next_step.returns}
    if not isinstance(next_step, Reroute):
        return _to_triage(closed, next_step.reason, duty, now, **counts)
    round_no = state.round + 1
    busy = holding(closed)
    assignments = [Assignment(next_step.primary, TaskRole.PRIMARY)] + [
        Assignment(c, TaskRole.CO_OPERATING) for c in next_step.co_operating if c not in busy
    ]
    tasks = build(
        closed,
        duty,
        now,
        assignments,
        matter_code=next_step.matter.code,
        rule="returned-reroute",
        reason=next_step.reason,
        confidence=next_step.confidence,
        round_no=round_no,
        returned_by=next_step.returned_by,
    )
    new = closed.model_copy(
        update={
            "matter_code": next_step.matter.code,
            "confidence": next_step.confidence,
            "round": round_no,
            "tasks": closed.tasks + refs(tasks),
            "rung": None,
            **counts,
        }
    )
    return Outcome(new, tasks=tasks, notes=[next_step.reason])


def _failed(state: FlowState, item: UnitReported, duty: DutyList, now: datetime) -> Outcome:
    task = task_of(state, item.task_id)
    if task is None or task.unit_code != item.unit_code:
        return Outcome(state, refused=f"任务 {item.task_id} 不属于单位 {item.unit_code} 或不属于该事件")
    matter = duty.matter(state.matter_code) if state.matter_code else None
    if matter is None or not matter.mediation:
        return Outcome(state, notes=[f"事项 {state.matter_code} 不是矛盾纠纷调解事项，调解不成仅作记录"])
    if not (task.role is TaskRole.PRIMARY and task.round == state.round and task.open):
        return Outcome(state, notes=["非当前主办任务的调解不成，仅作记录"])
    event = state.event
    assert event is not None
    where = place(event, duty)
    rung = ladder.Rung(*state.rung) if state.rung else None
    step = ladder.after_failure(rung, duty.unit(task.unit_code), where.township, where.village, item.reason, duty)
    if isinstance(step, ladder.StayAt):
        rung_now = (step.rung.level, step.rung.failures)
        return Outcome(state.model_copy(update={"rung": rung_now}), notes=[step.reason])
    round_no = state.round + 1
    tasks = build(
        state,
        duty,
        now,
        [Assignment(step.unit_code, TaskRole.PRIMARY)],
        matter_code=matter.code,
        rule="mediation-ladder",
        reason=step.reason,
        confidence=state.confidence,
        round_no=round_no,
        returned_by=state.returned_by,
        mediation_level=ladder.LEVELS[step.rung.level].key,
    )
    new = state.model_copy(
        update={
            "round": round_no,
            "tasks": closed_tasks(state, task.task_id) + refs(tasks),
            "rung": (step.rung.level, step.rung.failures),
        }
    )
    return Outcome(new, tasks=tasks, notes=[step.reason])


def _summoned(state: FlowState, item: Summoned, duty: DutyList, now: datetime) -> Outcome:
    task = task_of(state, item.task_id)
    units = {u.code: u for u in duty.units}
    summoner = units.get(item.unit_code)
    if task is None or task.unit_code != item.unit_code or not task.open:
        return Outcome(state, refused=f"单位 {item.unit_code} 未持有进行中的任务 {item.task_id}，不能吹哨")
    if summoner is None or summoner.kind != "township-centre":
        return Outcome(state, refused=f"只有乡镇综治中心可以吹哨召集部门，{item.unit_code} 不是")
    unknown = [d for d in item.departments if d not in units or units[d].kind != "county-department"]
    if unknown:
        return Outcome(state, refused=f"不是县直部门：{'、'.join(unknown)}")
    busy = holding(state)
    called = [d for d in dict.fromkeys(item.departments) if d not in busy]
    if not called:
        return Outcome(state, notes=["被召集部门均已持有该事件的任务"])
    names = "、".join(units[d].name for d in called)
    note = f"；说明：{item.note}" if item.note else ""
    tasks = build(
        state,
        duty,
        now,
        [Assignment(d, TaskRole.SUMMONED) for d in called],
        matter_code=state.matter_code,
        rule="summons",
        reason=f"乡镇吹哨、部门报到：{summoner.name} 就任务 {task.task_id} 吹哨，召集 {names} 报到{note}",
        confidence=state.confidence,
        round_no=state.round,
        returned_by=state.returned_by,
        summoned_by=summoner.code,
    )
    return Outcome(state.model_copy(update={"tasks": state.tasks + refs(tasks)}), tasks=tasks)


def _manual(state: FlowState, item: ManualDispatch, duty: DutyList, now: datetime) -> Outcome:
    command = item.command
    if item.round <= state.round:
        return Outcome(state, notes=[f"人工派单第 {item.round} 轮已过时（当前第 {state.round} 轮）"])
    if problems := dispatch_problems(duty, command.matter_code, command.primary, command.co_operating):
        return Outcome(state, refused="；".join(p["message"] for p in problems))
    event = state.event
    assert event is not None
    primary = duty.unit(command.primary)
    co_names = "、".join(duty.unit(c).name for c in command.co_operating)
    matter = duty.matter(command.matter_code) if command.matter_code else None
    reason = f"人工派单：调度员 {command.dispatcher} 派至 {primary.name} 主办"
    reason += f"，{co_names} 配合" if co_names else ""
    reason += f"；事项 {matter.code} {matter.name}" if matter else "；未指定事项"
    reason += f"；说明：{command.note}" if command.note else ""
    assignments = [Assignment(command.primary, TaskRole.PRIMARY)]
    assignments += [Assignment(c, TaskRole.CO_OPERATING) for c in dict.fromkeys(command.co_operating)]
    tasks = build(
        state,
        duty,
        now,
        assignments,
        matter_code=command.matter_code,
        rule="manual",
        reason=reason,
        confidence=1.0,
        round_no=item.round,
        returned_by=state.returned_by,
        dispatcher=command.dispatcher,
    )
    centre = duty.county.command_centre
    closing = [t for t in state.tasks if t.open and t.unit_code == centre]
    updates = [
        TaskUpdated(
            causation_id=command.message_id,
            update_id=derived_id(event.event_id, f"triage-closed|{t.task_id}"),
            task_id=t.task_id,
            unit_code=centre,
            kind=UpdateKind.RESOLVED,
            occurred_at=command.requested_at,
            note=reason[:2000],
        )
        for t in closing
    ]
    tasks_before = state.tasks
    for t in closing:
        tasks_before = tuple(
            r.model_copy(update={"open": False}) if r.task_id == t.task_id else r for r in tasks_before
        )
    new = state.model_copy(
        update={
            "matter_code": command.matter_code,
            "confidence": 1.0,
            "round": item.round,
            "triage": False,
            "tasks": tasks_before + refs(tasks),
            "rung": None,
        }
    )
    return Outcome(new, tasks=tasks, updates=updates, notes=[reason])
