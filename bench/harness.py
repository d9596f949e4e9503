"""Bench harness: plan and result types, child processes and ports, topics, preloading and reading output."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from gridhub.broker import free_port
from gridhub.kernel.kafka import make_consumer, make_producer
from gridhub.kernel.settings import CommonSettings
from gridhub.up import SERVICES, Supervisor
from schemas.catalogue import PARTITIONS

RECEIVER = Path(__file__).resolve().parent / "receiver.py"
API_KEY = "dev-12345-key"
KafkaRecord = tuple[bytes, bytes]
log = logging.getLogger("hub_bench")


@dataclass(frozen=True)
class Plan:
    """How much work each part of the bench does."""

    events: int
    baseline_events: int
    e2e_events: int
    concurrency: int
    latency_rate: float
    latency_seconds: float
    half_max_latency: bool = True
    e2e_batch: int = 100
    startup_timeout_s: float = 60.0
    stall_timeout_s: float = 15.0


@dataclass
class Arrivals:
    """Output records seen on a topic: how many, and their first and last producer timestamps."""

    count: int = 0
    first_ts: float | None = None
    last_ts: float | None = None
    first_seen: float | None = None
    last_seen: float | None = None

    def add(self, timestamp_ms: int, seen: float) -> None:
        """Account for one output record."""
        ts = timestamp_ms / 1000 if timestamp_ms and timestamp_ms > 0 else seen
        self.count += 1
        self.first_ts = ts if self.first_ts is None else min(self.first_ts, ts)
        self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)
        self.first_seen = self.first_seen or seen
        self.last_seen = seen


@dataclass
class Row:
    """One line of the result table."""

    name: str
    inputs: int
    input_kind: str
    in_rate: float | None
    out_rate: float | None = None
    outputs: int | None = None
    startup_s: float | None = None
    cpu_pct: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds a process has used, from /proc (None when unavailable)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def create_plain_topics(bootstrap: str, names: list[str], timeout_s: float = 30.0) -> None:
    """Create topics of PARTITIONS partitions (no catalogue spec)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await asyncio.wait_for(admin.start(), timeout_s)
    try:
        topics = [NewTopic(name=n, num_partitions=PARTITIONS, replication_factor=1) for n in names]
        await asyncio.wait_for(admin.create_topics(topics), timeout_s)
    finally:
        await admin.close()


async def delete_topics_with_prefix(bootstrap: str, prefix: str, timeout_s: float = 30.0) -> int:
    """Delete every topic whose name starts with prefix; return how many (best effort)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await asyncio.wait_for(admin.start(), timeout_s)
    try:
        names = [t for t in await asyncio.wait_for(admin.list_topics(), timeout_s) if t.startswith(prefix)]
        if names:
            await asyncio.wait_for(admin.delete_topics(names), timeout_s)
        return len(names)
    finally:
        await admin.close()


async def preload(common: CommonSettings, topic: str, records: list[KafkaRecord], timeout_s: float = 120.0) -> None:
    """Produce records to topic in big batches and wait until the broker has them all."""
    producer = make_producer(common, linger_ms=20)
    await asyncio.wait_for(producer.start(), 30)
    try:
        async with asyncio.timeout(timeout_s):
            for key, value in records:
                await producer.send(topic, value, key=key)
            await producer.flush()
    finally:
        await asyncio.wait_for(producer.stop(), 30)


async def assigned_consumer(common: CommonSettings, *topics: str) -> AIOKafkaConsumer:
    """A group-less consumer that reads every partition of the topics from the beginning."""
    consumer = make_consumer(common, group_id=None, max_partition_fetch_bytes=4 * 1024 * 1024)
    await asyncio.wait_for(consumer.start(), 30)
    consumer.assign([TopicPartition(topic, p) for topic in topics for p in range(PARTITIONS)])
    await asyncio.wait_for(consumer.seek_to_beginning(), 30)
    return consumer


async def collect(
    consumer: AIOKafkaConsumer,
    expected: int,
    alive: Callable[[], bool],
    plan: Plan,
    on_first: Callable[[], None] = lambda: None,
    distinct: Callable[[bytes], bytes | None] | None = None,
) -> Arrivals:
    """Read output records until `expected` arrived, the process died, or a start-up or stall limit passed.

    With `distinct`, only a record whose distinct(value) was not seen before counts (events accounted for).
    """
    arrivals = Arrivals()
    seen_keys: set[bytes | None] = set()
    started = last_progress = time.monotonic()
    while arrivals.count < expected:
        now = time.monotonic()
        if not alive():
            raise RuntimeError("the stage process exited; see its log")
        if arrivals.count == 0 and now - started > plan.startup_timeout_s:
            log.warning("no output within %.0f s", plan.startup_timeout_s)
            break
        if arrivals.count and now - last_progress > plan.stall_timeout_s:
            log.warning("output stalled at %d of %d", arrivals.count, expected)
            break
        batches = await asyncio.wait_for(consumer.getmany(timeout_ms=200, max_records=10_000), 30)
        seen = time.time()
        for records in batches.values():
            if arrivals.count == 0 and records:
                on_first()
            for record in records:
                if distinct is not None:
                    key = distinct(record.value)
                    if key in seen_keys:
                        continue
                    seen_keys.add(key)
                arrivals.add(record.timestamp, seen)
        if batches:
            last_progress = time.monotonic()
    return arrivals


async def wait_http(client: httpx.AsyncClient, url: str, alive: Callable[[], bool], timeout_s: float) -> None:
    """Poll url until it answers 200; raise if the process dies or timeout_s passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"process behind {url} exited")
        with contextlib.suppress(httpx.HTTPError):
            if (await client.get(url, timeout=1)).status_code == 200:
                return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout_s} s")


class Bench:
    """One bench run: the broker address, a unique run id, a work dir, and every child process started."""

    def __init__(self, bootstrap: str, idempotence: bool, workdir: Path, plan: Plan, broker_pid: int | None) -> None:
        self.bootstrap = bootstrap
        self.broker_pid = broker_pid
        self.idempotence = idempotence
        self.workdir = workdir
        self.plan = plan
        self.run_id = uuid.uuid4().hex[:6]
        self.supervisors: list[Supervisor] = []

    @property
    def prefix_root(self) -> str:
        """Every topic and group of this run starts with this."""
        return f"bench-{self.run_id}-"

    def common(self, part: str) -> CommonSettings:
        """Settings with this part's own topic prefix."""
        return CommonSettings(topic_prefix=f"{self.prefix_root}{part}.")

    def supervisor(self, part: str) -> Supervisor:
        """A fresh Supervisor whose children are stopped at the end whatever happens."""
        sup = Supervisor(self.workdir / part / "logs")
        self.supervisors.append(sup)
        return sup

    def env(
        self, common: CommonSettings, part: str, webhook: str | None = None
    ) -> tuple[dict[str, str], dict[str, int]]:
        """Environment for the services of one part, with free ports for all of them."""
        ports = {name: free_port() for name in SERVICES}
        data_dir = self.workdir / part / "data"
        data_dir.mkdir(parents=True, exist_ok=True)  # Faust makes only the last level of its datadir
        env = dict(os.environ)
        env.update(
            {
                "KAFKA_BOOTSTRAP": self.bootstrap,
                "GRIDHUB_KAFKA_IDEMPOTENCE": "true" if self.idempotence else "false",
                "GRIDHUB_TOPIC_PREFIX": common.topic_prefix,
                "GRIDHUB_DATA_DIR": str(data_dir),
                "GRIDHUB_MODE": "dev",
                # The corpus repeats eight situations at one place and time each: merged into cases, they
                # would yield a handful of tasks instead of the count the router stage waits for.
                "GRIDHUB_ROUTER_MERGE_ENABLED": "false",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update({f"GRIDHUB_{name.upper()}_PORT": str(port) for name, port in ports.items()})
        if webhook:
            env["GRIDHUB_NOTIFIER_DEFAULT_WEBHOOK"] = webhook
        return env, ports

    def stop_all(self) -> None:
        """SIGTERM then SIGKILL every child still running."""
        for sup in self.supervisors:
            with contextlib.suppress(Exception):
                sup.stop(timeout_s=5.0)
