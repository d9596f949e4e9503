"""The report index: which event each accepted source report became (intake's dedupe state, shared)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from schemas.base import AwareDatetime, Message, UlidStr
from schemas.raw import Channel


class IndexOutcome(StrEnum):
    """What an accepted report became."""

    EVENT = "event"
    SELF_RESOLVED = "self-resolved"
    SUPPLEMENT = "supplement"


class ReportIndexed(Message):
    """One accepted source report and the event it became; the first one per source + source id wins."""

    source: Channel
    source_id: str = Field(min_length=1, max_length=128)
    event_id: UlidStr = Field(description="The event the report became or, for a supplement, the event it adds to.")
    outcome: IndexOutcome
    indexed_at: AwareDatetime = Field(description="When intake accepted it.")

    @property
    def dedupe_key(self) -> str:
        """The topic key: source + source id, as on the raw topics."""
        return f"{self.source.value}:{self.source_id}"
