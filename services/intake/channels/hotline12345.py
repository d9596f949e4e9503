"""12345 government hotline work orders (工单) to canonical events."""

from __future__ import annotations

from enum import StrEnum
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


class AppealType(StrEnum):
    """诉求类型 of a 12345 work order."""

    CONSULT = "咨询"
    HELP = "求助"
    COMPLAINT = "投诉"
    REPORT = "举报"
    SUGGESTION = "建议"


class WorkOrderUrgency(StrEnum):
    """紧急程度 as the hotline records it."""

    NORMAL = "一般"
    URGENT = "紧急"


class WorkOrder12345(BaseModel):
    """A 12345 work order as the hotline system sends it."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    order_no: str = Field(min_length=1, max_length=64, description="工单编号")
    caller_name: str | None = Field(None, max_length=50, description="来电人姓名")
    caller_phone: str | None = Field(None, max_length=30, description="来电号码")
    appeal_type: AppealType = Field(description="诉求类型：咨询/求助/投诉/举报/建议")
    content: str = Field(min_length=2, max_length=10_000, description="诉求内容")
    address: str | None = Field(None, max_length=300, description="事发地址")
    district: str | None = Field(None, max_length=50, description="所属乡镇/街道")
    grid_code: str | None = Field(None, max_length=40, description="网格编码（如有）")
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    urgency: WorkOrderUrgency = Field(WorkOrderUrgency.NORMAL, description="紧急程度：一般/紧急")
    call_time: AwareDatetime = Field(description="来电时间，带时区，如 2026-11-20T09:30:00+08:00")
    category: str | None = Field(None, max_length=40, description="热线已选的事项分类（如有）")

    _phone = field_validator("caller_phone")(check_phone)


def _title(order: WorkOrder12345) -> str:
    headline = first_line(order.content)
    return f"[{order.appeal_type.value}] {headline[:60]}"


def fields_12345(raw: RawReport, event_id: str, order: WorkOrder12345) -> dict[str, Any]:
    """The canonical event of a valid work order as data, every field (see common.event_bytes)."""
    name = order.caller_name
    return {
        **envelope(raw, event_id),
        "type": order.appeal_type.value,
        "title": _title(order),
        "description": order.content,
        "location": {
            "address": order.address,
            "district": order.district,
            "grid_code": order.grid_code,
            "lat": order.lat,
            "lon": order.lon,
        },
        "reporter": {
            "name": name,
            "phone": order.caller_phone,
            "address": None,
            "anonymous": name is None,
            "confidential": False,
            "personal_fields": PERSONAL_FIELDS,
        },
        "occurred_at": None,
        "reported_at": order.call_time,
        "received_at": raw.received_at,
        "attachments": (),
        "urgency": Urgency.URGENT if order.urgency is WorkOrderUrgency.URGENT else Urgency.NORMAL,
        "declared_category": order.category,
        "complained_unit": None,
        "flags": (),
    }


def normalise_12345(raw: ReportReceived, event_id: str) -> EventNormalised:
    """Validate a 12345 work order and build its canonical event."""
    return event(**fields_12345(raw, event_id, parse_payload(WorkOrder12345, raw)))
