"""What a citizen's WeChat message is, whether it adds to their open report, and what to answer; pure."""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from services.adapters.channels import SOURCE_ID
from services.adapters.wechat.protocol import Fields, ProtocolError, require_envelope, text_field

V = TypeVar("V")

# Reply texts are data shown to citizens; {event_id} and {minutes} are filled in.
REPORT_ACCEPTED = "您反映的问题已受理，事件编号：{event_id}。可继续发送位置和照片补充。"
FOLLOW_UP_HINT = "请再用文字描述问题，{minutes}分钟内发送的文字、位置和照片都会补充到此事件。"
PHOTO_ACCEPTED = "您发送的照片已受理，事件编号：{event_id}。" + FOLLOW_UP_HINT
PLACE_ACCEPTED = "您发送的位置已受理，事件编号：{event_id}。" + FOLLOW_UP_HINT
SUPPLEMENTED = {
    "text": "文字说明已补充到事件 {event_id}。",
    "image": "照片已补充到事件 {event_id}。",
    "location": "位置已补充到事件 {event_id}。",
}
WELCOME = (
    "感谢关注！直接发送文字描述您要反映的问题（如“小区下水道反流，污水漫到楼道”），"
    "再发送位置和照片，我们受理后会告知事件编号。"
)
ASK_FOR_WORDS = "请用文字描述您要反映的问题，也可以发送位置和照片。"
UNSUPPORTED = "暂不支持语音、视频和链接消息。请用文字描述您要反映的问题，也可以发送位置和照片。"
GREETED_EVENTS = frozenset({"subscribe", "SCAN"})
MSG_ID = re.compile(r"^[0-9]{1,20}$")  # a 64-bit number


class Kind(StrEnum):
    """What a message is, as far as the hub cares (also the bounded metric label)."""

    TEXT = "text"
    IMAGE = "image"
    LOCATION = "location"
    EVENT = "event"
    OTHER = "other"


REPORTABLE = frozenset({Kind.TEXT, Kind.IMAGE, Kind.LOCATION})


@dataclass(frozen=True)
class Inbound:
    """One message from a citizen: its kind, who sent it to which account, and its dedupe id."""

    kind: Kind
    openid: str
    account: str
    source_id: str
    fields: Fields

    @property
    def blank(self) -> bool:
        """A text message with no words in it."""
        return self.kind is Kind.TEXT and not (text_field(self.fields, "Content") or "").strip()


def _coordinate(fields: Fields, name: str, limit: float) -> float:
    try:
        value = float(text_field(fields, name) or "")
    except ValueError:
        raise ProtocolError(400, f"{name} 应为数字坐标。", name) from None
    if not math.isfinite(value) or abs(value) > limit:
        raise ProtocolError(400, f"{name} 超出范围（±{limit:g}）。", name)
    return value


def _check_content(kind: Kind, fields: Fields) -> None:
    if kind is Kind.IMAGE:
        url = text_field(fields, "PicUrl") or ""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ProtocolError(400, "图片消息缺少有效的 PicUrl。", "PicUrl")
    elif kind is Kind.LOCATION:
        _coordinate(fields, "Location_X", 90)  # latitude
        _coordinate(fields, "Location_Y", 180)  # longitude


def read_message(fields: Fields) -> Inbound:
    """The message in a decrypted callback body; ProtocolError 400 when WeChat could not have sent it."""
    require_envelope(fields)
    msg_type = text_field(fields, "MsgType") or ""
    kind = Kind(msg_type) if msg_type in {k.value for k in Kind} else Kind.OTHER
    openid = text_field(fields, "FromUserName") or ""
    msg_id = text_field(fields, "MsgId")
    if msg_id is not None:
        if not MSG_ID.fullmatch(msg_id):
            raise ProtocolError(400, "MsgId 应为 1-20 位数字。", "MsgId")
        source_id = msg_id
    elif kind in REPORTABLE:
        raise ProtocolError(400, "消息缺少 MsgId。", "MsgId")
    else:
        # Events carry no MsgId; WeChat's own advice is to dedupe them on sender and time.
        source_id = f"{openid}:{text_field(fields, 'CreateTime')}"
        if not SOURCE_ID.fullmatch(source_id):
            raise ProtocolError(400, "FromUserName 含有不允许的字符或过长。", "FromUserName")
    _check_content(kind, fields)
    return Inbound(kind, openid, text_field(fields, "ToUserName") or "", source_id, fields)


class ExpiringLru(Generic[V]):
    """A bounded map whose entries expire ttl_s after they were last put; least recently used go first."""

    def __init__(self, ttl_s: float, capacity: int) -> None:
        self.ttl_s = ttl_s
        self.capacity = capacity
        self._items: OrderedDict[str, tuple[V, float]] = OrderedDict()

    def get(self, key: str, now: float) -> V | None:
        """The live value under key, or None (an expired one is dropped)."""
        item = self._items.get(key)
        if item is None:
            return None
        if now - item[1] > self.ttl_s:
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return item[0]

    def put(self, key: str, value: V, now: float) -> None:
        """Store value under key as of now, evicting the least recently used beyond capacity."""
        self._items[key] = (value, now)
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class Session:
    """A citizen's open report: its event id, and whether they have described it in words yet."""

    event_id: str
    worded: bool


def follow_up_of(kind: Kind, session: Session | None) -> str | None:
    """The open report this message adds to, or None when it starts a new report.

    A location or photo adds to the open report; words add to it only while it has none (it began
    with a photo or a place); further words are a new report, as a citizen may raise a second matter.
    """
    if session is None or (kind is Kind.TEXT and session.worded):
        return None
    return session.event_id


def next_session(kind: Kind, event_id: str, session: Session | None, added_to: str | None) -> Session:
    """The citizen's open report after this message: the one it added to, or the new one it started."""
    if added_to is not None:
        return Session(added_to, worded=bool(session and session.worded) or kind is Kind.TEXT)
    return Session(event_id, worded=kind is Kind.TEXT)


def report_payload(fields: Fields, xml: str, added_to: str | None) -> dict[str, Any]:
    """What goes on raw.wechat: every XML field, the XML text, and the event a follow-up adds to."""
    payload: dict[str, Any] = {**fields, "xml": xml}
    if added_to is not None:
        payload["follow_up_of"] = added_to
    return payload


def report_reply(kind: Kind, event_id: str, added_to: str | None, window_s: float) -> str:
    """The citizen's acknowledgement of a report or a follow-up, with the event number."""
    if added_to is not None:
        return SUPPLEMENTED[kind.value].format(event_id=added_to)
    template = {Kind.IMAGE: PHOTO_ACCEPTED, Kind.LOCATION: PLACE_ACCEPTED}.get(kind, REPORT_ACCEPTED)
    return template.format(event_id=event_id, minutes=int(window_s // 60))


def courtesy_reply(inbound: Inbound) -> str | None:
    """What to answer a message that files nothing (event, blank text, voice...); None means just "success"."""
    if inbound.kind is Kind.EVENT:
        return WELCOME if text_field(inbound.fields, "Event") in GREETED_EVENTS else None
    if inbound.kind is Kind.OTHER:
        return UNSUPPORTED
    return ASK_FOR_WORDS if inbound.blank else None
