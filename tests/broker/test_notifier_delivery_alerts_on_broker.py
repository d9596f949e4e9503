"""Delivery alerts reach the command centre on a real broker: a task given up after every retry, and an endpoint
failing for the configured period (counted across a SIGKILL and restart), each arrive at the command centre's
webhook as a signed `DeliveryAlertRaised`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer
from standardwebhooks import Webhook

from gridhub.broker import free_port
from gridhub.kernel.settings import CommonSettings
from schemas import DeliveryAlertKind, DeliveryAlertRaised
from services.notifier.settings import DEV_SIGNING_SECRET
from tests.broker.service_process import own_topics, service_env, start_service
from tests.conftest import Broker
from tests.unit.sla_tasks import task

pytestmark = pytest.mark.broker

CENTRE = "PA-ZZZX"  # the packaged duty list's command centre
READY_S = 45.0


@dataclass
class Receivers:
    """The department's endpoint (always 500) and the command centre's (200, signatures checked)."""

    port: int
    dept_failures: list[float] = field(default_factory=list)
    alerts: list[tuple[str, DeliveryAlertRaised, float]] = field(default_factory=list)
    verifier: Webhook = field(default_factory=lambda: Webhook(DEV_SIGNING_SECRET))

    async def dept(self, request: web.Request) -> web.Response:
        await request.read()
        self.dept_failures.append(time.monotonic())
        return web.Response(status=500, text="服务器内部错误")

    async def centre(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.verifier.verify(body, dict(request.headers))
        self.alerts.append(
            (request.headers["webhook-id"], DeliveryAlertRaised.model_validate_json(body), time.monotonic())
        )
        return web.Response(status=200, text="ok")


@contextlib.asynccontextmanager
async def receivers() -> AsyncIterator[Receivers]:
    app = web.Application()
    found = Receivers(free_port())
    app.router.add_post("/dept", found.dept)
    app.router.add_post("/centre", found.centre)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", found.port).start()
    try:
        yield found
    finally:
        await runner.cleanup()


async def until(done: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Wait until done() holds, failing with `what` after the time limit."""
    try:
        async with asyncio.timeout(timeout_s):
            while not done():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not within {timeout_s} s: {what}") from None


def notifier_env(common: CommonSettings, tmp_path: Path, port: int, rx: Receivers, **extra: str) -> dict[str, str]:
    base = f"http://127.0.0.1:{rx.port}"
    return service_env(
        common,
        "notifier",
        tmp_path / "data",
        port,
        GRIDHUB_NOTIFIER_WEBHOOKS=json.dumps({"PA-CG-01": f"{base}/dept", CENTRE: f"{base}/centre"}),
        GRIDHUB_NOTIFIER_TIMEOUT_S="1",
        GRIDHUB_NOTIFIER_SLOW_DOWN_S="0",
        **extra,
    )


async def produce_task(common: CommonSettings) -> str:
    t = task(datetime.now(UTC))
    producer = AIOKafkaProducer(bootstrap_servers=common.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(common.topic("tasks.dispatched"), t.to_bytes(), key=t.task_id.encode())
    finally:
        await producer.stop()
    return t.task_id


async def test_a_task_given_up_after_every_retry_is_reported_to_the_command_centre(
    broker: Broker, topic_prefix: str, tmp_path: Path
) -> None:
    async with own_topics(broker, topic_prefix, tmp_path, "nda") as (common, sup), receivers() as rx:
        env = notifier_env(common, tmp_path, free_port(), rx, GRIDHUB_NOTIFIER_RETRY_SCHEDULE_S="[0.2, 0.2]")
        await start_service(sup, "notifier", env, READY_S)
        task_id = await produce_task(common)
        await until(lambda: bool(rx.alerts), 30, "the command centre got the alert")
        await asyncio.sleep(0.5)  # nothing more arrives
    assert len(rx.dept_failures) == 3  # the first attempt and the two retries
    [(webhook_id, alert, _)] = rx.alerts
    assert webhook_id == f"alert_{alert.alert_id}"
    assert (alert.kind, alert.unit_code, alert.endpoint_unit_code, alert.task_id) == (
        DeliveryAlertKind.EXHAUSTED,
        CENTRE,
        "PA-CG-01",
        task_id,
    )
    assert (alert.attempts, alert.last_status, alert.webhook_id) == (3, 500, f"task_{task_id}")


async def test_an_endpoint_failing_for_the_period_is_disabled_counting_across_a_restart(
    broker: Broker, topic_prefix: str, tmp_path: Path
) -> None:
    disable_after_s = 6.0
    async with own_topics(broker, topic_prefix, tmp_path, "ndb") as (common, sup), receivers() as rx:
        env = notifier_env(
            common,
            tmp_path,
            free_port(),
            rx,
            GRIDHUB_NOTIFIER_RETRY_SCHEDULE_S=json.dumps([0.5] * 60),
            GRIDHUB_NOTIFIER_DISABLE_AFTER_S=str(disable_after_s),
        )
        await start_service(sup, "notifier", env, READY_S)
        await produce_task(common)
        await until(lambda: len(rx.dept_failures) >= 3, 20, "three failed attempts")
        first_failure = rx.dept_failures[0]
        os.kill(sup.procs["notifier"].pid, signal.SIGKILL)
        sup.procs["notifier"].wait(timeout=10)
        # Back only once the period has passed since the first failure: a count started afresh at the restart
        # would disable the endpoint no sooner than disable_after_s after it.
        await asyncio.sleep(max(0.0, first_failure + disable_after_s + 0.5 - time.monotonic()))
        await start_service(sup, "notifier", env, READY_S)
        back = time.monotonic()
        await until(lambda: bool(rx.alerts), 20, "the command centre got the alert")
    [(_, alert, arrived)] = rx.alerts
    assert (alert.kind, alert.unit_code, alert.endpoint_unit_code) == (DeliveryAlertKind.DISABLED, CENTRE, "PA-CG-01")
    assert arrived - back < disable_after_s / 2, "the failing period was counted afresh after the restart"
    failures_after = [at for at in rx.dept_failures if at > back]
    assert len(failures_after) <= 2  # disabled at its first failure (or one in flight), no more attempts after
