"""Intake's Kafka wiring: raw topics in; events, self-resolved records, supplements, the report index and dead
letters out, on the kernel's batch loop (plain aiokafka)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from gridhub.kernel.batchloop import BatchHandler, read_to_end
from gridhub.kernel.batchout import KafkaDeadLetters, Outgoing
from gridhub.kernel.batchserve import BatchService, batch_service
from gridhub.kernel.errors import PermanentError
from gridhub.kernel.metrics import ServiceMetrics
from gridhub.kernel.settings import CommonSettings
from schemas import Channel, new_id
from schemas.catalogue import RAW_TOPICS
from schemas.index import IndexOutcome
from services.intake.channels import DIRECT, Direct, process
from services.intake.channels.common import event_bytes
from services.intake.dedupe import DedupeIndex, index_bytes, index_entry, index_record_bytes, json_time, route
from services.intake.envelope import read_report
from services.intake.settings import IntakeSettings

SERVICE = "intake"
INDEX_TOPIC = "reports.index"
OUTCOME_TOPICS = ("events.normalised", "events.self-resolved", "events.supplements")
CHANNEL_LABELS = {channel: channel.value for channel in Channel}
# One report in TIMED_EVERY is timed for the processing histogram: a report takes ~50 µs, and timing and observing
# each one cost a few percent of that.
TIMED_EVERY = 16
EVENT_OUTCOME = IndexOutcome.EVENT.value
log = logging.getLogger(__name__)


class IntakeMetrics:
    """Intake's counters and latency histogram."""

    def __init__(self, registry: CollectorRegistry) -> None:
        m = ServiceMetrics(SERVICE, registry)
        self.events = m.counter("events", "Raw reports processed, by channel and outcome.", ("channel", "outcome"))
        self.processing = m.histogram(
            "processing", f"Time to normalise one report (one accepted report in {TIMED_EVERY} is timed)."
        )
        self.index_keys = m.gauge("index", "keys", "Reports in the dedupe state of the partitions this worker owns.")
        self._pending: dict[tuple[str, str], int] = {}

    def count(self, channel: str, outcome: str) -> None:
        """Count one report (added to the counter at the end of its batch: one locked update per label)."""
        key = (channel, outcome)
        self._pending[key] = self._pending.get(key, 0) + 1

    def flush(self) -> None:
        """Add the counts of the batch to the counters."""
        pending, self._pending = self._pending, {}
        for (channel, outcome), n in pending.items():
            self.events.labels(channel, outcome).inc(n)


class IntakeHandler(BatchHandler):
    """Validate, dedupe on source + source id (state: reports.index), normalise, dead-letter the invalid."""

    def __init__(
        self, common: CommonSettings, metrics: IntakeMetrics, dead_letters: KafkaDeadLetters, *, direct: bool = True
    ) -> None:
        self.common = common
        self.metrics = metrics
        self.dead_letters = dead_letters
        self.index = DedupeIndex()
        self.index_topic = common.topic(INDEX_TOPIC)
        self.channel_of_topic = {common.topic(RAW_TOPICS[c]): c for c in Channel}
        self.topic = {name: common.topic(name) for name in OUTCOME_TOPICS}
        # The one-pass path of each raw topic's channel (see channels.Direct); direct=False keeps every report on
        # the full path (tests compare the two).
        self.direct_of_topic = {t: DIRECT[c] for t, c in self.channel_of_topic.items() if c in DIRECT and direct}
        self._events_topic = self.topic["events.normalised"]
        self._reports = 0
        self._started: float | None = None
        self._assigned: set[TopicPartition] = set()
        self._now_ms = -1
        self._now_str = ""

    async def restore(self, partitions: frozenset[TopicPartition]) -> None:
        """Read reports.index partition p to its end for every raw partition p newly assigned."""
        self._assigned |= partitions
        wanted = sorted({tp.partition for tp in partitions} - self.index.partitions)
        entries: dict[int, list[tuple[str, str | None]]] = {p: [] for p in wanted}

        def keep(record: Any) -> None:
            entry = index_entry(record.key, record.value)
            if entry is not None:
                entries[record.partition].append(entry)

        started = time.monotonic()
        count = await read_to_end(self.common, [TopicPartition(self.index_topic, p) for p in wanted], keep)
        for partition, found in entries.items():
            self.index.load(partition, found)
        self.metrics.index_keys.set(len(self.index))
        log.info(
            "dedupe state restored",
            extra={"partitions": wanted, "records": count, "keys": len(self.index), "s": time.monotonic() - started},
        )

    def revoked(self, partitions: frozenset[TopicPartition]) -> None:
        """Drop the state of index partitions no raw partition of this worker needs any more."""
        self._assigned -= partitions
        needed = {tp.partition for tp in self._assigned}
        for partition in self.index.partitions - needed:
            self.index.drop(partition)

    def _now_text(self) -> str:
        # The index time to the millisecond, formatted once per millisecond rather than once per report.
        now_ms = time.time_ns() // 1_000_000
        if now_ms != self._now_ms:
            self._now_ms = now_ms
            self._now_str = json_time(datetime.fromtimestamp(now_ms / 1000, UTC))
        return self._now_str

    def process(self, record: Any) -> Sequence[Outgoing]:
        """What one raw record becomes: nothing (a duplicate), a dead letter, or an outcome and its index entry."""
        self._reports += 1
        self._started = time.perf_counter() if self._reports % TIMED_EVERY == 0 else None
        direct = self.direct_of_topic.get(record.topic)
        if direct is not None and record.value is not None:
            outputs = self._direct(record, direct)
            if outputs is not None:
                return outputs
        return self._full(record)

    def _observe(self) -> None:
        if self._started is not None:
            self.metrics.processing.observe(time.perf_counter() - self._started)

    def _direct(self, record: Any, direct: Direct) -> Sequence[Outgoing] | None:
        """The one-pass path (envelope and payload validated together, the event written without validating it
        again); None leaves the record to the full path."""
        try:
            raw: Any = direct.validate_json(record.value)
        except ValidationError:
            return None
        source_id = raw.source_id
        payload = raw.payload
        if raw.source is not direct.channel or getattr(payload, direct.id_field) != source_id:
            return None
        channel = direct.label
        key = f"{channel}:{source_id}"
        partition = record.partition
        known = self.index.get(partition, key)
        if known is not None:
            self.metrics.count(channel, "duplicate")
            log.info("duplicate report", extra={"dedupe_key": key, "event_id": known})
            return ()
        event_id = raw.proposed_event_id
        fields = direct.fields(raw, event_id, payload)
        if fields is None:
            return None
        value = event_bytes(fields)
        self.index.add(partition, key, event_id)
        self.metrics.count(channel, "normalised")
        self._observe()
        index_value = index_bytes(
            new_id(), raw.message_id, channel, source_id, event_id, EVENT_OUTCOME, self._now_text()
        )
        # As on the full path: the event, then its index entry once the event is acked (Outgoing's fields in order).
        return (
            Outgoing(self._events_topic, value, event_id.encode()),
            Outgoing(self.index_topic, index_value, key.encode(), partition, True),
        )

    def _full(self, record: Any) -> Sequence[Outgoing]:
        topic_channel = self.channel_of_topic.get(record.topic)
        try:
            raw = read_report(topic_channel, record.value, record.timestamp)
        except PermanentError as exc:
            self.metrics.count(CHANNEL_LABELS[topic_channel] if topic_channel else "unknown", "dead-lettered")
            return (self.dead_letters.of(record, exc.reason, exc.detail),)
        channel = CHANNEL_LABELS[raw.source]
        key = f"{channel}:{raw.source_id}"  # raw.dedupe_key, without an enum property lookup per report
        # Raw topics are keyed by source:source_id, so each partition dedupes its own keys.
        known = self.index.get(record.partition, key)
        if known is not None:
            self.metrics.count(channel, "duplicate")
            log.info("duplicate report", extra={"dedupe_key": key, "event_id": known})
            return ()
        try:
            outcome = process(raw, raw.proposed_event_id)
        except PermanentError as exc:
            self.metrics.count(channel, "dead-lettered")
            return (self.dead_letters.of(record, exc.reason, exc.detail, causation_id=raw.message_id),)
        where = route(outcome)
        self.index.add(record.partition, key, where.event_id)
        self.metrics.count(channel, where.label)
        self._observe()
        # The outcome first; the index entry only once the outcome is acked (after_acks), the offset after both.
        # A crash in between replays the report: a duplicate the router's deterministic task ids absorb, instead of
        # an index entry for an event that never reached the bus. The entry goes to the raw record's partition
        # number, where restoring that partition looks for it.
        return (
            Outgoing(self.topic[where.topic], outcome.to_bytes(), where.key.encode()),
            Outgoing(
                self.index_topic,
                index_record_bytes(raw, where, self._now_text(), new_id()),
                key.encode(),
                partition=record.partition,
                after_acks=True,
            ),
        )

    def sealed(self) -> None:
        """The batch's index entries commit or roll back together."""
        self.index.seal()
        self.metrics.flush()

    def committed(self) -> None:
        """The oldest batch's entries are final."""
        self.index.commit_oldest()
        self.metrics.index_keys.set(len(self.index))

    def rolled_back(self) -> None:
        """Forget the entries of batches that will be read again (what was processed stays counted)."""
        self.index.rollback()
        self.metrics.flush()


def create_app(settings: IntakeSettings, registry: CollectorRegistry) -> BatchService:
    """The intake service: the batch loop over every raw topic, and its ops endpoints."""
    common = settings.common
    dead_letters = KafkaDeadLetters(common, SERVICE, registry)
    handler = IntakeHandler(common, IntakeMetrics(registry), dead_letters)
    topics = [common.topic(RAW_TOPICS[c]) for c in Channel]
    return batch_service(
        SERVICE, common, topics, handler, registry, host=settings.host, port=settings.port, dead_letters=dead_letters
    )


def main() -> None:
    """Entry point of `gridhub serve intake`."""
    create_app(IntakeSettings(), CollectorRegistry()).run()
