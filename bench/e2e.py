"""Bench part (c): the whole hub driven over HTTP, its max sustained rate and its latency at fixed rates.

Every figure runs from the HTTP side of the adapters to the webhook receiver (`bench/receiver.py`):

* accepted = the adapters answered 202 (single) or an item `accepted` (batch) with an event id, i.e. after the
  broker acked the raw record; `accepted_at` = `time.time()` when that answer was read;
* received = the event's first webhook (of any of its tasks) at the receiver, `time.time()` there (same machine).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
from harness import API_KEY, RECEIVER, Bench, Plan, Row, cpu_seconds, log, wait_http

from gridhub.broker import free_port
from gridhub.demo.simulator import work_order
from gridhub.kernel.kafka import create_topics
from gridhub.up import SERVICES, command

SINGLE = "/v1/12345/work-orders"
BATCH = "/v1/12345/work-orders/batch"


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


@dataclass(frozen=True)
class Sent:
    """One accepted report: when its POST started and when the adapters' acceptance was read."""

    posted_at: float
    accepted_at: float


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
        self.retried = 0
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

    def order(self) -> dict[str, Any]:
        """A fresh work order."""
        self.seq += 1
        return work_order(self.seq, self.rng, prefix=f"E{self.bench.run_id}")

    async def send(self, path: str, body: bytes, errors: list[str]) -> tuple[int, bytes, float, float] | None:
        """POST a JSON body; (status, answer, time before the first try, time the answer was read), None on failure.

        A connection the server closed as the request went out (keep-alive race: ServerDisconnectedError, reset) is
        retried with the same body, at most twice: the adapters' idempotency answers a report they already took
        with its event id (200 duplicate), so nothing is counted twice.
        """
        before = time.time()
        headers = {"X-Api-Key": API_KEY, "Content-Type": "application/json"}
        for attempt in range(3):
            try:
                async with self.session.post(f"{self.adapters}{path}", data=body, headers=headers) as response:
                    answer = await response.read()
                return response.status, answer, before, time.time()
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                if attempt == 2:
                    errors.append(repr(exc))
                    return None
                self.retried += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors.append(repr(exc))
                return None
        return None

    async def post(self, sent: dict[str, Sent], errors: list[str]) -> None:
        """POST one fresh work order; record its event id, the time just before the POST and the 202's."""
        body = json.dumps(self.order(), ensure_ascii=False).encode()
        answer = await self.send(SINGLE, body, errors)
        if answer is None:
            return
        status, text, before, accepted_at = answer
        if status not in (200, 202):  # 200: a retry of one the adapters had taken (duplicate, same event id)
            errors.append(f"{status} {text[:200]!r}")
            return
        sent[json.loads(text)["event_id"]] = Sent(before, accepted_at)

    async def post_batch(self, size: int, sent: dict[str, Sent], errors: list[str]) -> None:
        """POST `size` fresh work orders as one batch; each accepted item counts with the batch's times."""
        body = json.dumps([self.order() for _ in range(size)], ensure_ascii=False).encode()
        answer = await self.send(BATCH, body, errors)
        if answer is None:
            return
        status, text, before, accepted_at = answer
        if status != 200:
            errors.append(f"{status} {text[:200]!r}")
            return
        for item in json.loads(text)["items"]:
            if item["status"] in ("accepted", "duplicate"):
                sent[item["event_id"]] = Sent(before, accepted_at)
            else:
                errors.append(f"item {item['status']}")

    async def burst(self, n: int, concurrency: int, batch: int = 1) -> tuple[dict[str, Sent], list[str], float]:
        """POST n orders as fast as `concurrency` workers can (singly, or in batches); sent ids, errors, seconds."""
        sent: dict[str, Sent] = {}
        errors: list[str] = []
        remaining = iter(range(0, n, batch))
        started = time.perf_counter()

        async def worker() -> None:
            for start in remaining:
                if batch == 1:
                    await self.post(sent, errors)
                else:
                    await self.post_batch(min(batch, n - start), sent, errors)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return sent, errors, time.perf_counter() - started

    async def paced(self, n: int, rate: float, max_in_flight: int) -> tuple[dict[str, Sent], list[str], float]:
        """POST n orders on a fixed schedule of `rate` per second (open loop, bounded in flight)."""
        sent: dict[str, Sent] = {}
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

    async def arrivals(self, ids: dict[str, Sent], timeout_s: float, stall_s: float) -> dict[str, float]:
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


def cpu_shares(before: dict[str, float | None], after: dict[str, float | None], wall: float) -> dict[str, int]:
    """CPU of each process between two snapshots, in % of one core."""
    shares: dict[str, int] = {}
    for k, v in before.items():
        now = after.get(k)
        if v is not None and now is not None and wall > 0:
            shares[k] = round(100 * (now - v) / wall)
    return shares


async def idle_cpu(hub: Hub, seconds: float) -> dict[str, float]:
    """CPU seconds per second each process burns with no load (polls, fetch loops, timers), over `seconds`."""
    before, at = hub.cpu_snapshot(), time.monotonic()
    await asyncio.sleep(seconds)
    after, wall = hub.cpu_snapshot(), time.monotonic() - at
    idle: dict[str, float] = {}
    for k, v in before.items():
        now = after.get(k)
        if v is not None and now is not None:
            idle[k] = (now - v) / wall
    return idle


def cpu_per_event(before: dict[str, float | None], after: dict[str, float | None], events: int) -> dict[str, float]:
    """Milliseconds of CPU per event delivered, per process: all its CPU over the run (idle burn included)."""
    per: dict[str, float] = {}
    for k, v in before.items():
        now = after.get(k)
        if v is not None and now is not None and events:
            per[k] = 1000 * (now - v) / events
    return per


async def max_rate(
    hub: Hub,
    plan: Plan,
    ready_s: float,
    first_s: float | None,
    idle: dict[str, float],
    batch: int = 1,
) -> Row:
    """(c1) M orders as fast as accepted; events received ÷ (first acceptance → last event's first webhook).

    Counted: events the adapters accepted (202 / item accepted) whose first webhook reached the receiver. The
    window runs from the first acceptance to the last such first webhook. `steady` is the receipt rate over the
    middle 80 % of receipts (10th to 90th percentile of the receipt times): the pipe full, its fill and drain cut.
    """
    m = plan.e2e_events
    hub.retried = 0
    label = "e2e max" if batch == 1 else f"e2e max b{batch}"
    concurrency = plan.concurrency if batch == 1 else 4
    cpu_before, cpu_at = hub.cpu_snapshot(), time.monotonic()
    sent, errors, post_s = await hub.burst(m, concurrency, batch)
    got = await hub.arrivals(sent, 30 + m / 20, plan.stall_timeout_s)
    cpu_after, wall = hub.cpu_snapshot(), time.monotonic() - cpu_at
    cpu = cpu_shares(cpu_before, cpu_after, wall)
    per_event = cpu_per_event(cpu_before, cpu_after, len(got))
    hub_ms = sum(v for k, v in per_event.items() if k != "bench client")
    t0 = min((s.accepted_at for s in sent.values()), default=time.time())
    receipts = sorted(got.values())
    window = (receipts[-1] - t0) if receipts else 0.0
    rate = len(got) / window if window > 0 else None
    steady = None
    if len(receipts) >= 20:
        lo, hi = receipts[len(receipts) // 10], receipts[(len(receipts) * 9) // 10]
        steady = ((len(receipts) * 9) // 10 - len(receipts) // 10) / (hi - lo) if hi > lo else None
    how = f"{concurrency} in flight" if batch == 1 else f"batches of {batch}, {concurrency} in flight"
    note = (
        f"accepted {len(sent):,} (at {len(sent) / post_s:,.0f}/s, {how}), received {len(got):,} "
        f"in {window:,.1f} s (first 202 → last webhook)"
    )
    if steady:
        note += f"; steady {steady:,.0f}/s"
    if hub_ms:
        # The hub's CPU per event (broker, five services, receiver; not the load generator): what the machine's
        # cores could carry at this cost if the hub had them all to itself (a ceiling, not a measurement).
        cores = os.cpu_count() or 1
        note += f"; hub CPU {hub_ms:.2f} ms/event → {cores} free cores carry ≤ {1000 * cores / hub_ms:,.0f}/s"
    if errors or hub.retried:
        note += f"; {len(errors)} POST errors, {hub.retried} retried"
    if len(got) < len(sent):
        note += f"; MISSING {len(sent) - len(got)}"
    return Row(
        label,
        m,
        "work orders (HTTP)",
        rate,
        out_rate=steady,
        outputs=len(got),
        startup_s=ready_s,
        note=note,
        extra={
            "sent": len(sent),
            "received": len(got),
            "window_s": window,
            "steady_rate": steady,
            "accept_rate": len(sent) / post_s,
            "batch": batch,
            "concurrency": concurrency,
            "post_errors": errors[:5],
            "first_event_latency_s": first_s,
            "ready_s": ready_s,
            "cpu_pct": cpu,
            "cpu_ms_per_event": {k: round(v, 3) for k, v in per_event.items()},
            "hub_cpu_ms_per_event": hub_ms,
            "idle_cpu_pct": {k: round(100 * v, 1) for k, v in idle.items()},
        },
    )


async def latency_at(hub: Hub, plan: Plan, rate: float, label: str, drain_rate: float) -> Row:
    """(c2) orders at a fixed rate; latency = the event's first webhook at the receiver − the adapters' 202.

    The same from just before the POST (the 202's own time included) is in the extra as `post_*`.
    """
    n = max(1, round(rate * plan.latency_seconds))
    hub.retried = 0
    cpu_before, cpu_at = hub.cpu_snapshot(), time.monotonic()
    sent, errors, post_s = await hub.paced(n, rate, 256)
    got = await hub.arrivals(sent, min(30 + n / max(drain_rate, 20.0), 180), plan.stall_timeout_s)
    cpu = cpu_shares(cpu_before, hub.cpu_snapshot(), time.monotonic() - cpu_at)
    latencies = [got[k] - sent[k].accepted_at for k in got]
    from_post = [got[k] - sent[k].posted_at for k in got]
    accept = [s.accepted_at - s.posted_at for s in sent.values()]
    extra: dict[str, Any] = {
        "rate": rate,
        "sent": len(sent),
        "received": len(got),
        "achieved_rate": len(sent) / post_s,
        "post_errors": errors[:5],
        "cpu_pct": cpu,
    }
    note = f"POSTs at {extra['achieved_rate']:,.0f}/s, accepted {len(sent):,}, received {len(got):,}"
    if latencies:
        for p in (50, 90, 99):
            extra[f"p{p}_ms"] = 1000 * percentile(latencies, p)
            extra[f"post_p{p}_ms"] = 1000 * percentile(from_post, p)
            extra[f"accept_p{p}_ms"] = 1000 * percentile(accept, p)
        extra.update(max_ms=1000 * max(latencies), mean_ms=1000 * statistics.fmean(latencies))
        note = (
            f"202→webhook p50 {extra['p50_ms']:,.0f} ms  p99 {extra['p99_ms']:,.0f} ms  max {extra['max_ms']:,.0f} ms"
            f" (POST→webhook p50 {extra['post_p50_ms']:,.0f}, p99 {extra['post_p99_ms']:,.0f}; "
            f"POST→202 p50 {extra['accept_p50_ms']:,.0f}, p99 {extra['accept_p99_ms']:,.0f}); {note}"
        )
    if extra["achieved_rate"] < 0.95 * rate:
        note += f"; OFFERED RATE NOT REACHED ({rate:g}/s asked)"
    if len(got) < len(sent) or errors or hub.retried:
        note += f"; MISSING {len(sent) - len(got)}, {len(errors)} POST errors, {hub.retried} retried"
    return Row(label, n, "work orders (HTTP)", None, outputs=len(got), note=note, extra=extra)


async def run_e2e(bench: Bench) -> list[Row]:
    """(c) all five services + receiver: warm-up, max sustained rate (single, batch), then latency at fixed rates."""
    plan = bench.plan
    rows: list[Row] = []
    # The load generator is aiohttp: httpx's pool costs more CPU than the adapters beyond ~8 connections
    # (README), so with it the bench would measure its own client.
    # Idle connections are dropped before uvicorn's keep-alive timeout (5 s) closes them under a request.
    connector = aiohttp.TCPConnector(limit=max(plan.concurrency, 256), keepalive_timeout=2.0)
    timeout = aiohttp.ClientTimeout(total=60)
    async with httpx.AsyncClient() as client, aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        hub = Hub(bench, client, session)
        try:
            ready_s = await hub.start(plan.startup_timeout_s)
            sent, _, _ = await hub.burst(20, 4)
            warm = await hub.arrivals(sent, 60, plan.stall_timeout_s)
            first_s = min((warm[k] - sent[k].accepted_at for k in warm), default=None)
            log.info("e2e ready in %.1f s; warm-up %d/%d delivered", ready_s, len(warm), len(sent))
            idle = await idle_cpu(hub, 5.0)
            log.info("idle CPU (%% of one core): %s", {k: round(100 * v, 1) for k, v in idle.items()})
            top = await max_rate(hub, plan, ready_s, first_s, idle)
            rows.append(top)
            sustained = top.in_rate or 50.0
            if plan.e2e_batch > 1:
                await asyncio.sleep(2.0)
                batched = await max_rate(hub, plan, ready_s, first_s, idle, plan.e2e_batch)
                rows.append(batched)
                sustained = max(sustained, batched.in_rate or 0.0)
            if plan.half_max_latency:
                await asyncio.sleep(2.0)
                half = max(1.0, round(sustained / 2))
                rows.append(await latency_at(hub, plan, half, f"e2e @{half:g}/s", sustained))
            await asyncio.sleep(2.0)
            rate = plan.latency_rate
            rows.append(await latency_at(hub, plan, rate, f"e2e @{rate:g}/s", sustained))
        finally:
            await asyncio.to_thread(hub.sup.stop, 5.0)
    return rows
