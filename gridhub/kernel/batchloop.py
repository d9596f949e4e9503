"""A consumer-group worker on plain aiokafka: read a batch, let a handler turn each record into outputs, produce
them without awaiting each ack, and commit the batch's offsets once every output is acked (at-least-once).

Batches are pipelined: while batch N's outputs travel and its offsets commit (in a committer task, in order), batch
N+1 is processed. A PermanentError from the handler dead-letters that record only; any other exception rolls back
every batch not yet committed, seeks back to the first uncommitted offsets, and reads them again after a pause.
Newly assigned partitions stay paused until the handler has restored their state (outside the rebalance callback,
so heartbeats go on during a long restore).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import IllegalStateError
from prometheus_client import CollectorRegistry

from gridhub.kernel.batchout import KafkaDeadLetters, Outgoing, OutputWriter, settle
from gridhub.kernel.errors import PermanentError
from gridhub.kernel.health import CONTACT_WINDOW_S, Contact
from gridhub.kernel.kafka import make_consumer, make_producer
from gridhub.kernel.metrics import ConsumerMetrics, ServiceMetrics, catalogue_name
from gridhub.kernel.settings import CommonSettings

log = logging.getLogger(__name__)

Batch = Mapping[TopicPartition, Sequence[Any]]


class BatchHandler:
    """What a service plugs into a BatchLoop: process() is required; the other hooks keep its state in step."""

    async def restore(self, partitions: frozenset[TopicPartition]) -> None:
        """Load the state of newly assigned partitions; none of their records is processed before it returns."""

    def revoked(self, partitions: frozenset[TopicPartition]) -> None:
        """Drop the state of partitions this worker no longer owns (their batches are committed or rolled back)."""

    def process(self, record: Any) -> Sequence[Outgoing]:
        """The outputs of one record; PermanentError dead-letters it, any other exception retries its batch."""
        raise NotImplementedError

    def sealed(self) -> None:
        """Every record of the current batch was processed; it now commits or rolls back as one."""

    def committed(self) -> None:
        """The oldest sealed batch is committed."""

    def rolled_back(self) -> None:
        """Every batch not committed (sealed or not) is discarded; its records will be processed again."""


@dataclass
class Flight:
    """One batch between processing and commit."""

    first: dict[TopicPartition, int]
    commit: dict[TopicPartition, int]
    sending: asyncio.Task[list[asyncio.Future[Any]]] | None = None  # hands the outputs over; returns their acks
    later: list[Outgoing] = field(default_factory=list)
    submitted: bool = False
    sealed_at: float = 0.0  # monotonic time the handler finished the batch (for the commit latency histogram)


def flight_of(batch: Batch) -> Flight:
    """A Flight for a fetched batch: where to seek back to, and the offsets to commit (next to read)."""
    nonempty = {tp: records for tp, records in batch.items() if records}
    return Flight(
        first={tp: records[0].offset for tp, records in nonempty.items()},
        commit={tp: records[-1].offset + 1 for tp, records in nonempty.items()},
    )


def rewind_points(flights: Iterable[Flight]) -> dict[TopicPartition, int]:
    """Per partition, the first offset no flight has committed: where to read again after a rollback."""
    points: dict[TopicPartition, int] = {}
    for flight in flights:
        for tp, offset in flight.first.items():
            points[tp] = min(offset, points.get(tp, offset))
    return points


async def read_range(
    common: CommonSettings,
    starts: Mapping[TopicPartition, int | None],
    apply: Callable[[Any], None],
    *,
    until: Mapping[TopicPartition, int] | None = None,
    timeout_s: float = 600.0,
) -> dict[TopicPartition, int]:
    """Read partitions from `starts` (None: the beginning) up to `until` (exclusive), or else at least to the end
    offsets seen when called; apply() each record; return where each stopped (the offset after the last one
    applied, or the end offset)."""
    partitions = list(starts)
    if not partitions:
        return {}
    consumer = make_consumer(common, group_id=None, fetch_max_wait_ms=common.kafka_fetch_max_wait_ms)
    await consumer.start()
    try:
        consumer.assign(partitions)
        ends: dict[TopicPartition, int] = dict(until) if until is not None else await consumer.end_offsets(partitions)
        for tp in partitions:
            start = starts[tp]
            if start is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, start)
        pending = set(partitions)
        reached = {tp: max(ends[tp], int(starts[tp] or 0)) if until is None else ends[tp] for tp in partitions}
        async with asyncio.timeout(timeout_s):
            while True:
                for tp in list(pending):
                    if await consumer.position(tp) >= ends[tp]:
                        pending.discard(tp)
                if not pending:
                    break
                batch = await consumer.getmany(*pending, timeout_ms=200, max_records=5000)
                for tp, records in batch.items():
                    for record in records:
                        # Cut at `until` only: Tansu's end offsets may lag behind a batch of several records (the
                        # end offset then falls inside the batch), so what lies past them is read too.
                        if until is None or record.offset < ends[tp]:
                            apply(record)
                            reached[tp] = max(reached[tp], record.offset + 1)
        return reached
    finally:
        await consumer.stop()


async def read_to_end(
    common: CommonSettings, partitions: Sequence[TopicPartition], apply: Callable[[Any], None], timeout_s: float = 120.0
) -> int:
    """Read partitions from their beginning to the end offsets seen when called; apply() each record; return how many.

    Stopping at the end offsets seen at the start, not "when a fetch comes back empty": Tansu answers a fetch late
    and its end offsets may lag, so an empty fetch proves nothing.
    """
    count = 0

    def counted(record: Any) -> None:
        nonlocal count
        apply(record)
        count += 1

    await read_range(common, dict.fromkeys(partitions), counted, timeout_s=timeout_s)
    return count


def backoff_s(attempt: int, base_s: float = 0.5, cap_s: float = 30.0) -> float:
    """Pause before retry `attempt` (1, 2, ...): doubling from base_s, capped."""
    return float(min(cap_s, base_s * 2 ** max(0, attempt - 1)))


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, loop: BatchLoop) -> None:
        self.loop = loop

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.loop._on_revoked(frozenset(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.loop._on_assigned(frozenset(assigned))


class BatchLoop:
    """Consumes `topics` in the service's consumer group and runs `handler` on every record, batch by batch."""

    def __init__(
        self,
        common: CommonSettings,
        service: str,
        topics: Sequence[str],
        handler: BatchHandler,
        registry: CollectorRegistry,
        *,
        group: str | None = None,
        dead_letters: KafkaDeadLetters | None = None,
        max_in_flight: int = 8,
        yield_every: int = 50,
        lag_every_s: float = 5.0,
    ) -> None:
        self.common = common
        self.service = service
        self.topics = list(topics)
        self.handler = handler
        self.group = group or common.group(service)
        self.max_in_flight = max_in_flight
        self.yield_every = yield_every
        self.dead_letters = dead_letters or KafkaDeadLetters(common, service, registry)
        self.retries = ServiceMetrics(service, registry).counter(
            "batch_retries", "Batches rolled back after a passing fault, to be read again."
        )
        self.lag_every_s = lag_every_s
        self.metrics = ConsumerMetrics(
            service, registry, self.group, {t: catalogue_name(t, common.topic_prefix) for t in self.topics}
        )
        self._lag_task: asyncio.Task[None] | None = None
        # When the broker last answered this member: an assignment, a commit, the lag's end offsets.
        self.contact = Contact(max(CONTACT_WINDOW_S, 3 * lag_every_s))
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self._queue: deque[Flight] = deque()
        self._cond = asyncio.Condition()
        self._lock = asyncio.Lock()  # held while a batch is processed, so a revocation waits for whole batches
        self._failure: BaseException | None = None
        self._failures = 0
        self._to_restore: set[TopicPartition] = set()
        self._generation = 0
        self._stopping = asyncio.Event()
        self._committer: asyncio.Task[None] | None = None
        self._committing: Flight | None = None

    def ready(self) -> bool:
        """True when connected to the broker, partitions are assigned and restored, and no stop was asked for."""
        return bool(
            self.consumer is not None
            and self.consumer.assignment()
            and not self._to_restore
            and not self._stopping.is_set()
            and self.connected()
        )

    def connected(self) -> bool:
        """True when the broker answered this member lately: an assignment, a commit or the lag's end offsets."""
        return self.contact.recent()

    async def start(self) -> None:
        """Connect the producer and the consumer and join the group (partitions arrive through the listener)."""
        self.producer = make_producer(self.common)
        await self.producer.start()
        self.consumer = make_consumer(
            self.common,
            group_id=self.group,
            enable_auto_commit=False,
            fetch_max_wait_ms=self.common.kafka_fetch_max_wait_ms,
            # Range gives one member the same partition numbers of every topic: co-partitioned state stays local.
            partition_assignment_strategy=(RangePartitionAssignor,),
        )
        await self.consumer.start()
        self.consumer.subscribe(self.topics, listener=_Listener(self))
        self._writer = OutputWriter(self.producer)
        self._late_writer = OutputWriter(self.producer)
        self._committer = asyncio.create_task(self._commit_loop(), name=f"{self.service}-committer")
        self._lag_task = asyncio.create_task(self._lag_loop(), name=f"{self.service}-lag")

    def stop(self) -> None:
        """Ask run() to return after the batch in hand."""
        self._stopping.set()

    async def run(self) -> None:
        """Read, process and commit until stop(); a fatal consumer error (getmany raising) propagates."""
        assert self.consumer is not None
        while not self._stopping.is_set():
            if self._committer is not None and self._committer.done():
                self._committer.result()  # raise what killed it
            if self._failure is not None:
                await self._recover()
            elif self._to_restore:
                await self._restore()
            else:
                batch = await self.consumer.getmany(
                    timeout_ms=self.common.kafka_batch_timeout_ms, max_records=self.common.kafka_batch_max_records
                )
                if batch:
                    await self._submit(batch)
                    async with self._cond:
                        await self._cond.wait_for(
                            lambda: len(self._queue) < self.max_in_flight or self._failure is not None
                        )

    async def close(self, timeout_s: float = 30.0) -> None:
        """Commit what is in flight, leave the group and stop the clients."""
        try:
            if self._queue and not self._queue[-1].submitted:
                self._fail(RuntimeError("stopped in the middle of a batch"))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained(), timeout_s)
            if self._queue:
                await asyncio.wait_for(self._discard_in_flight(), timeout_s)
        finally:
            if self._lag_task is not None:
                self._lag_task.cancel()
                await asyncio.gather(self._lag_task, return_exceptions=True)
            if self._committer is not None:
                self._committer.cancel()
                await asyncio.gather(self._committer, return_exceptions=True)
            if self.consumer is not None:
                await self.consumer.stop()
            if self.producer is not None:
                await self.producer.stop()

    async def _submit(self, batch: Batch) -> None:
        async with self._lock:
            started = time.monotonic()
            flight = flight_of(batch)
            # Queued before processing, so a failure half-way rolls this batch back with the others.
            self._queue.append(flight)
            try:
                # Looked up once per batch, not once per record and output (this loop runs for every record).
                writer, later, process = self._writer, flight.later, self.handler.process
                add, knows, dead_letters = writer.add, writer.knows, self.dead_letters
                done = 0
                for tp, records in batch.items():
                    self.metrics.counted(tp.topic, len(records))
                    for record in records:
                        try:
                            outputs = process(record)
                        except PermanentError as exc:
                            outputs = (dead_letters.of(record, exc.reason, exc.detail),)
                        for out in outputs:
                            if out.after_acks:
                                later.append(out)
                            else:
                                if out.partition is None and not knows(out.topic):
                                    await writer.learn(out.topic)
                                add(out)
                        done += 1
                        if done % self.yield_every == 0:
                            # Let the producer send and the committer go on meanwhile: committing a batch takes
                            # three round trips (acks, index acks, commit), each needing the loop for a moment.
                            await asyncio.sleep(0)
                flight.sending = self._writer.flush()
                self.handler.sealed()
                flight.sealed_at = time.monotonic()
                self.metrics.batch_processing.observe(flight.sealed_at - started)
                flight.submitted = True
            except Exception as exc:
                self._fail(exc)
            async with self._cond:
                self._cond.notify_all()

    @staticmethod
    async def _add(writer: OutputWriter, out: Outgoing) -> None:
        if out.partition is None and not writer.knows(out.topic):
            await writer.learn(out.topic)
        writer.add(out)

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc

    async def _commit_loop(self) -> None:
        assert self.consumer is not None
        while True:
            async with self._cond:
                await self._cond.wait_for(self._head_ready)
                flight = self._committing = self._queue[0]
            try:
                assert flight.sending is not None
                for ack in await flight.sending:
                    await ack
                if flight.later:
                    for out in flight.later:
                        await self._add(self._late_writer, out)
                    for ack in await self._late_writer.flush():
                        await ack
                await self.consumer.commit(flight.commit)
            except Exception as exc:
                self._fail(exc)
            else:
                self._queue.popleft()
                self.handler.committed()
                self._failures = 0
                self.contact.seen()
                self.metrics.batch_commit.observe(time.monotonic() - flight.sealed_at)
            async with self._cond:
                self._committing = None
                self._cond.notify_all()

    def _head_ready(self) -> bool:
        return self._failure is None and bool(self._queue) and self._queue[0].submitted

    async def _drained(self) -> None:
        """Wait until every queued batch is committed, or one failed."""
        async with self._cond:
            await self._cond.wait_for(lambda: not self._queue or self._failure is not None)

    async def _discard_in_flight(self) -> dict[TopicPartition, int]:
        """Roll back every uncommitted batch; return where to read again."""
        async with self._cond:
            # A commit under way finishes first: its batch is then committed, not rolled back.
            await self._cond.wait_for(lambda: self._committing is None)
        flights = list(self._queue)
        self._queue.clear()
        await settle([flight.sending for flight in flights if flight.sending is not None])
        self._writer.discard()
        self._late_writer.discard()
        self.handler.rolled_back()
        return rewind_points(flights)

    async def _recover(self) -> None:
        assert self.consumer is not None
        async with self._lock:
            exc, self._failure = self._failure, None
            rewind = await self._discard_in_flight()
            assigned = self.consumer.assignment()
            for tp, offset in rewind.items():
                if tp in assigned:
                    self.consumer.seek(tp, offset)
            self._failures += 1
            self.retries.inc()
        pause = backoff_s(self._failures)
        log.error("batch failed; rolled back, reading it again in %.1f s", pause, exc_info=exc)
        await self._pause(pause)

    async def _pause(self, seconds: float) -> None:
        """Sleep, but no longer than until stop()."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _restore(self) -> None:
        assert self.consumer is not None
        partitions, generation = frozenset(self._to_restore), self._generation
        try:
            await self.handler.restore(partitions)
        except Exception:
            self._failures += 1
            pause = backoff_s(self._failures)
            log.exception("restoring partition state failed; trying again in %.1f s", pause)
            await self._pause(pause)
            return
        if generation != self._generation:
            # Reassigned meanwhile: drop what this restore loaded; the new assignment queued its own restore.
            self.handler.revoked(partitions)
            return
        self._to_restore -= partitions
        self.consumer.resume(*partitions)
        log.info("partitions restored", extra={"partitions": len(partitions)})

    async def _lag_loop(self) -> None:
        """Measure the consumer lag every lag_every_s, from the start; a failed measurement is logged, not fatal."""
        while True:
            try:
                await asyncio.wait_for(self.measure_lag(), max(1.0, self.lag_every_s))
            except Exception as exc:  # a slow or unreachable broker: the gauge keeps its last value
                log.debug("measuring consumer lag failed: %r", exc)
            await asyncio.sleep(self.lag_every_s)

    async def measure_lag(self) -> None:
        """Set the lag gauges: per topic, the end offsets minus this member's positions over its partitions."""
        assert self.consumer is not None
        assigned = sorted(self.consumer.assignment())
        self.metrics.set_assigned(len(assigned))
        ends: dict[TopicPartition, int] = {}
        if assigned:
            ends = await self.consumer.end_offsets(assigned)
            self.contact.seen()
        positions = dict(await asyncio.gather(*(self._position(tp) for tp in assigned)))
        self.metrics.set_lag(ends, {tp: offset for tp, offset in positions.items() if offset is not None})

    async def _position(self, tp: TopicPartition) -> tuple[TopicPartition, int | None]:
        """A partition's position, or None when it has none yet (just assigned, being reset): not waited for."""
        assert self.consumer is not None
        with contextlib.suppress(TimeoutError, IllegalStateError):
            return tp, int(await asyncio.wait_for(self.consumer.position(tp), 0.2))
        return tp, None

    def _on_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        assert self.consumer is not None
        self._generation += 1
        self.contact.seen()
        self.metrics.set_assigned(len(self.consumer.assignment()))
        if assigned:
            self.consumer.pause(*assigned)
            self._to_restore |= assigned

    async def _on_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        async with self._lock:
            await self._drained()
            if self._failure is not None:
                # The next owner starts from the committed offsets; nothing to seek.
                self._failure = None
                await self._discard_in_flight()
            self._generation += 1
            self._to_restore -= revoked
            self.handler.revoked(revoked)
