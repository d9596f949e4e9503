"""Intake's dedupe state lives on the compacted reports.index: it survives a restart of the worker."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from gridhub.broker import free_port
from gridhub.kernel.kafka import create_topics
from gridhub.kernel.settings import CommonSettings
from gridhub.up import Supervisor, command
from tests.conftest import Broker

pytestmark = pytest.mark.broker

ORDER = {"appeal_type": "投诉", "content": "小区停水两天了，没有任何通知。", "call_time": "2026-11-20T09:30:00+08:00"}


def intake_counts(port: int) -> dict[str, float]:
    """gridhub_intake_events_total by outcome for the 12345 channel."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    prefix = 'gridhub_intake_events_total{channel="12345",outcome="'
    return {
        line[len(prefix) :].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(prefix)
    }


def wait_for_count(port: int, outcome: str, timeout_s: float = 30) -> None:
    """Wait until intake has counted one report with this outcome."""
    deadline = time.monotonic() + timeout_s
    while intake_counts(port).get(outcome, 0) < 1:
        assert time.monotonic() < deadline, f"no {outcome} report counted in {timeout_s} s"
        time.sleep(0.2)


async def produce_raw(env: dict[str, str], prefix: str, order: dict[str, str]) -> None:
    """The order's bare payload on raw.12345, keyed like the adapters key it."""
    producer = AIOKafkaProducer(bootstrap_servers=env["KAFKA_BOOTSTRAP"])
    await asyncio.wait_for(producer.start(), 30)
    try:
        body = json.dumps(order, ensure_ascii=False).encode()
        key = f"12345:{order['order_no']}".encode()
        await asyncio.wait_for(producer.send_and_wait(f"{prefix}raw.12345", body, key=key), 30)
    finally:
        await producer.stop()


def test_duplicate_is_caught_after_intake_restarts(broker: Broker, tmp_path: Path) -> None:
    prefix = f"r{uuid.uuid4().hex[:8]}."
    asyncio.run(
        create_topics(
            CommonSettings(kafka_bootstrap=broker.bootstrap, kafka_idempotence=broker.idempotence, topic_prefix=prefix)
        )
    )
    ports = {"adapters": free_port(), "intake": free_port()}
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDHUB_")}
    env |= {
        "KAFKA_BOOTSTRAP": broker.bootstrap,
        "GRIDHUB_KAFKA_IDEMPOTENCE": str(broker.idempotence).lower(),
        "GRIDHUB_TOPIC_PREFIX": prefix,
        "GRIDHUB_DATA_DIR": str(tmp_path / "var"),
        **{f"GRIDHUB_{name.upper()}_PORT": str(port) for name, port in ports.items()},
    }
    sup = Supervisor(tmp_path / "logs")
    order = {"order_no": f"R{uuid.uuid4().hex[:10]}", **ORDER}
    post = f"http://127.0.0.1:{ports['adapters']}/v1/12345/work-orders"
    try:
        for name in ports:
            sup.spawn(name, command("serve", name), env)
        sup.wait_ready({name: f"http://127.0.0.1:{port}/readyz" for name, port in ports.items()}, 90)
        assert httpx.post(post, json=order, headers={"X-Api-Key": "dev-12345-key"}, timeout=10).status_code == 202
        wait_for_count(ports["intake"], "normalised")

        first = sup.procs.pop("intake")
        first.terminate()
        assert first.wait(timeout=30) == 0
        sup.spawn("intake", command("serve", "intake"), env)
        sup.wait_ready({"intake": f"http://127.0.0.1:{ports['intake']}/readyz"}, 90)

        # The adapters answer a repeat themselves (200, nothing published); the same report reaching intake
        # another way (a Kafka-native source, a replica that had not heard of it) is what intake must catch.
        again = httpx.post(post, json=order, headers={"X-Api-Key": "dev-12345-key"}, timeout=10)
        assert again.status_code == 200
        asyncio.run(produce_raw(env, prefix, order))
        wait_for_count(ports["intake"], "duplicate")
        assert intake_counts(ports["intake"]).get("normalised", 0) == 0  # the new process normalised nothing
    finally:
        sup.stop()
