"""Commands to the router: the command centre's triage queue (分拨) and a township's summons (吹哨报到).

Commands are imperative; the router applies them and records what it did on the tasks it dispatches.
The triage commands share `router.commands`, told apart by `kind`; all are keyed `triage` (one queue,
one owning router replica). `SummonDepartments` travels on `tasks.summons`, keyed by the task id.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from schemas.base import AwareDatetime, Message, UlidStr
from schemas.raw import Channel

# The key of every message on router.commands: the triage queue is one table entry group, one partition.
TRIAGE_KEY = "triage"


class TriageCause(StrEnum):
    """Why an event waits for a dispatcher: too unsure a matter, no township for a township matter, or returns."""

    LOW_CONFIDENCE = "low-confidence"
    NO_TERRITORY = "no-territory"
    RETURNS = "returns"


class QueueForTriage(Message):
    """Put an event in the command centre's triage queue (the router does, on a triage decision)."""

    kind: Literal["queue"] = "queue"
    event_id: UlidStr
    round: int = Field(ge=0, description="Routing round of the command centre's triage task.")
    title: str
    channel: Channel
    matter_code: str | None = Field(description="The router's best guess, if any.")
    matter_name: str | None
    confidence: float = Field(ge=0, le=1)
    cause: TriageCause
    reason: str = Field(description="The router's reason in Chinese (rule, words, place, returns).")
    township: str | None = None
    received_at: AwareDatetime
    queued_at: AwareDatetime


class ClaimTriagedEvent(Message):
    """A dispatcher takes a queued event, so two dispatchers do not route it twice."""

    kind: Literal["claim"] = "claim"
    event_id: UlidStr
    dispatcher: str = Field(description="Dispatcher id, from the key they authenticated with.")
    requested_at: AwareDatetime


class ReleaseTriagedEvent(Message):
    """A dispatcher gives a claimed event back to the queue."""

    kind: Literal["release"] = "release"
    event_id: UlidStr
    dispatcher: str
    note: str | None = Field(None, max_length=500)
    requested_at: AwareDatetime


class DispatchTriagedEvent(Message):
    """A dispatcher routes a queued event by hand: primary and co-operating units, the matter, a note."""

    kind: Literal["dispatch"] = "dispatch"
    event_id: UlidStr
    dispatcher: str
    matter_code: str | None = Field(None, description="The matter the dispatcher chose (deadline class), if any.")
    primary: str = Field(description="Unit code of the unit that handles it (主体责任).")
    co_operating: tuple[str, ...] = Field((), description="Unit codes of co-operating units (配合责任).")
    note: str | None = Field(None, max_length=500, description="The dispatcher's note, recorded on the tasks.")
    requested_at: AwareDatetime


TriageCommand = Annotated[
    QueueForTriage | ClaimTriagedEvent | ReleaseTriagedEvent | DispatchTriagedEvent, Field(discriminator="kind")
]
TRIAGE_COMMANDS: TypeAdapter[TriageCommand] = TypeAdapter(TriageCommand)


class SummonDepartments(Message):
    """乡镇吹哨、部门报到: a township centre holding a task summons county departments onto it."""

    task_id: UlidStr = Field(description="The township centre's task the departments are summoned onto.")
    unit_code: str = Field(description="The authenticated township centre that summons.")
    departments: tuple[str, ...] = Field(min_length=1, max_length=20, description="Unit codes of the departments.")
    note: str | None = Field(None, max_length=500, description="What the township needs from them.")
    requested_at: AwareDatetime
