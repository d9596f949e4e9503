"""Incidents the 110 police command system hands on (非警务警情移交) to canonical events."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas import EventNormalised, ReportReceived, Urgency
from schemas.base import AwareDatetime
from services.intake.channels.common import (
    PERSONAL_FIELDS,
    RawReport,
    check_phone,
    envelope,
    event,
    first_line,
    parse_payload,
)
from services.intake.channels.hotline12345 import WorkOrderUrgency


class PoliceIncident110(BaseModel):
    """A non-police incident as the 110 command system transfers it."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    incident_no: str = Field(min_length=1, max_length=64, description="警情编号")
    call_time: AwareDatetime = Field(description="报警时间，带时区")
    incident_type: str = Field(min_length=2, max_length=40, description="警情类别，如 噪声扰民、邻里纠纷、燃气泄漏")
    summary: str = Field(min_length=2, max_length=10_000, description="简要警情")
    address: str | None = Field(None, max_length=300, description="事发地址")
    district: str | None = Field(None, max_length=50, description="所属乡镇/街道")
    grid_code: str | None = Field(None, max_length=40, description="网格编码（如有）")
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    caller_name: str | None = Field(None, max_length=50, description="报警人")
    caller_phone: str | None = Field(None, max_length=30, description="报警电话")
    urgency: WorkOrderUrgency = Field(WorkOrderUrgency.NORMAL, description="紧急程度：一般/紧急")

    _phone = field_validator("caller_phone")(check_phone)


def fields_110(raw: RawReport, event_id: str, incident: PoliceIncident110) -> dict[str, Any]:
    """The canonical event of a valid hand-over as data, every field; the incident type is the channel's category."""
    headline = first_line(incident.summary)
    name = incident.caller_name
    return {
        **envelope(raw, event_id),
        "type": f"非警务警情：{incident.incident_type}",
        "title": f"[110 {incident.incident_type}] {headline[:60]}",
        "description": incident.summary,
        "location": {
            "address": incident.address,
            "district": incident.district,
            "grid_code": incident.grid_code,
            "lat": incident.lat,
            "lon": incident.lon,
        },
        "reporter": {
            "name": name,
            "phone": incident.caller_phone,
            "address": None,
            "anonymous": name is None,
            "confidential": False,
            "personal_fields": PERSONAL_FIELDS,
        },
        "occurred_at": incident.call_time,
        "reported_at": incident.call_time,
        "received_at": raw.received_at,
        "attachments": (),
        "urgency": Urgency.URGENT if incident.urgency is WorkOrderUrgency.URGENT else Urgency.NORMAL,
        "declared_category": incident.incident_type,
        "complained_unit": None,
        "flags": (),
    }


def normalise_110(raw: ReportReceived, event_id: str) -> EventNormalised:
    """Validate a 110 hand-over and build its canonical event; the incident type is the channel's category."""
    return event(**fields_110(raw, event_id, parse_payload(PoliceIncident110, raw)))
