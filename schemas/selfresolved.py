"""A report the grid worker solved on the spot (小事就地办结): recorded and counted, never dispatched."""

from __future__ import annotations

from pydantic import Field

from schemas.base import AwareDatetime, Message
from schemas.event import EventNormalised


class SelfResolvedRecorded(Message):
    """The canonical event of a report its grid worker resolved on the spot, with who and when."""

    event: EventNormalised
    worker_id: str = Field(description="The grid worker who resolved it.")
    resolved_at: AwareDatetime = Field(description="When the worker says it was resolved.")
    resolution: str | None = Field(None, max_length=2000, description="What was done.")
