"""The whole hub as separate processes on the session's broker, and a real webhook receiver."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from standardwebhooks import Webhook

from gridhub.broker import free_port
from gridhub.kernel.kafka import create_topics
from gridhub.kernel.settings import CommonSettings
from gridhub.up import CONSOLE, SERVICES, Supervisor, command, console_env
from services.notifier.settings import DEV_SIGNING_SECRET
from tests.conftest import Broker

# Description marker that makes the receiver fail the first attempt, to prove retries.
FAIL_FIRST_MARKER = "【测试：首次投递失败】"


@dataclass
class Delivery:
    """One POST the receiver got."""

    webhook_id: str
    status: int
    body: dict[str, Any]
    received_at: float


@dataclass
class Receiver:
    """A unit's webhook endpoint: verifies every signature, records every attempt."""

    url: str = ""
    deliveries: list[Delivery] = field(default_factory=list)
    bad_signatures: int = 0

    def delivered(self, event_id: str) -> list[Delivery]:
        """Successful deliveries of an event's tasks."""
        return [d for d in self.deliveries if d.status == 200 and d.body.get("event_id") == event_id]

    async def wait_for(self, event_id: str, count: int, timeout_s: float = 60.0) -> list[Delivery]:
        """Wait until `count` tasks of an event were delivered."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.delivered(event_id)
            if len(found) >= count:
                return found
            await asyncio.sleep(0.1)
        raise TimeoutError(f"{len(self.delivered(event_id))} of {count} deliveries for {event_id} in {timeout_s} s")


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    """A real HTTP server (own thread and loop, so it answers between tests too) acting as every unit's webhook."""
    state = Receiver()
    verifier = Webhook(DEV_SIGNING_SECRET)
    failed_once: set[str] = set()

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            payload = verifier.verify(body, dict(request.headers))
        except Exception:
            state.bad_signatures += 1
            return web.Response(status=400, text="bad signature")
        webhook_id = request.headers["webhook-id"]
        status = 200
        if FAIL_FIRST_MARKER in payload.get("description", "") and webhook_id not in failed_once:
            failed_once.add(webhook_id)
            status = 503
        state.deliveries.append(Delivery(webhook_id, status, payload, time.time()))
        return web.Response(status=status, text="ok" if status == 200 else "try again")

    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_post("/webhook", handle)
    runner = web.AppRunner(app, access_log=None)
    port = free_port()

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()

    thread = threading.Thread(target=loop.run_forever, name="webhook-receiver", daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    state.url = f"http://127.0.0.1:{port}/webhook"
    try:
        yield state
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


@dataclass(frozen=True)
class Hub:
    """Where the running hub's services answer."""

    ports: dict[str, int]
    common: CommonSettings
    log_dir: Path
    started_in_s: float

    def url(self, service: str) -> str:
        """Base URL of a service."""
        return f"http://127.0.0.1:{self.ports[service]}"


def hub_env(broker: Broker, prefix: str, ports: dict[str, int], data_dir: Path, receiver_url: str) -> dict[str, str]:
    """Environment for the hub's processes in a test session."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDHUB_")}
    env.update(
        {
            "KAFKA_BOOTSTRAP": broker.bootstrap,
            "GRIDHUB_KAFKA_IDEMPOTENCE": str(broker.idempotence).lower(),
            "GRIDHUB_TOPIC_PREFIX": prefix,
            "GRIDHUB_MODE": "dev",
            "GRIDHUB_DATA_DIR": str(data_dir),
            "GRIDHUB_LOG_LEVEL": "INFO",
            "GRIDHUB_NOTIFIER_DEFAULT_WEBHOOK": receiver_url,
            "GRIDHUB_NOTIFIER_RETRY_SCHEDULE_S": "[0.2, 0.5, 1.0]",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update({f"GRIDHUB_{name.upper()}_PORT": str(port) for name, port in ports.items()})
    return env


@contextlib.contextmanager
def running_hub(
    broker: Broker,
    prefix: str,
    data_dir: Path,
    receiver_url: str,
    *,
    extra_env: dict[str, str] | None = None,
    console: bool = False,
    ready_s: float = 90.0,
) -> Iterator[Hub]:
    """The five services as processes on topics of `prefix` (created first), ready; with `console`, the operations
    page too (its port in `Hub.ports`). Every process is stopped on exit; on a failure the logs' ends are printed."""
    names = (*SERVICES, CONSOLE) if console else SERVICES
    ports = {name: free_port() for name in names}
    env = hub_env(broker, prefix, ports, data_dir, receiver_url) | (extra_env or {})
    common = CommonSettings(kafka_bootstrap=broker.bootstrap, kafka_idempotence=broker.idempotence, topic_prefix=prefix)
    asyncio.run(asyncio.wait_for(create_topics(common), 60))
    sup = Supervisor(data_dir / "logs")
    started = time.monotonic()
    try:
        for name in SERVICES:
            sup.spawn(name, command("serve", name), env)
        sup.wait_ready({name: f"http://127.0.0.1:{ports[name]}/readyz" for name in SERVICES}, ready_s)
        if console:
            sup.spawn(CONSOLE, command("serve", CONSOLE), env | console_env(ports))
            sup.wait_ready({CONSOLE: f"http://127.0.0.1:{ports[CONSOLE]}/readyz"}, ready_s)
        yield Hub(ports, common, data_dir / "logs", time.monotonic() - started)
    except BaseException:
        for log in sorted((data_dir / "logs").glob("*.log")):
            print(f"===== {log.name}\n{log.read_text('utf-8', 'replace')[-4000:]}")
        raise
    finally:
        sup.stop()


@pytest.fixture(scope="session")
def hub(
    broker: Broker, topic_prefix: str, receiver: Receiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Hub]:
    """Topics created, then the five services started as processes and ready."""
    with running_hub(broker, topic_prefix, tmp_path_factory.mktemp("hub"), receiver.url) as running:
        yield running


def tail_logs(hub: Hub) -> str:
    """The end of every service log, for a failing assertion's message."""
    return "\n".join(
        f"== {p.name}\n{p.read_text('utf-8', 'replace')[-2000:]}" for p in sorted(hub.log_dir.glob("*.log"))
    )


def dumps(value: Any) -> str:
    """JSON with Chinese readable."""
    return json.dumps(value, ensure_ascii=False)
