"""Cross-channel merging (案件归并): a report linked to a case already open, instead of a second dispatch."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.base import Message, UlidStr
from schemas.event import SourceRef


class CaseLinked(Message):
    """A report linked to an open case (same place, time and incident): no tasks of its own, and why."""

    case_id: UlidStr = Field(description="The case: the event id of its first report, whose tasks were dispatched.")
    event_id: UlidStr = Field(description="The report linked to the case.")
    matched_event_id: UlidStr = Field(description="The report of the case it matched best.")
    sources: tuple[SourceRef, ...] = Field(
        min_length=2, description="Every source of the case so far, this report's included."
    )
    explanation: str = Field(description="Why, in Chinese with the figures: place, time apart, common words, matter.")
    score: float = Field(ge=0, le=1, description="Strength of the match (text, place and time weighted).")
    place: Literal["distance", "grid", "address"] = Field(
        description="What placed them together: coordinates within the distance, the same grid, the same address."
    )
    distance_m: float | None = Field(
        None, ge=0, description="Metres between the two reports, when both had coordinates."
    )
    minutes_apart: float = Field(ge=0, description="Minutes between the two reports' times.")
    similarity: float = Field(ge=0, le=1, description="Dice coefficient of the two texts' character bigrams.")
    matter_code: str | None = Field(None, description="The matter this report was classified as.")
