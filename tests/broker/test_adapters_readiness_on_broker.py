"""The adapters' /readyz means the broker answers now: not ready while it is gone, ready again when it is back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from gridhub.broker import EmbeddedBroker
from gridhub.kernel.health import Contact
from gridhub.kernel.settings import CommonSettings
from services.adapters.api import create_api
from services.adapters.settings import AdaptersSettings

pytestmark = pytest.mark.broker

WAIT_S = 30.0
WINDOW_S = 3.0  # the contact window of the test's app (30 s in the service)


async def ready(client: httpx.AsyncClient) -> bool:
    return (await client.get("/readyz")).status_code == 200


async def eventually_ready(client: httpx.AsyncClient, want: bool, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while await ready(client) != want:
        assert time.monotonic() < deadline, f"not within {WAIT_S} s: {what}"
        await asyncio.sleep(0.2)


async def test_readyz_follows_the_broker(tmp_path: Path) -> None:
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log")
    await asyncio.to_thread(broker.start)
    common = CommonSettings(
        kafka_bootstrap=broker.bootstrap, kafka_idempotence=False, topic_prefix="adapters.ready.", data_dir=tmp_path
    )
    app = create_api(
        AdaptersSettings(common=common), CollectorRegistry(), follow_index=False, contact=Contact(WINDOW_S)
    )
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://adapters.test") as client:
                await eventually_ready(client, True, "ready once the producer has the broker")
                await asyncio.to_thread(broker.stop)
                await eventually_ready(client, False, "not ready with the broker gone")
                assert (await client.get("/healthz")).status_code == 200  # alive all the same: no restart wanted
                await asyncio.to_thread(broker.start)  # same port, a new empty broker
                await eventually_ready(client, True, "ready again once the broker answers a probe")
    finally:
        await asyncio.to_thread(broker.stop)
