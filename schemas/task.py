"""The task: an event routed to one unit, with its clocks."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from schemas.base import AwareDatetime, Message, UlidStr
from schemas.event import Location, Urgency


class TaskRole(StrEnum):
    """主体责任 (primary), 配合责任 (co-operating), or a department a township summoned (吹哨报到)."""

    PRIMARY = "primary"
    CO_OPERATING = "co-operating"
    SUMMONED = "summoned"


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
    """The separate clocks on one task: 签收 (ack), and "131": contact 1 h, resolve, reply 1 day after solving."""

    ACK = "ack"
    CONTACT = "contact"
    RESOLVE = "resolve"
    REPLY = "reply"


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
    rule: str = Field(
        description="Which rule decided: explicit-category, channel-category, channel-candidates (a coarse "
        "channel category narrowed by the words), keywords, tie-similarity (an exact tie of two units' words "
        "settled by similarity to the list's own text), text-similarity (no word of the list, the text close to "
        "one matter's), triage."
    )
    confidence: float = Field(ge=0, le=1)
    reason: str = Field(
        description="Human-readable reason (Chinese): rule, matched words and weights, runner-up, place."
    )
    duty_list_version: str
    triage: bool = False
    township: str | None = Field(None, description="Township code the router placed the event in, if any.")
    village: str | None = Field(None, description="Village committee unit code the router placed the event in, if any.")
    grid_code: str | None = Field(
        None, description="Grid the router placed the event in: the declared one, or the nearest to its coordinates."
    )
    round: int = Field(
        0,
        ge=0,
        description="Routing round: 0 for the first routing; each re-route after a return, manual dispatch, "
        "triage after returns and step up the mediation ladder adds one. Part of the task id from round 1 on.",
    )
    dispatcher: str | None = Field(
        None, description="The command-centre dispatcher who chose the units (rule manual), from their key."
    )
    returned_by: tuple[str, ...] = Field(
        (), description="Units that returned the event before this routing (退回); never routed to again."
    )
    mediation_level: str | None = Field(
        None,
        description="Rung of the mediation ladder this task is at (grid-worker, villager-group, "
        "village-committee, township-centre, county-centre), for dispute matters.",
    )
    summoned_by: str | None = Field(
        None, description="Township centre that summoned this department onto its task (吹哨报到, role summoned)."
    )


# What a unit sees instead of the reporter's identity.
WITHHELD_FROM_ACCUSED = "（信访人信息依规不向被投诉单位提供）"
WITHHELD_CONFIDENTIAL = "（信访人信息保密，如需联系信访人，请经县信访局转达）"


class TaskReporter(BaseModel):
    """The reporter as the receiving unit may see them, so it can contact them (contact clock: 1 hour).

    Withheld (`withheld`, identity fields empty, `notice` says why) on the copy for the unit a petition
    complains about, and for every unit but the petition office when the reporter is confidential.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(None, json_schema_extra={"x-personal": True})
    phone: str | None = Field(None, json_schema_extra={"x-personal": True})
    address: str | None = Field(None, description="Where the reporter lives.", json_schema_extra={"x-personal": True})
    anonymous: bool = False
    withheld: bool = Field(False, description="The identity is withheld from this unit; see notice.")
    notice: str | None = Field(None, description="Why the identity is withheld, shown in its place (Chinese).")


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
    reporter: TaskReporter | None = Field(
        None,
        description="Who reported it, for this unit: in full, or withheld (the complained-about unit never "
        "receives a petitioner's identity; a confidential reporter only reaches the petition office).",
    )


class TaskDispatchedHeader(BaseModel):
    """The fields of a `TaskDispatched` that place its delivery: who gets it, in which role, how urgent it is.

    A tolerant reader's view for the notifier, which forwards the record's own bytes and reads nothing else of
    them: validating these fields costs 5 µs against the whole model's 13.5 µs (a third of a delivery's input)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    message_id: UlidStr
    task_id: UlidStr
    unit_code: str
    role: TaskRole
    received_at: AwareDatetime
    deadlines: tuple[ClockTerm, ...]
