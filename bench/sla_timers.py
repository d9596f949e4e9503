"""SLA timer bench: alert lateness with 1,000,000 open tasks in the store, RSS, disk, and recovery after kill -9.

Run: .venv/bin/python bench/sla_timers.py [--tasks 1000000] [--rate 3000] [--window 60]   (see bench/README.md)

1. The per-partition SQLite stores are generated in-process (two processes, three partitions each) through the
   worker's own path for a task (SlaHandler.accept_task: start the clocks, plan the timers; PartitionStore.commit)
   instead of through Kafka, which keeps it minutes, not hours. Most tasks are fresh (received in the last
   15 minutes: nothing due for a quarter of an hour at least); the window tasks have their 签收 and 联系 clocks
   (1 hour) fall due uniformly over the measurement window, `rate` alerts a second. Their warnings (due half an
   hour and 12 minutes before) are marked fired in the store, as the worker would have left them.
2. `gridhub serve sla` starts on an embedded Tansu broker with that data dir; a group-less consumer reads
   sla.alerts. Halfway through the window the worker is killed with SIGKILL and started again at once.
3. Lateness = raised_at − due_at of every alert (the worker stamps raised_at when it builds the record);
   delivery = the bench's receipt − due_at. Printed: p50/p99/max before the kill, while catching up and after,
   the worker's RSS, the store's size on disk, restore time, restart → first alert, restart → caught up, and
   whether every expected alert arrived exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gridhub.broker import EmbeddedBroker, free_port
from gridhub.demo.tasks import sample_task
from gridhub.kernel.batchout import KafkaDeadLetters, partition_for
from gridhub.kernel.kafka import create_topics, make_consumer, wait_for_broker
from gridhub.kernel.settings import CommonSettings
from gridhub.up import command
from schemas import (
    ClockKind,
    ClockTerm,
    DurationUnit,
    SlaAlertRaised,
    TaskDispatched,
    new_id,
)
from schemas.dutylist import load_duty_list
from services.sla.calendar import WorkingCalendar
from services.sla.settings import SlaSettings
from services.sla.store import PartitionChanges, PartitionStore
from services.sla.worker import SlaHandler, SlaMetrics

PARTITIONS = 6
COMMIT_EVERY = 5000
WINDOW_GROUP = 10  # window tasks share a receipt instant in tens (the tasks of one busy minute's events)
BACKGROUND_STEP_MS = 100
BACKGROUND_GROUP = 100  # background tasks share a receipt instant in hundreds


def make_task(received: datetime, unit: str, unit_name: str) -> TaskDispatched:
    """An urgent task as the router dispatches it: 签收 and 联系 1 hour, 办结 3 hours."""
    return sample_task(
        received,
        unit=unit,
        unit_name=unit_name,
        deadlines=(
            ClockTerm(kind=ClockKind.CONTACT, amount=1, unit=DurationUnit.HOURS),
            ClockTerm(kind=ClockKind.RESOLVE, amount=3, unit=DurationUnit.HOURS),
        ),
        dispatched_after=timedelta(0),
        reason="bench",
    )


def log(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def generate(
    worker: int, workers: int, prefix: str, data_dir: str, background: int, window: int, t0_ms: int, window_s: float
) -> dict[str, float]:
    """Fill this process's partitions with background tasks, or window tasks (then finish the files); timings."""
    from prometheus_client import CollectorRegistry

    started = time.perf_counter()
    common = CommonSettings(topic_prefix=prefix, data_dir=Path(data_dir))
    settings = SlaSettings(common=common)
    registry = CollectorRegistry()
    handler = SlaHandler(
        settings,
        WorkingCalendar.default(),
        load_duty_list(),
        SlaMetrics(registry),
        KafkaDeadLetters(common, "sla", registry),
    )
    mine = [p for p in range(PARTITIONS) if p % workers == worker]
    stores = {p: PartitionStore(handler.path(p), p, handler.policy) for p in mine}
    handler.stores.update(stores)
    changes = {p: PartitionChanges() for p in mine}
    counts = dict.fromkeys(mine, 0)
    partitions = list(range(PARTITIONS))
    now = datetime.now(UTC)
    templates = [
        make_task(now, code, name)
        for code, name in (
            ("PA-CG-01", "城关镇东街社区居民委员会"),
            ("PA-ZJJ", "平安县住房和城乡建设局"),
            ("PA-HX", "河西乡综治中心"),
        )
    ]

    def add(received: datetime, n: int) -> None:
        template = templates[n % len(templates)]
        while True:
            task_id = new_id()
            p = partition_for(task_id.encode(), partitions)
            if p in stores:
                break
        t = template.model_copy(update={"task_id": task_id, "received_at": received, "message_id": new_id()})
        handler.accept_task(t, p, changes[p])
        counts[p] += 1
        if counts[p] % COMMIT_EVERY == 0:
            stores[p].commit(changes[p])
            changes[p] = PartitionChanges()

    share_bg = background // workers + (worker < background % workers)
    steps = 15 * 60 * 1000 // BACKGROUND_STEP_MS
    for n in range(share_bg):
        received = now - timedelta(milliseconds=((n // BACKGROUND_GROUP) % steps) * BACKGROUND_STEP_MS)
        add(received, n)
    bg_done = time.perf_counter()
    share_w = window // workers + (worker < window % workers)
    groups = max(1, share_w // WINDOW_GROUP)
    for n in range(share_w):
        due_ms = t0_ms + int((n // WINDOW_GROUP) / groups * window_s * 1000) + worker
        add(datetime.fromtimestamp(due_ms / 1000, UTC) - timedelta(hours=1), n)
    for p in mine:
        stores[p].commit(changes[p])
        if not window:
            stores[p].close()
            continue
        # Pre-aged: the 1-hour clocks' warnings (due 30 and 12 minutes before the window) as the worker would have
        # left them: fired through warning-80, the overdue alert next.
        stores[p].db.execute(
            "UPDATE timers SET fired_rank = 800, fired_reminder = 0, due_ms = deadline_ms "
            "WHERE clock IN ('ack', 'contact') AND deadline_ms BETWEEN ? AND ?",
            (t0_ms - 1000, t0_ms + int(window_s * 1000) + 1000),
        )
        stores[p].set_meta(complete="1")
        stores[p].close()
    return {"background_s": bg_done - started, "total_s": time.perf_counter() - started, "tasks": sum(counts.values())}


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def du_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def stats(values: list[float]) -> str:
    if not values:
        return "n=0"
    return (
        f"n={len(values):,} p50={pct(values, 0.5) * 1000:,.0f} ms p99={pct(values, 0.99) * 1000:,.0f} ms "
        f"max={max(values) * 1000:,.0f} ms"
    )


async def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> float:
    import httpx

    started = time.monotonic()
    async with httpx.AsyncClient(timeout=1) as client:
        while time.monotonic() - started < timeout_s:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code == 200:
                    return time.monotonic() - started
            await asyncio.sleep(0.1)
    raise TimeoutError(f"{url} not ready in {timeout_s} s")


async def run(args: argparse.Namespace, bootstrap: str, work: Path) -> dict[str, Any]:
    prefix = f"bench-{uuid.uuid4().hex[:6]}."
    common = CommonSettings(kafka_bootstrap=bootstrap, kafka_idempotence=False, topic_prefix=prefix)
    await wait_for_broker(bootstrap)
    await create_topics(common)
    data = work / "var"
    window_tasks = int(args.rate * args.window / 2)  # two alerts each (签收 and 联系 overdue)
    background = args.tasks - window_tasks
    # Generation takes minutes: the background first, then the window tasks (seconds) with the window just ahead.
    log(f"generating {args.tasks:,} tasks ({window_tasks:,} fall due in the window) in {args.workers} processes")
    gen_started = time.monotonic()
    with multiprocessing.get_context("fork").Pool(args.workers) as pool:
        timings = pool.starmap(
            generate, [(w, args.workers, prefix, str(data), background, 0, 0, 0.0) for w in range(args.workers)]
        )
        t0 = time.time() + window_tasks * args.gen_us / 1e6 / args.workers + args.lead
        timings += pool.starmap(
            generate,
            [
                (w, args.workers, prefix, str(data), 0, window_tasks, int(t0 * 1000), args.window)
                for w in range(args.workers)
            ],
        )
    generated_s = time.monotonic() - gen_started
    store_mb = du_mb(data)
    log(f"generated in {generated_s:.0f} s ({json.dumps(timings)}); store {store_mb:,.0f} MiB")
    if time.time() > t0 - 12:
        t0_late = time.time() + 12
        raise SystemExit(f"generation overran the window start by {t0_late - t0:.0f} s: raise --gen-us")

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDHUB_")} | {
        "KAFKA_BOOTSTRAP": bootstrap,
        "GRIDHUB_KAFKA_IDEMPOTENCE": "false",
        "GRIDHUB_TOPIC_PREFIX": prefix,
        "GRIDHUB_DATA_DIR": str(data),
        "GRIDHUB_SLA_PORT": str(port),
        "GRIDHUB_LOG_LEVEL": "WARNING",
    }
    logfile = (work / "sla.log").open("ab")

    def spawn() -> subprocess.Popen[bytes]:
        return subprocess.Popen(command("serve", "sla"), env=env, stdout=logfile, stderr=subprocess.STDOUT)

    proc = spawn()
    ready_s = await wait_ready(f"http://127.0.0.1:{port}/readyz", proc, 120)
    log(f"worker ready in {ready_s:.1f} s (process start, 6 partitions opened, group joined)")

    consumer = make_consumer(common, common.topic("sla.alerts"), group_id=None, fetch_max_wait_ms=50)
    await consumer.start()
    seen: list[tuple[str, float, float, float]] = []  # alert id, due, raised, received (epoch s)

    async def tail() -> None:
        async for record in consumer:
            alert = SlaAlertRaised.model_validate_json(record.value)
            seen.append((alert.alert_id, alert.due_at.timestamp(), alert.raised_at.timestamp(), time.time()))

    reader = asyncio.create_task(tail())
    rss: list[tuple[float, float]] = []

    async def sample() -> None:
        while True:
            value = rss_mb(proc.pid)
            if value is not None:
                rss.append((time.time(), value))
            await asyncio.sleep(1)

    sampler = asyncio.create_task(sample())
    kill_at = t0 + args.window * args.kill_at
    await asyncio.sleep(max(0.0, kill_at - time.time()))
    rss_before = max((v for _, v in rss), default=float("nan"))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = time.time()
    log(f"worker killed (SIGKILL) at window + {killed - t0:.1f} s; restarting")
    proc = spawn()
    restarted = time.time()
    restart_ready_s = await wait_ready(f"http://127.0.0.1:{port}/readyz", proc, 120)
    await asyncio.sleep(max(0.0, t0 + args.window + 8 - time.time()))
    sampler.cancel()
    reader.cancel()
    await asyncio.gather(sampler, reader, return_exceptions=True)
    await consumer.stop()
    rss_after = max((v for t, v in rss if t > restarted), default=float("nan"))
    proc.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(30)
    if proc.poll() is None:
        proc.kill()
    logfile.close()

    ids: dict[str, int] = {}
    for alert_id, *_ in seen:
        ids[alert_id] = ids.get(alert_id, 0) + 1
    duplicates = sum(n - 1 for n in ids.values() if n > 1)
    in_window = [s for s in seen if t0 - 1 <= s[1] <= t0 + args.window + 1]
    after = sorted((s for s in in_window if s[2] >= restarted), key=lambda s: s[2])
    first_after = after[0][2] if after else float("nan")
    # Caught up: from the first alert on after which every alert is raised within a second of its due time.
    caught_up = float("nan")
    for s in reversed(after):
        if s[2] - s[1] > 1.0:
            break
        caught_up = s[2]
    before = [s[2] - s[1] for s in in_window if s[2] < killed]
    recovering = [s[2] - s[1] for s in after if not s[1] >= caught_up]
    steady_after = [s[2] - s[1] for s in after if s[1] >= caught_up]  # due after the worker caught up
    delivered = [s[3] - s[1] for s in in_window if s[2] < killed]
    result = {
        "tasks": args.tasks,
        "window_tasks": window_tasks,
        "expected_alerts": 2 * window_tasks,
        "alerts_seen": len(in_window),
        "distinct_alerts": len({s[0] for s in in_window}),
        "duplicates": duplicates,
        "missing": 2 * window_tasks - len({s[0] for s in in_window}),
        "rate_per_s": args.rate,
        "generate_s": round(generated_s, 1),
        "store_mib": round(store_mb, 1),
        "store_mib_end": round(du_mb(data), 1),
        "ready_s": round(ready_s, 2),
        "rss_mib_before_kill": round(rss_before, 1),
        "rss_mib_after_restart": round(rss_after, 1),
        "restart_ready_s": round(restart_ready_s, 2),
        "restart_to_first_alert_s": round(first_after - restarted, 2),
        "restart_to_caught_up_s": round(caught_up - restarted, 2),
        "lateness_before_kill": stats(before),
        "delivery_before_kill": stats(delivered),
        "lateness_catching_up": stats(recovering),
        "lateness_due_after_caught_up": stats(steady_after),
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000_000, help="open tasks in the store")
    parser.add_argument("--rate", type=float, default=3000, help="alerts due per second in the window")
    parser.add_argument("--window", type=float, default=60, help="seconds of the measurement window")
    parser.add_argument("--kill-at", type=float, default=0.35, help="SIGKILL at this fraction of the window")
    parser.add_argument("--workers", type=int, default=2, help="processes generating the store")
    parser.add_argument("--gen-us", type=float, default=1000, help="generation µs per window task (an estimate)")
    parser.add_argument("--lead", type=float, default=25, help="seconds between generation's end and the window")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (store, worker log)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sla-bench-"))
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP")
    broker: EmbeddedBroker | None = None
    ok = False
    try:
        if bootstrap is None:
            broker = EmbeddedBroker(log_path=work / "tansu.log")
            broker.start()
            bootstrap = broker.bootstrap
        result = asyncio.run(run(args, bootstrap, work))
        print(json.dumps(result, ensure_ascii=False, indent=2))
        if args.json:
            args.json.write_text(json.dumps(result, ensure_ascii=False, indent=2))
        ok = True
    finally:
        if broker is not None:
            broker.stop()
        if ok and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work dir kept: {work}")


if __name__ == "__main__":
    main()
