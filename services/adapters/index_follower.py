"""Follows a topic into the adapters' local state: every partition, from the start, no group.

`reports.index` (compacted) feeds the ReportIndex; `tasks.dispatched` feeds its TaskOwners. One follower per
topic (TopicFollower) with the function that applies a batch of its records; each is `ready` once caught up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Gauge
from pydantic import BaseModel, ConfigDict, ValidationError

from gridhub.kernel.kafka import decode, make_consumer
from gridhub.kernel.metrics import ServiceMetrics
from gridhub.kernel.settings import CommonSettings
from schemas.base import UlidStr
from schemas.index import ReportIndexed
from services.adapters.report_index import Applied, ReportIndex, TaskOwners
from services.adapters.settings import AdaptersSettings

INDEX_TOPIC = "reports.index"
DISPATCHED_TOPIC = "tasks.dispatched"
log = logging.getLogger(__name__)
Records = list[ConsumerRecord[bytes, bytes]]
ApplyRecords = Callable[[Records], None]


def open_report_index(settings: AdaptersSettings, directory: Path | None) -> ReportIndex:
    """A ReportIndex in a new file under directory, unlinked at once (its disk is freed even after a SIGKILL).

    Without a directory (no follower: nothing but own acceptances to hold) it lives in memory.
    """
    ttl, cache_mib = settings.index_provisional_ttl_s, settings.index_cache_mib
    if directory is None:
        return ReportIndex(":memory:", provisional_ttl_s=ttl, cache_mib=cache_mib)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"report-index-{os.getpid()}-{uuid.uuid4().hex[:8]}.sqlite"
    index = ReportIndex(path, provisional_ttl_s=ttl, cache_mib=cache_mib)
    # The journal is in memory (journal_mode=MEMORY), so SQLite never needs the name again.
    path.unlink()
    return index


class IndexMetrics:
    """The followers' gauges and counters (gridhub_adapters_index_*, gridhub_adapters_task_owners_*)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        m = ServiceMetrics("adapters", registry)
        self.keys = m.gauge("index", "keys", "Reports in the local index (intake's records).")
        self.provisional = m.gauge("index_provisional", "keys", "This replica's acceptances not yet indexed by intake.")
        self.lag = m.gauge("index_lag", "records", "Index records on the broker not yet read (last fetch).")
        self.records = m.counter("index_records", "Index records read, by outcome.", ("outcome",))
        self.superseded = m.counter(
            "index_superseded", "Own acceptances intake indexed under another replica's event id (a race lost)."
        )
        self.owners = m.gauge("task_owners", "tasks", "Dispatched tasks whose unit the local index knows.")
        self.owners_lag = m.gauge("task_owners_lag", "records", "tasks.dispatched records not yet read (last fetch).")
        self.owner_records = m.counter("task_owner_records", "tasks.dispatched records read, by outcome.", ("outcome",))


class TaskOwner(BaseModel):
    """The two fields of a TaskDispatched the owner index needs; the rest of the record is not parsed into models."""

    model_config = ConfigDict(extra="ignore")

    task_id: UlidStr
    unit_code: str


def report_index_applier(index: ReportIndex, metrics: IndexMetrics) -> ApplyRecords:
    """The apply function of reports.index records (ReportIndexed, or a tombstone) into the ReportIndex."""

    def apply(records: Records) -> None:
        changes: list[tuple[str, str | None]] = []
        for record in records:
            if record.value is None:
                if record.key is not None:
                    changes.append((record.key.decode(errors="replace"), None))
                continue
            try:
                indexed = decode(ReportIndexed, record.value)
            except ValidationError as exc:
                metrics.records.labels("invalid").inc()
                log.warning("invalid index record skipped", extra={"offset": record.offset, "error": str(exc)[:300]})
                continue
            changes.append((indexed.dedupe_key, indexed.event_id))
        applied: Applied = index.apply(changes)
        metrics.records.labels("applied").inc(len(changes))
        metrics.keys.set(index.size)
        metrics.provisional.set(index.provisional)
        for key, mine, kept in applied.superseded:
            metrics.superseded.inc()
            log.info("another replica's acceptance won", extra={"dedupe_key": key, "answered": mine, "kept": kept})

    return apply


def task_owner_applier(owners: TaskOwners, metrics: IndexMetrics) -> ApplyRecords:
    """The apply function of tasks.dispatched records (task id -> unit code) into the TaskOwners."""

    def apply(records: Records) -> None:
        pairs: list[tuple[str, str]] = []
        for record in records:
            if record.value is None:
                continue  # a delete-cleanup topic: no tombstones are produced
            try:
                task = TaskOwner.model_validate_json(record.value)
            except ValidationError as exc:
                metrics.owner_records.labels("invalid").inc()
                log.warning("invalid task record skipped", extra={"offset": record.offset, "error": str(exc)[:300]})
                continue
            pairs.append((task.task_id, task.unit_code))
        owners.apply(pairs)
        metrics.owner_records.labels("applied").inc(len(pairs))
        metrics.owners.set(owners.size)

    return apply


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

    def _mark_ready(self, why: str) -> None:
        self.ready = True
        waited = time.monotonic() - self._started
        log.info("%s follower ready: %s", self.topic, why, extra={"keys": self.size(), "waited_s": round(waited, 3)})

    def _deadline_passed(self) -> bool:
        return time.monotonic() - self._started > self.ready_timeout_s

    async def _partitions(self) -> list[TopicPartition]:
        """The topic's partitions, waiting (and retrying) until it exists."""
        warned = False
        while True:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.common.kafka_bootstrap)
            try:
                await admin.start()
                # All topics: a metadata request naming a missing topic may auto-create it without compaction.
                for topic in await admin.describe_topics(None):
                    if topic["topic"] == self.topic and not topic["error_code"]:
                        return [TopicPartition(self.topic, p["partition"]) for p in topic["partitions"]]
            except KafkaError as exc:
                log.warning("cannot read topic metadata", extra={"error": repr(exc)})
            finally:
                await admin.close()
            if not warned:
                log.warning("waiting for topic %s (gridhub topics create)", self.topic)
                warned = True
            if not self.ready and self._deadline_passed():
                # Intake still dedupes and the SLA service still checks owners: serving without the topic is safe.
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
        targets: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
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
                    lag += max(0, high - await consumer.position(tp))
            self.lag.set(lag)
            if not self.ready:
                if all([await consumer.position(tp) >= end for tp, end in targets.items()]):
                    self._mark_ready("caught up with the end offsets seen at start")
                elif self._deadline_passed():
                    # An end offset a fetch never reaches (Tansu's may disagree) must not hold readiness forever.
                    self._mark_ready(f"not caught up after {self.ready_timeout_s:g} s, serving (still filling)")


def report_index_follower(
    common: CommonSettings, index: ReportIndex, metrics: IndexMetrics, *, ready_timeout_s: float
) -> TopicFollower:
    """The follower of reports.index into the ReportIndex."""
    apply = report_index_applier(index, metrics)
    return TopicFollower(
        common, INDEX_TOPIC, apply, metrics.lag, ready_timeout_s=ready_timeout_s, size=lambda: index.size
    )


def task_owner_follower(
    common: CommonSettings, owners: TaskOwners, metrics: IndexMetrics, *, ready_timeout_s: float
) -> TopicFollower:
    """The follower of tasks.dispatched into the TaskOwners."""
    apply = task_owner_applier(owners, metrics)
    return TopicFollower(
        common, DISPATCHED_TOPIC, apply, metrics.owners_lag, ready_timeout_s=ready_timeout_s, size=lambda: owners.size
    )
