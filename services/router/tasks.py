"""Tasks from a routing decision: one TaskDispatched per assignment, with ids that repeat on a replay; pure."""

from __future__ import annotations

import hashlib
from datetime import datetime
from functools import lru_cache

from schemas import (
    ClockKind,
    ClockTerm,
    DeadlineClass,
    DurationUnit,
    EventNormalised,
    TaskDispatched,
    TaskRole,
    Urgency,
)
from schemas.base import id_at_time_of, new_id
from schemas.dutylist import DutyList
from schemas.task import TaskReporter
from services.router.decide import Decision, router_index
from services.router.redaction import redact, reporter_for


def task_id_for(event_id: str, unit_code: str, role: TaskRole, round_no: int = 0) -> str:
    """A task id that is the same every time the same event is routed to the same unit, role and round."""
    # Deterministic so a replayed event yields the same task (and the same webhook-id downstream). Round 0
    # (the first routing) keeps the id it always had; a re-route, manual dispatch or ladder step is a new task.
    seed = f"{event_id}|{unit_code}|{role.value}" + (f"|{round_no}" if round_no else "")
    return id_at_time_of(event_id, hashlib.sha256(seed.encode()).digest())


@lru_cache(maxsize=64)
def _terms(contact_hours: int, resolve_amount: int, resolve_unit: DurationUnit) -> tuple[ClockTerm, ClockTerm]:
    # The same few pairs for every task: built (and validated) once each.
    return (
        ClockTerm(kind=ClockKind.CONTACT, amount=contact_hours, unit=DurationUnit.HOURS),
        ClockTerm(kind=ClockKind.RESOLVE, amount=resolve_amount, unit=resolve_unit),
    )


def build_tasks(event: EventNormalised, decision: Decision, duty: DutyList, now: datetime) -> list[TaskDispatched]:
    """One TaskDispatched per assignment of a decision; an urgent report always gets the 2-hour class.

    Each copy carries the reporter as its unit may see them, redacted for the unit a petition complains about
    and, for a confidential reporter, for every unit but the petition office (`redaction.py`).
    """
    urgent = event.urgency is Urgency.URGENT
    deadline_class = (
        DeadlineClass.URGENT
        if urgent
        else (decision.matter.deadline_class if decision.matter else DeadlineClass.STANDARD)
    )
    resolve_term = duty.deadline_classes[deadline_class]["resolve"]
    terms = _terms(duty.contact_within_hours, resolve_term.amount, resolve_term.unit)
    round_no = decision.routing.round
    units = router_index(duty).units
    # Only a complaint about a unit or a confidential reporter makes units see the reporter differently.
    per_unit = bool(event.complained_unit) or event.reporter.confidential
    shared: TaskReporter | None = None
    tasks: list[TaskDispatched] = []
    first: TaskDispatched | None = None
    for a in decision.assignments:
        task_id = task_id_for(event.event_id, a.unit_code, a.role, round_no)
        unit_name = units[a.unit_code].name
        if per_unit or shared is None:
            reporter = reporter_for(event, a.unit_code, duty)
            shared = reporter
        else:
            reporter = shared
        if first is None:
            first = TaskDispatched(
                causation_id=event.message_id,
                task_id=task_id,
                event_id=event.event_id,
                unit_code=a.unit_code,
                unit_name=unit_name,
                role=a.role,
                matter_code=decision.matter.code if decision.matter else None,
                tier=decision.tier,
                deadline_class=deadline_class,
                urgency=event.urgency,
                title=event.title,
                description=event.description,
                location=event.location,
                received_at=event.received_at,
                dispatched_at=now,
                deadlines=terms,
                decision=decision.routing,
                reporter=reporter,
            )
            task = first
        else:
            # The other copies differ from the first, validated one only in values that are valid by
            # construction (an id, the list's own unit, a role, a validated reporter): copied, not re-validated.
            task = first.model_copy(
                update={
                    "message_id": new_id(),
                    "task_id": task_id,
                    "unit_code": a.unit_code,
                    "unit_name": unit_name,
                    "role": a.role,
                    "reporter": reporter,
                }
            )
        tasks.append(redact(task, event))
    return tasks
