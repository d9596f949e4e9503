"""Bench part (b): each stage alone (intake on the kernel's batch loop, the others on Faust) on a preloaded input
topic of realistic messages, started as `python -m gridhub serve <stage>`."""

from __future__ import annotations

import asyncio
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
from harness import RECEIVER, Bench, KafkaRecord, Row, assigned_consumer, collect, cpu_seconds, preload, wait_http

from gridhub.broker import free_port
from gridhub.demo.simulator import work_order
from gridhub.kernel.errors import PermanentError
from gridhub.kernel.kafka import create_topics
from gridhub.up import command
from schemas import Channel, ReportReceived, new_id
from schemas.dutylist import load_duty_list
from services.intake.channels import normalise
from services.router.decide import decide
from services.router.tasks import build_tasks


@dataclass
class Corpus:
    """Realistic inputs for every stage, built in-process from the same 12345 work orders."""

    raws: list[KafkaRecord] = field(default_factory=list)
    events: list[KafkaRecord] = field(default_factory=list)
    tasks: list[KafkaRecord] = field(default_factory=list)
    skipped: int = 0


def build_corpus(n: int, run_id: str, seed: int = 12345) -> Corpus:
    """N ReportReceived for 12345 work orders, their EventNormalised, and the router's TaskDispatched."""
    rng = random.Random(seed)
    duty = load_duty_list()
    corpus = Corpus()
    for seq in range(n):
        order = work_order(seq, rng, prefix=f"B{run_id}")
        raw = ReportReceived(
            source=Channel.HOTLINE_12345,
            source_id=order["order_no"],
            proposed_event_id=new_id(),
            received_at=datetime.now(UTC),
            adapter_version="hub-bench/1",
            payload=order,
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


async def run_stage(
    bench: Bench,
    stage: str,
    input_topic: str,
    records: list[KafkaRecord],
    output_topic: str,
    expected_out: int,
    input_kind: str,
    events_per_input: float = 1.0,
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
            mark = lambda: cpu.update(first=cpu_seconds(worker.pid), first_at=time.monotonic())  # noqa: E731
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
    return Row(
        stage,
        len(records),
        input_kind,
        in_rate,
        out_rate,
        arrivals.count,
        startup_s=arrivals.first_ts - spawned,
        cpu_pct=cpu_pct,
        note=note,
        extra={"span_s": span, "events_per_s": in_rate * events_per_input if in_rate else None},
    )
