"""The broker hop alone: produce → consume latency with plain aiokafka at a fixed rate, no GridHub code.

The floor under the notifier bench's "Kafka hop": the same producer linger and fetch wait, one producer and one
consumer in this process. Usage: `.venv/bin/python bench/kafka_hop.py [--rate 500] [--records 5000]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from gridhub.broker import EmbeddedBroker

# (producer linger ms, consumer fetch wait ms): the notifier's input, no linger, the kernel's default fetch wait.
CASES = ((5, 10), (0, 10), (5, 100))


async def hop(bootstrap: str, linger_ms: int, fetch_wait_ms: int, rate: float, records: int) -> list[float]:
    """Latencies in ms of `records` records produced at `rate` per second, each stamped just before its send."""
    topic = f"bench.hop.{linger_ms}.{fetch_wait_ms}.{time.monotonic_ns()}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 6, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=linger_ms)
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=fetch_wait_ms
    )
    await producer.start()
    await consumer.start()
    latencies: list[float] = []

    async def consume() -> None:
        while len(latencies) < records:
            batch = await consumer.getmany(timeout_ms=1000)
            now = time.perf_counter()
            latencies.extend((now - float(r.value)) * 1000 for part in batch.values() for r in part)

    reader = asyncio.create_task(consume())
    try:
        await asyncio.sleep(1.0)  # the consumer's first fetch is out
        start = time.perf_counter()
        for n in range(records):
            if (ahead := start + n / rate - time.perf_counter()) > 0:
                await asyncio.sleep(ahead)
            await producer.send(topic, str(time.perf_counter()).encode(), key=str(n).encode())
        await asyncio.wait_for(reader, 60)
    finally:
        reader.cancel()
        await producer.stop()
        await consumer.stop()
    return sorted(latencies)


def main() -> None:
    """Print p50 / p99 / max of the broker hop for each case."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--records", type=int, default=5000)
    args = parser.parse_args()
    external = os.environ.get("KAFKA_BOOTSTRAP")
    broker = None if external else EmbeddedBroker()
    try:
        bootstrap = external or broker.start()  # type: ignore[union-attr]
        print(f"broker hop at {args.rate:.0f}/s, {args.records} records ({'external' if external else 'Tansu'}):")
        for linger_ms, fetch_wait_ms in CASES:
            lat = asyncio.run(hop(bootstrap, linger_ms, fetch_wait_ms, args.rate, args.records))
            p50, p99 = lat[len(lat) // 2], lat[int(len(lat) * 0.99)]
            case = f"linger {linger_ms} ms, fetch wait {fetch_wait_ms} ms"
            print(f"  {case}: p50 {p50:.1f}, p99 {p99:.1f}, max {lat[-1]:.1f} ms")
    finally:
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    main()
