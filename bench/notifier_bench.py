"""Notifier bench: signed deliveries per second to a local receiver, and added latency at a fixed rate.

Run: .venv/bin/python bench/notifier_bench.py [--tasks 10000] [--rate 500] [--seconds 10] [--replicas 2]
(see bench/README.md)

An embedded Tansu (or KAFKA_BOOTSTRAP), the notifier (`gridhub serve notifier`, its outbox on a temporary data dir;
`--replicas N`, 2 by default as deploy/ runs it: N members of its group, each a data dir of its own, as a
StatefulSet's) and bench/receiver.py verifying every signature with the `standardwebhooks` package, each a process
of its own.
1. max: `--tasks` TaskDispatched produced as fast as the producer takes them; rate = tasks ÷ (last − first arrival
   at the receiver), and from the first produce.
2. latency: tasks produced on a fixed schedule of `--rate` per second for `--seconds`; added latency of a task =
   its first arrival at the receiver − time.time() just before its produce (Kafka hop, outbox write, scheduling,
   signing, the POST): p50 / p99 / max; and where it goes, per task from the outbox: produce → read by the notifier
   (the Kafka hop), read → first attempt, the POST.
CPU per delivery (notifier, receiver) is printed too: steadier than the rates when others share the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gridhub.broker import EmbeddedBroker, free_port
from gridhub.demo.tasks import sample_task
from gridhub.kernel.kafka import create_topics
from gridhub.kernel.settings import CommonSettings
from gridhub.up import Supervisor, command
from schemas import (
    ClockKind,
    ClockTerm,
    DeadlineClass,
    DurationUnit,
    TaskDispatched,
    Urgency,
    topic_spec,
)
from services.notifier.handler import INPUTS as NOTIFIER_INPUTS
from services.notifier.settings import DEV_SIGNING_SECRET

HERE = Path(__file__).resolve().parent
ASSIGNED = "gridhub_notifier_assigned_partitions{"
PARTITIONS = topic_spec("tasks.dispatched").partitions
INPUT_TOPICS = len(NOTIFIER_INPUTS)


def a_task() -> TaskDispatched:
    """A realistic task (a burst water pipe for a township centre)."""
    return sample_task(
        datetime.now(UTC),
        unit="PA-CG",
        unit_name="城关镇综治中心",
        deadlines=(
            ClockTerm(kind=ClockKind.CONTACT, amount=1, unit=DurationUnit.HOURS),
            ClockTerm(kind=ClockKind.RESOLVE, amount=2, unit=DurationUnit.WORKING_DAYS),
        ),
        deadline_class=DeadlineClass.PUBLIC_SERVICE,
        urgency=Urgency.NORMAL,
        dispatched_after=timedelta(milliseconds=30),
        title="[投诉] 小区下水道反流",
        description="我们小区下水道反流，污水漫到一楼楼道，味道很大，请尽快处理。地址：城关镇东街社区幸福小区3号楼。",
        address="城关镇东街社区幸福小区3号楼",
        reason="关键词：下水道(3.0)、反流(2.0)；网格 PA-CG-01-001",
    )


async def wait_ready(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=1) as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{url} not ready in {timeout_s} s")


async def arrivals(receiver: str) -> dict[str, float]:
    async with httpx.AsyncClient(timeout=30) as client:
        found: dict[str, float] = (await client.get(f"{receiver}/arrivals", params={"by": "webhook-id"})).json()
        return found


async def delivered_count(receiver: str) -> int:
    async with httpx.AsyncClient(timeout=30) as client:
        return int((await client.get(f"{receiver}/stats")).json()["deliveries"])


async def wait_delivered(receiver: str, ids: set[str], timeout_s: float, before: int = 0) -> dict[str, float]:
    """Every id's first arrival. Polls the receiver's small /stats until enough deliveries arrived (`before`: its
    count before these were sent), then reads the arrivals: reading all of them every poll cost the receiver and the
    bench CPU in the middle of the measurement."""
    deadline = time.monotonic() + timeout_s
    while await delivered_count(receiver) - before < len(ids) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    while True:
        seen = await arrivals(receiver)
        if ids <= seen.keys() or time.monotonic() > deadline:
            return seen
        await asyncio.sleep(0.5)


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def outbox_files(work_dir: Path) -> list[Path]:
    """Every replica's outbox files."""
    return sorted(work_dir.glob("data-r*/notifier/p*.sqlite"))


def inner_latency(work_dir: Path, since_ms: float) -> tuple[float, float, float, float]:
    """From the outbox files: read by the notifier → receiver's answer (p50, p99), and the POST alone (p50, p99)."""
    inner: list[float] = []
    http: list[float] = []
    for path in outbox_files(work_dir):
        db = sqlite3.connect(path)
        try:
            query = (
                "SELECT a.at_ms - j.created_ms + a.latency_ms, a.latency_ms FROM jobs j JOIN attempts a "
                "USING (delivery_id) WHERE j.created_ms >= ? AND a.latency_ms IS NOT NULL"
            )
            for total, post in db.execute(query, (since_ms,)):
                inner.append(total)
                http.append(post)
        finally:
            db.close()
    if not inner:
        return (0.0, 0.0, 0.0, 0.0)
    return (statistics.median(inner), pct(inner, 0.99), statistics.median(http), pct(http, 0.99))


def breakdown(work_dir: Path, sent: dict[str, float]) -> dict[str, tuple[float, float]]:
    """Where the added latency goes, per task at the fixed rate (p50, p99 in ms): produce → read by the notifier
    (the Kafka hop: producer linger, broker, fetch wait, batch), read → first attempt started (outbox write,
    scheduling, signing), the POST (to the receiver's answer)."""
    parts: dict[str, list[float]] = {"hop": [], "queue": [], "post": []}
    for path in outbox_files(work_dir):
        db = sqlite3.connect(path)
        try:
            query = (
                "SELECT j.webhook_id, j.created_ms, a.at_ms, a.latency_ms FROM jobs j JOIN attempts a "
                "USING (delivery_id) WHERE a.n = 1 AND a.latency_ms IS NOT NULL"
            )
            for webhook_id, created_ms, at_ms, latency_ms in db.execute(query):
                produced = sent.get(webhook_id)
                if produced is None:
                    continue
                parts["hop"].append(created_ms - produced * 1000)
                parts["queue"].append(at_ms - created_ms)
                parts["post"].append(latency_ms)
        finally:
            db.close()
    return {name: (statistics.median(v), pct(v, 0.99)) if v else (0.0, 0.0) for name, v in parts.items()}


def notifier_name(n: int) -> str:
    return "notifier" if n == 0 else f"notifier{n + 1}"


async def wait_balanced(ports: list[int], timeout_s: float) -> None:
    """Until every replica holds its share of the partitions (one replica: at once): the measurement must not
    include a rebalance. Read from each replica's `gridhub_notifier_assigned_partitions`."""
    if len(ports) == 1:
        return
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            held = []
            for port in ports:
                text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
                values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(ASSIGNED)]
                held.append(sum(values))
            if all(held) and sum(held) == PARTITIONS * INPUT_TOPICS:
                return
            await asyncio.sleep(0.5)
    raise TimeoutError(f"the notifier replicas did not share the partitions in {timeout_s} s")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(
    args: argparse.Namespace, bootstrap: str, idempotence: bool, workdir: Path, sent: dict[str, float]
) -> dict[str, float]:
    prefix = f"nbench-{uuid.uuid4().hex[:6]}."
    common = CommonSettings(kafka_bootstrap=bootstrap, kafka_idempotence=idempotence, topic_prefix=prefix)
    await create_topics(common)
    sup = Supervisor(workdir / "logs")
    receiver_port = free_port()
    notifier_ports = [free_port() for _ in range(args.replicas)]
    receiver = f"http://127.0.0.1:{receiver_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDHUB_")}
    env.update(
        {
            "KAFKA_BOOTSTRAP": bootstrap,
            "GRIDHUB_KAFKA_IDEMPOTENCE": str(idempotence).lower(),
            "GRIDHUB_TOPIC_PREFIX": prefix,
            "GRIDHUB_MODE": "dev",
            "GRIDHUB_LOG_LEVEL": "WARNING",
            "GRIDHUB_NOTIFIER_DEFAULT_WEBHOOK": f"{receiver}/webhook",
            # One local receiver stands for every unit: its limits are the engine's, not a real endpoint's.
            "GRIDHUB_NOTIFIER_ENDPOINT_CONCURRENCY": str(args.concurrency),
            "GRIDHUB_NOTIFIER_CONCURRENCY": str(args.concurrency),
            "GRIDHUB_NOTIFIER_ENDPOINT_RATE_PER_S": "1000000",
            "GRIDHUB_NOTIFIER_ENDPOINT_BURST": "100000",
            "PYTHONUNBUFFERED": "1",
            **{k: v for k, v in os.environ.items() if k.startswith(("GRIDHUB_NOTIFIER_", "GRIDHUB_KAFKA_"))},
        }
    )
    receiver_argv = [sys.executable, str(HERE / "receiver.py"), "--port", str(receiver_port)]
    sup.spawn("receiver", [*receiver_argv, "--verify", DEV_SIGNING_SECRET], env)
    profile = os.environ.get("NOTIFIER_BENCH_PROFILE")  # a path: the notifier runs under cProfile, written there
    notifier_argv = command("serve", "notifier")
    if profile:
        notifier_argv = [sys.executable, "-m", "cProfile", "-o", profile, "-m", "gridhub", "serve", "notifier"]
    for n, port in enumerate(notifier_ports):
        own = {"GRIDHUB_DATA_DIR": str(workdir / f"data-r{n}"), "GRIDHUB_NOTIFIER_PORT": str(port)}
        sup.spawn(notifier_name(n), notifier_argv, env | own)
    try:
        await wait_ready(f"{receiver}/stats")
        for port in notifier_ports:
            await wait_ready(f"http://127.0.0.1:{port}/readyz")
        await wait_balanced(notifier_ports, 60)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        await producer.start()
        topic = common.topic("tasks.dispatched")
        try:
            # warm-up
            warm = [a_task() for _ in range(200)]
            for t in warm:
                await producer.send(topic, t.to_bytes(), key=t.task_id.encode())
            await producer.flush()
            await wait_delivered(receiver, {f"task_{t.task_id}" for t in warm}, 60)
            # 1. max rate
            tasks = [a_task() for _ in range(args.tasks)]
            bodies = [(t.to_bytes(), t.task_id.encode()) for t in tasks]
            before = await delivered_count(receiver)
            cpu_before = {name: cpu_s(proc.pid) for name, proc in sup.procs.items()}
            started = time.time()
            for body, key in bodies:
                await producer.send(topic, body, key=key)
            await producer.flush()
            ids = {f"task_{t.task_id}" for t in tasks}
            seen = await wait_delivered(receiver, ids, args.timeout, before)
            times = [seen[i] for i in ids if i in seen]
            span = max(times) - min(times)
            wall = time.time() - started
            used = {name: cpu_s(proc.pid) - cpu_before[name] for name, proc in sup.procs.items()}
            cpu = {name: value / wall * 100 for name, value in used.items()}
            notifier_cpu = sum(v for k, v in cpu.items() if k.startswith("notifier"))
            notifier_used = sum(v for k, v in used.items() if k.startswith("notifier"))
            figures = {
                "tasks": float(len(ids)),
                "cpu_notifiers": notifier_cpu,
                "cpu_ms_notifiers": notifier_used * 1000 / max(1, len(times)),
                "delivered": float(len(times)),
                "max_rate": len(times) / span if span > 0 else 0.0,
                "rate_from_produce": len(times) / (max(times) - started),
                **{f"cpu_{name}": value for name, value in cpu.items()},
                # CPU time per delivery: steadier than a rate on a shared machine (others' load slows, not costs).
                **{f"cpu_ms_{name}": value * 1000 / max(1, len(times)) for name, value in used.items()},
            }
            # 2. latency at a fixed rate
            tick = 0.01
            per_tick = args.rate * tick
            owed = 0.0
            begin = time.monotonic()
            figures["latency_from_ms"] = time.time() * 1000
            n = 0
            while time.monotonic() - begin < args.seconds:
                owed += per_tick
                while owed >= 1:
                    owed -= 1
                    t = a_task()
                    body = t.to_bytes()
                    sent[f"task_{t.task_id}"] = time.time()
                    await producer.send(topic, body, key=t.task_id.encode())
                    n += 1
                next_at = begin + (n / args.rate)
                await asyncio.sleep(max(0.0, min(tick, next_at - time.monotonic())))
            await producer.flush()
            seen = await wait_delivered(receiver, set(sent), args.timeout, before + len(ids))
            latencies = [(seen[i] - at) * 1000 for i, at in sent.items() if i in seen]
            figures |= {
                "latency_tasks": float(len(sent)),
                "latency_delivered": float(len(latencies)),
                "p50_ms": statistics.median(latencies),
                "p99_ms": pct(latencies, 0.99),
                "max_ms": max(latencies),
            }
            async with httpx.AsyncClient(timeout=5) as client:
                stats = (await client.get(f"{receiver}/stats")).json()
            figures["bad_signatures"] = float(stats["bad_signatures"])
            figures["verified"] = float(stats.get("verified", -1))
            figures["receiver_deliveries"] = float(stats["deliveries"])
            return figures
        finally:
            await producer.stop()
    finally:
        sup.stop(timeout_s=5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument(
        "--replicas",
        type=int,
        default=2,
        help="Notifier processes in one group, each a data dir of its own (2: as compose and Kubernetes run it).",
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="notifier-bench-"))
    external = os.environ.get("KAFKA_BOOTSTRAP")
    broker = None if external else EmbeddedBroker(log_path=workdir / "broker.log")
    try:
        bootstrap = external or broker.start()  # type: ignore[union-attr]
        idempotence = bool(external) and os.environ.get("GRIDHUB_KAFKA_IDEMPOTENCE", "true") != "false"
        sent: dict[str, float] = {}
        f = asyncio.run(run(args, bootstrap, idempotence, workdir, sent))
        inner = inner_latency(workdir, f["latency_from_ms"])
        parts = breakdown(workdir, sent)
    finally:
        if broker is not None:
            broker.stop()
    print(
        f"notifier bench (cpus {os.cpu_count()}, notifier replicas {args.replicas}, work dir {workdir}):\n"
        f"  max: {f['delivered']:.0f}/{f['tasks']:.0f} delivered, {f['max_rate']:,.0f} deliveries/s "
        f"(first to last arrival), {f['rate_from_produce']:,.0f}/s from the first produce; CPU (% of one core) "
        f"notifier {f['cpu_notifiers']:.0f} %, receiver {f['cpu_receiver']:.0f} %; CPU per delivery notifier "
        f"{f['cpu_ms_notifiers']:.3f} ms, receiver {f['cpu_ms_receiver']:.3f} ms (ratio "
        f"{f['cpu_ms_notifiers'] / f['cpu_ms_receiver']:.2f}: the receiver's work is fixed, so the ratio is "
        f"steadier than either on a machine whose speed varies)\n"
        f"  at {args.rate:.0f}/s for {args.seconds:.0f} s: {f['latency_delivered']:.0f}/{f['latency_tasks']:.0f} "
        f"delivered, added latency p50 {f['p50_ms']:.1f} ms, p99 {f['p99_ms']:.1f} ms, max {f['max_ms']:.1f} ms\n"
        f"  of which inside the notifier (read → receiver's answer, from the outbox): p50 {inner[0]:.1f} ms, "
        f"p99 {inner[1]:.1f} ms; the POST alone p50 {inner[2]:.1f} ms, p99 {inner[3]:.1f} ms\n"
        f"  where it goes (p50 / p99): Kafka hop (produce → read by the notifier) {parts['hop'][0]:.1f} / "
        f"{parts['hop'][1]:.1f} ms, read → first attempt {parts['queue'][0]:.1f} / {parts['queue'][1]:.1f} ms, "
        f"POST {parts['post'][0]:.1f} / {parts['post'][1]:.1f} ms\n"
        f"  receiver: signatures verified with standardwebhooks on every delivery ({f['verified']:.0f} verified, "
        f"{f['receiver_deliveries']:.0f} accepted), bad signatures {f['bad_signatures']:.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
