"""What intake accepts on a raw topic: adapter envelopes and, for Kafka-native sources, bare payloads."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from gridhub.kernel.errors import PermanentError
from schemas import Channel, ReportReceived, new_id
from services.intake.envelope import KAFKA_NATIVE, read_report

AT = datetime(2026, 11, 20, 1, 30, tzinfo=UTC)
ORDER = {
    "order_no": "KN-0001",
    "appeal_type": "投诉",
    "content": "小区停水两天",
    "call_time": "2026-11-20T09:30:00+08:00",
}


def test_adapter_envelope_is_read_as_is() -> None:
    envelope = ReportReceived(
        source=Channel.HOTLINE_12345,
        source_id="KN-0001",
        proposed_event_id=new_id(),
        received_at=AT,
        adapter_version="gridhub-adapters/0.1.0",
        payload=ORDER,
    )
    assert read_report(Channel.HOTLINE_12345, envelope.to_bytes(), AT) == envelope


def test_bare_payload_on_a_raw_topic_is_wrapped_with_the_record_time() -> None:
    raw = read_report(Channel.HOTLINE_12345, json.dumps(ORDER, ensure_ascii=False).encode(), AT)
    assert (raw.source, raw.source_id, raw.received_at, raw.adapter_version) == (
        Channel.HOTLINE_12345,
        "KN-0001",
        AT,
        KAFKA_NATIVE,
    )
    assert raw.payload == ORDER


@pytest.mark.parametrize(
    ("channel", "value", "detail"),
    [
        (Channel.HOTLINE_12345, b"\xff\xfe not json", "Invalid JSON"),
        (Channel.HOTLINE_12345, json.dumps({"content": "没有工单编号"}).encode(), "order_no"),
        (Channel.HOTLINE_12345, json.dumps({"schema_version": 1, "order_no": "X"}).encode(), "source"),
        (Channel.WECHAT, json.dumps(ORDER).encode(), "source"),  # WeChat speaks XML through its adapter
        (None, json.dumps(ORDER).encode(), "source"),
    ],
)
def test_anything_else_is_a_malformed_envelope(channel: Channel | None, value: bytes, detail: str) -> None:
    with pytest.raises(PermanentError) as info:
        read_report(channel, value, AT)
    assert info.value.reason == "malformed-envelope"
    assert detail in info.value.detail
