"""WeChat callback protocol: signatures, timestamp freshness, safe XML parsing and passive replies; pure."""

from __future__ import annotations

import hashlib
import hmac
import re
import xml.etree.ElementTree as ET
from typing import Any

# A WeChat message is a few hundred bytes (an encrypted one about twice that); anything near this is not WeChat.
MAX_XML_BYTES = 64 * 1024
# WeChat nests at most five levels (xml > SendPicsInfo > PicList > item > PicMd5Sum); deeper is refused.
MAX_DEPTH = 5
ENVELOPE_FIELDS = ("ToUserName", "FromUserName", "CreateTime", "MsgType")
# Fields WeChat sends as one text element each; repeated or nested, the message is not WeChat's.
TEXT_FIELDS = (
    *ENVELOPE_FIELDS,
    *("MsgId", "Content", "PicUrl", "MediaId", "Location_X", "Location_Y", "Scale", "Label", "Event", "Encrypt"),
)
_DIGITS = re.compile(r"^[0-9]{1,12}$")
_DECLARATIONS = re.compile(rb"<!(DOCTYPE|ENTITY)", re.IGNORECASE)

Fields = dict[str, Any]


class ProtocolError(Exception):
    """A request the WeChat server would not send: an HTTP status, a Chinese detail and the field at fault."""

    def __init__(self, status: int, detail: str, field: str = "(body)") -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field


def signature(token: str, *parts: str) -> str:
    """WeChat's signature: hex SHA-1 of the token and parts, sorted and concatenated."""
    return hashlib.sha1("".join(sorted((token, *parts))).encode()).hexdigest()


def signature_ok(token: str, presented: str | None, *parts: str | None) -> bool:
    """True when `presented` is the signature of token and parts; constant-time, False if anything is missing."""
    if not presented or any(part is None for part in parts):
        return False
    expected = signature(token, *(part for part in parts if part is not None))
    return hmac.compare_digest(expected.encode(), presented.lower().encode())


def is_fresh(timestamp: str | None, now: float, window_s: float) -> bool:
    """True when the Unix-seconds timestamp is within window_s of now (either way)."""
    if timestamp is None or not _DIGITS.fullmatch(timestamp):
        return False
    return abs(now - int(timestamp)) <= window_s


def _value(element: ET.Element, depth: int) -> str | Fields:
    children = list(element)
    if not children:
        return element.text or ""
    if depth >= MAX_DEPTH:
        raise ProtocolError(400, f"XML 嵌套超过 {MAX_DEPTH} 层。", element.tag)
    out: Fields = {}
    for child in children:
        value = _value(child, depth + 1)
        if child.tag not in out:
            out[child.tag] = value
        elif isinstance(out[child.tag], list):
            out[child.tag].append(value)
        else:
            out[child.tag] = [out[child.tag], value]
    return out


def parse_xml(body: bytes, max_bytes: int = MAX_XML_BYTES) -> Fields:
    """The fields of a WeChat <xml> document (text, or nested objects); ProtocolError 400/413 when it is not one."""
    if len(body) > max_bytes:
        raise ProtocolError(413, f"XML 超过 {max_bytes} 字节。")
    if _DECLARATIONS.search(body):
        # WeChat never sends a DTD; refusing it rules out entity expansion and external entities altogether.
        raise ProtocolError(400, "不接受带 DOCTYPE 或 ENTITY 声明的 XML。")
    try:
        body.decode("utf-8")
        root = ET.fromstring(body)
    except UnicodeDecodeError:
        raise ProtocolError(400, "XML 须为 UTF-8 编码。") from None
    except (ET.ParseError, ValueError) as exc:
        raise ProtocolError(400, f"XML 格式错误：{exc}") from None
    if root.tag != "xml":
        raise ProtocolError(400, f"根元素应为 <xml>，收到 <{root.tag}>。")
    value = _value(root, 1)
    return value if isinstance(value, dict) else {}


def text_field(fields: Fields, name: str) -> str | None:
    """A field's text, or None when it is missing or not text."""
    value = fields.get(name)
    return value if isinstance(value, str) else None


def require_envelope(fields: Fields) -> None:
    """Raise ProtocolError 400 unless the message has ToUserName, FromUserName, MsgType and a numeric CreateTime."""
    for name in TEXT_FIELDS:
        if name in fields and not isinstance(fields[name], str):
            raise ProtocolError(400, f"{name} 应为单个文本元素。", name)
    for name in ENVELOPE_FIELDS:
        value = text_field(fields, name)
        if not value or not value.strip():
            raise ProtocolError(400, f"消息缺少 {name}。", name)
    if not _DIGITS.fullmatch(text_field(fields, "CreateTime") or ""):
        raise ProtocolError(400, "CreateTime 应为 Unix 秒数。", "CreateTime")


def cdata(text: str) -> str:
    """Text wrapped in CDATA; a "]]>" inside is split across two sections."""
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def text_reply(to_user: str, from_user: str, content: str, create_time: int) -> str:
    """A passive text reply: to the citizen's openid, from the official account."""
    return (
        f"<xml><ToUserName>{cdata(to_user)}</ToUserName><FromUserName>{cdata(from_user)}</FromUserName>"
        f"<CreateTime>{create_time}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content>{cdata(content)}</Content></xml>"
    )


def encrypted_reply(encrypt: str, msg_signature: str, timestamp: str, nonce: str) -> str:
    """The envelope of a safe-mode reply: ciphertext, its signature, timestamp and nonce."""
    return (
        f"<xml><Encrypt>{cdata(encrypt)}</Encrypt><MsgSignature>{cdata(msg_signature)}</MsgSignature>"
        f"<TimeStamp>{timestamp}</TimeStamp><Nonce>{cdata(nonce)}</Nonce></xml>"
    )
