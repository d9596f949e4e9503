"""A follow-up that adds to an event already reported (a WeChat citizen's location or photo)."""

from __future__ import annotations

from pydantic import Field

from schemas.base import AwareDatetime, Message, UlidStr
from schemas.event import Attachment, Location, SourceRef


class EventSupplemented(Message):
    """More about an existing event from the same reporter: a place, photos or words sent afterwards."""

    event_id: UlidStr = Field(description="The event this adds to.")
    supplement_id: UlidStr = Field(description="This supplement's own id.")
    source: SourceRef
    location: Location | None = None
    attachments: tuple[Attachment, ...] = ()
    text: str | None = Field(None, max_length=10_000)
    received_at: AwareDatetime
