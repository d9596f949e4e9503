"""110 hand-overs (非警务警情移交) to canonical events: pure, no broker."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from gridhub.kernel.errors import PermanentError
from schemas import Channel, ReportReceived, Urgency
from services.intake.channels import normalise

EVENT_ID = "01KAFZ0M3DY89XFXAKDNGGSZDK"
INCIDENT_NO = "110-20261120-000731"


def incident(**overrides: Any) -> dict[str, Any]:
    """A gas smell reported to 110 and handed on to the county."""
    return {
        "incident_no": INCIDENT_NO,
        "call_time": "2026-11-20T21:05:00+08:00",
        "incident_type": "燃气泄漏",
        "summary": "报警人称楼下饭店燃气泄漏，闻到很浓的煤气味，人员已疏散。",
        "address": "城关镇东街83号",
        "district": "城关镇",
        "lat": 35.1031,
        "lon": 114.2099,
        "caller_name": "王女士",
        "caller_phone": "13837124567",
        "urgency": "紧急",
        **overrides,
    }


def raw(payload: dict[str, Any], source_id: str = INCIDENT_NO) -> ReportReceived:
    """The raw report the 110 adapter would publish."""
    return ReportReceived(
        source=Channel.POLICE_110,
        source_id=source_id,
        proposed_event_id=EVENT_ID,
        received_at=datetime(2026, 11, 20, 13, 6, tzinfo=UTC),
        adapter_version="test",
        payload=payload,
    )


def test_urgent_gas_leak_becomes_urgent_event_with_its_incident_type_as_category() -> None:
    event = normalise(raw(incident()), EVENT_ID)
    assert event.event_id == EVENT_ID
    assert event.sources[0].source is Channel.POLICE_110
    assert event.type == "非警务警情：燃气泄漏"
    assert event.title == "[110 燃气泄漏] 报警人称楼下饭店燃气泄漏，闻到很浓的煤气味，人员已疏散。"
    assert event.urgency is Urgency.URGENT
    assert event.declared_category == "燃气泄漏"
    assert (event.location.lat, event.location.lon, event.location.district) == (35.1031, 114.2099, "城关镇")
    assert event.reporter.name == "王女士" and event.reporter.anonymous is False
    assert event.reported_at == event.occurred_at == datetime(2026, 11, 20, 13, 5, tzinfo=UTC)


def test_normal_incident_without_caller_is_anonymous_and_normal() -> None:
    payload = incident(
        urgency="一般",
        incident_type="噪声扰民",
        caller_name=None,
        caller_phone=None,
        summary="小区广场舞音响声音过大，影响休息。",
    )
    event = normalise(raw(payload), EVENT_ID)
    assert event.urgency is Urgency.NORMAL
    assert event.reporter.anonymous is True


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"summary": ""}, "summary"),
        ({"incident_type": None}, "incident_type"),
        ({"call_time": "2026-11-20 21:05"}, "call_time"),
        ({"urgency": "特急"}, "urgency"),
        ({"caller_phone": "138-3712-4567（王女士）"}, "caller_phone"),
        ({"lat": 135.0}, "lat"),
    ],
)
def test_invalid_incident_is_dead_letter_material_naming_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(PermanentError) as info:
        normalise(raw(incident(**overrides)), EVENT_ID)
    assert info.value.reason == "invalid-payload"
    assert info.value.detail.startswith(f"{field}: ")


def test_incident_number_must_match_the_source_id() -> None:
    with pytest.raises(PermanentError) as info:
        normalise(raw(incident(), source_id="110-OTHER"), EVENT_ID)
    assert info.value.reason == "source-id-mismatch"
