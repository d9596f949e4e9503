"""The ops console's HTTP side without a hub: the other services answered by a mock transport, one poll driven
by the test, the page, its JSON and its static files read through ASGI."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter

from gridhub.kernel.metrics import render
from gridhub.kernel.settings import CommonSettings
from services.console.api import create_app
from services.console.poller import Poller
from services.console.settings import ConsoleSettings
from tests.unit.test_console_figures import SUMMARY, TRIAGE

KEY = "dev-console"


class Services:
    """The five services as the console sees them over HTTP; the router can be taken down."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter("gridhub_intake_events", "", ("channel", "outcome"), registry=self.registry)
        self.router_down = False
        self.seen: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        host, path = request.url.host, request.url.path
        if host == "router" and self.router_down:
            raise httpx.ConnectError("refused", request=request)
        if path == "/metrics":
            return httpx.Response(200, content=render(self.registry) if host == "intake" else b"")
        if host == "router" and path == "/triage":
            if request.headers.get("Authorization") != f"Bearer {KEY}":
                return httpx.Response(401, json={"status": 401})
            return httpx.Response(200, json=TRIAGE)
        if host == "sla" and path == "/reports/summary":
            assert request.url.params["by"] == "unit"
            return httpx.Response(200, json=SUMMARY)
        return httpx.Response(404)


def settings(**overrides: Any) -> ConsoleSettings:
    urls = {f"{name}_url": f"http://{name}" for name in ("adapters", "intake", "router", "sla", "notifier")}
    return ConsoleSettings(common=CommonSettings(), **{**urls, **overrides})


@pytest.fixture
def services() -> Services:
    return Services()


@pytest.fixture
async def app(services: Services) -> AsyncIterator[FastAPI]:
    console = create_app(settings(), CollectorRegistry(), poll=False, transport=httpx.MockTransport(services.handle))
    yield console
    await console.state.poller.close()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console") as c:
        yield c


async def test_ready_after_the_first_poll_and_series_in_chinese(
    app: FastAPI, client: httpx.AsyncClient, services: Services
) -> None:
    assert (await client.get("/readyz")).status_code == 503
    poller: Poller = app.state.poller
    services.events.labels("12345", "normalised").inc(5)
    await poller.poll_once()
    assert (await client.get("/readyz")).status_code == 200

    answer = await client.get("/ops/api/series")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    assert "各渠道受理量".encode() in answer.content  # ensure_ascii=False
    data = answer.json()
    assert data["up"] == dict.fromkeys(("adapters", "intake", "router", "sla", "notifier"), True)
    assert [i["event_id"] for i in data["triage"]] == ["E1", "E2", "E3"]
    assert data["ranking"]["rows"][0]["name"] == "城关镇综治中心"
    triage_calls = [r for r in services.seen if r.url.path == "/triage"]
    assert triage_calls and triage_calls[0].headers["Authorization"] == f"Bearer {KEY}"

    metrics = (await client.get("/metrics")).text
    assert 'gridhub_console_scrapes_total{outcome="ok",target="intake"} 1.0' in metrics


async def test_a_service_down_is_shown_and_counted(app: FastAPI, client: httpx.AsyncClient, services: Services) -> None:
    services.router_down = True
    await app.state.poller.poll_once()
    data = (await client.get("/ops/api/series")).json()
    assert data["up"]["router"] is False and data["triage"] == []
    metrics = (await client.get("/metrics")).text
    assert 'gridhub_console_scrapes_total{outcome="failed",target="router"} 1.0' in metrics
    assert 'gridhub_console_scrapes_total{outcome="failed",target="router-triage"} 1.0' in metrics


async def test_the_summary_is_read_every_summary_interval_only(app: FastAPI, services: Services) -> None:
    poller: Poller = app.state.poller
    for _ in range(3):
        await poller.poll_once()
    assert sum(1 for r in services.seen if r.url.path == "/reports/summary") == 1


async def test_page_and_assets_are_served_locally(client: httpx.AsyncClient) -> None:
    page = await client.get("/ops")
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert "运行监控" in page.text
    # No CDN: every script, style and link the page loads is the hub's own.
    refs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert refs and all(ref.startswith("/ops/") for ref in refs)
    chart = await client.get("/ops/static/chart.umd.min.js")
    assert chart.status_code == 200 and chart.text.startswith("/*!\n * Chart.js v4.")
    licence = await client.get("/ops/static/chart.LICENSE.txt")
    assert licence.status_code == 200 and "MIT" in licence.text and "@kurkle/color" in licence.text
    for asset in ("ops.js", "ops.css"):
        body = (await client.get(f"/ops/static/{asset}")).text
        assert "http://" not in body and "https://" not in body
    assert (await client.get("/ops/static/../api.py")).status_code == 404
    redirect = await client.get("/")
    assert redirect.status_code == 307 and redirect.headers["location"] == "/ops"


async def test_chinese_font_is_served_for_machines_without_one(client: httpx.AsyncClient) -> None:
    font = await client.get("/ops/font/sans.otf")
    assert font.status_code == 200 and font.headers["content-type"] == "font/otf"
    assert font.content[:4] == b"OTTO"  # an OpenType font with CFF outlines


def test_prod_needs_a_real_dispatcher_key() -> None:
    with pytest.raises(ValueError, match="GRIDHUB_CONSOLE_DISPATCHER_KEY"):
        ConsoleSettings(common=CommonSettings(mode="prod", kafka_replication_factor=3))
    prod = ConsoleSettings(
        common=CommonSettings(mode="prod", kafka_replication_factor=3), dispatcher_key="a-real-key-from-the-vault"
    )
    assert prod.targets()["router"] == "http://127.0.0.1:8102"


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDHUB_CONSOLE_ROUTER_URL", "http://10.0.0.5:8102/")
    monkeypatch.setenv("GRIDHUB_CONSOLE_PORT", "9105")
    monkeypatch.setenv("GRIDHUB_CONSOLE_POLL_INTERVAL_S", "2")
    loaded = ConsoleSettings()
    assert loaded.port == 9105 and loaded.poll_interval_s == 2
    assert loaded.targets()["router"] == "http://10.0.0.5:8102"
    assert json.loads(json.dumps(loaded.targets()))  # plain strings
