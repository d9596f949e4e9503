"""Follows a topic into a service's local state: every partition, from the start, no consumer group.

One follower per topic (TopicFollower) with the function that applies a batch of its records; it is `ready` once it
has read what the topic held when it started (or once `ready_timeout_s` passed: a follower must not hold a service's
readiness forever). The adapters follow reports.index and tasks.dispatched with it, the router config.dutylist.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from prometheus_client import Gauge

from gridhub.kernel.kafka import make_consumer
from gridhub.kernel.settings import CommonSettings

log = logging.getLogger(__name__)
Records = list[ConsumerRecord[bytes, bytes]]
ApplyRecords = Callable[[Records], None]
# Longest one metadata request of the topic lookup may take before it is tried again.
METADATA_TIMEOUT_S = 10.0


async def topic_partitions(common: CommonSettings, topic: str) -> list[TopicPartition] | None:
    """The partitions of a (prefixed) topic, or None when it does not exist (never auto-creates it)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=common.kafka_bootstrap)
    try:
        await asyncio.wait_for(admin.start(), METADATA_TIMEOUT_S)
        # All topics: a metadata request naming a missing topic may auto-create it without compaction.
        for found in await asyncio.wait_for(admin.describe_topics(None), METADATA_TIMEOUT_S):
            if found["topic"] == topic and not found["error_code"]:
                return [TopicPartition(topic, p["partition"]) for p in found["partitions"]]
        return None
    finally:
        await admin.close()


async def _position(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int:
    # position() waits for the beginning offset after a seek: bounded, a timeout restarts the follow.
    return int(await asyncio.wait_for(consumer.position(tp), METADATA_TIMEOUT_S))


class TopicFollower:
    """Reads one topic into local state with `apply`; `ready` once it has read what the topic held when it started."""

    def __init__(
        self,
        common: CommonSettings,
        topic: str,
        apply: ApplyRecords,
        lag: Gauge,
        *,
        ready_timeout_s: float,
        size: Callable[[], int],
    ) -> None:
        self.common = common
        self.topic = common.topic(topic)
        self.apply = apply
        self.lag = lag
        self.ready_timeout_s = ready_timeout_s
        self.size = size
        self.ready = False
        self._ready = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = 0.0

    async def start(self) -> None:
        """Start the consumer and the background loop; returns at once (readiness tells when caught up)."""
        self._started = time.monotonic()
        self._consumer = make_consumer(
            self.common, group_id=None, fetch_max_wait_ms=self.common.kafka_fetch_max_wait_ms
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._follow(self._consumer), name=f"follower-{self.topic}")

    async def stop(self) -> None:
        """Stop the loop and the consumer (the state belongs to the caller)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    async def wait_ready(self, timeout_s: float) -> bool:
        """Wait until ready, at most timeout_s; whether it is."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        return self.ready

    def _mark_ready(self, why: str) -> None:
        self.ready = True
        self._ready.set()
        waited = time.monotonic() - self._started
        log.info("%s follower ready: %s", self.topic, why, extra={"keys": self.size(), "waited_s": round(waited, 3)})

    def _deadline_passed(self) -> bool:
        return time.monotonic() - self._started > self.ready_timeout_s

    async def _partitions(self) -> list[TopicPartition]:
        """The topic's partitions, waiting (and retrying) until it exists."""
        warned = False
        while True:
            try:
                partitions = await topic_partitions(self.common, self.topic)
            except (KafkaError, TimeoutError) as exc:
                log.warning("cannot read topic metadata", extra={"error": repr(exc)})
                partitions = None
            if partitions is not None:
                return partitions
            if not warned:
                log.warning("waiting for topic %s (gridhub topics create)", self.topic)
                warned = True
            if not self.ready and self._deadline_passed():
                # The caller's state stays as it was (empty, or the service's default): serving is its choice.
                self._mark_ready(f"topic {self.topic} missing after {self.ready_timeout_s:g} s")
            await asyncio.sleep(1.0)

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        """Run the loop; after an unexpected failure, read the topic again from the start (applying is idempotent)."""
        while True:
            try:
                await self._run(consumer)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s follower failed; restarting in 5 s", self.topic)
                await asyncio.sleep(5.0)

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        partitions = await self._partitions()
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        targets: dict[TopicPartition, int] = await asyncio.wait_for(
            consumer.end_offsets(partitions), METADATA_TIMEOUT_S
        )
        log.info("following %s", self.topic, extra={"records_at_start": sum(targets.values())})
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=500, max_records=1000)
            except KafkaError as exc:
                log.warning("%s fetch failed; retrying", self.topic, extra={"error": repr(exc)})
                await asyncio.sleep(1.0)
                continue
            for records in batches.values():
                self.apply(records)
            lag = 0
            for tp in partitions:
                high = consumer.highwater(tp)
                if high is not None:
                    lag += max(0, high - await _position(consumer, tp))
            self.lag.set(lag)
            if not self.ready:
                if all([await _position(consumer, tp) >= end for tp, end in targets.items()]):
                    self._mark_ready("caught up with the end offsets seen at start")
                elif self._deadline_passed():
                    # An end offset a fetch never reaches (Tansu's may disagree) must not hold readiness forever.
                    self._mark_ready(f"not caught up after {self.ready_timeout_s:g} s, serving (still filling)")


async def read_window(
    common: CommonSettings,
    topic: str,
    apply: Callable[[ConsumerRecord[bytes, bytes]], None],
    *,
    since_ms: int | None = None,
    last: int | None = None,
    timeout_s: float = 120.0,
) -> int | None:
    """Read the recent part of a (prefixed) topic group-less, to the end offsets seen when called; apply() each record.

    `since_ms`: the records written at or after that time (epoch ms; the start found with offsets_for_times, and
    each record's timestamp checked too: Tansu answers offsets_for_times by whole batches, and with offset 0 when
    nothing is that recent). `last`: the last N records of each partition. Neither: everything. Returns how many
    were applied, None when the topic is missing (never auto-created by this read).
    """
    partitions = await topic_partitions(common, topic)
    if partitions is None:
        return None
    consumer = make_consumer(common, group_id=None, fetch_max_wait_ms=common.kafka_fetch_max_wait_ms)
    await asyncio.wait_for(consumer.start(), METADATA_TIMEOUT_S)
    try:
        consumer.assign(partitions)
        async with asyncio.timeout(timeout_s):
            ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
            starts: dict[TopicPartition, int] = await consumer.beginning_offsets(partitions)
            if last is not None:
                starts = {tp: max(begin, ends[tp] - last) for tp, begin in starts.items()}
            elif since_ms is not None:
                found = await consumer.offsets_for_times({tp: since_ms for tp in partitions})
                for tp in partitions:
                    at = found.get(tp)  # None: nothing written since
                    starts[tp] = max(starts[tp], at.offset if at is not None else ends[tp])
            pending = {tp for tp in partitions if starts[tp] < ends[tp]}
            for tp in pending:
                consumer.seek(tp, starts[tp])
            count = 0
            while pending:
                batch = await consumer.getmany(*pending, timeout_ms=200, max_records=5000)
                for records in batch.values():
                    for record in records:
                        # Not cut at the end offsets: Tansu's may lag behind a batch of several records (its end
                        # offset then falls inside the batch). A record written since is one more, never a harm.
                        if since_ms is None or record.timestamp >= since_ms:
                            apply(record)
                            count += 1
                for tp in list(pending):
                    if await consumer.position(tp) >= ends[tp]:
                        pending.discard(tp)
            return count
    finally:
        await consumer.stop()
