"""Delivery records on their topics: collected as attempts finish, handed to the producer in rounds.

A record per attempt went out through its own `producer.send` task before: a task, a future and a partitioner call
per attempt. Here the engine's recorder hands what collected since its last round (every `record_every_ms`) to the
kernel's `OutputWriter` (per-partition batches built directly, Kafka's partitioner on the key), in order. The
records are not what makes a delivery durable (the outbox is), so a failed send is logged, not retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from gridhub.kernel.batchout import Outgoing, OutputWriter

log = logging.getLogger(__name__)


class ResultsProducer:
    """Records (topic, value, key, partition hint) waiting for the producer, and the task handing over the last round.

    `co_partitioned_with`: the input topic the records' keys were read from (keyed alike). A record given the
    partition its key was read from goes to that partition when its topic has as many partitions as the input: the
    one Kafka's partitioner would pick for the key, without hashing it again (murmur2 in Python, 2 % of a delivery).
    """

    def __init__(self, producer: Callable[[], Any], co_partitioned_with: str | None = None) -> None:
        self.producer = producer
        self.co_partitioned_with = co_partitioned_with
        self._waiting: list[tuple[str, bytes, bytes, int | None]] = []
        self._last: asyncio.Task[None] | None = None
        self._writer: OutputWriter | None = None

    def add(self, topic: str, value: bytes, key: bytes, read_from: int | None = None) -> None:
        """A record for the next round; `read_from`: the partition of the input its key was read from."""
        self._waiting.append((topic, value, key, read_from))

    def hand_over(self) -> None:
        """Hand the records collected since the last round to the producer, after that round's, in one task."""
        if not self._waiting:
            return
        producer = self.producer()
        if producer is None:  # not connected (tests without a broker): nothing to produce to
            self._waiting.clear()
            return
        records, self._waiting = self._waiting, []
        self._last = asyncio.ensure_future(self._send(producer, self._last, records))

    async def drain(self, timeout_s: float) -> None:
        """Hand over what is waiting and wait (at most timeout_s) until every round is with the producer."""
        self.hand_over()
        if self._last is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._last), timeout_s)

    async def _send(
        self, producer: Any, previous: asyncio.Task[None] | None, records: list[tuple[str, bytes, bytes, int | None]]
    ) -> None:
        if previous is not None:
            await asyncio.wait([previous])  # in the order they were made
        if self._writer is None or self._writer.producer is not producer:
            self._writer = OutputWriter(producer)
        writer = self._writer
        try:
            inputs = 0
            if self.co_partitioned_with is not None:
                if not writer.knows(self.co_partitioned_with):
                    await writer.learn(self.co_partitioned_with)
                inputs = writer.partition_count(self.co_partitioned_with)
            for topic, value, key, read_from in records:
                if not writer.knows(topic):
                    await writer.learn(topic)
                same = read_from is not None and writer.partition_count(topic) == inputs
                writer.add(Outgoing(topic, value, key, read_from if same else None))
            acks = await writer.flush()
        except Exception as exc:
            writer.discard()
            log.warning("could not produce delivery records", extra={"error": repr(exc), "records": len(records)})
            return
        for ack in acks:
            ack.add_done_callback(_log_failure)


def _log_failure(future: asyncio.Future[Any]) -> None:
    if future.cancelled():
        return
    exc = future.exception()
    if exc is not None:
        log.warning("could not produce delivery records", extra={"error": repr(exc)})
