"""Bench part (a): a plain aiokafka consume → transform → produce loop, the ceiling for a Python stage."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime

from harness import Bench, KafkaRecord, Row, assigned_consumer, create_plain_topics, preload

from gridhub.kernel.kafka import make_producer
from gridhub.kernel.settings import CommonSettings
from schemas import new_id


def baseline_records(n: int, size: int = 400) -> list[KafkaRecord]:
    """N JSON events of about `size` bytes, keyed by event id."""
    records = []
    for seq in range(n):
        event_id = new_id()
        doc = {
            "event_id": event_id,
            "seq": seq,
            "source": "12345",
            "received_at": datetime.now(UTC).isoformat(),
            "title": "  小区下水道反流  ",
            "urgency": "一般",
            "location": {"grid_code": "PA-CG-01-001"},
            "description": "",
        }
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
    return Row(
        "baseline",
        n,
        f"JSON {size} B",
        rate,
        rate,
        n,
        note=f"aiokafka getmany→json→send, one flush; best of {trials}: " + " ".join(f"{r:,.0f}" for r in rates),
        extra={"trials": rates},
    )
