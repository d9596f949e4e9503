"""The WeChat callback through the adapters app, signed and encrypted by wechatpy as the WeChat server does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka.errors import KafkaTimeoutError
from ulid import ULID

from gridhub.kernel.settings import CommonSettings
from schemas import Channel
from services.adapters.settings import AdaptersSettings
from tests.unit.adapter_harness import FakePublisher, api_with, served
from tests.unit.wechat_server import (
    ACCOUNT,
    AES_KEY,
    APP_ID,
    LABEL,
    NEIGHBOUR,
    NONCE,
    OPENID,
    PATH,
    PIC,
    SEWER,
    TOKEN,
    decrypted_reply,
    encrypted_request,
    image_xml,
    location_xml,
    message_xml,
    now_s,
    post_plain,
    post_safe,
    reply_of,
    sign,
    text_xml,
)

PROBLEM = "application/problem+json"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GRIDHUB_MODE", "GRIDHUB_TOPIC_PREFIX", "GRIDHUB_ADAPTERS_WECHAT_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def settings(tmp_path: Path, **overrides: Any) -> AdaptersSettings:
    return AdaptersSettings(
        common=CommonSettings(mode="dev", topic_prefix="gridhub.", data_dir=tmp_path),
        source_keys={},
        unit_keys={},
        wechat_token=TOKEN,
        wechat_app_id=APP_ID,
        wechat_encoding_aes_key=AES_KEY,
        **overrides,
    )


@pytest.fixture()
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture()
async def client(tmp_path: Path, publisher: FakePublisher) -> AsyncIterator[httpx.AsyncClient]:
    async with served(api_with(settings(tmp_path), publisher)) as c:
        yield c


def assert_problem(response: httpx.Response, status: int, detail: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert detail in body["detail"]
    return body


def event_id_in(content: str) -> str:
    event_id = content.split("事件编号：")[1][:26]
    assert str(ULID.from_str(event_id)) == event_id
    return event_id


# --- handshake ---


async def test_handshake_echoes_echostr(client: httpx.AsyncClient) -> None:
    ts = now_s()
    query = {"signature": sign(TOKEN, ts, NONCE), "timestamp": ts, "nonce": NONCE, "echostr": "5837397520521790215"}
    response = await client.get(PATH, params=query)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "5837397520521790215"


@pytest.mark.parametrize(
    "query",
    [
        {
            "signature": sign("wrongToken", "1591333200", NONCE),
            "timestamp": "1591333200",
            "nonce": NONCE,
            "echostr": "1",
        },
        {"timestamp": "1591333200", "nonce": NONCE, "echostr": "1"},
        {"signature": sign(TOKEN, "1591333200", NONCE), "timestamp": "1591333200", "nonce": NONCE},
        {},
    ],
)
async def test_handshake_refused_without_the_token(client: httpx.AsyncClient, query: dict[str, str]) -> None:
    assert_problem(await client.get(PATH, params=query), 401, "令牌")


# --- a report in plaintext mode ---


async def test_text_report_published_and_acknowledged(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    xml = text_xml()
    reply = reply_of(await post_plain(client, xml))

    assert reply["ToUserName"] == OPENID and reply["FromUserName"] == ACCOUNT and reply["MsgType"] == "text"
    assert abs(int(reply["CreateTime"]) - time.time()) < 5
    event_id = event_id_in(reply["Content"])
    assert reply["Content"] == f"您反映的问题已受理，事件编号：{event_id}。可继续发送位置和照片补充。"

    [(topic, key, _)] = publisher.records
    assert (topic, key) == ("gridhub.raw.wechat", b"wechat:23747012487312345")
    [raw] = publisher.reports()
    assert (raw.source, raw.source_id, raw.proposed_event_id) == (Channel.WECHAT, "23747012487312345", event_id)
    assert raw.content_type == "application/xml"
    assert raw.payload["Content"] == SEWER
    assert raw.payload["FromUserName"] == OPENID
    assert raw.payload["xml"] == xml
    assert set(raw.payload) == {"ToUserName", "FromUserName", "CreateTime", "MsgType", "Content", "MsgId", "xml"}


async def test_retry_gets_the_same_reply_and_publishes_nothing(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    xml = text_xml()
    first = reply_of(await post_plain(client, xml))
    again = reply_of(await post_plain(client, xml))
    assert again["Content"] == first["Content"]
    assert len(publisher.records) == 1
    metrics = (await client.get("/metrics")).text
    assert 'gridhub_adapters_wechat_messages_total{kind="text",outcome="report"} 1.0' in metrics
    assert 'gridhub_adapters_wechat_messages_total{kind="text",outcome="retry"} 1.0' in metrics
    assert 'gridhub_adapters_reports_total{channel="wechat",outcome="accepted"} 1.0' in metrics


async def test_photo_and_place_follow_up_the_text_report(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    event_id = event_id_in(reply_of(await post_plain(client, text_xml()))["Content"])

    photo = reply_of(await post_plain(client, image_xml()))
    assert photo["Content"] == f"照片已补充到事件 {event_id}。"
    place = reply_of(await post_plain(client, location_xml()))
    assert place["Content"] == f"位置已补充到事件 {event_id}。"

    _, image, location = publisher.reports()
    assert image.payload["follow_up_of"] == event_id and image.source_id == "23747012487312346"
    assert image.payload["PicUrl"] == PIC and image.payload["MediaId"] == "media_id_0605_1"
    assert image.proposed_event_id != event_id  # the supplement's own id
    assert location.payload["follow_up_of"] == event_id
    assert (location.payload["Location_X"], location.payload["Location_Y"]) == ("36.896845", "100.993722")
    assert location.payload["Label"] == LABEL


async def test_photo_first_then_words_complete_it_then_new_words_are_a_new_report(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    photo = reply_of(await post_plain(client, image_xml()))["Content"]
    event_id = event_id_in(photo)
    assert "请再用文字描述问题，30分钟内" in photo

    words = reply_of(await post_plain(client, text_xml("23747012487312350")))
    assert words["Content"] == f"文字说明已补充到事件 {event_id}。"
    second = reply_of(await post_plain(client, text_xml("23747012487312351", "楼道里的路灯也坏了一个月了。")))
    assert event_id_in(second["Content"]) != event_id

    first, supplement, new = publisher.reports()
    assert "follow_up_of" not in first.payload and first.payload["MsgType"] == "image"
    assert supplement.payload["follow_up_of"] == event_id
    assert "follow_up_of" not in new.payload


async def test_another_citizens_photo_is_not_a_follow_up(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    await post_plain(client, text_xml())
    reply = reply_of(await post_plain(client, image_xml(openid=NEIGHBOUR)))
    assert reply["ToUserName"] == NEIGHBOUR
    assert reply["Content"].startswith("您发送的照片已受理，事件编号：")
    assert "follow_up_of" not in publisher.reports()[1].payload


# --- safe mode ---


async def test_safe_mode_report_decrypted_and_reply_encrypted(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    xml = text_xml()
    response = await post_safe(client, xml)
    reply = decrypted_reply(response)
    assert (reply["ToUserName"], reply["FromUserName"]) == (OPENID, ACCOUNT)
    event_id = event_id_in(reply["Content"])

    [raw] = publisher.reports()
    assert raw.proposed_event_id == event_id
    assert raw.payload["xml"] == xml  # the decrypted message, not the ciphertext
    assert raw.payload["Content"] == SEWER and "Encrypt" not in raw.payload

    photo = decrypted_reply(await post_safe(client, image_xml()))
    assert photo["Content"] == f"照片已补充到事件 {event_id}。"


async def test_safe_mode_welcome_on_subscribe(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    reply = decrypted_reply(await post_safe(client, message_xml("event", None, Event="subscribe", EventKey="")))
    assert reply["Content"].startswith("感谢关注！")
    assert publisher.records == []


# --- courtesy answers, nothing filed ---


async def test_unsubscribe_is_just_success(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    response = await post_plain(client, message_xml("event", None, Event="unsubscribe"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "success"
    assert publisher.records == []


@pytest.mark.parametrize(
    ("xml", "start"),
    [
        (message_xml("voice", "23747012487312360", MediaId="m1", Format="amr"), "暂不支持语音"),
        (text_xml(content="   "), "请用文字描述"),
    ],
)
async def test_nothing_to_file_gets_a_hint(
    client: httpx.AsyncClient, publisher: FakePublisher, xml: str, start: str
) -> None:
    assert reply_of(await post_plain(client, xml))["Content"].startswith(start)
    assert publisher.records == []


# --- every refusal is a problem, never a 500 ---


async def test_stale_timestamp_refused(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    stale = str(int(time.time()) - 301)
    assert_problem(await post_plain(client, text_xml(), timestamp=stale), 401, "时间戳")
    query, body = encrypted_request(text_xml(), timestamp=stale)
    assert_problem(await client.post(PATH, params=query, content=body), 401, "时间戳")
    assert publisher.records == []


async def test_wrong_token_refused(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    body = assert_problem(await post_plain(client, text_xml(), token="wrongToken"), 401, "签名无效")
    assert body["errors"] == [{"field": "signature", "message": body["detail"]}]
    assert publisher.records == []


async def test_tampered_ciphertext_refused(client: httpx.AsyncClient) -> None:
    query, body = encrypted_request(text_xml())
    tampered = body.replace("<Encrypt><![CDATA[", "<Encrypt><![CDATA[AAAA")
    response = await client.post(PATH, params=query, content=tampered)
    assert assert_problem(response, 401, "签名无效")["errors"][0]["field"] == "msg_signature"


async def test_message_for_another_app_id_forbidden(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    assert_problem(await post_safe(client, text_xml(), app_id="wx0000000000000000"), 403, "AppID")
    assert publisher.records == []


async def test_undecryptable_but_signed_is_400(client: httpx.AsyncClient) -> None:
    ts = now_s()
    garbage = "bm90IGEgcmVhbCBjaXBoZXJ0ZXh0IGF0IGFsbCEhIQ=="
    query = {"timestamp": ts, "nonce": NONCE, "encrypt_type": "aes", "msg_signature": sign(TOKEN, ts, NONCE, garbage)}
    body = f"<xml><ToUserName>{ACCOUNT}</ToUserName><Encrypt>{garbage}</Encrypt></xml>"
    assert_problem(await client.post(PATH, params=query, content=body), 400, "无法解密")


async def test_safe_mode_without_encrypt_is_400(client: httpx.AsyncClient) -> None:
    ts = now_s()
    query = {"timestamp": ts, "nonce": NONCE, "encrypt_type": "aes", "msg_signature": sign(TOKEN, ts, NONCE)}
    assert_problem(await client.post(PATH, params=query, content=text_xml()), 400, "Encrypt")


async def test_unknown_encrypt_type_is_400(client: httpx.AsyncClient) -> None:
    ts = now_s()
    query = {"signature": sign(TOKEN, ts, NONCE), "timestamp": ts, "nonce": NONCE, "encrypt_type": "sm4"}
    assert_problem(await client.post(PATH, params=query, content=text_xml()), 400, "encrypt_type")


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"<xml><ToUserName>gh_7f083739789a</ToUserName>", "XML 格式错误"),
        (b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml><Content>&e;</Content></xml>', "DOCTYPE"),
        (b"<xml><ToUserName>gh</ToUserName><MsgType>text</MsgType></xml>", "FromUserName"),
        (text_xml(msg_id="").encode(), "MsgId"),
        (message_xml("location", "1", Location_X="北纬36度", Location_Y="100.99").encode(), "Location_X"),
    ],
)
async def test_malformed_message_is_400(
    client: httpx.AsyncClient, publisher: FakePublisher, body: bytes, detail: str
) -> None:
    assert_problem(await post_plain(client, body), 400, detail)
    assert publisher.records == []


async def test_oversized_body_is_413(client: httpx.AsyncClient) -> None:
    huge = text_xml(content="反流" * 40_000)
    assert_problem(await post_plain(client, huge), 413, "超过")


async def test_plaintext_refused_when_safe_mode_required(tmp_path: Path, publisher: FakePublisher) -> None:
    app = api_with(settings(tmp_path, wechat_allow_plaintext=False), publisher)
    async with served(app) as c:
        assert_problem(await post_plain(c, text_xml()), 403, "安全模式")
        assert event_id_in(decrypted_reply(await post_safe(c, text_xml()))["Content"])
    assert len(publisher.records) == 1


PROD = CommonSettings(mode="prod", kafka_replication_factor=3, topic_prefix="gridhub.")
PROD_KEYS = {"source_keys": {"12345": "k-12345-8d1f"}, "unit_keys": {"PA-CG": "k-cg-2a9b"}}


async def test_prod_refuses_plaintext_unless_allowed(tmp_path: Path, publisher: FakePublisher) -> None:
    account = {"wechat_token": TOKEN, "wechat_app_id": APP_ID, "wechat_encoding_aes_key": AES_KEY}
    prod = AdaptersSettings(common=PROD.model_copy(update={"data_dir": tmp_path}), **PROD_KEYS, **account)
    async with served(api_with(prod, publisher)) as c:
        assert_problem(await post_plain(c, text_xml()), 403, "安全模式")  # unsigned bodies: off by default
        assert event_id_in(decrypted_reply(await post_safe(c, text_xml()))["Content"])
    assert len(publisher.records) == 1


async def test_prod_without_an_official_account_answers_404(tmp_path: Path, publisher: FakePublisher) -> None:
    prod = AdaptersSettings(common=PROD.model_copy(update={"data_dir": tmp_path}), **PROD_KEYS)
    app = api_with(prod, publisher)
    async with served(app) as c:
        ts = now_s()
        query = {"signature": sign(TOKEN, ts, NONCE), "timestamp": ts, "nonce": NONCE, "echostr": "583739752"}
        assert_problem(await c.get(PATH, params=query), 404, "本县未配置微信公众号渠道。")
        assert_problem(await post_plain(c, text_xml()), 404, "本县未配置微信公众号渠道。")
        assert_problem(await post_safe(c, text_xml()), 404, "本县未配置微信公众号渠道。")
        metrics = (await c.get("/metrics")).text
        assert 'gridhub_adapters_wechat_messages_total{kind="unknown",outcome="unconfigured"} 2.0' in metrics
    assert publisher.records == []
    # Mounted all the same: the OpenAPI document does not depend on whether a county has an account.
    with_account = api_with(settings(tmp_path), publisher)
    assert app.openapi()["paths"][PATH] == with_account.openapi()["paths"][PATH]


async def test_bus_down_is_503_so_wechat_retries(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    publisher.error = KafkaTimeoutError()
    xml = text_xml()
    response = await post_plain(client, xml)
    assert_problem(response, 503, "消息总线暂不可用")
    assert response.headers["retry-after"] == "5"
    assert "success" not in response.text

    publisher.error = None  # WeChat's retry, once the bus is back, is filed and acknowledged
    assert event_id_in(reply_of(await post_plain(client, xml))["Content"])
    assert len(publisher.records) == 1


async def test_concurrent_retry_waits_for_the_first_attempt(
    client: httpx.AsyncClient, publisher: FakePublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = asyncio.Event()
    send = publisher.send_and_wait

    async def slow_send(topic: str, value: bytes, key: bytes) -> None:
        await gate.wait()  # the broker is slow: WeChat gives up after 5 s and retries
        await send(topic, value, key)

    monkeypatch.setattr(publisher, "send_and_wait", slow_send)
    xml = text_xml()
    first = asyncio.create_task(post_plain(client, xml))
    retry = asyncio.create_task(post_plain(client, xml))
    await asyncio.sleep(0.05)
    gate.set()
    a, b = reply_of(await first), reply_of(await retry)
    assert a["Content"] == b["Content"]
    assert len(publisher.records) == 1


async def test_other_methods_are_405_naming_both(client: httpx.AsyncClient) -> None:
    response = await client.put(PATH, content=text_xml())
    assert_problem(response, 405, "Method Not Allowed")
    assert response.headers["allow"] == "GET, POST"
