"""What a WeChat message is, whether it adds to the citizen's open report, and the replies; pure."""

from __future__ import annotations

from typing import Any

import pytest

from services.adapters.wechat.conversation import (
    ASK_FOR_WORDS,
    UNSUPPORTED,
    WELCOME,
    ExpiringLru,
    Kind,
    Session,
    courtesy_reply,
    follow_up_of,
    next_session,
    read_message,
    report_payload,
    report_reply,
)
from services.adapters.wechat.protocol import ProtocolError

OPENID = "oHaiYan_3jCq-Xy7TZ2t6lZsJ0w4"
EVENT = "01KAFZ0M3DY89XFXAKDNGGSZDK"
OTHER_EVENT = "01KAFZ0M3DY89XFXAKDNGGSZDM"


def message(msg_type: str, **fields: Any) -> dict[str, Any]:
    base = {"ToUserName": "gh_7f083739789a", "FromUserName": OPENID, "CreateTime": "1591333200", "MsgType": msg_type}
    return {**base, **fields}


TEXT = message("text", Content="水利小区内下水道反流，影响一楼住户正常生活", MsgId="23747012487312345")
IMAGE = message(
    "image", PicUrl="http://mmbiz.qpic.cn/mmbiz_jpg/haiyan/0", MediaId="media_id_0617", MsgId="23747012487312346"
)
LOCATION = message(
    "location",
    Location_X="36.896845",
    Location_Y="100.993722",
    Scale="15",
    Label="青海省海北藏族自治州海晏县三角城镇水利小区",
    MsgId="23747012487312347",
)


@pytest.mark.parametrize(("fields", "kind"), [(TEXT, Kind.TEXT), (IMAGE, Kind.IMAGE), (LOCATION, Kind.LOCATION)])
def test_reports_are_read_with_msg_id_as_source_id(fields: dict[str, Any], kind: Kind) -> None:
    inbound = read_message(fields)
    assert (inbound.kind, inbound.openid, inbound.account) == (kind, OPENID, "gh_7f083739789a")
    assert inbound.source_id == fields["MsgId"]
    assert inbound.fields is fields
    assert inbound.blank is False


def test_event_source_id_is_sender_and_time() -> None:
    inbound = read_message(message("event", Event="subscribe"))
    assert inbound.kind is Kind.EVENT
    assert inbound.source_id == f"{OPENID}:1591333200"


@pytest.mark.parametrize("msg_type", ["voice", "video", "shortvideo", "link", "file"])
def test_other_message_types_are_other(msg_type: str) -> None:
    assert read_message(message(msg_type, MsgId="1")).kind is Kind.OTHER


@pytest.mark.parametrize(
    ("fields", "field", "detail"),
    [
        ({k: v for k, v in IMAGE.items() if k != "MsgId"}, "MsgId", "缺少 MsgId"),
        ({**TEXT, "MsgId": "2374 7012"}, "MsgId", "1-20 位数字"),
        ({**TEXT, "MsgId": "9" * 21}, "MsgId", "1-20 位数字"),
        ({**TEXT, "MsgId": "msg-1"}, "MsgId", "1-20 位数字"),
        ({**TEXT, "MsgId": ""}, "MsgId", "1-20 位数字"),
        (message("event", Event="subscribe", FromUserName="o<script>"), "FromUserName", "不允许的字符"),
        ({**IMAGE, "PicUrl": "mmbiz.qpic.cn/0"}, "PicUrl", "PicUrl"),
        ({**IMAGE, "PicUrl": "javascript:alert(1)"}, "PicUrl", "PicUrl"),
        ({k: v for k, v in IMAGE.items() if k != "PicUrl"}, "PicUrl", "PicUrl"),
        ({**LOCATION, "Location_X": "北纬36"}, "Location_X", "数字"),
        ({**LOCATION, "Location_X": "91"}, "Location_X", "超出范围"),
        ({**LOCATION, "Location_Y": "-180.5"}, "Location_Y", "超出范围"),
        ({**LOCATION, "Location_Y": "nan"}, "Location_Y", "超出范围"),
        ({k: v for k, v in LOCATION.items() if k != "Location_Y"}, "Location_Y", "数字"),
        ({**TEXT, "CreateTime": "昨天"}, "CreateTime", "Unix"),
    ],
)
def test_messages_wechat_could_not_send_are_refused(fields: dict[str, Any], field: str, detail: str) -> None:
    with pytest.raises(ProtocolError) as info:
        read_message(fields)
    assert (info.value.status, info.value.field) == (400, field)
    assert detail in info.value.detail


@pytest.mark.parametrize("name", ["MsgId", "Content", "PicUrl", "Location_X", "Event"])
@pytest.mark.parametrize("value", [{"a": "1"}, ["1", "2"]])
def test_repeated_or_nested_wechat_field_refused(name: str, value: Any) -> None:
    # parse_xml makes a nested element a dict and a repeated one a list; WeChat sends neither for these fields
    with pytest.raises(ProtocolError) as info:
        read_message({**TEXT, name: value})
    assert (info.value.status, info.value.field, info.value.detail) == (400, name, f"{name} 应为单个文本元素。")


# --- the follow-up rule ---


def test_no_open_report_means_a_new_one() -> None:
    for kind in (Kind.TEXT, Kind.IMAGE, Kind.LOCATION):
        assert follow_up_of(kind, None) is None


def test_photo_and_place_add_to_the_open_report() -> None:
    worded = Session(EVENT, worded=True)
    assert follow_up_of(Kind.IMAGE, worded) == EVENT
    assert follow_up_of(Kind.LOCATION, worded) == EVENT


def test_words_add_only_to_a_report_without_words() -> None:
    assert follow_up_of(Kind.TEXT, Session(EVENT, worded=False)) == EVENT
    assert follow_up_of(Kind.TEXT, Session(EVENT, worded=True)) is None


def test_session_after_each_message() -> None:
    assert next_session(Kind.TEXT, EVENT, None, None) == Session(EVENT, worded=True)
    assert next_session(Kind.IMAGE, EVENT, None, None) == Session(EVENT, worded=False)
    photo_first = Session(EVENT, worded=False)
    # a place keeps it wordless, words then complete it, and the supplement's own id never replaces the event
    assert next_session(Kind.LOCATION, OTHER_EVENT, photo_first, EVENT) == Session(EVENT, worded=False)
    assert next_session(Kind.TEXT, OTHER_EVENT, photo_first, EVENT) == Session(EVENT, worded=True)
    # a second text on a worded report starts a new one
    assert next_session(Kind.TEXT, OTHER_EVENT, Session(EVENT, worded=True), None) == Session(OTHER_EVENT, True)


def test_expiring_lru_window_slides_and_expires() -> None:
    sessions: ExpiringLru[Session] = ExpiringLru(ttl_s=1800, capacity=10)
    sessions.put(OPENID, Session(EVENT, True), now=1000.0)
    assert sessions.get(OPENID, now=2800.0) == Session(EVENT, True)  # exactly 30 min
    sessions.put(OPENID, Session(EVENT, True), now=2800.0)  # a follow-up refreshes it
    assert sessions.get(OPENID, now=4600.0) == Session(EVENT, True)
    assert sessions.get(OPENID, now=4600.1) is None
    assert len(sessions) == 0  # the expired entry is dropped
    assert sessions.get("o-unknown", now=0.0) is None


def test_expiring_lru_evicts_least_recently_used() -> None:
    cache: ExpiringLru[str] = ExpiringLru(ttl_s=60, capacity=2)
    cache.put("a", "A", now=0)
    cache.put("b", "B", now=0)
    assert cache.get("a", now=1) == "A"  # a is now the most recent
    cache.put("c", "C", now=2)
    assert (cache.get("a", now=3), cache.get("b", now=3), cache.get("c", now=3)) == ("A", None, "C")
    assert len(cache) == 2


# --- payload and replies ---


def test_payload_keeps_every_field_and_the_xml() -> None:
    payload = report_payload(IMAGE, "<xml>...</xml>", EVENT)
    assert payload == {**IMAGE, "xml": "<xml>...</xml>", "follow_up_of": EVENT}
    assert "follow_up_of" not in report_payload(TEXT, "<xml/>", None)


def test_report_replies_carry_the_event_number() -> None:
    assert (
        report_reply(Kind.TEXT, EVENT, None, 1800)
        == f"您反映的问题已受理，事件编号：{EVENT}。可继续发送位置和照片补充。"
    )
    assert report_reply(Kind.IMAGE, EVENT, None, 1800) == (
        f"您发送的照片已受理，事件编号：{EVENT}。请再用文字描述问题，30分钟内发送的文字、位置和照片都会补充到此事件。"
    )
    assert report_reply(Kind.LOCATION, EVENT, None, 600).startswith(f"您发送的位置已受理，事件编号：{EVENT}。")
    assert "10分钟内" in report_reply(Kind.LOCATION, EVENT, None, 600)


def test_follow_up_replies_name_the_event_added_to() -> None:
    assert report_reply(Kind.IMAGE, OTHER_EVENT, EVENT, 1800) == f"照片已补充到事件 {EVENT}。"
    assert report_reply(Kind.LOCATION, OTHER_EVENT, EVENT, 1800) == f"位置已补充到事件 {EVENT}。"
    assert report_reply(Kind.TEXT, OTHER_EVENT, EVENT, 1800) == f"文字说明已补充到事件 {EVENT}。"


@pytest.mark.parametrize(
    ("fields", "reply"),
    [
        (message("event", Event="subscribe"), WELCOME),
        (message("event", Event="SCAN", EventKey="123"), WELCOME),
        (message("event", Event="unsubscribe"), None),
        (message("event", Event="LOCATION", Latitude="36.89", Longitude="100.99"), None),
        (message("event", Event="CLICK", EventKey="V1001"), None),
        (message("voice", MediaId="m", Format="amr", MsgId="5"), UNSUPPORTED),
        ({**TEXT, "Content": " \n "}, ASK_FOR_WORDS),
        ({**TEXT, "Content": ""}, ASK_FOR_WORDS),
        (TEXT, None),
    ],
)
def test_courtesy_replies(fields: dict[str, Any], reply: str | None) -> None:
    assert courtesy_reply(read_message(fields)) == reply
