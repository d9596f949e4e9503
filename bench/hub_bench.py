"""GridHub bench: a raw aiokafka baseline, each Faust stage alone, and the whole hub end to end, on one broker.

Run: .venv/bin/python bench/hub_bench.py [--events N] [--quick] [--json PATH]   (see bench/README.md)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import aiohttp
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from gridhub.broker import EmbeddedBroker, free_port
from gridhub.demo.simulator import work_order
from gridhub.kernel.errors import PermanentError
from gridhub.kernel.kafka import create_topics, make_consumer, make_producer
from gridhub.kernel.settings import CommonSettings
from gridhub.up import SERVICES, Supervisor, command
from schemas import Channel, ReportReceived, new_id
from schemas.catalogue import PARTITIONS, RAW_TOPICS
from services.intake.channels import normalise
from services.router.decide import build_tasks, decide
from services.router.dutylist import load_duty_list

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
    startup_timeout_s: float = 60.0
    stall_timeout_s: float = 15.0


@dataclass
class Corpus:
    """Realistic inputs for every stage, built in-process from the same 12345 work orders."""

    raws: list[KafkaRecord] = field(default_factory=list)
    events: list[KafkaRecord] = field(default_factory=list)
    tasks: list[KafkaRecord] = field(default_factory=list)
    skipped: int = 0


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


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def build_corpus(n: int, run_id: str, seed: int = 12345) -> Corpus:
    """N ReportReceived for 12345 work orders, their EventNormalised, and the router's TaskDispatched."""
    rng = random.Random(seed)
    duty = load_duty_list()
    corpus = Corpus()
    for seq in range(n):
        order = work_order(seq, rng, prefix=f"B{run_id}")
        raw = ReportReceived(
            source=Channel.HOTLINE_12345, source_id=order["order_no"], proposed_event_id=new_id(),
            received_at=datetime.now(UTC), adapter_version="hub-bench/1", payload=order,
        )
        try:
            event = normalise(raw, raw.proposed_event_id)
        except PermanentError:
            corpus.skipped += 1
            continue
        corpus.raws.append((raw.dedupe_key.encode(), raw.to_bytes()))
        corpus.events.append((event.event_id.encode(), event.to_bytes()))
        for task in build_tasks(event, decide(event, duty), duty, datetime.now(UTC)):
            corpus.tasks.append((task.task_id.encode(), task.to_bytes()))
    return corpus


def baseline_records(n: int, size: int = 400) -> list[KafkaRecord]:
    """N JSON events of about `size` bytes, keyed by event id."""
    records = []
    for seq in range(n):
        event_id = new_id()
        doc = {"event_id": event_id, "seq": seq, "source": "12345", "received_at": datetime.now(UTC).isoformat(),
               "title": "  小区下水道反流  ", "urgency": "一般", "location": {"grid_code": "PA-CG-01-001"},
               "description": ""}
        pad = size - len(json.dumps(doc, ensure_ascii=False).encode())
        doc["description"] = "x" * max(0, pad)
        records.append((event_id.encode(), json.dumps(doc, ensure_ascii=False).encode()))
    return records


def transform(value: bytes) -> bytes:
    """The baseline's stand-in for a stage: parse, touch a few fields, serialise."""
    doc = json.loads(value)
    doc["title"] = doc["title"].strip()
    doc["normalised_at"] = time.time()
    doc["seq"] += 1
    return json.dumps(doc, ensure_ascii=False).encode()


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


async def assigned_consumer(common: CommonSettings, topic: str) -> AIOKafkaConsumer:
    """A group-less consumer that reads every partition of topic from the beginning."""
    consumer = make_consumer(common, group_id=None, max_partition_fetch_bytes=4 * 1024 * 1024)
    await asyncio.wait_for(consumer.start(), 30)
    consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
    await asyncio.wait_for(consumer.seek_to_beginning(), 30)
    return consumer


async def collect(
    consumer: AIOKafkaConsumer,
    expected: int,
    alive: Callable[[], bool],
    plan: Plan,
    on_first: Callable[[], None] = lambda: None,
) -> Arrivals:
    """Read output records until `expected` arrived, the process died, or a start-up or stall limit passed."""
    arrivals = Arrivals()
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
                arrivals.add(record.timestamp, seen)
        if batches:
            last_progress = time.monotonic()
    return arrivals


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
        env.update({
            "KAFKA_BOOTSTRAP": self.bootstrap,
            "GRIDHUB_KAFKA_IDEMPOTENCE": "true" if self.idempotence else "false",
            "GRIDHUB_TOPIC_PREFIX": common.topic_prefix,
            "GRIDHUB_DATA_DIR": str(data_dir),
            "GRIDHUB_MODE": "dev",
            "PYTHONUNBUFFERED": "1",
        })
        env.update({f"GRIDHUB_{name.upper()}_PORT": str(port) for name, port in ports.items()})
        if webhook:
            env["GRIDHUB_NOTIFIER_DEFAULT_WEBHOOK"] = webhook
        return env, ports

    def stop_all(self) -> None:
        """SIGTERM then SIGKILL every child still running."""
        for sup in self.supervisors:
            with contextlib.suppress(Exception):
                sup.stop(timeout_s=5.0)


async def baseline_trial(common: CommonSettings, src: str, dst: str, n: int) -> float:
    """One pass over the preloaded topic: consume, transform, produce; return messages per second."""
    consumer = await assigned_consumer(common, src)
    producer = make_producer(common)
    await asyncio.wait_for(producer.start(), 30)
    try:
        done, started = 0, None
        deadline = time.monotonic() + 120
        while done < n and time.monotonic() < deadline:
            batches = await asyncio.wait_for(consumer.getmany(timeout_ms=200, max_records=5000), 30)
            if started is None and batches:
                started = time.perf_counter()
            for batch in batches.values():
                for record in batch:
                    await producer.send(dst, transform(record.value), key=record.key)
                    done += 1
        await asyncio.wait_for(producer.flush(), 60)
        elapsed = time.perf_counter() - (started or time.perf_counter())
    finally:
        await asyncio.wait_for(consumer.stop(), 30)
        await asyncio.wait_for(producer.stop(), 30)
    return done / elapsed if elapsed > 0 else 0.0


async def run_baseline(bench: Bench, trials: int = 3) -> Row:
    """(a) consume → json.loads/transform/json.dumps → produce with plain aiokafka, batched; best of `trials`."""
    n = bench.plan.baseline_events
    common = bench.common("baseline")
    src, dst = common.topic("baseline.in"), common.topic("baseline.out")
    await create_plain_topics(bench.bootstrap, [src, dst])
    records = baseline_records(n)
    await preload(common, src, records)
    rates = [await baseline_trial(common, src, dst, n) for _ in range(trials)]
    rate = max(rates)
    size = sum(len(v) for _, v in records) // max(1, len(records))
    return Row("baseline", n, f"JSON {size} B", rate, rate, n,
               note=f"aiokafka getmany→json→send, one flush; best of {trials}: "
                    + " ".join(f"{r:,.0f}" for r in rates),
               extra={"trials": rates})


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


async def run_stage(
    bench: Bench, stage: str, input_topic: str, records: list[KafkaRecord], output_topic: str,
    expected_out: int, input_kind: str, events_per_input: float = 1.0,
) -> Row:
    """(b) preload a stage's input, start `gridhub serve <stage>`, time its output from first to last record."""
    plan = bench.plan
    common = bench.common(stage)
    await asyncio.wait_for(create_topics(common), 60)
    await preload(common, common.topic(input_topic), records)
    sup = bench.supervisor(stage)
    webhook = None
    async with httpx.AsyncClient() as client:
        if stage == "notifier":
            port = free_port()
            webhook = f"http://127.0.0.1:{port}/webhook"
            env, _ = bench.env(common, stage, webhook)
            sup.spawn("receiver", [sys.executable, str(RECEIVER), "--port", str(port)], env)
            proc = sup.procs["receiver"]
            await wait_http(client, f"http://127.0.0.1:{port}/stats", lambda: proc.poll() is None, 30)
        env, _ = bench.env(common, stage, webhook)
        consumer = await assigned_consumer(common, common.topic(output_topic))
        cpu: dict[str, float | None] = {}
        try:
            spawned = time.time()
            sup.spawn(stage, command("serve", stage), env)
            worker = sup.procs[stage]
            mark = (lambda: cpu.update(first=cpu_seconds(worker.pid), first_at=time.monotonic()))  # noqa: E731
            arrivals = await collect(consumer, expected_out, lambda: worker.poll() is None, plan, mark)
            cpu.update(last=cpu_seconds(worker.pid), last_at=time.monotonic())
        finally:
            await asyncio.wait_for(consumer.stop(), 30)
            await asyncio.to_thread(sup.stop, 5.0)
    if arrivals.count == 0 or arrivals.first_ts is None or arrivals.last_ts is None:
        return Row(stage, len(records), input_kind, None, outputs=0, note="no output (see logs)")
    span = arrivals.last_ts - arrivals.first_ts
    out_rate = arrivals.count / span if span > 0 else None
    in_rate = out_rate * len(records) / expected_out if out_rate else None
    cpu_pct = None
    if cpu.get("first") is not None and cpu.get("last") is not None and cpu["last_at"] != cpu["first_at"]:
        cpu_pct = 100 * (cpu["last"] - cpu["first"]) / (cpu["last_at"] - cpu["first_at"])  # type: ignore[operator]
    note = f"→ {output_topic}"
    if arrivals.count < expected_out:
        note += f" INCOMPLETE {arrivals.count}/{expected_out}"
    return Row(stage, len(records), input_kind, in_rate, out_rate, arrivals.count,
               startup_s=arrivals.first_ts - spawned, cpu_pct=cpu_pct, note=note,
               extra={"span_s": span, "events_per_s": in_rate * events_per_input if in_rate else None})


class Hub:
    """The five services and a receiver, all on one topic prefix, driven over HTTP."""

    def __init__(self, bench: Bench, client: httpx.AsyncClient, session: aiohttp.ClientSession) -> None:
        self.bench = bench
        self.client = client
        self.session = session
        self.common = bench.common("e2e")
        self.receiver_port = free_port()
        self.env, self.ports = bench.env(self.common, "e2e", f"http://127.0.0.1:{self.receiver_port}/webhook")
        self.sup = bench.supervisor("e2e")
        self.seq = 0
        self.rng = random.Random(54321)

    @property
    def adapters(self) -> str:
        """Base URL of the adapters."""
        return f"http://127.0.0.1:{self.ports['adapters']}"

    @property
    def receiver(self) -> str:
        """Base URL of the receiver."""
        return f"http://127.0.0.1:{self.receiver_port}"

    def cpu_snapshot(self) -> dict[str, float | None]:
        """CPU seconds used so far by each child and by the embedded broker."""
        snap = {name: cpu_seconds(proc.pid) for name, proc in self.sup.procs.items()}
        snap["broker"] = cpu_seconds(self.bench.broker_pid)
        snap["bench client"] = cpu_seconds(os.getpid())
        return snap

    def alive(self) -> bool:
        """True while every child runs."""
        return all(p.poll() is None for p in self.sup.procs.values())

    async def start(self, timeout_s: float) -> float:
        """Create topics, start everything, wait for every /readyz; return seconds from spawn to all ready."""
        await asyncio.wait_for(create_topics(self.common), 60)
        started = time.time()
        self.sup.spawn("receiver", [sys.executable, str(RECEIVER), "--port", str(self.receiver_port)], self.env)
        for name in SERVICES:
            self.sup.spawn(name, command("serve", name), self.env)
        urls = [f"http://127.0.0.1:{port}/readyz" for port in self.ports.values()] + [f"{self.receiver}/stats"]
        await asyncio.gather(*(wait_http(self.client, url, self.alive, timeout_s) for url in urls))
        return time.time() - started

    async def post(self, sent: dict[str, float], errors: list[str]) -> None:
        """POST one fresh work order; record its event id and the time just before the POST."""
        self.seq += 1
        order = work_order(self.seq, self.rng, prefix=f"E{self.bench.run_id}")
        before = time.time()
        try:
            async with self.session.post(f"{self.adapters}/v1/12345/work-orders", json=order,
                                         headers={"X-Api-Key": API_KEY}) as response:
                body = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            errors.append(repr(exc))
            return
        if response.status != 202:
            errors.append(f"{response.status} {body[:200]!r}")
            return
        sent[json.loads(body)["event_id"]] = before

    async def burst(self, n: int, concurrency: int) -> tuple[dict[str, float], list[str], float]:
        """POST n orders as fast as `concurrency` workers can; return sent ids, errors and seconds taken."""
        sent: dict[str, float] = {}
        errors: list[str] = []
        remaining = iter(range(n))
        started = time.perf_counter()

        async def worker() -> None:
            for _ in remaining:
                await self.post(sent, errors)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return sent, errors, time.perf_counter() - started

    async def paced(self, n: int, rate: float, max_in_flight: int) -> tuple[dict[str, float], list[str], float]:
        """POST n orders on a fixed schedule of `rate` per second (open loop, bounded in flight)."""
        sent: dict[str, float] = {}
        errors: list[str] = []
        slots = asyncio.Semaphore(max_in_flight)
        jobs: list[asyncio.Task[None]] = []

        async def one() -> None:
            try:
                await self.post(sent, errors)
            finally:
                slots.release()

        started = time.monotonic()
        for i in range(n):
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await asyncio.wait_for(slots.acquire(), 60)
            jobs.append(asyncio.create_task(one()))
        await asyncio.wait_for(asyncio.gather(*jobs), 120)
        return sent, errors, time.monotonic() - started

    async def arrivals(self, ids: dict[str, float], timeout_s: float, stall_s: float) -> dict[str, float]:
        """Wait until every id's first webhook arrived (or time/stall limits); return {event_id: arrival}."""
        deadline = time.monotonic() + timeout_s
        progress_at, last_count = time.monotonic(), -1
        found: dict[str, float] = {}
        while time.monotonic() < deadline and self.alive():
            everything = (await self.client.get(f"{self.receiver}/arrivals", timeout=10)).json()
            found = {k: everything[k] for k in ids if k in everything}
            if len(found) == len(ids):
                break
            if len(found) != last_count:
                progress_at, last_count = time.monotonic(), len(found)
            elif time.monotonic() - progress_at > stall_s:
                break
            await asyncio.sleep(0.5)
        return found


async def max_rate(hub: Hub, plan: Plan, ready_s: float, first_s: float | None) -> Row:
    """(c1) M orders as fast as `concurrency` clients go; distinct events delivered / (last webhook − first POST)."""
    m = plan.e2e_events
    cpu_before, cpu_at = hub.cpu_snapshot(), time.monotonic()
    sent, errors, post_s = await hub.burst(m, plan.concurrency)
    t0 = min(sent.values(), default=time.time())
    got = await hub.arrivals(sent, 30 + m / 20, plan.stall_timeout_s)
    cpu_after, wall = hub.cpu_snapshot(), time.monotonic() - cpu_at
    cpu = {k: round(100 * (cpu_after[k] - v) / wall) for k, v in cpu_before.items()
           if v is not None and cpu_after.get(k) is not None}
    span = max(got.values(), default=t0) - t0
    rate = len(got) / span if span > 0 else None
    note = f"concurrency {plan.concurrency}; adapters accepted {len(sent) / post_s:,.0f}/s"
    if errors:
        note += f"; {len(errors)} POST errors"
    if len(got) < len(sent):
        note += f"; MISSING {len(sent) - len(got)}"
    return Row("e2e max", m, "work orders (HTTP)", rate, outputs=len(got), startup_s=ready_s, note=note,
               extra={"span_s": span, "accept_rate": len(sent) / post_s, "post_errors": errors[:5],
                      "first_event_latency_s": first_s, "ready_s": ready_s, "cpu_pct": cpu})


async def latency_at(hub: Hub, plan: Plan, rate: float, label: str, drain_rate: float) -> Row:
    """(c2) orders at a fixed rate; latency = first webhook of the event − the moment before its POST."""
    n = max(1, round(rate * plan.latency_seconds))
    sent, errors, post_s = await hub.paced(n, rate, 256)
    got = await hub.arrivals(sent, min(30 + n / max(drain_rate, 20.0), 180), plan.stall_timeout_s)
    latencies = [got[k] - sent[k] for k in got]
    extra: dict[str, Any] = {"rate": rate, "sent": len(sent), "achieved_rate": len(sent) / post_s,
                             "post_errors": errors[:5]}
    note = f"POSTs at {extra['achieved_rate']:,.0f}/s"
    if latencies:
        extra.update({f"p{p}_ms": 1000 * percentile(latencies, p) for p in (50, 90, 99)})
        extra.update(max_ms=1000 * max(latencies), mean_ms=1000 * statistics.fmean(latencies))
        note = f"p50 {extra['p50_ms']:,.0f} ms  p99 {extra['p99_ms']:,.0f} ms  max {extra['max_ms']:,.0f} ms; {note}"
    if len(got) < len(sent) or errors:
        note += f"; MISSING {len(sent) - len(got)}, {len(errors)} POST errors"
    return Row(label, n, "work orders (HTTP)", None, outputs=len(got), note=note, extra=extra)


async def run_e2e(bench: Bench) -> list[Row]:
    """(c) all five services + receiver: warm-up, max sustained rate, then latency at fixed rates."""
    plan = bench.plan
    rows: list[Row] = []
    # The load generator is aiohttp: httpx's pool costs more CPU than the adapters beyond ~8 connections
    # (README), so with it the bench would measure its own client.
    connector = aiohttp.TCPConnector(limit=max(plan.concurrency, 256))
    timeout = aiohttp.ClientTimeout(total=30)
    async with httpx.AsyncClient() as client, aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        hub = Hub(bench, client, session)
        try:
            ready_s = await hub.start(plan.startup_timeout_s)
            sent, _, _ = await hub.burst(20, 4)
            warm = await hub.arrivals(sent, 60, plan.stall_timeout_s)
            first_s = min((warm[k] - sent[k] for k in warm), default=None)
            log.info("e2e ready in %.1f s; warm-up %d/%d delivered", ready_s, len(warm), len(sent))
            top = await max_rate(hub, plan, ready_s, first_s)
            rows.append(top)
            sustained = top.in_rate or 50.0
            if plan.half_max_latency:
                half = max(1.0, round(sustained / 2))
                rows.append(await latency_at(hub, plan, half, f"e2e @{half:g}/s", sustained))
            rate = plan.latency_rate
            rows.append(await latency_at(hub, plan, rate, f"e2e @{rate:g}/s", sustained))
        finally:
            await asyncio.to_thread(hub.sup.stop, 5.0)
    return rows


async def run_all(bench: Bench, parts: set[str]) -> list[Row]:
    """Every part of the bench in order; a failing part is reported and the rest still run."""
    rows: list[Row] = []
    corpus = build_corpus(bench.plan.events, bench.run_id)
    n_events, n_tasks = len(corpus.events), len(corpus.tasks)
    tasks_per_event = n_tasks / max(1, n_events)
    log.info("corpus: %d reports, %d events, %d tasks (%.2f/event)", len(corpus.raws), n_events, n_tasks,
             tasks_per_event)
    jobs: list[tuple[str, Callable[[], Awaitable[Row | list[Row]]]]] = [
        ("baseline", lambda: run_baseline(bench)),
        ("intake", lambda: run_stage(bench, "intake", RAW_TOPICS[Channel.HOTLINE_12345], corpus.raws,
                                     "events.normalised", n_events, "ReportReceived")),
        ("router", lambda: run_stage(bench, "router", "events.normalised", corpus.events, "tasks.dispatched",
                                     n_tasks, "EventNormalised")),
        ("sla", lambda: run_stage(bench, "sla", "tasks.dispatched", corpus.tasks, "tasks.status", n_tasks,
                                  "TaskDispatched", 1 / tasks_per_event)),
        ("notifier", lambda: run_stage(bench, "notifier", "tasks.dispatched", corpus.tasks, "deliveries.results",
                                       n_tasks, "TaskDispatched", 1 / tasks_per_event)),
        ("e2e", lambda: run_e2e(bench)),
    ]
    for name, job in jobs:
        if name not in parts:
            continue
        started = time.monotonic()
        log.info("running %s ...", name)
        try:
            result = await job()
        except Exception as exc:
            log.exception("%s failed", name)
            rows.append(Row(name, 0, "", None, note=f"FAILED: {exc!r}"[:200]))
            continue
        rows.extend(result if isinstance(result, list) else [result])
        log.info("%s done in %.1f s", name, time.monotonic() - started)
    return rows


def format_table(rows: list[Row], baseline: float | None) -> str:
    """The result table, each rate also as a multiple of the baseline."""

    def num(value: float | None, unit: str = "/s") -> str:
        return "–" if value is None else f"{value:,.0f}{unit}"

    header = f"{'part':<14}{'inputs':>24}{'in rate':>11}{'out rate':>11}{'×base':>8}{'startup':>9}{'cpu':>6}  notes"
    lines = [header, "-" * len(header)]
    for r in rows:
        ratio = "–"
        if baseline and r.in_rate:
            x = r.in_rate / baseline
            ratio = f"{x:.2f}×" if x >= 0.1 else f"{x:.3f}×"
        startup = "–" if r.startup_s is None else f"{r.startup_s:.1f} s"
        cpu = "–" if r.cpu_pct is None else f"{r.cpu_pct:.0f}%"
        inputs = f"{r.inputs:,} {r.input_kind}" if r.inputs else ""
        lines.append(f"{r.name:<14}{inputs:>24}{num(r.in_rate):>11}{num(r.out_rate):>11}{ratio:>8}{startup:>9}"
                     f"{cpu:>6}  {r.note}")
        if r.extra.get("cpu_pct"):
            shares = ", ".join(f"{k} {v}%" for k, v in sorted(r.extra["cpu_pct"].items(), key=lambda kv: -kv[1]))
            lines.append(f"{'':<14}CPU during it (of one core): {shares}")
    return "\n".join(lines)


def make_plan(args: argparse.Namespace) -> Plan:
    """Sizes from --quick and the explicit options."""
    quick = args.quick
    events = args.events or (1000 if quick else 3000)
    return Plan(
        events=events,
        baseline_events=args.baseline_events or (10_000 if quick else 30_000),
        e2e_events=args.e2e_events or events,
        concurrency=args.concurrency,
        latency_rate=args.rate,
        latency_seconds=args.seconds or (4.0 if quick else 10.0),
        half_max_latency=not args.no_half_max,
        startup_timeout_s=60.0,
        stall_timeout_s=10.0 if quick else 15.0,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description="GridHub throughput/latency bench on one broker (see bench/README.md).")
    p.add_argument("--events", type=int, default=None, help="Reports preloaded per stage (default 3000, quick 1000).")
    p.add_argument("--quick", action="store_true", help="Smaller sizes (about 1.5 minutes).")
    p.add_argument("--baseline-events", type=int, default=None, help="Baseline messages (30000, quick 10000).")
    p.add_argument("--e2e-events", type=int, default=None, help="Work orders for the max-rate run (= --events).")
    p.add_argument("--concurrency", type=int, default=64, help="HTTP requests in flight for the max-rate run.")
    p.add_argument("--rate", type=float, default=500.0, help="Work orders per second for the latency run.")
    p.add_argument("--seconds", type=float, default=None, help="Length of the latency run (10, quick 4).")
    p.add_argument("--no-half-max", action="store_true", help="Skip the latency run at half the max rate.")
    p.add_argument("--only", default="baseline,intake,router,sla,notifier,e2e", help="Comma-separated parts to run.")
    p.add_argument("--json", type=Path, default=None, help="Also write the results as JSON to this path.")
    p.add_argument("--keep", action="store_true", help="Keep the work dir (service logs) even on success.")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Start (or use) the broker, run the bench, print the table, stop every process started."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    plan = make_plan(args)
    parts = {p.strip() for p in args.only.split(",") if p.strip()}

    def on_sigterm(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    workdir = Path(tempfile.mkdtemp(prefix="gridhub-bench-"))
    broker: EmbeddedBroker | None = None
    bench: Bench | None = None
    ok = False
    started = time.monotonic()
    try:
        external = os.environ.get("KAFKA_BOOTSTRAP") or os.environ.get("GRIDHUB_KAFKA_BOOTSTRAP")
        if external:
            bootstrap = external
            idempotence = os.environ.get("GRIDHUB_KAFKA_IDEMPOTENCE", "true").lower() != "false"
        else:
            broker = EmbeddedBroker(log_path=workdir / "broker.log")
            bootstrap, idempotence = broker.start(), False  # Tansu has no InitProducerId
        # The bench's own clients read CommonSettings from the environment too.
        os.environ["KAFKA_BOOTSTRAP"] = bootstrap
        os.environ["GRIDHUB_KAFKA_IDEMPOTENCE"] = "true" if idempotence else "false"
        bench = Bench(bootstrap, idempotence, workdir, plan, broker.pid if broker else None)
        log.info("run %s on %s broker %s; work dir %s", bench.run_id, "external" if external else "embedded Tansu",
                 bootstrap, workdir)
        rows = asyncio.run(run_all(bench, parts))
        if external:
            with contextlib.suppress(Exception):
                asyncio.run(delete_topics_with_prefix(bootstrap, bench.prefix_root))
        base = next((r.in_rate for r in rows if r.name == "baseline"), None)
        elapsed = time.monotonic() - started
        print(f"\nGridHub bench  run {bench.run_id}  broker {'external' if external else 'embedded Tansu'} "
              f"{bootstrap}  cpus {os.cpu_count()}  {elapsed:.0f} s\n")
        print(format_table(rows, base))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            payload = {"run_id": bench.run_id, "broker": "external" if external else "tansu", "cpus": os.cpu_count(),
                       "elapsed_s": elapsed, "plan": asdict(plan), "baseline_rate": base,
                       "rows": [asdict(r) | {"x_baseline": r.in_rate / base if base and r.in_rate else None}
                                for r in rows]}
            args.json.write_text(json.dumps(payload, ensure_ascii=False, indent=2))
        ok = not any("FAILED" in r.note for r in rows)
        return 0 if ok else 1
    except KeyboardInterrupt:
        print("interrupted; stopping children", file=sys.stderr)
        return 130
    finally:
        if bench is not None:
            bench.stop_all()
        if broker is not None:
            broker.stop()
        if ok and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"service logs kept in {workdir}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
