"""Bench part (b): each stage alone (intake on the kernel's batch loop, the others on Faust) on a preloaded input
topic of realistic messages, started as `python -m gridhub serve <stage>`."""

from __future__ import annotations

import asyncio
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

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
from services.router.evaluation import dev_event, load_devset
from services.router.tasks import build_tasks

PASS_GAP = timedelta(hours=13)


@dataclass
class Corpus:
    """Realistic inputs for every stage, built in-process from the same 12345 work orders."""

    raws: list[KafkaRecord] = field(default_factory=list)
    events: list[KafkaRecord] = field(default_factory=list)
    tasks: list[KafkaRecord] = field(default_factory=list)
    skipped: int = 0
    # The router's input: the labelled development set's 359 reports (47 matters, five channels, every
    # township) with new ids, each pass through the set 13 hours before the next, so that a report meets its
    # own earlier copies only outside the merge window (they would be one incident), and the open-cases
    # table holds about one day's reports per township, as in a county.
    router_events: list[KafkaRecord] = field(default_factory=list)
    router_tasks: int = 0


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
    rows = load_devset()
    start = datetime.now(UTC) - PASS_GAP * (n // len(rows) + 1)
    for seq in range(n):
        at = start + PASS_GAP * (seq // len(rows)) + timedelta(seconds=seq % len(rows))
        event = dev_event(rows[seq % len(rows)]).model_copy(
            update={"event_id": new_id(), "message_id": new_id(), "received_at": at, "reported_at": at}
        )
        corpus.router_events.append((event.event_id.encode(), event.to_bytes()))
        corpus.router_tasks += len(build_tasks(event, decide(event, duty), duty, datetime.now(UTC)))
    return corpus


def event_of(value: bytes) -> bytes | None:
    """The event id a task or a case link is about (both name it `event_id`)."""
    at = value.find(b'"event_id":"')
    return value[at + 12 : at + 38] if at >= 0 else None


async def run_stage(
    bench: Bench,
    stage: str,
    input_topic: str,
    records: list[KafkaRecord],
    output_topic: str,
    expected_out: int,
    input_kind: str,
    events_per_input: float = 1.0,
    *,
    name: str | None = None,
    env_extra: dict[str, str] | None = None,
    more_outputs: tuple[str, ...] = (),
    count_events: bool = False,
) -> Row:
    """(b) preload a stage's input, start `gridhub serve <stage>`, time its output from first to last record."""
    plan = bench.plan
    part = (name or stage).replace("+", "-")  # a topic prefix and a directory name
    common = bench.common(part)
    await asyncio.wait_for(create_topics(common), 60)
    await preload(common, common.topic(input_topic), records)
    sup = bench.supervisor(part)
    webhook = None
    async with httpx.AsyncClient() as client:
        if stage == "notifier":
            port = free_port()
            webhook = f"http://127.0.0.1:{port}/webhook"
            env, _ = bench.env(common, part, webhook)
            sup.spawn("receiver", [sys.executable, str(RECEIVER), "--port", str(port)], env)
            proc = sup.procs["receiver"]
            await wait_http(client, f"http://127.0.0.1:{port}/stats", lambda: proc.poll() is None, 30)
        env, _ = bench.env(common, part, webhook)
        env.update(env_extra or {})
        consumer = await assigned_consumer(common, *(common.topic(t) for t in (output_topic, *more_outputs)))
        cpu: dict[str, float | None] = {}
        try:
            spawned = time.time()
            sup.spawn(stage, command("serve", stage), env)
            worker = sup.procs[stage]
            mark = lambda: cpu.update(first=cpu_seconds(worker.pid), first_at=time.monotonic())  # noqa: E731
            arrivals = await collect(
                consumer, expected_out, lambda: worker.poll() is None, plan, mark, event_of if count_events else None
            )
            cpu.update(last=cpu_seconds(worker.pid), last_at=time.monotonic())
        finally:
            await asyncio.wait_for(consumer.stop(), 30)
            await asyncio.to_thread(sup.stop, 5.0)
    if arrivals.count == 0 or arrivals.first_ts is None or arrivals.last_ts is None:
        return Row(name or stage, len(records), input_kind, None, outputs=0, note="no output (see logs)")
    span = arrivals.last_ts - arrivals.first_ts
    out_rate = arrivals.count / span if span > 0 else None
    in_rate = out_rate * len(records) / expected_out if out_rate else None
    cpu_pct = None
    if cpu.get("first") is not None and cpu.get("last") is not None and cpu["last_at"] != cpu["first_at"]:
        cpu_pct = 100 * (cpu["last"] - cpu["first"]) / (cpu["last_at"] - cpu["first_at"])  # type: ignore[operator]
    note = "→ " + " + ".join((output_topic, *more_outputs)) + (" (events accounted for)" if count_events else "")
    if arrivals.count < expected_out:
        note += f" INCOMPLETE {arrivals.count}/{expected_out}"
    return Row(
        name or stage,
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
