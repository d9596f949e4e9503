"""Bench part `http`: the adapters' HTTP intake rate (single and batch routes), index propagation, replica window."""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp
import httpx
from e2e import percentile
from harness import API_KEY, Bench, Row, cpu_seconds, log, wait_http

from gridhub.broker import free_port
from gridhub.demo.simulator import work_order
from gridhub.kernel.kafka import create_topics, make_producer
from gridhub.up import command
from schemas import Channel, new_id
from schemas.index import IndexOutcome, ReportIndexed

SINGLE = "/v1/12345/work-orders"
BATCH = "/v1/12345/work-orders/batch"
BATCH_IN_FLIGHT = 4


class Adapters:
    """One adapters process on its own prefix and port, and a keep-alive client pool to drive it."""

    def __init__(self, bench: Bench, session: aiohttp.ClientSession, part: str = "http") -> None:
        self.bench = bench
        self.session = session
        self.common = bench.common(part)
        self.env, self.ports = bench.env(self.common, part)
        self.base = f"http://127.0.0.1:{self.ports['adapters']}"
        self.sup = bench.supervisor(part)
        self.seq = 0
        self.rng = random.Random(2468)

    def alive(self) -> bool:
        """True while the adapters process runs."""
        return all(p.poll() is None for p in self.sup.procs.values())

    def cpu(self) -> dict[str, float | None]:
        """CPU seconds so far: adapters, broker, this bench process."""
        proc = self.sup.procs.get("adapters")
        return {
            "adapters": cpu_seconds(proc.pid if proc else None),
            "broker": cpu_seconds(self.bench.broker_pid),
            "bench client": cpu_seconds(os.getpid()),
        }

    def orders(self, n: int) -> list[dict[str, Any]]:
        """N fresh 12345 work orders (unique order numbers)."""
        out = []
        for _ in range(n):
            self.seq += 1
            out.append(work_order(self.seq, self.rng, prefix=f"H{self.bench.run_id}"))
        return out

    async def start(self, timeout_s: float) -> float:
        """Create the topics, start `gridhub serve adapters`, wait for /readyz; return seconds to ready."""
        await asyncio.wait_for(create_topics(self.common), 60)
        started = time.time()
        self.sup.spawn("adapters", command("serve", "adapters"), self.env)
        async with httpx.AsyncClient() as client:
            await wait_http(client, f"{self.base}/readyz", self.alive, timeout_s)
        return time.time() - started

    async def post(self, path: str, body: bytes, base: str | None = None) -> tuple[int, bytes, float]:
        """POST a JSON body (to another base URL if given); (status, body, seconds)."""
        started = time.perf_counter()
        headers = {"X-Api-Key": API_KEY, "Content-Type": "application/json"}
        async with self.session.post(f"{base or self.base}{path}", data=body, headers=headers) as response:
            answer = await response.read()
        return response.status, answer, time.perf_counter() - started


async def drive(
    adapters: Adapters, path: str, bodies: list[bytes], in_flight: int, accepted_in: Any
) -> tuple[int, list[float], list[str], float]:
    """POST every body with `in_flight` workers; (reports accepted, latencies, errors, seconds)."""
    latencies: list[float] = []
    errors: list[str] = []
    accepted = 0
    queue = iter(bodies)

    async def worker() -> None:
        nonlocal accepted
        for body in queue:
            try:
                status, answer, seconds = await adapters.post(path, body)
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors.append(repr(exc))
                continue
            latencies.append(seconds)
            got = accepted_in(status, answer)
            if got is None:
                errors.append(f"{status} {answer[:200]!r}")
            else:
                accepted += got

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(in_flight))), 600)
    return accepted, latencies, errors, time.perf_counter() - started


def single_accepted(status: int, answer: bytes) -> int | None:
    """1 for a 202 (the broker acked it), None for anything else."""
    return 1 if status == 202 else None


def batch_accepted(status: int, answer: bytes) -> int | None:
    """Items accepted in a 200 batch answer (each broker-acked), None for anything else."""
    return int(json.loads(answer)["accepted"]) if status == 200 else None


async def intake_row(
    adapters: Adapters, label: str, path: str, bodies: list[bytes], reports: int, in_flight: int, kind: str
) -> Row:
    """One measured run: reports/s accepted, request latency p50/p99, CPU of each process."""
    ok_of = batch_accepted if path == BATCH else single_accepted
    before, at = adapters.cpu(), time.monotonic()
    accepted, latencies, errors, seconds = await drive(adapters, path, bodies, in_flight, ok_of)
    after, wall = adapters.cpu(), time.monotonic() - at
    cpu = {k: round(100 * (after[k] - v) / wall) for k, v in before.items() if v is not None and after[k] is not None}
    p50, p99 = (1000 * percentile(latencies, p) for p in (50, 99)) if latencies else (0.0, 0.0)
    note = f"{in_flight} in flight; request p50 {p50:,.1f} ms  p99 {p99:,.1f} ms"
    if errors or accepted < reports:
        note += f"; {len(errors)} errors, {reports - accepted} not accepted"
    return Row(
        label,
        reports,
        kind,
        accepted / seconds if seconds > 0 else None,
        outputs=accepted,
        cpu_pct=cpu.get("adapters"),
        note=note,
        extra={"p50_ms": p50, "p99_ms": p99, "requests": len(bodies), "errors": errors[:5], "cpu_pct": cpu},
    )


async def propagation_row(adapters: Adapters, samples: int) -> Row:
    """ReportIndexed produced (as intake does) -> the adapters answer a POST of that report with its event id."""
    producer = make_producer(adapters.common)
    await asyncio.wait_for(producer.start(), 30)
    delays: list[float] = []
    polls = 0
    try:
        for n in range(samples):
            await asyncio.sleep(random.uniform(0.0, 0.2))  # no phase lock with the follower's fetch cycle
            record = ReportIndexed(
                source=Channel.HOTLINE_12345,
                source_id=f"P{adapters.bench.run_id}-{n}",
                event_id=new_id(),
                outcome=IndexOutcome.EVENT,
                indexed_at=datetime.now(UTC),
            )
            body = json.dumps({"order_no": record.source_id}).encode()
            started = time.perf_counter()
            await producer.send_and_wait(
                adapters.common.topic("reports.index"), record.to_bytes(), key=record.dedupe_key.encode()
            )
            async with asyncio.timeout(30):
                while True:  # each miss is accepted (or answered from the own acceptance) until the record lands
                    polls += 1
                    _, answer, _ = await adapters.post(SINGLE, body)
                    if json.loads(answer).get("event_id") == record.event_id:
                        delays.append(time.perf_counter() - started)
                        break
    finally:
        await producer.stop()
    p50, p99 = (1000 * percentile(delays, p) for p in (50, 99))
    worst = 1000 * max(delays)
    note = f"index record produced -> answered from it: p50 {p50:,.0f} ms  p99 {p99:,.0f} ms  max {worst:,.0f} ms"
    return Row(
        "http index",
        samples,
        "index records",
        None,
        outputs=len(delays),
        note=note,
        extra={"p50_ms": p50, "p99_ms": p99, "max_ms": worst, "polls": polls},
    )


async def window_row(bench: Bench, session: aiohttp.ClientSession, samples: int) -> Row:
    """The cross-replica window: A's 202 -> replica B answers with A's event id (raw -> intake -> index -> B)."""
    a = Adapters(bench, session, "window")
    port_b = free_port()
    env_b = a.env | {"GRIDHUB_ADAPTERS_PORT": str(port_b), "GRIDHUB_DATA_DIR": str(bench.workdir / "window" / "b")}
    base_b = f"http://127.0.0.1:{port_b}"
    try:
        await a.start(bench.plan.startup_timeout_s)
        a.sup.spawn("intake", command("serve", "intake"), a.env)
        a.sup.spawn("adapters-b", command("serve", "adapters"), env_b)
        async with httpx.AsyncClient() as client:
            for url in (f"{base_b}/readyz", f"http://127.0.0.1:{a.ports['intake']}/readyz"):
                await wait_http(client, url, a.alive, bench.plan.startup_timeout_s)
        delays: list[float] = []
        for n in range(samples + 1):  # the first is a warm-up: intake's first fetch after its group join
            await asyncio.sleep(random.uniform(0.0, 0.2))
            body = json.dumps(a.orders(1)[0], ensure_ascii=False).encode()
            status, answer, _ = await a.post(SINGLE, body)
            if status != 202:
                raise RuntimeError(f"replica A answered {status} {answer[:200]!r}")
            event_id, accepted_at = json.loads(answer)["event_id"], time.perf_counter()
            async with asyncio.timeout(60 if n == 0 else 30):
                while True:  # B answers 202 (and then from its own acceptance) until intake's record lands
                    _, answer_b, _ = await a.post(SINGLE, body, base_b)
                    if json.loads(answer_b).get("event_id") == event_id:
                        break
            if n:
                delays.append(time.perf_counter() - accepted_at)
    finally:
        await asyncio.to_thread(a.sup.stop, 5.0)
    p50, p99, worst = (1000 * percentile(delays, p) for p in (50, 99, 100))
    note = f"A's 202 -> B answers A's event id: p50 {p50:,.0f} ms  p99 {p99:,.0f} ms  max {worst:,.0f} ms"
    return Row(
        "http window",
        samples,
        "reports, 2 replicas",
        None,
        outputs=len(delays),
        note=note,
        extra={"p50_ms": p50, "p99_ms": p99, "max_ms": worst},
    )


async def run_http(bench: Bench) -> list[Row]:
    """The adapters alone: the single route at `concurrency`, the batch route with 100 and 500, index propagation."""
    plan = bench.plan
    n = max(plan.events, 500)
    rows: list[Row] = []
    # aiohttp, as in e2e: httpx's pool costs more CPU than the adapters beyond ~8 connections (bench/README.md).
    connector = aiohttp.TCPConnector(limit=max(plan.concurrency, 64), keepalive_timeout=2.0)  # under uvicorn's 5 s
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        adapters = Adapters(bench, session)
        try:
            ready_s = await adapters.start(plan.startup_timeout_s)
            warm = [json.dumps(o, ensure_ascii=False).encode() for o in adapters.orders(200)]
            await drive(adapters, SINGLE, warm, 8, single_accepted)
            log.info("adapters ready in %.1f s; warmed up", ready_s)
            singles = [json.dumps(o, ensure_ascii=False).encode() for o in adapters.orders(n)]
            single = await intake_row(adapters, "http single", SINGLE, singles, n, plan.concurrency, "work orders")
            single.startup_s = ready_s
            rows.append(single)
            for size in (100, 500):
                count = max(n // size, 20) * size  # at least 20 POSTs, so p99 means something
                orders = adapters.orders(count)
                bodies = [json.dumps(orders[i : i + size], ensure_ascii=False).encode() for i in range(0, count, size)]
                kind = f"orders/{len(bodies)} POSTs"
                rows.append(
                    await intake_row(adapters, f"http batch{size}", BATCH, bodies, count, BATCH_IN_FLIGHT, kind)
                )
            rows.append(await propagation_row(adapters, 50 if plan.events >= 3000 else 20))
        finally:
            await asyncio.to_thread(adapters.sup.stop, 5.0)
        rows.append(await window_row(bench, session, 50 if plan.events >= 3000 else 20))
    return rows
