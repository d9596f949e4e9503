"""The WeChat server's side of the callback, built with wechatpy: signed and encrypted requests, replies read."""

from __future__ import annotations

import time

import httpx
import xmltodict
from wechatpy.crypto import WeChatCrypto
from wechatpy.utils import WeChatSigner

TOKEN = "haiyanWX2026"
AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
APP_ID = "wx5823bf96d3bd56c7"
ACCOUNT = "gh_7f083739789a"
OPENID = "oHaiYan_3jCq-Xy7TZ2t6lZsJ0w4"
NEIGHBOUR = "oHaiYan_9kPw-Lm2QR8s4nVbA1c7"
NONCE = "1320562132"
PATH = "/v1/wechat/callback"
SEWER = "三角城镇水利小区内下水道反流，影响一楼住户正常生活，已经好几天了，请尽快处理。"
LABEL = "青海省海北藏族自治州海晏县三角城镇水利小区"
PIC = "http://mmbiz.qpic.cn/mmbiz_jpg/haiyan0605/0"


def sign(*parts: str) -> str:
    signer = WeChatSigner()
    signer.add_data(*parts)
    return str(signer.signature)


def now_s() -> str:
    return str(int(time.time()))


def message_xml(msg_type: str, msg_id: str | None, openid: str = OPENID, **fields: str) -> str:
    body = "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields.items())
    tail = f"<MsgId>{msg_id}</MsgId>" if msg_id else ""
    return (
        f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{now_s()}</CreateTime><MsgType><![CDATA[{msg_type}]]></MsgType>{body}{tail}</xml>"
    )


def text_xml(msg_id: str = "23747012487312345", content: str = SEWER, openid: str = OPENID) -> str:
    return message_xml("text", msg_id, openid, Content=content)


def image_xml(msg_id: str = "23747012487312346", openid: str = OPENID) -> str:
    return message_xml("image", msg_id, openid, PicUrl=PIC, MediaId="media_id_0605_1")


def location_xml(msg_id: str = "23747012487312347") -> str:
    return message_xml("location", msg_id, Location_X="36.896845", Location_Y="100.993722", Scale="15", Label=LABEL)


async def post_plain(
    client: httpx.AsyncClient, xml: str | bytes, timestamp: str | None = None, token: str = TOKEN
) -> httpx.Response:
    ts = timestamp or now_s()
    query = {"signature": sign(token, ts, NONCE), "timestamp": ts, "nonce": NONCE, "openid": OPENID}
    content = xml.encode() if isinstance(xml, str) else xml
    return await client.post(PATH, params=query, content=content, headers={"content-type": "text/xml"})


def encrypted_request(xml: str, app_id: str = APP_ID, timestamp: str | None = None) -> tuple[dict[str, str], str]:
    """Query and body of a safe-mode callback, as the WeChat server sends it."""
    ts = timestamp or now_s()
    envelope = xmltodict.parse(WeChatCrypto(TOKEN, AES_KEY, app_id).encrypt_message(xml, NONCE, ts))["xml"]
    query = {
        "signature": sign(TOKEN, ts, NONCE),
        "timestamp": ts,
        "nonce": NONCE,
        "openid": OPENID,
        "encrypt_type": "aes",
        "msg_signature": envelope["MsgSignature"],
    }
    body = (
        f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><Encrypt><![CDATA[{envelope['Encrypt']}]]></Encrypt></xml>"
    )
    return query, body


async def post_safe(client: httpx.AsyncClient, xml: str, app_id: str = APP_ID) -> httpx.Response:
    query, body = encrypted_request(xml, app_id)
    return await client.post(PATH, params=query, content=body.encode(), headers={"content-type": "text/xml"})


def reply_of(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    reply: dict[str, str] = xmltodict.parse(response.text)["xml"]
    return reply


def decrypted_reply(response: httpx.Response) -> dict[str, str]:
    """What the WeChat server reads from a safe-mode reply: wechatpy checks its signature and decrypts it."""
    envelope = reply_of(response)
    assert set(envelope) == {"Encrypt", "MsgSignature", "TimeStamp", "Nonce"}
    xml = WeChatCrypto(TOKEN, AES_KEY, APP_ID).decrypt_message(
        response.text, envelope["MsgSignature"], envelope["TimeStamp"], envelope["Nonce"]
    )
    reply: dict[str, str] = xmltodict.parse(xml)["xml"]
    return reply
