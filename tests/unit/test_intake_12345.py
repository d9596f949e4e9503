"""Intake: 12345 work orders (工单) normalised to EventNormalised, and every rejection path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from gridhub.kernel.errors import PermanentError
from schemas import Channel, EventNormalised, ReportReceived, SourceRef, Urgency, new_id
from services.intake.channels import NORMALISERS, normalise
from services.intake.channels.hotline12345 import normalise_12345

CST = timezone(timedelta(hours=8))
ORDER_NO = "GD-2026-1120-00421"
RAW_MESSAGE_ID = "01KAFZ0M3D6YQ8W5C2N4R7T9VB"
EVENT_ID = "01KAFZ0M3DB3XG7M2Q4J8K6P1Z"
RECEIVED_AT = datetime(2026, 11, 20, 1, 31, 5, tzinfo=UTC)
CALL_TIME = "2026-11-20T09:30:00+08:00"


def work_order(**changes: Any) -> dict[str, Any]:
    """A realistic complaint work order as the 12345 platform sends it."""
    order: dict[str, Any] = {
        "order_no": ORDER_NO,
        "caller_name": "王秀兰",
        "caller_phone": "138-3712-4567",
        "appeal_type": "投诉",
        "content": "幸福里小区3号楼下水道反流，污水漫到单元门口，已经三天没人处理。\n物业称需等住建部门。",
        "address": "平安县城关镇东街幸福里小区3号楼",
        "district": "城关镇",
        "grid_code": "PA-CG-01-001",
        "lat": 35.1013,
        "lon": 114.2033,
        "urgency": "紧急",
        "call_time": CALL_TIME,
        "category": "城乡建设/排水",
    }
    order.update(changes)
    return {k: v for k, v in order.items() if v is not ...}


def raw_report(
    payload: dict[str, Any], source: Channel = Channel.HOTLINE_12345, source_id: str = ORDER_NO
) -> ReportReceived:
    return ReportReceived(
        message_id=RAW_MESSAGE_ID,
        source=source,
        source_id=source_id,
        proposed_event_id=EVENT_ID,
        received_at=RECEIVED_AT,
        adapter_version="gridhub-adapters/0.1.0",
        payload=payload,
    )


def rejection(payload: dict[str, Any], **kwargs: Any) -> PermanentError:
    with pytest.raises(PermanentError) as info:
        normalise(raw_report(payload, **kwargs), EVENT_ID)
    return info.value


def test_registry_routes_each_channel_to_its_normaliser() -> None:
    assert NORMALISERS[Channel.HOTLINE_12345] is normalise_12345
    assert set(NORMALISERS) == {Channel.HOTLINE_12345, Channel.POLICE_110, Channel.PETITION, Channel.GRID_APP}


def test_valid_order_becomes_canonical_event() -> None:
    event = normalise(raw_report(work_order()), EVENT_ID)

    assert isinstance(event, EventNormalised)
    assert event.event_id == EVENT_ID
    assert event.causation_id == RAW_MESSAGE_ID
    assert event.sources == (
        SourceRef(source=Channel.HOTLINE_12345, source_id=ORDER_NO, raw_message_id=RAW_MESSAGE_ID),
    )
    assert event.type == "投诉"
    assert event.title == "[投诉] 幸福里小区3号楼下水道反流，污水漫到单元门口，已经三天没人处理。"
    assert event.description == (
        "幸福里小区3号楼下水道反流，污水漫到单元门口，已经三天没人处理。\n物业称需等住建部门。"
    )
    assert event.urgency is Urgency.URGENT
    assert event.reporter.name == "王秀兰"
    assert event.reporter.phone == "138-3712-4567"
    assert event.reporter.anonymous is False
    assert event.reporter.personal_fields == ("name", "phone", "address")
    assert event.location.model_dump() == {
        "address": "平安县城关镇东街幸福里小区3号楼",
        "district": "城关镇",
        "grid_code": "PA-CG-01-001",
        "lat": 35.1013,
        "lon": 114.2033,
    }
    assert event.reported_at == datetime(2026, 11, 20, 9, 30, tzinfo=CST)
    assert event.reported_at.utcoffset() == timedelta(hours=8)
    assert event.received_at == RECEIVED_AT
    assert event.occurred_at is None
    assert event.declared_category == "城乡建设/排水"
    assert event.attachments == ()
    # the event gets its own message id, not the raw one
    assert event.message_id != RAW_MESSAGE_ID


def test_minimal_anonymous_consultation() -> None:
    payload = {
        "order_no": ORDER_NO,
        "appeal_type": "咨询",
        "content": "物业费涨价是否需要业主大会同意？",
        "call_time": "2026-11-21T14:05:00+08:00",
    }
    event = normalise(raw_report(payload), EVENT_ID)

    assert event.title == "[咨询] 物业费涨价是否需要业主大会同意？"
    assert event.type == "咨询"
    assert event.urgency is Urgency.NORMAL
    assert event.reporter.name is None
    assert event.reporter.phone is None
    assert event.reporter.anonymous is True
    assert event.location.model_dump() == {
        "address": None,
        "district": None,
        "grid_code": None,
        "lat": None,
        "lon": None,
    }
    assert event.declared_category is None
    assert event.reported_at == datetime(2026, 11, 21, 6, 5, tzinfo=UTC)


def test_title_is_first_line_cut_to_sixty_characters() -> None:
    content = "拖欠工资" * 20 + "\n第二行不进标题"
    event = normalise(raw_report(work_order(content=content, appeal_type="举报")), EVENT_ID)
    assert event.title == "[举报] " + ("拖欠工资" * 15)
    assert len(event.title) == 5 + 60


def test_whitespace_around_order_no_and_content_is_stripped() -> None:
    payload = work_order(order_no=f"  {ORDER_NO} ", content="  燃气泄漏，楼道里味道很大  ")
    event = normalise(raw_report(payload), EVENT_ID)
    assert event.sources[0].source_id == ORDER_NO
    assert event.title == "[投诉] 燃气泄漏，楼道里味道很大"
    assert event.description == "燃气泄漏，楼道里味道很大"


def test_unknown_fields_are_ignored() -> None:
    event = normalise(raw_report(work_order(handler_dept="城关镇", reply_deadline="2026-11-22")), EVENT_ID)
    assert event.event_id == EVENT_ID


def test_missing_content_is_invalid_payload() -> None:
    err = rejection(work_order(content=...))
    assert err.reason == "invalid-payload"
    assert err.detail == "content: 必填字段缺失（Field required）"
    assert str(err) == "invalid-payload: content: 必填字段缺失（Field required）"


def test_bad_appeal_type_is_invalid_payload() -> None:
    err = rejection(work_order(appeal_type="表扬"))
    assert err.reason == "invalid-payload"
    assert err.detail.startswith("appeal_type: 取值不在允许范围内（")
    assert "'咨询', '求助', '投诉', '举报' or '建议'" in err.detail


def test_naive_call_time_is_invalid_payload() -> None:
    err = rejection(work_order(call_time="2026-11-20T09:30:00"))
    assert err.reason == "invalid-payload"
    assert err.detail.startswith("call_time: 取值无效（")
    assert "timestamp must carry a UTC offset" in err.detail


@pytest.mark.parametrize("call_time", ["11月20日上午", "2026/11/20 09:30"])
def test_unparseable_call_time_is_invalid_payload(call_time: str) -> None:
    err = rejection(work_order(call_time=call_time))
    assert err.reason == "invalid-payload"
    assert err.detail.startswith("call_time: ")
    assert "Input should be a valid datetime" in err.detail


def test_unparseable_call_time_gets_iso_8601_hint() -> None:
    err = rejection(work_order(call_time="2026/11/20 09:30"))
    assert err.detail.startswith("call_time: 时间格式错误，应为 ISO 8601（如 2026-11-20T09:30:00+08:00）")


def test_bad_phone_is_invalid_payload_with_chinese_message() -> None:
    err = rejection(work_order(caller_phone="138 3712 4567（王女士）"))
    assert err.reason == "invalid-payload"
    assert err.detail == "caller_phone: 取值无效（Value error, 电话号码只能包含数字、+ 和 -）"


def test_several_problems_are_all_listed() -> None:
    err = rejection(work_order(content=..., urgency="特急"))
    assert err.reason == "invalid-payload"
    fields = [part.split(":")[0] for part in err.detail.split("; ")]
    assert fields == ["content", "urgency"]


def test_order_no_differing_from_source_id_is_rejected() -> None:
    err = rejection(work_order(), source_id="GD-2026-1120-00422")
    assert err.reason == "source-id-mismatch"
    assert err.detail == "order_no 'GD-2026-1120-00421' differs from source_id 'GD-2026-1120-00422'"


def test_channel_without_normaliser_is_unsupported() -> None:
    payload = {"MsgId": "24680135790", "Content": "邻里宅基地纠纷，邻居把院墙往我家这边砌了半米"}
    err = rejection(payload, source=Channel.WECHAT, source_id="24680135790")
    assert err.reason == "unsupported-channel"
    assert err.detail == "no normaliser for channel 'wechat' yet"


def test_normaliser_does_not_mutate_payload() -> None:
    payload = work_order(order_no=f" {ORDER_NO}")
    raw = raw_report(payload)
    normalise(raw, new_id())
    assert raw.payload["order_no"] == f" {ORDER_NO}"
    assert raw.payload["content"].startswith("幸福里小区3号楼下水道反流")
