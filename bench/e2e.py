"""Bench part (c): the whole hub driven over HTTP, its max sustained rate and its latency at fixed rates."""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import sys
import time
from typing import Any

import aiohttp
import httpx
from harness import API_KEY, RECEIVER, Bench, Plan, Row, cpu_seconds, log, wait_http

from gridhub.broker import free_port
from gridhub.demo.simulator import work_order
from gridhub.kernel.kafka import create_topics
from gridhub.up import SERVICES, command


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


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
            async with self.session.post(
                f"{self.adapters}/v1/12345/work-orders", json=order, headers={"X-Api-Key": API_KEY}
            ) as response:
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
    cpu = {
        k: round(100 * (cpu_after[k] - v) / wall)
        for k, v in cpu_before.items()
        if v is not None and cpu_after.get(k) is not None
    }
    span = max(got.values(), default=t0) - t0
    rate = len(got) / span if span > 0 else None
    note = f"concurrency {plan.concurrency}; adapters accepted {len(sent) / post_s:,.0f}/s"
    if errors:
        note += f"; {len(errors)} POST errors"
    if len(got) < len(sent):
        note += f"; MISSING {len(sent) - len(got)}"
    return Row(
        "e2e max",
        m,
        "work orders (HTTP)",
        rate,
        outputs=len(got),
        startup_s=ready_s,
        note=note,
        extra={
            "span_s": span,
            "accept_rate": len(sent) / post_s,
            "post_errors": errors[:5],
            "first_event_latency_s": first_s,
            "ready_s": ready_s,
            "cpu_pct": cpu,
        },
    )


async def latency_at(hub: Hub, plan: Plan, rate: float, label: str, drain_rate: float) -> Row:
    """(c2) orders at a fixed rate; latency = first webhook of the event − the moment before its POST."""
    n = max(1, round(rate * plan.latency_seconds))
    sent, errors, post_s = await hub.paced(n, rate, 256)
    got = await hub.arrivals(sent, min(30 + n / max(drain_rate, 20.0), 180), plan.stall_timeout_s)
    latencies = [got[k] - sent[k] for k in got]
    extra: dict[str, Any] = {
        "rate": rate,
        "sent": len(sent),
        "achieved_rate": len(sent) / post_s,
        "post_errors": errors[:5],
    }
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
