"""The notifier under faults on a real broker: the receiver answers 500 or hangs past the timeout for a while, the
notifier is killed (SIGKILL) and restarted in the middle of it; afterwards every task was delivered, each
webhook-id arrived (with a good signature) at least once, none was lost."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer
from standardwebhooks import Webhook

from gridhub.broker import free_port
from gridhub.kernel.kafka import create_topics
from gridhub.kernel.settings import CommonSettings
from gridhub.up import Supervisor, command
from services.notifier.settings import DEV_SIGNING_SECRET
from tests.conftest import Broker
from tests.unit.sla_tasks import task

pytestmark = pytest.mark.broker

TASKS = 120
BAD_FOR_S = 8.0


class FaultyReceiver:
    """Answers 500 or hangs (past the notifier's 1 s timeout) until `good_from`, then 200; checks signatures."""

    def __init__(self) -> None:
        self.good_from = float("inf")
        self.ok: Counter[str] = Counter()
        self.failed = 0
        self.hung = 0
        self.bad_signatures = 0
        self.verifier = Webhook(DEV_SIGNING_SECRET)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            self.verifier.verify(body, dict(request.headers))
        except Exception:
            self.bad_signatures += 1
            return web.Response(status=400)
        webhook_id = request.headers["webhook-id"]
        if time.monotonic() < self.good_from:
            if (self.failed + self.hung) % 2:
                self.hung += 1
                await asyncio.sleep(2.0)
                return web.Response(status=200, text="too late")
            self.failed += 1
            return web.Response(status=500, text="服务器内部错误")
        self.ok[webhook_id] += 1
        return web.Response(status=200, text="ok")


async def wait_ready(url: str, sup: Supervisor, name: str, timeout_s: float = 45.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=1) as client:
        while time.monotonic() < deadline:
            proc = sup.procs[name]
            assert proc.poll() is None, f"{name} exited: {(sup.log_dir / (name + '.log')).read_text()[-3000:]}"
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{name} not ready after {timeout_s} s")


@pytest.mark.parametrize("lose_outbox", [False, True], ids=["restart", "outbox-lost"])
async def test_every_task_delivered_through_errors_timeouts_and_a_kill(
    broker: Broker, tmp_path: Path, lose_outbox: bool
) -> None:
    prefix = f"nf{uuid.uuid4().hex[:8]}."
    common = CommonSettings(kafka_bootstrap=broker.bootstrap, kafka_idempotence=broker.idempotence, topic_prefix=prefix)
    await create_topics(common)
    receiver = FaultyReceiver()
    app = web.Application()
    app.router.add_post("/webhook", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    notifier_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDHUB_")}
    env.update(
        {
            "KAFKA_BOOTSTRAP": broker.bootstrap,
            "GRIDHUB_KAFKA_IDEMPOTENCE": str(broker.idempotence).lower(),
            "GRIDHUB_TOPIC_PREFIX": prefix,
            "GRIDHUB_MODE": "dev",
            "GRIDHUB_DATA_DIR": str(tmp_path / "data"),
            "GRIDHUB_NOTIFIER_PORT": str(notifier_port),
            "GRIDHUB_NOTIFIER_DEFAULT_WEBHOOK": f"http://127.0.0.1:{port}/webhook",
            "GRIDHUB_NOTIFIER_RETRY_SCHEDULE_S": "[0.3, 0.5, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2]",
            "GRIDHUB_NOTIFIER_TIMEOUT_S": "1",
            "GRIDHUB_NOTIFIER_SLOW_DOWN_S": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    sup = Supervisor(tmp_path / "logs")
    ready = f"http://127.0.0.1:{notifier_port}/readyz"
    tasks = [task(datetime.now(UTC)) for _ in range(TASKS)]
    expected = {f"task_{t.task_id}" for t in tasks}
    try:
        receiver.good_from = time.monotonic() + 60  # bad until we say otherwise
        sup.spawn("notifier", command("serve", "notifier"), env)
        await wait_ready(ready, sup, "notifier")
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        try:
            for t in tasks:
                await producer.send(common.topic("tasks.dispatched"), t.to_bytes(), key=t.task_id.encode())
            await producer.flush()
        finally:
            await producer.stop()
        receiver.good_from = time.monotonic() + BAD_FOR_S
        # In the middle of the bad spell: killed without a chance to write anything more.
        async with asyncio.timeout(20):
            while receiver.failed + receiver.hung < 20:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        os.kill(sup.procs["notifier"].pid, signal.SIGKILL)
        sup.procs["notifier"].wait(timeout=10)
        if lose_outbox:  # another machine, a lost volume: rebuilt from the topics
            shutil.rmtree(tmp_path / "data" / "notifier")
        sup.spawn("notifier", command("serve", "notifier"), env)
        await wait_ready(ready, sup, "notifier")
        async with asyncio.timeout(45):
            while not expected <= set(receiver.ok):  # noqa: ASYNC110
                await asyncio.sleep(0.2)
    finally:
        sup.stop()
        await runner.cleanup()
    assert receiver.failed > 0 and receiver.hung > 0
    assert receiver.bad_signatures == 0
    assert set(receiver.ok) == expected  # each at least once, nothing else
    restored = [
        entry
        for line in (tmp_path / "logs" / "notifier.log").read_text("utf-8").splitlines()
        if line.startswith("{") and (entry := json.loads(line)).get("msg") == "partition restored"
    ]
    second = restored[len(restored) // 2 :]  # six partitions at each start
    assert {entry["how"] for entry in second} == {"rebuild" if lose_outbox else "open"}
    if not lose_outbox:
        # The retry timers of the killed notifier came back from its outbox files.
        assert sum(entry["pending"] for entry in second) > 0
    print(
        f"faults: {receiver.failed} 500s, {receiver.hung} timeouts; {sum(receiver.ok.values())} good deliveries of "
        f"{len(expected)} webhook-ids ({sum(1 for n in receiver.ok.values() if n > 1)} repeated)"
    )
