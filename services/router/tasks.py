"""Tasks from a routing decision: one TaskDispatched per assignment, with ids that repeat on a replay; pure."""

from __future__ import annotations

import hashlib
from datetime import datetime

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
from schemas.base import id_at_time_of
from schemas.dutylist import DutyList
from services.router.decide import Decision
from services.router.redaction import redact, reporter_for


def task_id_for(event_id: str, unit_code: str, role: TaskRole, round_no: int = 0) -> str:
    """A task id that is the same every time the same event is routed to the same unit, role and round."""
    # Deterministic so a replayed event yields the same task (and the same webhook-id downstream). Round 0
    # (the first routing) keeps the id it always had; a re-route, manual dispatch or ladder step is a new task.
    seed = f"{event_id}|{unit_code}|{role.value}" + (f"|{round_no}" if round_no else "")
    return id_at_time_of(event_id, hashlib.sha256(seed.encode()).digest())


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
    terms = (
        ClockTerm(kind=ClockKind.CONTACT, amount=duty.contact_within_hours, unit=DurationUnit.HOURS),
        ClockTerm(kind=ClockKind.RESOLVE, amount=resolve_term.amount, unit=resolve_term.unit),
    )
    round_no = decision.routing.round
    return [
        redact(
            TaskDispatched(
                causation_id=event.message_id,
                task_id=task_id_for(event.event_id, a.unit_code, a.role, round_no),
                event_id=event.event_id,
                unit_code=a.unit_code,
                unit_name=duty.unit(a.unit_code).name,
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
                reporter=reporter_for(event, a.unit_code, duty),
            ),
            event,
        )
        for a in decision.assignments
    ]
