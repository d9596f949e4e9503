"""Grid workers' reports from the grid app (网格通) to canonical events; self-resolved ones are only recorded."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

from gridhub.kernel.errors import PermanentError
from schemas import EventNormalised, ReportReceived, Urgency
from schemas.base import AwareDatetime
from schemas.selfresolved import SelfResolvedRecorded
from services.intake.channels.common import (
    RawReport,
    envelope,
    event,
    first_line,
    parse_payload,
)

MAX_PHOTOS = 9  # what the app lets a worker attach to one report


class GridReport(BaseModel):
    """A grid worker's report as the app sends it."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    report_no: str = Field(min_length=1, max_length=64, description="上报编号")
    worker_id: str = Field(min_length=1, max_length=40, description="网格员编号")
    grid_code: str = Field(min_length=1, max_length=40, description="网格编码")
    reported_at: AwareDatetime = Field(description="上报时间，带时区")
    category: str | None = Field(None, max_length=40, description="网格员选择的事件类别")
    description: str = Field(min_length=2, max_length=10_000, description="事件描述")
    address: str | None = Field(None, max_length=300, description="地址")
    lat: float | None = Field(None, ge=-90, le=90, description="GPS 纬度")
    lon: float | None = Field(None, ge=-180, le=180, description="GPS 经度")
    photos: list[HttpUrl] = Field(default_factory=list, max_length=MAX_PHOTOS, description="照片地址")
    urgent: bool = Field(False, description="是否紧急")
    self_resolved: bool = Field(False, description="是否已就地办结")
    resolved_at: AwareDatetime | None = Field(None, description="办结时间（就地办结时必填）")
    resolution: str | None = Field(None, max_length=2000, description="处置情况")

    @model_validator(mode="after")
    def _resolved_needs_time(self) -> GridReport:
        if self.self_resolved and self.resolved_at is None:
            raise ValueError("就地办结须填写办结时间 resolved_at")
        return self


def _fields(raw: RawReport, event_id: str, report: GridReport) -> dict[str, Any]:
    headline = first_line(report.description)
    return {
        **envelope(raw, event_id),
        "type": f"网格上报：{report.category or '未分类'}",
        "title": f"[网格 {report.grid_code}] {headline[:60]}",
        "description": report.description,
        "location": {
            "address": report.address,
            "district": None,
            "grid_code": report.grid_code,
            "lat": report.lat,
            "lon": report.lon,
        },
        # The reporter is the grid worker acting in office: no citizen's personal data here.
        "reporter": {
            "name": f"网格员 {report.worker_id}",
            "phone": None,
            "address": None,
            "anonymous": False,
            "confidential": False,
            "personal_fields": (),
        },
        "occurred_at": None,
        "reported_at": report.reported_at,
        "received_at": raw.received_at,
        "attachments": tuple({"url": str(url), "media_type": None, "sha256": None} for url in report.photos),
        "urgency": Urgency.URGENT if report.urgent else Urgency.NORMAL,
        "declared_category": report.category,
        "complained_unit": None,
        "flags": (),
    }


def _event(raw: RawReport, event_id: str, report: GridReport) -> EventNormalised:
    return event(**_fields(raw, event_id, report))


def fields_gridapp(raw: RawReport, event_id: str, report: GridReport) -> dict[str, Any] | None:
    """The canonical event's fields of a valid grid report to dispatch; None for a self-resolved one."""
    return None if report.self_resolved else _fields(raw, event_id, report)


def normalise_gridapp(raw: ReportReceived, event_id: str) -> EventNormalised:
    """Validate a grid report to dispatch; a self-resolved one is refused here (see record_self_resolved)."""
    report = parse_payload(GridReport, raw)
    if report.self_resolved:
        raise PermanentError("self-resolved", "self-resolved reports are recorded, not dispatched")
    return _event(raw, event_id, report)


def self_resolved_record(raw: ReportReceived, event_id: str) -> SelfResolvedRecorded | None:
    """The record of a self-resolved grid report, or None when the report needs dispatching."""
    if raw.payload.get("self_resolved") is not True:
        return None
    report = parse_payload(GridReport, raw)
    assert report.resolved_at is not None  # guaranteed by GridReport's validator
    return SelfResolvedRecorded(
        causation_id=raw.message_id,
        event=_event(raw, event_id, report),
        worker_id=report.worker_id,
        resolved_at=report.resolved_at,
        resolution=report.resolution,
    )
