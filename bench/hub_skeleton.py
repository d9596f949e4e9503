"""A skeleton hub: the real hub's Kafka topology with no domain logic, for a lower bound on its cost per event.

Run: .venv/bin/python bench/hub_skeleton.py [--events 20000] [--tasks-per-event 2.23]   (see bench/README.md)

One OS process per hub service (adapters, intake, router, sla, notifier) plus bench/receiver.py, on uvloop. Every
stage consumes the same topics, in the same consumer group, with the same client settings as the real service (the
kernel's BatchLoop: group consumer, fetch wait 100 ms, getmany of up to 1,000 records, outputs batched by the
kernel's OutputWriter, acks=all, linger 5 ms, commit after the outputs are acked), parses each input with
json.loads, and writes the same number of records of about the same size to the same topics. The notifier POSTs
each task to the receiver over HTTP/1.1 keep-alive with the real notifier's HttpClient (64 in flight, no signature)
and then writes its deliveries.results record. The adapters, without HTTP, parse a work-order body per report and
produce the raw record as fast as the broker acks (256 in flight), and follow reports.index, tasks.dispatched and
tasks.status group-less, as the real adapters' three followers do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling bench modules

import httpx
from aiokafka import TopicPartition
from baseline import run_baseline
from e2e import cpu_per_event
from harness import RECEIVER, Bench, Plan, cpu_seconds, delete_topics_with_prefix, wait_http
from prometheus_client import CollectorRegistry
from skeleton_topology import (
    TASKS_PER_EVENT,
    TRIAGE_PER_EVENT,
    WEBHOOK,
    WORK_ORDER_BYTES,
    Emit,
    Stage,
    per_event,
    topology,
    topology_table,
)

from gridhub.broker import EmbeddedBroker, free_port
from gridhub.kernel.batchloop import BatchHandler, BatchLoop
from gridhub.kernel.batchout import Outgoing
from gridhub.kernel.kafka import create_topics, make_consumer, make_producer
from gridhub.kernel.runtime import run as run_on_loop
from gridhub.kernel.settings import CommonSettings
from schemas import new_id
from services.notifier.http_client import HttpClient

# --- the stage processes --------------------------------------------------------------------------------------------


class Emitter:
    """Builds one Emit's records: a deterministic count per input (floor steps give e.g. 2,2,3,2,2,... for 2.23)."""

    def __init__(self, emit: Emit, ratio: float, topic: str) -> None:
        self.emit = emit
        self.ratio = ratio
        self.topic = topic
        self.seen = 0
        sample = self.fields({"event_id": new_id(), "source_key": "12345:S12345"}, new_id() + "-0", "co-operating")
        self.pad = "x" * max(0, emit.size - len(json.dumps(sample).encode()))

    def fields(self, doc: dict[str, Any], task_id: str | None, role: str | None) -> dict[str, Any]:
        """A record's fields but its padding (raw records carry the report's source key on to reports.index)."""
        value = {"kind": self.emit.topic, "event_id": doc["event_id"], "task_id": task_id, "role": role, "pad": ""}
        if self.emit.key == "report":
            value["source_key"] = doc["source_key"]
        return value

    def count(self) -> int:
        """How many records the next input yields."""
        n = math.floor((self.seen + 1) * self.ratio + 1e-9) - math.floor(self.seen * self.ratio + 1e-9)
        self.seen += 1
        return n

    def outputs(self, doc: dict[str, Any], record: Any) -> list[Outgoing]:
        """The records for one parsed input."""
        emit, event_id = self.emit, doc["event_id"]
        outs = []
        for i in range(self.count()):
            if emit.key == "new-task":
                task_id, role = f"{event_id}-{i}", "primary" if i == 0 else "co-operating"
            else:
                task_id, role = doc.get("task_id"), doc.get("role")
            value = self.fields(doc, task_id, role)
            value["pad"] = self.pad
            keys = {"report": doc.get("source_key"), "task": task_id, "new-task": task_id, "triage": "triage"}
            key: str = keys.get(emit.key) or event_id
            # reports.index goes to the partition of its raw record (co-partitioned), as intake writes it.
            partition = record.partition if emit.after_acks else None
            outs.append(Outgoing(self.topic, json.dumps(value).encode(), key.encode(), partition, emit.after_acks))
        return outs


class PassThrough(BatchHandler):
    """A stage with no domain logic: json.loads each input and write its Emits; the notifier's tasks go to `deliver`
    instead (POSTed, then their deliveries.results written, by deliver())."""

    def __init__(self, common: CommonSettings, stages: Sequence[Stage], stage: Stage) -> None:
        self.by_topic: dict[str, list[Emitter]] = {}
        self.delivers_on: str | None = None
        self.deliver: asyncio.Queue[tuple[bytes, str]] = asyncio.Queue()
        for emit in stage.emits:
            if emit.topic == WEBHOOK:
                self.delivers_on = common.topic(emit.on)
            else:
                emitter = Emitter(emit, emit.per_event / per_event(stages, emit.on), common.topic(emit.topic))
                self.by_topic.setdefault(common.topic(emit.on), []).append(emitter)

    def process(self, record: Any) -> Sequence[Outgoing]:
        """Parse the record; the outputs of the Emits on its topic (none for the rest)."""
        doc = json.loads(record.value)
        if record.topic == self.delivers_on:
            self.deliver.put_nowait((record.value, doc["task_id"]))
            return ()
        outs: list[Outgoing] = []
        for emitter in self.by_topic.get(record.topic, ()):
            outs.extend(emitter.outputs(doc, record))
        return outs


async def follow(common: CommonSettings, topics: Sequence[str]) -> None:
    """A group-less follower like the kernel's TopicFollower: every partition from the start, json.loads each record."""
    consumer = make_consumer(common, group_id=None, fetch_max_wait_ms=common.kafka_fetch_max_wait_ms)
    await asyncio.wait_for(consumer.start(), 30)
    names = [common.topic(t) for t in topics]
    await asyncio.wait_for(consumer.topics(), 30)
    partitions = [TopicPartition(t, p) for t in names for p in sorted(consumer.partitions_for_topic(t) or ())]
    consumer.assign(partitions)
    await asyncio.wait_for(consumer.seek_to_beginning(*partitions), 30)
    while True:
        batches = await consumer.getmany(timeout_ms=500, max_records=1000)
        for records in batches.values():
            for record in records:
                if record.value is not None:
                    json.loads(record.value)


async def deliver(
    handler: PassThrough, loop: BatchLoop, common: CommonSettings, emit: Emit, url: str, concurrency: int
) -> None:
    """The notifier's deliveries: POST each task to the receiver (keep-alive pool), then write deliveries.results."""
    assert loop.producer is not None
    queue, producer = handler.deliver, loop.producer
    client = HttpClient(policy=None, timeout_s=10.0, max_idle_per_origin=concurrency)
    topic = common.topic(emit.topic)
    sample = {"webhook_id": f"task_{new_id()}-0", "task_id": f"{new_id()}-0", "status": 200, "pad": ""}
    pad = "x" * max(0, emit.size - len(json.dumps(sample)))

    async def worker() -> None:
        while True:
            body, task_id = await queue.get()
            headers = {
                "Content-Type": "application/json",
                "webhook-id": f"task_{task_id}",
                "webhook-timestamp": str(int(time.time())),
            }
            answer = await client.post(url, body, headers)
            result = {"webhook_id": f"task_{task_id}", "task_id": task_id, "status": answer.status, "pad": pad}
            await producer.send(topic, json.dumps(result).encode(), key=task_id.encode())

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def produce_reports(common: CommonSettings, emit: Emit, n: int, workdir: Path, in_flight: int = 256) -> None:
    """The adapters without HTTP: after the go file appears, parse a work order and produce its raw record, n times."""
    producer = make_producer(common)
    await asyncio.wait_for(producer.start(), 30)
    body = json.dumps({"order_no": "", "content": "x" * WORK_ORDER_BYTES}).encode()
    emitter = Emitter(emit, 1.0, common.topic(emit.topic))
    (workdir / "adapters.ready").touch()
    deadline = time.monotonic() + 300
    while not (workdir / "go").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("no go within 300 s")
        await asyncio.sleep(0.01)
    slots = asyncio.Semaphore(in_flight)
    first = time.time()
    for seq in range(n):
        order = json.loads(body)
        order["order_no"] = f"S{seq}"
        doc = {"event_id": new_id(), "source_key": f"12345:{order['order_no']}"}
        (out,) = emitter.outputs(doc, None)
        await slots.acquire()
        ack = await producer.send(out.topic, out.value, key=out.key)
        ack.add_done_callback(lambda _: slots.release())
    await asyncio.wait_for(producer.flush(), 120)
    done = {"first_send": first, "last_ack": time.time()}
    (workdir / "adapters.json").write_text(json.dumps(done))


async def run_stage(stage_name: str, args: argparse.Namespace) -> None:
    """One stage process: its followers, its group consumer (BatchLoop), a ready file once assigned; until killed."""
    common = CommonSettings()
    stages = topology(args.tasks_per_event, args.triage_per_event)
    stage = next(s for s in stages if s.name == stage_name)
    workdir = Path(args.workdir)
    tasks = [asyncio.create_task(follow(common, topics)) for topics in stage.follow]
    if stage.name == "adapters":
        tasks.append(asyncio.create_task(produce_reports(common, stage.emits[0], args.events, workdir)))
        await asyncio.gather(*tasks)
        return
    handler = PassThrough(common, stages, stage)
    loop = BatchLoop(common, stage.name, [common.topic(t) for t in stage.subscribe], handler, CollectorRegistry())
    await asyncio.wait_for(loop.start(), 60)
    tasks.append(asyncio.create_task(loop.run()))
    if handler.delivers_on is not None:
        results = next(e for e in stage.emits if e.topic != WEBHOOK)
        tasks.append(asyncio.create_task(deliver(handler, loop, common, results, args.webhook, args.concurrency)))
    deadline = time.monotonic() + 120
    while not loop.ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{stage.name} not assigned within 120 s")
        await asyncio.sleep(0.05)
    (workdir / f"{stage.name}.ready").touch()
    await asyncio.gather(*tasks)


# --- the orchestrator -----------------------------------------------------------------------------------------------


@dataclass
class Skeleton:
    """One run: broker, work dir, children (name → process), and the CPU they used."""

    bootstrap: str
    workdir: Path
    broker_pid: int | None
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        """Start a child with its output to <workdir>/<name>.log."""
        with (self.workdir / f"{name}.log").open("wb") as log_file:
            self.procs[name] = subprocess.Popen(argv, env=env, stdout=log_file, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        """True while every child runs (the adapters may have exited after producing)."""
        return all(p.poll() is None for name, p in self.procs.items() if name != "adapters")

    def cpu(self) -> dict[str, float | None]:
        """CPU seconds so far of every child and of the embedded broker."""
        snap = {name: cpu_seconds(p.pid) for name, p in self.procs.items()}
        snap["broker"] = cpu_seconds(self.broker_pid)
        return snap

    def stop(self) -> None:
        """SIGTERM every child, SIGKILL what is left after 5 s."""
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)


async def wait_files(sk: Skeleton, names: Sequence[str], timeout_s: float) -> None:
    """Wait until <workdir>/<name>.ready exists for every name; raise if a child dies or timeout_s passes."""
    deadline = time.monotonic() + timeout_s
    while not all((sk.workdir / f"{n}.ready").exists() for n in names):
        if not sk.alive():
            raise RuntimeError(f"a stage exited; see the logs in {sk.workdir}")
        if time.monotonic() > deadline:
            missing = [n for n in names if not (sk.workdir / f"{n}.ready").exists()]
            raise TimeoutError(f"not ready after {timeout_s} s: {missing}")
        await asyncio.sleep(0.1)


async def arrivals(sk: Skeleton, client: httpx.AsyncClient, url: str, n: int, stall_s: float) -> dict[str, float]:
    """Poll the receiver until n events had their first webhook, the receiver stalls for stall_s, or 600 s pass."""
    deadline = time.monotonic() + 600
    progress_at, last = time.monotonic(), -1
    while time.monotonic() < deadline and sk.alive():
        events = (await client.get(f"{url}/stats", timeout=10)).json()["events"]
        if events >= n:
            break
        if events != last:
            progress_at, last = time.monotonic(), events
        elif time.monotonic() - progress_at > stall_s:
            break
        await asyncio.sleep(0.2)
    found: dict[str, float] = (await client.get(f"{url}/arrivals", timeout=30)).json()
    return found


async def topic_records(common: CommonSettings, idle_s: float = 2.0, timeout_s: float = 60.0) -> dict[str, int]:
    """Records on each non-empty topic of the prefix, counted by reading every partition until idle_s pass without
    one (Tansu's end offsets undercount: 19,006 and 18,671 for 20,000 records measured on two topics)."""
    consumer = make_consumer(common, group_id=None, max_partition_fetch_bytes=4 * 1024 * 1024)
    await asyncio.wait_for(consumer.start(), 30)
    counts: dict[str, int] = {}
    try:
        names = [t for t in await asyncio.wait_for(consumer.topics(), 30) if t.startswith(common.topic_prefix)]
        partitions = [TopicPartition(t, p) for t in names for p in sorted(consumer.partitions_for_topic(t) or ())]
        consumer.assign(partitions)
        await asyncio.wait_for(consumer.seek_to_beginning(*partitions), 30)
        deadline, quiet_since = time.monotonic() + timeout_s, time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - quiet_since < idle_s:
            batches = await asyncio.wait_for(consumer.getmany(timeout_ms=200, max_records=10_000), 30)
            for tp, records in batches.items():
                name = tp.topic.removeprefix(common.topic_prefix)
                counts[name] = counts.get(name, 0) + len(records)
            if batches:
                quiet_since = time.monotonic()
    finally:
        await asyncio.wait_for(consumer.stop(), 30)
    return dict(sorted(counts.items()))


async def run_skeleton(sk: Skeleton, args: argparse.Namespace, prefix: str) -> dict[str, Any]:
    """Create the topics, start receiver and stages, let the adapters go, and measure until every event arrived."""
    common = CommonSettings(topic_prefix=prefix)
    await asyncio.wait_for(create_topics(common), 60)
    env = dict(os.environ, GRIDHUB_TOPIC_PREFIX=prefix, GRIDHUB_MODE="dev", PYTHONUNBUFFERED="1")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    sk.spawn("receiver", [sys.executable, str(RECEIVER), "--port", str(port)], env)
    async with httpx.AsyncClient() as client:
        await wait_http(client, f"{url}/stats", sk.alive, 30)
        shared = ["--workdir", str(sk.workdir), "--tasks-per-event", str(args.tasks_per_event)]
        shared += ["--triage-per-event", str(args.triage_per_event), "--events", str(args.events)]
        shared += ["--webhook", f"{url}/webhook", "--concurrency", str(args.concurrency)]
        names = [s.name for s in topology()]
        for name in names:
            sk.spawn(name, [sys.executable, __file__, "--stage", name, *shared], env)
        await wait_files(sk, names, 120)
        before, started = sk.cpu(), time.monotonic()
        (sk.workdir / "go").touch()
        got = await arrivals(sk, client, url, args.events, args.stall)
        after, wall = sk.cpu(), time.monotonic() - started
    sent = json.loads((sk.workdir / "adapters.json").read_text())
    await asyncio.sleep(2.0)  # the last events' other tasks and results are still on their way
    written = await topic_records(common)
    receipts = sorted(got.values())
    window = receipts[-1] - sent["first_send"] if receipts else 0.0
    steady = None
    if len(receipts) >= 20:
        lo, hi = receipts[len(receipts) // 10], receipts[(len(receipts) * 9) // 10]
        steady = ((len(receipts) * 9) // 10 - len(receipts) // 10) / (hi - lo) if hi > lo else None
    return {
        "received": len(got),
        "window_s": window,
        "rate": len(got) / window if window > 0 else None,
        "steady": steady,
        "produced_s": sent["last_ack"] - sent["first_send"],
        "cpu_ms_per_event": cpu_per_event(before, after, len(got)),
        "records": written,
        "cpu_pct": {k: 100 * (a - v) / wall for k, v in before.items() if v is not None and (a := after.get(k))},
    }


def report(args: argparse.Namespace, result: dict[str, Any], baseline: float, run_id: str) -> str:
    """The result table."""
    per = result["cpu_ms_per_event"]
    total = sum(per.values())
    rate, steady = result["rate"] or 0.0, result["steady"] or 0.0
    lines = [
        f"skeleton hub  run {run_id}  cpus {os.cpu_count()}  load average {os.getloadavg()[0]:.2f}  "
        f"tasks/event {args.tasks_per_event}  triage/event {args.triage_per_event}",
        f"events {args.events:,}: received {result['received']:,} in {result['window_s']:.1f} s "
        f"(first raw record sent → last event's first webhook; the adapters produced them all in "
        f"{result['produced_s']:.1f} s)" + ("" if result["received"] == args.events else " MISSING EVENTS (see logs)"),
        f"sustained {rate:,.0f} events/s (steady, middle 80 % of receipts: {steady:,.0f}/s)",
        f"baseline (best of 3, same run) {baseline:,.0f} msgs/s; skeleton ÷ baseline {rate / baseline:.3f}×",
        "",
        f"{'process':<10}{'CPU ms/event':>14}{'CPU % of a core':>17}",
    ]
    for name, ms in sorted(per.items(), key=lambda kv: -kv[1]):
        lines.append(f"{name:<10}{ms:>14.3f}{result['cpu_pct'].get(name, 0.0):>16.0f}%")
    cores = os.cpu_count() or 1
    lines.append(f"{'total':<10}{total:>14.3f}   → {cores} cores at this cost carry ≤ {1000 * cores / total:,.0f}/s")
    written = ", ".join(f"{t} {n / args.events:.2f}" for t, n in result["records"].items())
    lines.append(f"records written per event (read back ÷ events): {written}")
    return "\n".join(lines)


async def orchestrate(sk: Skeleton, args: argparse.Namespace, run_id: str) -> str:
    """The baseline first (nothing else of this run running), then the skeleton hub; the table as text."""
    plan = Plan(
        events=args.events,
        baseline_events=args.baseline_events,
        e2e_events=args.events,
        concurrency=args.concurrency,
        latency_rate=0.0,
        latency_seconds=0.0,
    )
    bench = Bench(sk.bootstrap, os.environ["GRIDHUB_KAFKA_IDEMPOTENCE"] == "true", sk.workdir, plan, sk.broker_pid)
    bench.run_id = run_id
    base = await run_baseline(bench)
    result = await run_skeleton(sk, args, f"skel-{run_id}.")
    return report(args, result, base.in_rate or 0.0, run_id)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (--stage and the ones after it are for the child processes)."""
    p = argparse.ArgumentParser(description="The hub's Kafka topology with no domain logic (see bench/README.md).")
    p.add_argument("--events", type=int, default=20_000, help="Reports the adapters produce (default 20000).")
    p.add_argument("--tasks-per-event", type=float, default=TASKS_PER_EVENT, help="Router's tasks per event.")
    p.add_argument("--triage-per-event", type=float, default=TRIAGE_PER_EVENT, help="Router's triage commands.")
    p.add_argument("--baseline-events", type=int, default=30_000, help="Messages of the baseline (default 30000).")
    p.add_argument("--concurrency", type=int, default=64, help="Notifier POSTs in flight (the real default).")
    p.add_argument("--stall", type=float, default=20.0, help="Give up when no event arrives for this many seconds.")
    p.add_argument("--keep", action="store_true", help="Keep the work dir (logs) even on success.")
    p.add_argument("--stage", help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    p.add_argument("--webhook", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run one stage (child) or the whole skeleton run (broker, baseline, stages, table)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    if args.stage:
        run_on_loop(run_stage(args.stage, args), CommonSettings())
        return 0
    logging.getLogger("aiokafka").setLevel(logging.ERROR)

    def on_sigterm(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    print(topology_table(topology(args.tasks_per_event, args.triage_per_event)) + "\n", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="gridhub-skeleton-"))
    run_id = uuid.uuid4().hex[:6]
    broker: EmbeddedBroker | None = None
    sk: Skeleton | None = None
    ok = False
    try:
        external = os.environ.get("KAFKA_BOOTSTRAP") or os.environ.get("GRIDHUB_KAFKA_BOOTSTRAP")
        if external:
            bootstrap = external
            os.environ.setdefault("GRIDHUB_KAFKA_IDEMPOTENCE", "true")
        else:
            broker = EmbeddedBroker(log_path=workdir / "broker.log")
            bootstrap = broker.start()
            os.environ["GRIDHUB_KAFKA_IDEMPOTENCE"] = "false"  # Tansu has no InitProducerId
        os.environ["KAFKA_BOOTSTRAP"] = bootstrap
        sk = Skeleton(bootstrap, workdir, broker.pid if broker else None)
        print(run_on_loop(orchestrate(sk, args, run_id), CommonSettings()), flush=True)
        if external:
            with contextlib.suppress(Exception):
                asyncio.run(delete_topics_with_prefix(bootstrap, f"skel-{run_id}."))
                asyncio.run(delete_topics_with_prefix(bootstrap, f"bench-{run_id}-"))
        ok = True
        return 0
    except KeyboardInterrupt:
        print("interrupted; stopping children", file=sys.stderr)
        return 130
    finally:
        if sk is not None:
            sk.stop()
        if broker is not None:
            broker.stop()
        if ok and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"logs kept in {workdir}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
