"""The raw report exactly as a channel adapter received it."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field

from schemas.base import AwareDatetime, Message, UlidStr


class Channel(StrEnum):
    """The five inbound channels of a county command centre."""

    HOTLINE_12345 = "12345"
    POLICE_110 = "110"
    WECHAT = "wechat"
    PETITION = "petition"
    GRID_APP = "gridapp"


class ReportReceived(Message):
    """A report as received from a channel: payload untouched, for audit and replay."""

    source: Channel = Field(description="Channel the report arrived on.")
    source_id: str = Field(
        min_length=1, max_length=128, description="The channel's own id (work-order number, MsgId...)."
    )
    proposed_event_id: UlidStr = Field(
        description="Event id the adapter answered with; intake keeps it unless this is a duplicate."
    )
    received_at: AwareDatetime = Field(description="When the adapter received the report.")
    adapter_version: str = Field(description="Version of the adapter that received it.")
    content_type: str = Field("application/json", description="Media type of the original body.")
    payload: dict[str, Any] = Field(description="The channel's payload, untouched.")

    @property
    def dedupe_key(self) -> str:
        """Key that identifies one report across retries: source + source id."""
        return f"{self.source.value}:{self.source_id}"


# The field holding each channel's own id, in HTTP bodies and in bare payloads produced straight to raw topics.
SOURCE_ID_FIELDS: dict[Channel, str] = {
    Channel.HOTLINE_12345: "order_no",
    Channel.POLICE_110: "incident_no",
    Channel.PETITION: "case_no",
    Channel.GRID_APP: "report_no",
}
