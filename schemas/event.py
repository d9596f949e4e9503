"""The canonical event: one report from any channel, normalised."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from schemas.base import AwareDatetime, Message, UlidStr
from schemas.raw import Channel


class Urgency(StrEnum):
    """How urgent the reporter or channel says the matter is."""

    NORMAL = "normal"
    URGENT = "urgent"


class SourceRef(BaseModel):
    """Where an event came from: one channel and its own id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Channel
    source_id: str
    raw_message_id: str = Field(description="message_id of the ReportReceived it was normalised from.")


class Location(BaseModel):
    """Where it happened: free-text address, grid code and WGS-84 coordinates when known."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str | None = None
    district: str | None = Field(None, description="Township or district named by the reporter.")
    grid_code: str | None = Field(None, description="Code of the grid (网格) in the county's grid registry.")
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)


class Reporter(BaseModel):
    """Who reported it. Personal fields are listed in `personal_fields` and never shown to the accused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(None, json_schema_extra={"x-personal": True})
    phone: str | None = Field(None, json_schema_extra={"x-personal": True})
    address: str | None = Field(None, description="Where the reporter lives.", json_schema_extra={"x-personal": True})
    anonymous: bool = False
    confidential: bool = Field(
        False, description="Identity must be withheld from units (a petitioner's, above all from the accused)."
    )
    personal_fields: tuple[str, ...] = Field(
        ("name", "phone", "address"), description="Fields of this object that are personal data."
    )


class Attachment(BaseModel):
    """A photo or file that came with the report."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    media_type: str | None = None
    sha256: str | None = None


class EventNormalised(Message):
    """One report from any channel in the hub's single event shape."""

    event_id: UlidStr = Field(description="The event's ULID; the id a citizen is told.")
    sources: tuple[SourceRef, ...] = Field(min_length=1)
    type: str = Field(description="What the channel says it is, e.g. 投诉, 求助, 非警务警情.")
    title: str = Field(max_length=200)
    description: str = Field(max_length=10_000)
    location: Location
    reporter: Reporter
    occurred_at: AwareDatetime | None = Field(None, description="When it happened, if the reporter says.")
    reported_at: AwareDatetime = Field(description="When the channel took the report (e.g. call time).")
    received_at: AwareDatetime = Field(description="When GridHub received it.")
    attachments: tuple[Attachment, ...] = ()
    urgency: Urgency = Urgency.NORMAL
    declared_category: str | None = Field(
        None, description="Category the channel or reporter chose (channel's own code or a matter code)."
    )
    complained_unit: str | None = Field(
        None, description="Unit the report complains about (信访 被投诉单位); it must never see the reporter."
    )
    flags: tuple[str, ...] = Field(
        (), description="Channel facts that matter downstream: repeat-petition, group-petition."
    )
