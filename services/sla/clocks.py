"""A task's clocks and how unit updates move them; pure: no Kafka, no clock reads, no globals.

A task has up to four clocks (``deadlines.py`` computes each one's due time):

    签收 ack      started at receipt, met by ``accepted`` (or by ``contacted``/``resolved`` before any
                  ``accepted``: contacting or resolving is acknowledging, said so in the explanation)
    联系 contact  started at receipt, met by the first ``contacted``
    办结 resolve  started at receipt, met by ``resolved``
    回复 reply    started at resolution (added to ``clocks`` then), met by the first ``replied`` at or
                  after it; a reply sent before resolving is recorded (``replied_at``) but does not meet it

A met clock stops for good (``met_at``). ``paused`` stops every running clock (``paused_since``);
``resumed`` restarts them, moving each due time by the paused span in its own unit (see ``deadlines.py``).
``returned`` stops every open clock (``stopped_at``), and ``resolved`` stops an open contact clock: neither
was met. ``running(clock)`` is what alerts look at: not met, not stopped, not paused.

``recompute(state, calendar)`` recounts every open clock on a newly loaded calendar, keeping its pauses.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from gridhub.kernel.errors import PermanentError
from schemas import Clock, ClockKind, TaskDispatched, TaskStatus, TaskStatusChanged, TaskUpdated, UpdateKind
from schemas.task import ClockTerm
from services.sla.calendar import WorkingCalendar
from services.sla.deadlines import (
    CLOCK_ORDER,
    DEFAULT_POLICY,
    ClockPolicy,
    compute_due,
    meet,
    pause,
    recount,
    resume,
    stop,
    task_terms,
)

TERMINAL = {TaskStatus.CLOSED, TaskStatus.RETURNED}
AFTER_CLOSE = {UpdateKind.REPLIED, UpdateKind.FEEDBACK}
# Clocks that start at receipt; the reply clock starts at resolution.
AT_RECEIPT = (ClockKind.ACK, ClockKind.CONTACT, ClockKind.RESOLVE)


class TaskClockState(BaseModel):
    """What the SLA service keeps per task (one table row)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task_id: str
    unit_code: str
    status: TaskStatus
    received_at: datetime
    clocks: tuple[Clock, ...]
    # Every term of the task, the reply clock's included (it starts only at resolution).
    terms: tuple[ClockTerm, ...] = ()
    accepted_at: datetime | None = None
    contacted_at: datetime | None = None
    resolved_at: datetime | None = None
    replied_at: datetime | None = None
    satisfaction: int | None = None
    applied_updates: tuple[str, ...] = ()

    def clock(self, kind: ClockKind) -> Clock | None:
        """The clock of a kind, if it has started."""
        return next((c for c in self.clocks if c.kind is kind), None)

    def due(self, kind: ClockKind) -> datetime:
        """Due time of one started clock; KeyError when it has not started (reply before resolution)."""
        found = self.clock(kind)
        if found is None:
            raise KeyError(f"task {self.task_id} has no {kind.value} clock (yet)")
        return found.due_at

    def term(self, kind: ClockKind) -> ClockTerm | None:
        """The term of a clock kind, started or not."""
        return next((t for t in self.terms if t.kind is kind), None)


def running(clock: Clock) -> bool:
    """Whether a clock counts down now: not met, not stopped, not paused."""
    return clock.running


def fallback_years(state: TaskClockState) -> frozenset[int]:
    """Years the task's clocks counted with the weekends-only fallback (for a warning and a metric)."""
    return frozenset(year for c in state.clocks for year in c.fallback_years)


def start_clocks(
    task: TaskDispatched, calendar: WorkingCalendar, policy: ClockPolicy = DEFAULT_POLICY
) -> TaskClockState:
    """Start a task's ack, contact and resolve clocks at the time GridHub received its event."""
    terms = task_terms(task, policy)
    return TaskClockState(
        task_id=task.task_id,
        unit_code=task.unit_code,
        status=TaskStatus.OPEN,
        received_at=task.received_at,
        clocks=tuple(compute_due(t, task.received_at, calendar) for t in terms if t.kind in AT_RECEIPT),
        terms=terms,
    )


def _sorted(clocks: tuple[Clock, ...]) -> tuple[Clock, ...]:
    return tuple(sorted(clocks, key=lambda c: CLOCK_ORDER.index(c.kind)))


def _meet(
    clocks: tuple[Clock, ...], kind: ClockKind, at: datetime, calendar: WorkingCalendar, how: str = ""
) -> tuple[Clock, ...]:
    return tuple(meet(c, at, calendar, how) if c.kind is kind else c for c in clocks)


def _stop(
    clocks: tuple[Clock, ...], kinds: tuple[ClockKind, ...], at: datetime, calendar: WorkingCalendar, why: str
) -> tuple[Clock, ...]:
    return tuple(stop(c, at, calendar, why) if c.kind in kinds else c for c in clocks)


def _resolve(state: TaskClockState, at: datetime, calendar: WorkingCalendar) -> tuple[Clock, ...]:
    clocks = _meet(state.clocks, ClockKind.ACK, at, calendar, "（未单独签收，以办结视为签收）")
    clocks = _stop(clocks, (ClockKind.CONTACT,), at, calendar, "已办结而未记录联系")
    clocks = _meet(clocks, ClockKind.RESOLVE, at, calendar)
    reply_term = state.term(ClockKind.REPLY)
    if reply_term is not None and state.clock(ClockKind.REPLY) is None:
        reply = compute_due(reply_term, at, calendar)
        if state.replied_at is not None and state.replied_at >= at:
            reply = meet(reply, state.replied_at, calendar)
        clocks = _sorted((*clocks, reply))
    return clocks


def apply_update(state: TaskClockState, update: TaskUpdated, calendar: WorkingCalendar | None = None) -> TaskClockState:
    """Apply one unit update; the same update twice changes nothing; a wrong unit is refused.

    `calendar` counts working-day clocks on resume and starts the reply clock on resolution; pass the
    service's calendar (None: the chinesecalendar package alone, for tools and tests).
    """
    if update.update_id in state.applied_updates:
        return state
    if update.unit_code != state.unit_code:
        raise PermanentError("not-task-owner", f"unit {update.unit_code} does not hold task {state.task_id}")
    # The "131" rule's reply (回复) and the citizen's rating (回访) come after 办结.
    if state.status in TERMINAL and update.kind not in AFTER_CLOSE:
        raise PermanentError(
            "task-finished", f"task {state.task_id} is {state.status.value}; {update.kind.value} refused"
        )
    cal = calendar if calendar is not None else WorkingCalendar.default()
    at = update.occurred_at
    paused = state.status is TaskStatus.PAUSED
    clocks = state.clocks
    changes: dict[str, object] = {"applied_updates": (*state.applied_updates, update.update_id)}
    match update.kind:
        case UpdateKind.ACCEPTED:
            clocks = _meet(clocks, ClockKind.ACK, at, cal)
            changes["accepted_at"] = state.accepted_at or at
            if state.status is TaskStatus.OPEN:
                changes["status"] = TaskStatus.ACCEPTED
        case UpdateKind.CONTACTED:
            clocks = _meet(clocks, ClockKind.ACK, at, cal, "（未单独签收，以联系视为签收）")
            clocks = _meet(clocks, ClockKind.CONTACT, at, cal)
            changes["contacted_at"] = state.contacted_at or at
            if not paused:
                changes["status"] = TaskStatus.IN_PROGRESS
        case UpdateKind.RESOLVED:
            clocks = _resolve(state, at, cal)
            changes |= {"resolved_at": at, "status": TaskStatus.CLOSED}
        case UpdateKind.REPLIED:
            if state.resolved_at is not None and at >= state.resolved_at:
                clocks = _meet(clocks, ClockKind.REPLY, at, cal)
            changes["replied_at"] = at
        case UpdateKind.RETURNED:
            clocks = _stop(clocks, CLOCK_ORDER, at, cal, "任务已退回")
            changes["status"] = TaskStatus.RETURNED
        case UpdateKind.PAUSED:
            clocks = tuple(pause(c, at, update.reason) for c in clocks)
            changes["status"] = TaskStatus.PAUSED
        case UpdateKind.RESUMED:
            if paused:
                clocks = tuple(resume(c, at, cal) for c in clocks)
                changes["status"] = TaskStatus.IN_PROGRESS
        case UpdateKind.FEEDBACK:
            changes["satisfaction"] = update.satisfaction
        case UpdateKind.MEDIATION_FAILED:
            pass  # the router acts on it (the mediation ladder); no clock moves
    changes["clocks"] = clocks
    return state.model_copy(update=changes)


def recompute(state: TaskClockState, calendar: WorkingCalendar) -> TaskClockState:
    """Recount every open clock on a newly loaded calendar, keeping pauses; the same state when nothing moved."""
    clocks = tuple(recount(c, calendar) for c in state.clocks)
    if all(new is old for new, old in zip(clocks, state.clocks, strict=True)):
        return state
    return state.model_copy(update={"clocks": clocks})


def _on_time(state: TaskClockState, kind: ClockKind) -> bool | None:
    clock = state.clock(kind)
    if clock is None or clock.met_at is None:
        return None
    return clock.met_at < clock.due_at


def status_event(state: TaskClockState, now: datetime, causation_id: str | None) -> TaskStatusChanged:
    """The TaskStatusChanged that publishes a state, with on-time flags once they are known."""
    return TaskStatusChanged(
        causation_id=causation_id,
        task_id=state.task_id,
        unit_code=state.unit_code,
        status=state.status,
        clocks=state.clocks,
        accepted_at=state.accepted_at,
        contacted_at=state.contacted_at,
        resolved_at=state.resolved_at,
        replied_at=state.replied_at,
        on_time=_on_time(state, ClockKind.RESOLVE),
        contact_on_time=_on_time(state, ClockKind.CONTACT),
        ack_on_time=_on_time(state, ClockKind.ACK),
        reply_on_time=_on_time(state, ClockKind.REPLY),
        satisfaction=state.satisfaction,
        changed_at=now,
    )
