"""Citizens' WeChat messages (微信公众号) to events, or to supplements of the event they follow up; pure."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError, model_validator

from gridhub.kernel.errors import PermanentError
from gridhub.kernel.problems import describe_validation_error
from schemas import Attachment, EventNormalised, EventSupplemented, Location, Reporter, ReportReceived, SourceRef
from schemas.base import UlidStr
from services.intake.channels.common import first_line, source_refs

TITLE_CHARS = 30
LATEST_TIME = 4_102_444_800  # 2100-01-01: a CreateTime beyond it is not a real message


class WeChatMessage(BaseModel):
    """A citizen's message as the adapter put it on raw.wechat: the XML fields, plus follow_up_of."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    msg_id: str = Field(alias="MsgId", min_length=1, max_length=64, description="消息 ID")
    # The openid is personal data: it stays on the raw topic (to answer the citizen) and never enters the event.
    openid: str = Field(alias="FromUserName", min_length=1, max_length=64, description="发送者 openid")
    create_time: int = Field(alias="CreateTime", ge=0, le=LATEST_TIME, description="消息创建时间（Unix 秒）")
    msg_type: Literal["text", "image", "location"] = Field(alias="MsgType", description="消息类型")
    content: str | None = Field(None, alias="Content", max_length=10_000, description="文字内容")
    pic_url: HttpUrl | None = Field(None, alias="PicUrl", description="图片链接")
    lat: float | None = Field(None, alias="Location_X", ge=-90, le=90, description="纬度")
    lon: float | None = Field(None, alias="Location_Y", ge=-180, le=180, description="经度")
    label: str | None = Field(None, alias="Label", max_length=300, description="位置名称")
    follow_up_of: UlidStr | None = Field(None, description="补充的事件编号")

    @model_validator(mode="after")
    def _content_of_its_type(self) -> WeChatMessage:
        if self.msg_type == "text" and not self.content:
            raise ValueError("文字消息缺少内容 Content")
        if self.msg_type == "image" and self.pic_url is None:
            raise ValueError("图片消息缺少图片链接 PicUrl")
        if self.msg_type == "location" and (self.lat is None or self.lon is None):
            raise ValueError("位置消息缺少坐标 Location_X、Location_Y")
        return self


def _message(raw: ReportReceived) -> WeChatMessage:
    try:
        message = WeChatMessage.model_validate(raw.payload)
    except ValidationError as exc:
        raise PermanentError("invalid-payload", describe_validation_error(exc)) from None
    if message.msg_id != raw.source_id:
        raise PermanentError("source-id-mismatch", f"MsgId {message.msg_id!r} differs from source_id {raw.source_id!r}")
    return message


def _place(message: WeChatMessage) -> Location | None:
    if message.msg_type != "location":
        return None
    return Location(address=message.label or None, lat=message.lat, lon=message.lon)


def _photos(message: WeChatMessage) -> tuple[Attachment, ...]:
    return (Attachment(url=str(message.pic_url)),) if message.pic_url is not None else ()


def _description(message: WeChatMessage) -> str:
    if message.content:
        return message.content
    if message.msg_type == "image":
        return "（图片）"
    return f"（位置）{message.label or ''}"


def process_wechat(raw: ReportReceived, event_id: str) -> EventNormalised | EventSupplemented:
    """A new report becomes an event; a follow-up (follow_up_of) a supplement; PermanentError when invalid."""
    message = _message(raw)
    if message.follow_up_of is not None:
        if message.follow_up_of == event_id:
            raise PermanentError("invalid-payload", "follow_up_of: 补充消息不能指向它自己的事件编号")
        return EventSupplemented(
            causation_id=raw.message_id,
            event_id=message.follow_up_of,
            supplement_id=event_id,
            source=SourceRef(source=raw.source, source_id=raw.source_id, raw_message_id=raw.message_id),
            location=_place(message),
            attachments=_photos(message),
            text=message.content or None,
            received_at=raw.received_at,
        )
    description = _description(message)
    return EventNormalised(
        causation_id=raw.message_id,
        event_id=event_id,
        sources=source_refs(raw),
        type="微信",
        title=f"[微信] {first_line(description)[:TITLE_CHARS]}",
        description=description,
        location=_place(message) or Location(),
        reporter=Reporter(anonymous=True),
        reported_at=datetime.fromtimestamp(message.create_time, UTC),
        received_at=raw.received_at,
        attachments=_photos(message),
    )
