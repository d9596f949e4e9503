"""Grid app reports: dispatched ones become events, self-resolved ones are recorded; pure."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from gridhub.kernel.errors import PermanentError
from schemas import Channel, ReportReceived, Urgency
from services.intake.channels import normalise, self_resolved

EVENT_ID = "01KAFZ0M3DY89XFXAKDNGGSZDK"
REPORT_NO = "WG-PA-CG-01-001-20261120-07"


def report(**overrides: Any) -> dict[str, Any]:
    """A grid worker reports a blocked drain with two photos."""
    return {
        "report_no": REPORT_NO,
        "worker_id": "WGY-0317",
        "grid_code": "PA-CG-01-001",
        "reported_at": "2026-11-20T08:40:00+08:00",
        "category": "设施故障",
        "description": "幸福小区3号楼下水道堵塞反流，已拍照，需要住建部门疏通主管道。",
        "lat": 35.1013,
        "lon": 114.2030,
        "photos": ["https://oss.pingan.example/wg/0317/a1.jpg", "https://oss.pingan.example/wg/0317/a2.jpg"],
        **overrides,
    }


def raw(payload: dict[str, Any]) -> ReportReceived:
    return ReportReceived(
        source=Channel.GRID_APP,
        source_id=REPORT_NO,
        proposed_event_id=EVENT_ID,
        received_at=datetime(2026, 11, 20, 0, 41, tzinfo=UTC),
        adapter_version="test",
        payload=payload,
    )


def test_report_to_dispatch_becomes_event_with_photos_grid_and_worker_category() -> None:
    assert self_resolved(raw(report()), EVENT_ID) is None
    event = normalise(raw(report()), EVENT_ID)
    assert event.title == "[网格 PA-CG-01-001] 幸福小区3号楼下水道堵塞反流，已拍照，需要住建部门疏通主管道。"
    assert event.declared_category == "设施故障"
    assert event.location.grid_code == "PA-CG-01-001"
    assert [a.url for a in event.attachments] == report()["photos"]
    assert event.reporter.name == "网格员 WGY-0317" and event.reporter.personal_fields == ()
    assert event.urgency is Urgency.NORMAL


def test_self_resolved_report_is_recorded_with_worker_and_time() -> None:
    payload = report(
        self_resolved=True,
        resolved_at="2026-11-20T09:05:00+08:00",
        resolution="已现场疏通",
        description="楼道杂物堵塞消防通道，已劝导清理。",
        category="安全隐患",
    )
    received = raw(payload)
    record = self_resolved(received, EVENT_ID)
    assert record is not None
    assert record.worker_id == "WGY-0317"
    assert record.resolved_at == datetime(2026, 11, 20, 1, 5, tzinfo=UTC)
    assert record.resolution == "已现场疏通"
    assert record.event.event_id == EVENT_ID and record.causation_id == received.message_id
    with pytest.raises(PermanentError, match="self-resolved"):
        normalise(raw(payload), EVENT_ID)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"grid_code": ""}, "grid_code"),
        ({"photos": ["not a url"]}, "photos.0"),
        ({"photos": [f"https://oss.pingan.example/{n}.jpg" for n in range(10)]}, "photos"),
        ({"self_resolved": True}, "(body)"),
    ],
)
def test_invalid_reports_name_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(PermanentError) as info:
        normalise(raw(report(**overrides)), EVENT_ID)
    assert info.value.reason == "invalid-payload"
    assert info.value.detail.startswith(f"{field}: ")
