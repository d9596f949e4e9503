"""The kernel's batch loop and intake on it, against the session's real broker."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import httpx
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import CollectorRegistry

from gridhub.broker import free_port
from gridhub.kernel.batchloop import BatchHandler, BatchLoop
from gridhub.kernel.batchout import Outgoing
from gridhub.kernel.errors import PermanentError
from gridhub.kernel.kafka import create_topics, make_consumer, make_producer
from gridhub.kernel.settings import CommonSettings
from schemas import Channel, ReportDeadLettered, ReportIndexed, ReportReceived, new_id
from services.intake.settings import IntakeSettings
from services.intake.worker import create_app
from tests.conftest import Broker

pytestmark = pytest.mark.broker

WAIT_S = 45.0


def settings_for(broker: Broker, topic_prefix: str) -> CommonSettings:
    """Settings with a topic and group prefix of the test's own."""
    return CommonSettings(
        kafka_bootstrap=broker.bootstrap,
        kafka_idempotence=broker.idempotence,
        topic_prefix=f"{topic_prefix}b{uuid.uuid4().hex[:8]}.",
        kafka_batch_timeout_ms=100,
    )


async def plain_topics(common: CommonSettings, *names: str) -> list[str]:
    """Create one-partition topics under the test's prefix; return their full names."""
    full = [common.topic(name) for name in names]
    admin = AIOKafkaAdminClient(bootstrap_servers=common.kafka_bootstrap)
    await asyncio.wait_for(admin.start(), WAIT_S)
    try:
        await asyncio.wait_for(
            admin.create_topics([NewTopic(name=n, num_partitions=1, replication_factor=1) for n in full]), WAIT_S
        )
    finally:
        await admin.close()
    return full


async def produce(common: CommonSettings, topic: str, records: Sequence[tuple[bytes | None, bytes]]) -> None:
    """Produce (key, value) records and wait for every ack."""
    producer = make_producer(common)
    await asyncio.wait_for(producer.start(), WAIT_S)
    try:
        for key, value in records:
            await asyncio.wait_for(producer.send_and_wait(topic, value, key=key), WAIT_S)
    finally:
        await producer.stop()


async def read_topic(common: CommonSettings, topic: str, at_least: int, settle_s: float = 0.5) -> list[Any]:
    """Every record of a topic once at least `at_least` are there (and `settle_s` brought no more)."""
    consumer = make_consumer(common, group_id=None, fetch_max_wait_ms=100)
    await asyncio.wait_for(consumer.start(), WAIT_S)
    found: list[Any] = []
    try:
        partitions = await asyncio.wait_for(_partitions(consumer, topic), WAIT_S)
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        await consumer.seek_to_beginning()
        deadline = time.monotonic() + WAIT_S
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            batch = await asyncio.wait_for(consumer.getmany(timeout_ms=200), WAIT_S)
            if batch:
                found += [r for records in batch.values() for r in records]
                quiet_since = time.monotonic()
            elif len(found) >= at_least and time.monotonic() - quiet_since >= settle_s:
                return found
        raise TimeoutError(f"{len(found)} of {at_least} records on {topic} in {WAIT_S} s")
    finally:
        await consumer.stop()


async def _partitions(consumer: Any, topic: str) -> set[int]:
    while not (found := consumer.partitions_for_topic(topic)):
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.1)
    return set(found)


async def committed(common: CommonSettings, group: str, topic: str) -> int | None:
    """The group's committed offset of partition 0."""
    consumer = make_consumer(common, group_id=group)
    await asyncio.wait_for(consumer.start(), WAIT_S)
    try:
        offset: int | None = await asyncio.wait_for(consumer.committed(TopicPartition(topic, 0)), WAIT_S)
        return offset
    finally:
        await consumer.stop()


async def eventually(check: Callable[[], Awaitable[bool]] | Callable[[], bool], what: str) -> None:
    """Poll until check() is true, for at most WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while True:
        result = check()
        if await result if asyncio.iscoroutine(result) else result:
            return
        assert time.monotonic() < deadline, f"not within {WAIT_S} s: {what}"
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def running(loop: BatchLoop) -> AsyncIterator[asyncio.Task[None]]:
    """A started loop running in a task; stopped and closed on exit."""
    await asyncio.wait_for(loop.start(), WAIT_S)
    task = asyncio.create_task(loop.run())
    try:
        yield task
    finally:
        loop.stop()
        await asyncio.wait_for(task, WAIT_S)
        await asyncio.wait_for(loop.close(), WAIT_S)


class Upper(BatchHandler):
    """Upper-cases each value to `out`; optionally a state record after the acks, a bad record, a flaky one."""

    def __init__(self, out: str, later: str | None = None) -> None:
        self.out = out
        self.later = later
        self.seen = 0
        self.flaky_failures = 0
        self.stay_flaky = True
        self.rollbacks = 0

    def process(self, record: Any) -> Sequence[Outgoing]:
        self.seen += 1
        if record.value == b"bad":
            raise PermanentError("bad-record", "不合格的记录")
        if record.value == b"flaky" and self.stay_flaky:
            self.flaky_failures += 1
            raise RuntimeError("a passing fault")
        outs = [Outgoing(self.out, record.value.upper(), record.key)]
        if self.later:
            outs.append(Outgoing(self.later, record.value, record.key, after_acks=True))
        return outs

    def rolled_back(self) -> None:
        self.rollbacks += 1


async def test_offsets_are_committed_only_after_every_output_is_acked(broker: Broker, topic_prefix: str) -> None:
    common = settings_for(broker, topic_prefix)
    source, out, later = await plain_topics(common, "in", "out", "later")
    await produce(common, source, [(f"k{i}".encode(), f"v{i}".encode()) for i in range(20)])
    handler = Upper(out, later)
    loop = BatchLoop(common, "test", [source], handler, CollectorRegistry())
    release = asyncio.Event()
    held: list[asyncio.Task[Any]] = []
    async with running(loop):
        assert loop.producer is not None
        send_batch = loop.producer.send_batch

        async def withheld_ack(batch: Any, topic: str, *, partition: int) -> asyncio.Future[Any]:
            sent = await send_batch(batch, topic, partition=partition)
            ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

            async def when_released() -> None:
                await release.wait()
                ack.set_result(await sent)

            held.append(asyncio.create_task(when_released()))
            return ack

        loop.producer.send_batch = withheld_ack  # type: ignore[method-assign]
        await eventually(lambda: handler.seen >= 20, "all 20 records processed")
        await asyncio.sleep(1.0)
        assert await committed(common, loop.group, source) is None  # processed and sent, not acked: no commit
        assert len(await read_topic(common, out, 20)) == 20
        consumer = make_consumer(common, group_id=None)
        await consumer.start()
        try:
            assert (await consumer.end_offsets([TopicPartition(later, 0)]))[TopicPartition(later, 0)] == 0
        finally:
            await consumer.stop()
        release.set()
        await eventually(lambda: committed(common, loop.group, source), "a commit after the acks")
        assert await committed(common, loop.group, source) == 20
    assert sorted(r.value for r in await read_topic(common, later, 20)) == sorted(f"v{i}".encode() for i in range(20))
    await asyncio.gather(*held)


async def test_one_bad_record_is_dead_lettered_and_the_rest_go_through(broker: Broker, topic_prefix: str) -> None:
    common = settings_for(broker, topic_prefix)
    await asyncio.wait_for(create_topics(common), WAIT_S)
    source, out = await plain_topics(common, "in", "out")
    values = [b"a", b"b", b"bad", b"c", b"d"]
    await produce(common, source, [(b"k-" + v, v) for v in values])
    registry = CollectorRegistry()
    loop = BatchLoop(common, "test", [source], Upper(out), registry)
    async with running(loop):
        outputs = await read_topic(common, out, 4)
        (letter_record,) = await read_topic(common, common.topic("events.deadletter"), 1)
        await eventually(lambda: committed(common, loop.group, source), "a commit")
        assert await committed(common, loop.group, source) == 5
    assert sorted(r.value for r in outputs) == [b"A", b"B", b"C", b"D"]
    letter = ReportDeadLettered.model_validate_json(letter_record.value)
    assert (letter.stage, letter.reason, letter.detail) == ("test", "bad-record", "不合格的记录")
    assert (letter.original_topic, letter.original_offset, letter_record.key) == (source, 2, b"k-bad")
    assert registry.get_sample_value("gridhub_test_dead_letters_total", {"reason": "bad-record"}) == 1


async def test_a_passing_fault_commits_nothing_and_the_batch_is_read_again(broker: Broker, topic_prefix: str) -> None:
    common = settings_for(broker, topic_prefix)
    source, out = await plain_topics(common, "in", "out")
    await produce(common, source, [(b"k1", b"a"), (b"k2", b"flaky"), (b"k3", b"b")])
    handler = Upper(out)
    registry = CollectorRegistry()
    loop = BatchLoop(common, "test", [source], handler, registry)
    async with running(loop):
        await eventually(lambda: handler.flaky_failures >= 2, "the fault seen twice (read again after a rollback)")
        assert handler.rollbacks >= 1
        assert await committed(common, loop.group, source) is None
        handler.stay_flaky = False
        await eventually(lambda: committed(common, loop.group, source), "a commit once the fault passed")
        assert await committed(common, loop.group, source) == 3
    # At least once: "A" may have been produced by a rolled-back attempt too.
    assert {r.value for r in await read_topic(common, out, 3)} == {b"A", b"FLAKY", b"B"}
    assert (registry.get_sample_value("gridhub_test_batch_retries_total") or 0) >= 2


def report(order_no: str) -> ReportReceived:
    """A 12345 work order as the adapters publish it."""
    return ReportReceived(
        source=Channel.HOTLINE_12345,
        source_id=order_no,
        proposed_event_id=new_id(),
        received_at="2026-11-20T01:30:00+00:00",
        adapter_version="test",
        payload={
            "order_no": order_no,
            "appeal_type": "投诉",
            "content": "小区停水两天",
            "call_time": "2026-11-20T09:30:00+08:00",
        },
    )


async def test_intake_restores_its_dedupe_state_from_the_report_index(broker: Broker, topic_prefix: str) -> None:
    common = settings_for(broker, topic_prefix)
    await asyncio.wait_for(create_topics(common), WAIT_S)
    raw_topic, events = common.topic("raw.12345"), common.topic("events.normalised")
    first = report(f"R{uuid.uuid4().hex[:10]}")

    async def serve(registry: CollectorRegistry, body: Callable[[Any, str], Awaitable[None]]) -> None:
        service = create_app(IntakeSettings(common=common, port=free_port()), registry)
        stop = asyncio.Event()
        task = asyncio.create_task(service.serve(stop, handle_signals=False))
        try:
            await eventually(service.loop.ready, "intake assigned and restored")
            await body(service, f"http://127.0.0.1:{service.port}")
        finally:
            stop.set()
            await asyncio.wait_for(task, WAIT_S)

    def count(registry: CollectorRegistry, outcome: str) -> float:
        labels = {"channel": "12345", "outcome": outcome}
        return registry.get_sample_value("gridhub_intake_events_total", labels) or 0.0

    before = CollectorRegistry()

    async def accept(service: Any, url: str) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            assert (await client.get("/readyz")).status_code == 200
            await produce(common, raw_topic, [(first.dedupe_key.encode(), first.to_bytes())])
            await eventually(lambda: count(before, "normalised") == 1, "the report normalised")
            assert "gridhub_intake_events_total" in (await client.get("/metrics")).text

    await serve(before, accept)
    (indexed,) = await read_topic(common, common.topic("reports.index"), 1)
    entry = ReportIndexed.model_validate_json(indexed.value)
    assert (entry.dedupe_key, entry.event_id) == (first.dedupe_key, first.proposed_event_id)

    after = CollectorRegistry()
    retry = report(first.source_id)  # the same work order again, as a new envelope

    async def reject(service: Any, url: str) -> None:
        await produce(common, raw_topic, [(retry.dedupe_key.encode(), retry.to_bytes())])
        await eventually(lambda: count(after, "duplicate") == 1, "the repeat counted as a duplicate")

    await serve(after, reject)
    assert count(after, "normalised") == 0
    assert [r.key for r in await read_topic(common, events, 1)] == [first.proposed_event_id.encode()]


async def test_dedupe_state_follows_partitions_to_a_second_worker(broker: Broker, topic_prefix: str) -> None:
    common = settings_for(broker, topic_prefix)
    await asyncio.wait_for(create_topics(common), WAIT_S)
    raw_topic = common.topic("raw.12345")
    reports = [report(f"J{uuid.uuid4().hex[:10]}") for _ in range(12)]
    registries = [CollectorRegistry(), CollectorRegistry()]
    services = [create_app(IntakeSettings(common=common, port=free_port()), r) for r in registries]
    stops = [asyncio.Event(), asyncio.Event()]
    tasks = [asyncio.create_task(services[0].serve(stops[0], handle_signals=False))]

    def count(registry: CollectorRegistry, outcome: str) -> float:
        labels = {"channel": "12345", "outcome": outcome}
        return registry.get_sample_value("gridhub_intake_events_total", labels) or 0.0

    def total(outcome: str) -> float:
        return sum(count(r, outcome) for r in registries)

    try:
        await eventually(services[0].loop.ready, "the first worker ready")
        await produce(common, raw_topic, [(r.dedupe_key.encode(), r.to_bytes()) for r in reports])
        await eventually(lambda: total("normalised") == len(reports), "every report normalised by the first worker")
        tasks.append(asyncio.create_task(services[1].serve(stops[1], handle_signals=False)))
        await eventually(
            lambda: all(s.loop.ready() for s in services) and all(s.loop.consumer.assignment() for s in services),
            "both workers assigned and restored",
        )
        repeats = [report(r.source_id) for r in reports]
        await produce(common, raw_topic, [(r.dedupe_key.encode(), r.to_bytes()) for r in repeats])
        await eventually(lambda: total("duplicate") == len(reports), "every repeat caught, whichever worker owns it")
        assert total("normalised") == len(reports)
        # The second worker caught some of them: it restored the partitions it took over.
        assert count(registries[1], "duplicate") > 0
    finally:
        for stop in stops:
            stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), WAIT_S)
