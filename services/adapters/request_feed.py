"""Follows reports.index, tasks.dispatched and tasks.status into the Open311 read model (request_view.py).

No consumer group: every adapters replica reads every partition from the beginning. The topics are replayed
one after the other (index, then tasks, then statuses, each to the end it had when its turn came), so a task
finds its request's index record already there and the view's waiting buffers stay small; then all three are
followed live. A failure is logged and the whole follow restarts after a pause (applying a record twice
changes nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from gridhub.kernel.kafka import decode, make_consumer
from gridhub.kernel.settings import CommonSettings
from schemas import Channel, ReportIndexed, TaskDispatched, TaskStatusChanged, topic_spec
from services.adapters.request_view import RequestView

log = logging.getLogger(__name__)

TOPICS = ("reports.index", "tasks.dispatched", "tasks.status")
# A request older than tasks.dispatched keeps its tasks would replay as 受理 for ever: it is dropped instead.
KEEP_FOR = timedelta(milliseconds=topic_spec("tasks.dispatched").retention_ms)
PRUNE_EVERY_S = 3600.0


def apply_record(view: RequestView, topic: str, key: bytes | None, value: bytes | None) -> None:
    """Apply one record of one of TOPICS (unprefixed name) to the view; a malformed one is logged and skipped."""
    try:
        if topic == "reports.index":
            if value is not None:
                view.indexed(decode(ReportIndexed, value))
            elif key is not None and key.startswith(f"{Channel.HOTLINE_12345.value}:".encode()):
                view.forget(key.decode(errors="replace").split(":", 1)[1])  # tombstone
        elif value is None:
            return
        elif topic == "tasks.dispatched":
            view.dispatched(decode(TaskDispatched, value))
        elif topic == "tasks.status":
            view.status_changed(decode(TaskStatusChanged, value))
    except ValidationError as exc:
        log.warning("open311 view skipped a malformed record", extra={"topic": topic, "error": str(exc)[:500]})


class RequestFeed:
    """The background consumer that keeps a RequestView current."""

    def __init__(
        self,
        common: CommonSettings,
        view: RequestView,
        *,
        retry_s: float = 5.0,
    ) -> None:
        self.common = common
        self.view = view
        self.retry_s = retry_s
        self._names = {common.topic(name): name for name in TOPICS}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start following in the background."""
        self.view.catching_up = True
        self._task = asyncio.create_task(self._run(), name="open311-request-feed")

    async def stop(self) -> None:
        """Stop following."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a broker outage or a missing topic: log, wait, replay
                log.error("open311 view feed failed (%r); replaying in %s s", exc, self.retry_s, exc_info=exc)
                await asyncio.sleep(self.retry_s)

    async def _follow(self) -> None:
        consumer = make_consumer(self.common, group_id=None, fetch_max_wait_ms=self.common.kafka_fetch_max_wait_ms)
        await consumer.start()
        try:
            self.view.catching_up = True
            self.view.forget_before(datetime.now(UTC) - KEEP_FOR)
            await consumer.topics()  # refreshes metadata, so every partition is known
            # All looked up before the first assign(): metadata then narrows to the assigned topics.
            phases = [await self._partitions(consumer, name) for name in TOPICS]
            assigned: list[TopicPartition] = []
            for new in phases:
                positions = {tp: await consumer.position(tp) for tp in assigned}
                consumer.assign(assigned + new)
                for tp, offset in positions.items():
                    consumer.seek(tp, offset)
                await consumer.seek_to_beginning(*new)
                ends = await consumer.end_offsets(new)
                assigned += new
                while not await _reached(consumer, ends):
                    await self._poll(consumer)
            self.view.catching_up = False
            log.info("open311 view caught up", extra={"requests": len(self.view), "pending": self.view.pending})
            pruned = time.monotonic()
            while True:
                await self._poll(consumer)
                if time.monotonic() - pruned > PRUNE_EVERY_S:
                    self.view.forget_before(datetime.now(UTC) - KEEP_FOR)
                    pruned = time.monotonic()
        finally:
            await consumer.stop()

    async def _partitions(self, consumer: AIOKafkaConsumer, name: str) -> list[TopicPartition]:
        topic = self.common.topic(name)
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise LookupError(f"topic {topic} does not exist (gridhub topics create)")
        return [TopicPartition(topic, p) for p in sorted(partitions)]

    async def _poll(self, consumer: AIOKafkaConsumer) -> None:
        batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
        for tp, records in batches.items():
            name = self._names[tp.topic]
            for record in records:
                apply_record(self.view, name, record.key, record.value)


async def _reached(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True
