"""The WeChat router on its own, with a clock and a Submit we control: follow-up window, repeats, bounds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import xmltodict
from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CollectorRegistry

from gridhub.kernel.http import install_problem_handlers, problem
from gridhub.kernel.metrics import render
from gridhub.kernel.settings import CommonSettings
from schemas import Channel
from services.adapters.settings import AdaptersSettings
from services.adapters.submission import Submitted
from services.adapters.wechat.protocol import signature
from services.adapters.wechat.router import wechat_router

TOKEN = "haiyanWX2026"
OPENID = "oHaiYan_3jCq-Xy7TZ2t6lZsJ0w4"
NEIGHBOUR = "oHaiYan_9kPw-Lm2QR8s4nVbA1c7"
T0 = 1_591_333_200.0  # 2020-06-05 13:00 +08:00
EVENTS = [f"01KAFZ0M3DY89XFXAKDNGGSZ{n:02d}" for n in range(10, 40)]


@dataclass
class FakeSubmit:
    """Hands out event ids in order; `known` source ids answer as duplicates, `down` answers 503."""

    known: dict[str, str] = field(default_factory=dict)
    down: bool = False
    calls: list[tuple[Channel, str, dict[str, Any], str]] = field(default_factory=list)

    async def __call__(
        self, channel: Channel, source_id: str, payload: dict[str, Any], *, content_type: str = "application/json"
    ) -> Submitted | Response:
        self.calls.append((channel, source_id, payload, content_type))
        if self.down:
            return problem(503, "消息总线暂不可用，报告未被接收，请稍后重试。", headers={"Retry-After": "5"})
        if source_id in self.known:
            return Submitted(self.known[source_id], duplicate=True)
        self.known[source_id] = EVENTS[len(self.known)]
        return Submitted(self.known[source_id])


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@dataclass
class Hub:
    client: httpx.AsyncClient
    submit: FakeSubmit
    clock: Clock
    registry: CollectorRegistry

    async def send(self, msg_type: str, msg_id: str, openid: str = OPENID, **fields: str) -> str:
        stamp = str(int(self.clock.now))
        body = "".join(f"<{k}>{v}</{k}>" for k, v in fields.items())
        xml = (
            f"<xml><ToUserName>gh_7f083739789a</ToUserName><FromUserName>{openid}</FromUserName>"
            f"<CreateTime>{stamp}</CreateTime><MsgType>{msg_type}</MsgType>{body}<MsgId>{msg_id}</MsgId></xml>"
        )
        query = {"signature": signature(TOKEN, stamp, "42"), "timestamp": stamp, "nonce": "42"}
        response = await self.client.post("/v1/wechat/callback", params=query, content=xml)
        assert response.status_code == 200, response.text
        content: str = xmltodict.parse(response.text)["xml"]["Content"]
        return content

    async def text(self, msg_id: str, openid: str = OPENID) -> str:
        return await self.send("text", msg_id, openid, Content="水利小区内下水道反流，影响一楼住户正常生活")

    async def photo(self, msg_id: str, openid: str = OPENID) -> str:
        return await self.send("image", msg_id, openid, PicUrl="http://mmbiz.qpic.cn/mmbiz_jpg/hy/0", MediaId="m")


async def make_hub(tmp_path: Path, **overrides: Any) -> AsyncIterator[Hub]:
    settings = AdaptersSettings(
        common=CommonSettings(mode="dev", data_dir=tmp_path),
        source_keys={},
        unit_keys={},
        wechat_token=TOKEN,
        **overrides,
    )
    submit, clock, registry = FakeSubmit(), Clock(), CollectorRegistry()
    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(wechat_router(settings, submit, registry, clock=clock, random_bytes=lambda n: b"\x01" * n))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://adapters.test") as client:
        yield Hub(client, submit, clock, registry)


@pytest.fixture()
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    async for h in make_hub(tmp_path):
        yield h


async def test_photo_within_the_window_adds_to_the_report(hub: Hub) -> None:
    assert EVENTS[0] in await hub.text("1001")
    hub.clock.now += 29 * 60
    assert await hub.photo("1002") == f"照片已补充到事件 {EVENTS[0]}。"
    hub.clock.now += 29 * 60  # each follow-up keeps the report open for another window
    assert await hub.photo("1003") == f"照片已补充到事件 {EVENTS[0]}。"
    assert [call[2].get("follow_up_of") for call in hub.submit.calls] == [None, EVENTS[0], EVENTS[0]]
    assert {call[3] for call in hub.submit.calls} == {"application/xml"}
    assert {call[0] for call in hub.submit.calls} == {Channel.WECHAT}


async def test_photo_after_the_window_is_a_new_report(hub: Hub) -> None:
    await hub.text("1001")
    hub.clock.now += 30 * 60 + 1
    reply = await hub.photo("1002")
    assert reply.startswith(f"您发送的照片已受理，事件编号：{EVENTS[1]}。")
    assert "follow_up_of" not in hub.submit.calls[1][2]


async def test_window_is_configurable(tmp_path: Path) -> None:
    async for hub in make_hub(tmp_path, wechat_follow_up_window_s=300):
        await hub.text("1001")
        hub.clock.now += 301
        assert "10分钟" not in (reply := await hub.photo("1002")) and "5分钟内" in reply


async def test_repeat_known_to_the_bus_answers_with_the_existing_event(hub: Hub) -> None:
    # Another replica (or an earlier run) filed this MsgId: submit says duplicate with the event it became.
    hub.submit.known["1001"] = EVENTS[5]
    assert await hub.text("1001") == f"您反映的问题已受理，事件编号：{EVENTS[5]}。可继续发送位置和照片补充。"
    assert await hub.photo("1002") == f"照片已补充到事件 {EVENTS[5]}。"
    metrics = render(hub.registry).decode()
    assert 'gridhub_adapters_wechat_messages_total{kind="text",outcome="duplicate"} 1.0' in metrics
    assert 'gridhub_adapters_wechat_messages_total{kind="image",outcome="supplement"} 1.0' in metrics


async def test_sessions_are_bounded(tmp_path: Path) -> None:
    async for hub in make_hub(tmp_path, wechat_sessions=1):
        await hub.text("1001")
        await hub.text("2001", openid=NEIGHBOUR)  # evicts the first citizen's open report
        assert (await hub.photo("1002")).startswith(f"您发送的照片已受理，事件编号：{EVENTS[2]}")
        assert await hub.photo("1003") == f"照片已补充到事件 {EVENTS[2]}。"  # the one remembered now
        assert (await hub.photo("2002", openid=NEIGHBOUR)).startswith(f"您发送的照片已受理，事件编号：{EVENTS[4]}")


async def test_failed_submit_is_not_cached(hub: Hub) -> None:
    hub.submit.down = True
    stamp = str(int(hub.clock.now))
    query = {"signature": signature(TOKEN, stamp, "42"), "timestamp": stamp, "nonce": "42"}
    xml = (
        f"<xml><ToUserName>gh</ToUserName><FromUserName>{OPENID}</FromUserName><CreateTime>{stamp}</CreateTime>"
        "<MsgType>image</MsgType><PicUrl>http://mmbiz.qpic.cn/x</PicUrl><MsgId>1001</MsgId></xml>"
    )
    response = await hub.client.post("/v1/wechat/callback", params=query, content=xml)
    assert response.status_code == 503
    hub.submit.down = False
    assert EVENTS[0] in await hub.photo("1001")
    assert len(hub.submit.calls) == 2


async def test_reply_cache_expires_after_a_minute(hub: Hub) -> None:
    await hub.text("1001")
    hub.clock.now += 61
    await hub.text("1001")  # past WeChat's retries: asked again, submit (idempotent) answers duplicate
    assert [call[1] for call in hub.submit.calls] == ["1001", "1001"]
