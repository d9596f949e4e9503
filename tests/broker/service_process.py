"""Helpers of the broker tests that run a service as a process: its environment, its topics, its start."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from gridhub.kernel.kafka import create_topics
from gridhub.kernel.settings import CommonSettings
from gridhub.up import Supervisor, command
from tests.conftest import Broker


def service_env(common: CommonSettings, service: str, data_dir: Path, port: int, **settings: str) -> dict[str, str]:
    """The process environment of one service on the test's topics: no GRIDHUB_ setting of the caller leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDHUB_")}
    return env | {
        "KAFKA_BOOTSTRAP": common.kafka_bootstrap,
        "GRIDHUB_KAFKA_IDEMPOTENCE": str(common.kafka_idempotence).lower(),
        "GRIDHUB_TOPIC_PREFIX": common.topic_prefix,
        "GRIDHUB_DATA_DIR": str(data_dir),
        f"GRIDHUB_{service.upper()}_PORT": str(port),
        "PYTHONUNBUFFERED": "1",
        **settings,
    }


@asynccontextmanager
async def own_topics(
    broker: Broker, topic_prefix: str, tmp_path: Path, tag: str
) -> AsyncIterator[tuple[CommonSettings, Supervisor]]:
    """Topics of a prefix of the test's own (created), and a supervisor whose processes are stopped at the end."""
    prefix = f"{topic_prefix}{tag}{uuid.uuid4().hex[:6]}."
    common = CommonSettings(kafka_bootstrap=broker.bootstrap, kafka_idempotence=broker.idempotence, topic_prefix=prefix)
    await asyncio.wait_for(create_topics(common), 60)
    sup = Supervisor(tmp_path / "logs")
    try:
        yield common, sup
    finally:
        await asyncio.to_thread(sup.stop)


async def start_service(sup: Supervisor, service: str, env: dict[str, str], ready_s: float) -> float:
    """Start `gridhub serve <service>` and wait for its /readyz; return how long that took."""
    started = time.monotonic()
    sup.spawn(service, command("serve", service), env)
    url = f"http://127.0.0.1:{env[f'GRIDHUB_{service.upper()}_PORT']}/readyz"
    await asyncio.to_thread(sup.wait_ready, {service: url}, ready_s)
    return time.monotonic() - started
