"""The task: an event routed to one unit, with its clocks."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from schemas.base import AwareDatetime, Message, UlidStr
from schemas.event import Location, Urgency


class TaskRole(StrEnum):
    """主体责任 (primary) or 配合责任 (co-operating)."""

    PRIMARY = "primary"
    CO_OPERATING = "co-operating"


class Tier(StrEnum):
    """Who handles a matter under 属地管理: the township itself or a county department."""

    TOWNSHIP = "township"
    COUNTY = "county"
    COMMAND_CENTRE = "command-centre"


class DeadlineClass(StrEnum):
    """限时办结 classes: 2 hours, 2 working days, 7 working days."""

    URGENT = "urgent"
    PUBLIC_SERVICE = "public-service"
    STANDARD = "standard"


class ClockKind(StrEnum):
    """The separate clocks on one task ("131": contact 1 h, resolve, reply 1 day after solving)."""

    CONTACT = "contact"
    RESOLVE = "resolve"


class DurationUnit(StrEnum):
    """Wall-clock hours, or working days on China's statutory calendar."""

    HOURS = "hours"
    WORKING_DAYS = "working-days"


class ClockTerm(BaseModel):
    """One time limit the duty list sets for a task; the SLA service turns it into a due time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ClockKind
    amount: int = Field(gt=0)
    unit: DurationUnit


class RoutingDecision(BaseModel):
    """Why the router chose this unit: matter, rule, confidence, list version."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    matter_code: str | None
    matter_name: str | None
    rule: str = Field(description="Which rule decided: explicit-category, channel-category, keywords, triage.")
    confidence: float = Field(ge=0, le=1)
    reason: str = Field(description="Human-readable reason, e.g. matched words.")
    duty_list_version: str
    triage: bool = False


class TaskDispatched(Message):
    """A task for one unit, created from an event by the router."""

    task_id: UlidStr
    event_id: UlidStr
    unit_code: str
    unit_name: str
    role: TaskRole
    matter_code: str | None
    tier: Tier
    deadline_class: DeadlineClass
    urgency: Urgency
    title: str
    description: str
    location: Location
    received_at: AwareDatetime = Field(description="When GridHub received the event; clocks start here.")
    dispatched_at: AwareDatetime
    deadlines: tuple[ClockTerm, ...] = Field(
        description="Time limits from the duty list; due times are computed by the SLA service."
    )
    decision: RoutingDecision
