"""Incidents the 110 police command system hands on (非警务警情移交) to canonical events."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gridhub.kernel.errors import PermanentError
from gridhub.kernel.problems import describe_validation_error
from schemas import EventNormalised, Location, Reporter, ReportReceived, SourceRef, Urgency
from schemas.base import AwareDatetime
from services.intake.channels.hotline12345 import WorkOrderUrgency, check_phone


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


def normalise_110(raw: ReportReceived, event_id: str) -> EventNormalised:
    """Validate a 110 hand-over and build its canonical event; the incident type is the channel's category."""
    try:
        incident = PoliceIncident110.model_validate(raw.payload)
    except ValidationError as exc:
        raise PermanentError("invalid-payload", describe_validation_error(exc)) from None
    if incident.incident_no != raw.source_id:
        raise PermanentError(
            "source-id-mismatch", f"incident_no {incident.incident_no!r} differs from source_id {raw.source_id!r}"
        )
    first_line = incident.summary.splitlines()[0]
    return EventNormalised(
        causation_id=raw.message_id,
        event_id=event_id,
        sources=(SourceRef(source=raw.source, source_id=raw.source_id, raw_message_id=raw.message_id),),
        type=f"非警务警情：{incident.incident_type}",
        title=f"[110 {incident.incident_type}] {first_line[:60]}",
        description=incident.summary,
        location=Location(
            address=incident.address,
            district=incident.district,
            grid_code=incident.grid_code,
            lat=incident.lat,
            lon=incident.lon,
        ),
        reporter=Reporter(
            name=incident.caller_name, phone=incident.caller_phone, anonymous=incident.caller_name is None
        ),
        occurred_at=incident.call_time,
        reported_at=incident.call_time,
        received_at=raw.received_at,
        urgency=Urgency.URGENT if incident.urgency is WorkOrderUrgency.URGENT else Urgency.NORMAL,
        declared_category=incident.incident_type,
    )
