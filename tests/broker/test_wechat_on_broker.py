"""WeChat end to end through intake on a real broker: a report becomes an event, follow-ups supplements."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import xmltodict
from prometheus_client import CollectorRegistry
from wechatpy.crypto import WeChatCrypto
from wechatpy.utils import WeChatSigner

from gridhub.broker import free_port
from gridhub.kernel.kafka import create_topics, make_consumer, make_producer
from gridhub.kernel.settings import CommonSettings
from gridhub.up import Supervisor, command
from schemas import Channel, EventNormalised, EventSupplemented
from services.adapters.api import create_api
from services.adapters.settings import AdaptersSettings
from tests.conftest import Broker

pytestmark = pytest.mark.broker

TOKEN = "haiyanWX2026"
AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
APP_ID = "wx5823bf96d3bd56c7"
OPENID = "oHaiYan_3jCq-Xy7TZ2t6lZsJ0w4"
SEWER = "三角城镇水利小区内下水道反流，影响一楼住户正常生活，请尽快处理。"
READY_S = 90
WAIT_S = 45


def sign(*parts: str) -> str:
    signer = WeChatSigner()
    signer.add_data(*parts)
    return str(signer.signature)


def message(msg_type: str, msg_id: str, **fields: str) -> str:
    body = "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields.items())
    return (
        f"<xml><ToUserName>gh_7f083739789a</ToUserName><FromUserName>{OPENID}</FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType>{msg_type}</MsgType>{body}<MsgId>{msg_id}</MsgId></xml>"
    )


@pytest.fixture
async def common(broker: Broker, topic_prefix: str) -> AsyncIterator[CommonSettings]:
    prefix = f"{topic_prefix}w{uuid.uuid4().hex[:6]}."
    settings = CommonSettings(
        kafka_bootstrap=broker.bootstrap, kafka_idempotence=broker.idempotence, topic_prefix=prefix
    )
    await asyncio.wait_for(create_topics(settings), 60)
    yield settings


async def test_report_and_follow_ups_through_intake(common: CommonSettings, tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDHUB_")} | {
        "KAFKA_BOOTSTRAP": common.kafka_bootstrap,
        "GRIDHUB_KAFKA_IDEMPOTENCE": str(common.kafka_idempotence).lower(),
        "GRIDHUB_TOPIC_PREFIX": common.topic_prefix,
        "GRIDHUB_DATA_DIR": str(tmp_path / "intake"),
        "GRIDHUB_INTAKE_PORT": str(port),
        "PYTHONUNBUFFERED": "1",
    }
    sup = Supervisor(tmp_path / "logs")
    producers: list[Any] = []

    async def real_producer() -> Any:
        producer = make_producer(common)
        await producer.start()
        producers.append(producer)
        return producer

    settings = AdaptersSettings(
        common=common.model_copy(update={"data_dir": tmp_path / "adapters"}),
        wechat_token=TOKEN,
        wechat_app_id=APP_ID,
        wechat_encoding_aes_key=AES_KEY,
    )
    app = create_api(settings, CollectorRegistry(), publisher_factory=real_producer)
    consumer = make_consumer(
        common, common.topic("events.normalised"), common.topic("events.supplements"), group_id=None
    )
    try:
        sup.spawn("intake", command("serve", "intake"), env)
        await asyncio.to_thread(sup.wait_ready, {"intake": f"http://127.0.0.1:{port}/readyz"}, READY_S)
        await consumer.start()
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://adapters.test") as client,
        ):

            async def post_plain(xml: str) -> str:
                ts = str(int(time.time()))
                query = {"signature": sign(TOKEN, ts, "7"), "timestamp": ts, "nonce": "7", "openid": OPENID}
                response = await client.post("/v1/wechat/callback", params=query, content=xml.encode())
                assert response.status_code == 200, response.text
                return str(xmltodict.parse(response.text)["xml"]["Content"])

            async def post_safe(xml: str) -> str:
                ts = str(int(time.time()))
                crypto = WeChatCrypto(TOKEN, AES_KEY, APP_ID)
                envelope = xmltodict.parse(crypto.encrypt_message(xml, "7", ts))["xml"]
                query = {
                    "timestamp": ts,
                    "nonce": "7",
                    "encrypt_type": "aes",
                    "msg_signature": envelope["MsgSignature"],
                }
                body = f"<xml><ToUserName>gh_7f083739789a</ToUserName><Encrypt>{envelope['Encrypt']}</Encrypt></xml>"
                response = await client.post("/v1/wechat/callback", params=query, content=body.encode())
                assert response.status_code == 200, response.text
                reply = xmltodict.parse(response.text)["xml"]
                plain = crypto.decrypt_message(response.text, reply["MsgSignature"], reply["TimeStamp"], reply["Nonce"])
                return str(xmltodict.parse(plain)["xml"]["Content"])

            acknowledged = await post_plain(message("text", "23747012487312345", Content=SEWER))
            event_id = acknowledged.split("事件编号：")[1][:26]
            photo = await post_safe(
                message("image", "23747012487312346", PicUrl="http://mmbiz.qpic.cn/mmbiz_jpg/hy/0", MediaId="m1")
            )
            assert photo == f"照片已补充到事件 {event_id}。"
            place = await post_plain(
                message(
                    "location",
                    "23747012487312347",
                    Location_X="36.896845",
                    Location_Y="100.993722",
                    Scale="15",
                    Label="海晏县三角城镇水利小区",
                )
            )
            assert place == f"位置已补充到事件 {event_id}。"

        events: list[EventNormalised] = []
        supplements: list[EventSupplemented] = []
        deadline = time.monotonic() + WAIT_S
        while len(events) < 1 or len(supplements) < 2:
            assert time.monotonic() < deadline, f"within {WAIT_S} s only {events=} {supplements=}"
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    if record.topic == common.topic("events.normalised"):
                        events.append(EventNormalised.model_validate_json(record.value))
                    else:
                        supplements.append(EventSupplemented.model_validate_json(record.value))

        [event] = events
        assert (event.event_id, event.type, event.description) == (event_id, "微信", SEWER)
        assert event.reporter.anonymous and OPENID not in event.model_dump_json()
        assert event.sources[0].source is Channel.WECHAT
        by_source = {s.source.source_id: s for s in supplements}
        assert {s.event_id for s in supplements} == {event_id}
        assert [a.url for a in by_source["23747012487312346"].attachments] == ["http://mmbiz.qpic.cn/mmbiz_jpg/hy/0"]
        place_added = by_source["23747012487312347"].location
        assert place_added is not None and (place_added.lat, place_added.lon) == (36.896845, 100.993722)
    finally:
        await consumer.stop()
        for producer in producers:
            await producer.stop()
        await asyncio.to_thread(sup.stop)
