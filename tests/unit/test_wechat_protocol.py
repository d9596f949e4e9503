"""WeChat callback protocol and safe-mode crypto, checked against wechatpy as the WeChat server's side."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET

import pytest
import xmltodict
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.utils import WeChatSigner, check_signature

from services.adapters.wechat.crypto import AppIdMismatch, DecryptError, MessageCrypto, aes_key
from services.adapters.wechat.protocol import (
    MAX_XML_BYTES,
    ProtocolError,
    cdata,
    encrypted_reply,
    is_fresh,
    parse_xml,
    require_envelope,
    signature,
    signature_ok,
    text_reply,
)

TOKEN = "haiyanWX2026"
AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
APP_ID = "wx5823bf96d3bd56c7"
TIMESTAMP = "1591333200"  # 2020-06-05 13:00 +08:00, the day the 水利小区 residents posted
NONCE = "1320562132"
OPENID = "oHaiYan_3jCq-Xy7TZ2t6lZsJ0w4"

TEXT_MESSAGE = (
    "<xml><ToUserName><![CDATA[gh_7f083739789a]]></ToUserName>"
    f"<FromUserName><![CDATA[{OPENID}]]></FromUserName>"
    f"<CreateTime>{TIMESTAMP}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
    "<Content><![CDATA[三角城镇水利小区内下水道反流，影响一楼住户正常生活，请尽快处理。]]></Content>"
    "<MsgId>23747012487312345</MsgId></xml>"
)


def wechat_signature(*parts: str) -> str:
    """How wechatpy (the server's side) signs: the same sorted SHA-1, computed independently."""
    signer = WeChatSigner()
    signer.add_data(*parts)
    return str(signer.signature)


def server_encrypt(xml: str, app_id: str = APP_ID, key: str = AES_KEY) -> tuple[str, str]:
    """(Encrypt, msg_signature) as the WeChat server sends a safe-mode message."""
    envelope = xmltodict.parse(WeChatCrypto(TOKEN, key, app_id).encrypt_message(xml, NONCE, TIMESTAMP))["xml"]
    return envelope["Encrypt"], envelope["MsgSignature"]


def raw_encrypt(plain: bytes, key: str = AES_KEY) -> str:
    """AES-256-CBC of already padded bytes, for layouts wechatpy would never make."""
    k = base64.b64decode(key + "=")
    encryptor = Cipher(algorithms.AES(k), modes.CBC(k[:16])).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()


def pad32(data: bytes) -> bytes:
    n = 32 - len(data) % 32
    return data + bytes([n]) * n


# --- signatures and freshness ---


def test_signature_is_what_wechatpy_checks() -> None:
    ours = signature(TOKEN, TIMESTAMP, NONCE)
    check_signature(TOKEN, ours, TIMESTAMP, NONCE)  # raises if it differs
    assert ours == wechat_signature(TOKEN, TIMESTAMP, NONCE)
    assert len(ours) == 40 and int(ours, 16) >= 0
    with pytest.raises(InvalidSignatureException):
        check_signature(TOKEN, signature("anotherToken", TIMESTAMP, NONCE), TIMESTAMP, NONCE)


def test_msg_signature_covers_the_ciphertext() -> None:
    encrypted, msg_signature = server_encrypt(TEXT_MESSAGE)
    assert signature(TOKEN, TIMESTAMP, NONCE, encrypted) == msg_signature
    assert signature_ok(TOKEN, msg_signature, TIMESTAMP, NONCE, encrypted)
    assert not signature_ok(TOKEN, msg_signature, TIMESTAMP, NONCE, encrypted[:-4] + "AAA=")


@pytest.mark.parametrize(
    ("presented", "timestamp", "nonce"),
    [
        (None, TIMESTAMP, NONCE),
        ("", TIMESTAMP, NONCE),
        (signature(TOKEN, TIMESTAMP, NONCE), None, NONCE),
        (signature(TOKEN, TIMESTAMP, NONCE), TIMESTAMP, None),
        (signature(TOKEN, TIMESTAMP, NONCE), TIMESTAMP, "1320562133"),
        (signature(TOKEN, TIMESTAMP, NONCE)[:-1], TIMESTAMP, NONCE),
        ("签名" * 20, TIMESTAMP, NONCE),
    ],
)
def test_signature_refused(presented: str | None, timestamp: str | None, nonce: str | None) -> None:
    assert signature_ok(TOKEN, presented, timestamp, nonce) is False


def test_signature_accepted_in_upper_case_hex() -> None:
    assert signature_ok(TOKEN, signature(TOKEN, TIMESTAMP, NONCE).upper(), TIMESTAMP, NONCE)


@pytest.mark.parametrize(
    ("timestamp", "now", "fresh"),
    [
        (TIMESTAMP, 1591333200.0, True),
        (TIMESTAMP, 1591333500.0, True),  # exactly 300 s later
        (TIMESTAMP, 1591333501.0, False),
        (TIMESTAMP, 1591332899.0, False),  # from the future
        ("1591333200.5", 1591333200.0, False),
        ("-1591333200", 1591333200.0, False),
        ("", 1591333200.0, False),
        (None, 1591333200.0, False),
        ("9" * 13, 1591333200.0, False),
    ],
)
def test_freshness_window(timestamp: str | None, now: float, fresh: bool) -> None:
    assert is_fresh(timestamp, now, 300) is fresh


# --- XML in ---


def test_text_message_parsed_field_by_field() -> None:
    fields = parse_xml(TEXT_MESSAGE.encode())
    assert fields == {
        "ToUserName": "gh_7f083739789a",
        "FromUserName": OPENID,
        "CreateTime": TIMESTAMP,
        "MsgType": "text",
        "Content": "三角城镇水利小区内下水道反流，影响一楼住户正常生活，请尽快处理。",
        "MsgId": "23747012487312345",
    }
    require_envelope(fields)


def test_nested_event_fields_kept_with_repeats_as_lists() -> None:
    body = (
        "<xml><ToUserName>gh_7f083739789a</ToUserName><FromUserName>o1</FromUserName><CreateTime>1</CreateTime>"
        "<MsgType>event</MsgType><Event>pic_weixin</Event><SendPicsInfo><Count>2</Count><PicList>"
        "<item><PicMd5Sum>aa</PicMd5Sum></item><item><PicMd5Sum>bb</PicMd5Sum></item>"
        "</PicList></SendPicsInfo><Empty/></xml>"
    )
    fields = parse_xml(body.encode())
    assert fields["SendPicsInfo"] == {"Count": "2", "PicList": {"item": [{"PicMd5Sum": "aa"}, {"PicMd5Sum": "bb"}]}}
    assert fields["Empty"] == ""


BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">]>'
    b"<xml><Content>&lol2;</Content></xml>"
)
XXE = (
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml><Content>&xxe;</Content></xml>'
)


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        (BILLION_LAUGHS, 400, "DOCTYPE"),
        (XXE, 400, "DOCTYPE"),
        (b"<!doctype xml><xml/>", 400, "DOCTYPE"),
        (b"<xml><Content>\xb2\xe2\xca\xd4</Content></xml>", 400, "UTF-8"),  # GBK bytes
        (b"<xml><Content>unclosed</xml>", 400, "XML 格式错误"),
        (b"", 400, "XML 格式错误"),
        (b"not xml at all", 400, "XML 格式错误"),
        (b"<xml><Content>&undefined;</Content></xml>", 400, "XML 格式错误"),
        (b"<message><Content>x</Content></message>", 400, "根元素应为 <xml>"),
        (b"<xml>" + b"<a>" * 5 + b"x" + b"</a>" * 5 + b"</xml>", 400, "嵌套"),
        (b"<xml><Content>" + b"a" * MAX_XML_BYTES + b"</Content></xml>", 413, "超过"),
    ],
)
def test_unsafe_or_malformed_xml_refused(body: bytes, status: int, detail: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_xml(body)
    assert info.value.status == status
    assert detail in info.value.detail


@pytest.mark.parametrize(
    ("drop", "replace", "field"),
    [
        ("ToUserName", None, "ToUserName"),
        ("FromUserName", None, "FromUserName"),
        ("MsgType", None, "MsgType"),
        ("CreateTime", None, "CreateTime"),
        (None, ("CreateTime", "2020-06-05"), "CreateTime"),
        (None, ("FromUserName", "   "), "FromUserName"),
    ],
)
def test_envelope_fields_required(drop: str | None, replace: tuple[str, str] | None, field: str) -> None:
    fields = parse_xml(TEXT_MESSAGE.encode())
    if drop:
        del fields[drop]
    if replace:
        fields[replace[0]] = replace[1]
    with pytest.raises(ProtocolError) as info:
        require_envelope(fields)
    assert (info.value.status, info.value.field) == (400, field)


def test_nested_envelope_field_is_not_text() -> None:
    fields = parse_xml(TEXT_MESSAGE.replace("<MsgType><![CDATA[text]]>", "<MsgType><a>text</a>").encode())
    with pytest.raises(ProtocolError, match="MsgType"):
        require_envelope(fields)


# --- XML out ---


def test_text_reply_swaps_parties_and_survives_cdata_breakers() -> None:
    content = "已受理，事件编号：01JD6Z8V1Q3C4X5Y6Z7A8B9C0D。]]><evil/>"
    reply = text_reply(OPENID, "gh_7f083739789a", content, 1591333201)
    parsed = xmltodict.parse(reply)["xml"]
    assert parsed == {
        "ToUserName": OPENID,
        "FromUserName": "gh_7f083739789a",
        "CreateTime": "1591333201",
        "MsgType": "text",
        "Content": content,
    }
    assert cdata("a]]>b") == "<![CDATA[a]]]]><![CDATA[>b]]>"
    assert ET.fromstring(cdata("]]>]]>").join(["<x>", "</x>"])).text == "]]>]]>"


# --- safe mode ---


def test_message_encrypted_by_wechatpy_decrypts() -> None:
    encrypted, _ = server_encrypt(TEXT_MESSAGE)
    assert MessageCrypto(AES_KEY, APP_ID).decrypt(encrypted) == TEXT_MESSAGE


def test_our_encrypted_reply_decrypts_with_wechatpy() -> None:
    reply = text_reply(
        OPENID, "gh_7f083739789a", "您反映的问题已受理，事件编号：01JD6Z8V1Q3C4X5Y6Z7A8B9C0D。", 1591333201
    )
    encrypted = MessageCrypto(AES_KEY, APP_ID).encrypt(reply, b"\x07" * 16)
    msg_signature = signature(TOKEN, TIMESTAMP, NONCE, encrypted)
    envelope = encrypted_reply(encrypted, msg_signature, TIMESTAMP, NONCE)
    assert WeChatCrypto(TOKEN, AES_KEY, APP_ID).decrypt_message(envelope, msg_signature, TIMESTAMP, NONCE) == reply


@pytest.mark.parametrize("size", [0, 11, 12, 13, 43, 44, 45, 300])
def test_round_trip_pads_every_length_to_32_byte_blocks(size: int) -> None:
    crypto = MessageCrypto(AES_KEY, APP_ID)
    xml = "水" * size  # 3 bytes each, with the 20-byte header and 18-byte AppID: every padding length
    encrypted = crypto.encrypt(xml, bytes(range(16)))
    assert len(base64.b64decode(encrypted)) % 32 == 0
    assert crypto.decrypt(encrypted) == xml


def test_random_prefix_changes_ciphertext_not_plaintext() -> None:
    crypto = MessageCrypto(AES_KEY, APP_ID)
    a, b = crypto.encrypt(TEXT_MESSAGE, b"a" * 16), crypto.encrypt(TEXT_MESSAGE, b"b" * 16)
    assert a != b and crypto.decrypt(a) == crypto.decrypt(b) == TEXT_MESSAGE
    with pytest.raises(ValueError, match="16 random bytes"):
        crypto.encrypt(TEXT_MESSAGE, b"short")


def test_message_for_another_app_id_refused() -> None:
    encrypted, _ = server_encrypt(TEXT_MESSAGE, app_id="wx0000000000000000")
    with pytest.raises(AppIdMismatch):
        MessageCrypto(AES_KEY, APP_ID).decrypt(encrypted)


def layout(xml: bytes, length: int | None = None, app_id: bytes = APP_ID.encode()) -> bytes:
    size = len(xml) if length is None else length
    return b"R" * 16 + size.to_bytes(4, "big") + xml + app_id


@pytest.mark.parametrize(
    ("encrypted", "detail"),
    [
        ("不是base64", "base64"),
        ("!!!!", "base64"),
        (base64.b64encode(b"x" * 31).decode(), "长度"),
        (base64.b64encode(b"x" * 16).decode(), "长度"),
        (raw_encrypt(layout(b"<xml/>") + bytes(range(1, 20)) + b"\x14"), "填充"),  # says 20, the 19 before differ
        (raw_encrypt(layout(b"<xml/>")[:32] + b"\x00" * 32), "填充"),  # padding byte 0
        (raw_encrypt(layout(b"<xml/>")[:31] + b"\x21"), "填充"),  # 33 > block
        (raw_encrypt(pad32(layout(b"<xml/>", length=4000))), "长度字段"),
        (raw_encrypt(pad32(b"R" * 16 + b"\x00\x00")), "过短"),
        (raw_encrypt(pad32(layout(b"<xml>\xff</xml>"))), "UTF-8"),
    ],
)
def test_undecryptable_refused(encrypted: str, detail: str) -> None:
    with pytest.raises(DecryptError) as info:
        MessageCrypto(AES_KEY, APP_ID).decrypt(encrypted)
    assert detail in str(info.value)


def test_wrong_key_never_yields_a_message() -> None:
    encrypted, _ = server_encrypt(TEXT_MESSAGE, key="abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG")
    with pytest.raises((DecryptError, AppIdMismatch)):
        MessageCrypto(AES_KEY, APP_ID).decrypt(encrypted)


@pytest.mark.parametrize("key", ["", AES_KEY[:42], AES_KEY + "x", AES_KEY[:42] + "+", AES_KEY[:42] + "="])
def test_encoding_aes_key_must_be_43_letters_and_digits(key: str) -> None:
    with pytest.raises(ValueError, match="43 characters"):
        aes_key(key)


def test_encoding_aes_key_gives_32_bytes() -> None:
    assert len(aes_key(AES_KEY)) == 32
    assert aes_key(AES_KEY) == base64.b64decode(AES_KEY + "=")
