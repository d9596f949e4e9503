"""WeChat messages in intake: new reports become events, follow-ups supplements; openids stay out; pure."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from gridhub.kernel.errors import PermanentError
from schemas import Channel, EventNormalised, EventSupplemented, ReportReceived, Urgency
from services.intake.channels import PROCESSORS, process
from services.intake.channels.wechat import process_wechat

EVENT_ID = "01KAFZ0M3DY89XFXAKDNGGSZDK"
FIRST_EVENT = "01KAFYZQ2W8N7B6V5C4X3Z2Y1A"
OPENID = "oHaiYan_3jCq-Xy7TZ2t6lZsJ0w4"
RECEIVED = datetime(2020, 6, 5, 5, 0, 2, tzinfo=UTC)
SEWER = "三角城镇水利小区内下水道反流，影响一楼住户正常生活，已经好几天了，请尽快处理。"


def text(**overrides: Any) -> dict[str, Any]:
    """A resident of 海晏县's 水利小区 reports the sewer backing up (the seed article's case)."""
    payload = {
        "ToUserName": "gh_7f083739789a",
        "FromUserName": OPENID,
        "CreateTime": "1591333200",
        "MsgType": "text",
        "Content": SEWER,
        "MsgId": "23747012487312345",
        "xml": "<xml>...</xml>",
    }
    return {**payload, **overrides}


def image(**overrides: Any) -> dict[str, Any]:
    fields = {"MsgType": "image", "PicUrl": "http://mmbiz.qpic.cn/mmbiz_jpg/haiyan0605/0", "MediaId": "media_0605"}
    payload = text(MsgId="23747012487312346", **fields)
    del payload["Content"]
    return {**payload, **overrides}


def location(**overrides: Any) -> dict[str, Any]:
    fields = {
        "MsgType": "location",
        "Location_X": "36.896845",
        "Location_Y": "100.993722",
        "Scale": "15",
        "Label": "青海省海北藏族自治州海晏县三角城镇水利小区",
    }
    payload = text(MsgId="23747012487312347", **fields)
    del payload["Content"]
    return {**payload, **overrides}


def raw(payload: dict[str, Any], source_id: str | None = None) -> ReportReceived:
    return ReportReceived(
        source=Channel.WECHAT,
        source_id=source_id or payload["MsgId"],
        proposed_event_id=EVENT_ID,
        received_at=RECEIVED,
        adapter_version="test",
        content_type="application/xml",
        payload=payload,
    )


def event(payload: dict[str, Any]) -> EventNormalised:
    outcome = process(raw(payload), EVENT_ID)
    assert isinstance(outcome, EventNormalised)
    return outcome


def supplement(payload: dict[str, Any]) -> EventSupplemented:
    outcome = process(raw({**payload, "follow_up_of": FIRST_EVENT}), EVENT_ID)
    assert isinstance(outcome, EventSupplemented)
    return outcome


def rejection(payload: dict[str, Any], source_id: str | None = None) -> PermanentError:
    with pytest.raises(PermanentError) as info:
        process(raw(payload, source_id), EVENT_ID)
    return info.value


def test_registered_as_the_wechat_processor() -> None:
    assert PROCESSORS[Channel.WECHAT] is process_wechat


def test_text_report_becomes_an_anonymous_event() -> None:
    e = event(text())
    assert e.event_id == EVENT_ID
    assert e.type == "微信"
    assert e.title == "[微信] 三角城镇水利小区内下水道反流，影响一楼住户正常生活，已经好几"
    assert len(e.title) == len("[微信] ") + 30
    assert e.description == SEWER
    assert e.reported_at == datetime(2020, 6, 5, 5, 0, tzinfo=UTC)  # CreateTime 1591333200
    assert e.received_at == RECEIVED
    assert e.urgency is Urgency.NORMAL and e.declared_category is None
    assert e.location.model_dump(exclude_none=True) == {}
    assert e.attachments == ()
    assert [(s.source, s.source_id) for s in e.sources] == [(Channel.WECHAT, "23747012487312345")]
    assert e.reporter.anonymous is True
    assert (e.reporter.name, e.reporter.phone, e.reporter.address) == (None, None, None)


def test_openid_never_reaches_the_event() -> None:
    for payload in (text(), image(), location()):
        assert OPENID not in event(payload).model_dump_json()


def test_short_multi_line_text_titled_by_its_first_line() -> None:
    e = event(text(Content="路灯不亮\n东街幸福里门口，晚上很黑"))
    assert e.title == "[微信] 路灯不亮"
    assert e.description == "路灯不亮\n东街幸福里门口，晚上很黑"


def test_location_report_has_coordinates_and_label_as_address() -> None:
    e = event(location())
    assert (e.location.lat, e.location.lon) == (36.896845, 100.993722)  # Location_X is the latitude
    assert e.location.address == "青海省海北藏族自治州海晏县三角城镇水利小区"
    assert e.description == "（位置）青海省海北藏族自治州海晏县三角城镇水利小区"
    assert e.title == "[微信] （位置）青海省海北藏族自治州海晏县三角城镇水利小区"


def test_image_only_report_has_the_photo() -> None:
    e = event(image())
    assert e.description == "（图片）" and e.title == "[微信] （图片）"
    assert [a.url for a in e.attachments] == ["http://mmbiz.qpic.cn/mmbiz_jpg/haiyan0605/0"]


def test_photo_follow_up_becomes_a_supplement() -> None:
    s = supplement(image())
    assert (s.event_id, s.supplement_id) == (FIRST_EVENT, EVENT_ID)
    assert (s.source.source, s.source.source_id) == (Channel.WECHAT, "23747012487312346")
    assert [a.url for a in s.attachments] == ["http://mmbiz.qpic.cn/mmbiz_jpg/haiyan0605/0"]
    assert s.location is None and s.text is None
    assert s.received_at == RECEIVED


def test_place_follow_up_becomes_a_supplement() -> None:
    s = supplement(location())
    assert s.location is not None
    assert (s.location.lat, s.location.lon, s.location.address) == (
        36.896845,
        100.993722,
        "青海省海北藏族自治州海晏县三角城镇水利小区",
    )
    assert s.attachments == ()


def test_words_after_a_photo_supplement_it() -> None:
    s = supplement(text())
    assert s.text == SEWER and s.location is None and s.attachments == ()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (text(Content="   "), "文字消息缺少内容"),
        ({k: v for k, v in text().items() if k != "Content"}, "文字消息缺少内容"),
        (image(PicUrl="不是链接"), "PicUrl"),
        ({k: v for k, v in image().items() if k != "PicUrl"}, "图片消息缺少图片链接"),
        (location(Location_X="91"), "Location_X"),
        (location(Location_Y="东经100度"), "Location_Y"),
        ({k: v for k, v in location().items() if k != "Location_Y"}, "位置消息缺少坐标"),
        (text(MsgType="voice"), "MsgType"),
        (text(MsgType="event", Event="subscribe"), "MsgType"),
        (text(CreateTime="昨天"), "CreateTime"),
        (text(CreateTime="99999999999"), "CreateTime"),
        (text(FromUserName=""), "FromUserName"),
        (text(follow_up_of="事件1"), "follow_up_of"),
    ],
)
def test_invalid_messages_dead_lettered_with_chinese_detail(payload: dict[str, Any], field: str) -> None:
    err = rejection(payload)
    assert err.reason == "invalid-payload"
    assert field in err.detail


def test_chinese_detail_names_what_is_wrong() -> None:
    assert rejection(text(Content="")).detail == "(body): 取值无效（Value error, 文字消息缺少内容 Content）"


def test_msg_id_must_be_the_source_id() -> None:
    err = rejection(text(), source_id="23747012487399999")
    assert err.reason == "source-id-mismatch"
    assert err.detail == "MsgId '23747012487312345' differs from source_id '23747012487399999'"


def test_event_source_id_without_msg_id_is_invalid() -> None:
    payload = text(MsgType="event", Event="subscribe")
    del payload["MsgId"]
    err = rejection(payload, source_id=f"{OPENID}:1591333200")
    assert err.reason == "invalid-payload" and "MsgId" in err.detail


def test_follow_up_of_itself_is_invalid() -> None:
    with pytest.raises(PermanentError, match="补充消息不能指向它自己"):
        process_wechat(raw({**image(), "follow_up_of": EVENT_ID}), EVENT_ID)


def test_payload_not_mutated() -> None:
    payload = text(Content=f"  {SEWER}  ")
    report = raw(payload)
    process(report, EVENT_ID)
    assert report.payload["Content"] == f"  {SEWER}  "
