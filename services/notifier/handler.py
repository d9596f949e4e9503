"""The notifier's batch handler: tasks and alerts in, delivery jobs into a durable outbox (per partition).

Inputs, co-partitioned by task id (range assignment: one member owns partition p of each): `tasks.dispatched`,
`sla.alerts` and `deliveries.alerts` (the notifier's own alerts for the command centre). Each message becomes one
delivery job per matching endpoint (`Targets`), its id `<webhook id>.<endpoint id>` with the webhook-id
`task_<task id>` or `alert_<alert id>` (stable across retries, restarts and replays). A message without any
endpoint is recorded as `no-endpoint` and dead-lettered.

Outbox and offsets. Partition p's jobs live in `GRIDHUB_DATA_DIR/notifier/p<p>.sqlite` (services.notifier.outbox).
When a batch is sealed, its jobs are written with the next input offsets of p in one transaction, before the loop
commits the batch's offsets to the group: the group's offsets never run ahead of the outbox. On assignment the
consumer seeks to the file's offsets (the file is the source of truth; the group's offsets lag it at most by
batches not yet committed); jobs are idempotent by id, so a batch read twice stores each job once.

Crash windows: killed after the transaction but before the group commit: the file's offsets are used, nothing is
read twice. Killed after an attempt but before its result was written (attempts are written every
`record_every_ms`): that attempt is made again after the restart, with the same webhook-id. A missing file
(another machine, a lost volume) is rebuilt: the inputs of p from their start up to the group's committed offsets
give the jobs; `deliveries.results` p (keyed by task id, so co-partitioned) marks the ones already delivered or
given up; what is left is delivered, again at worst (at-least-once, receivers dedupe on webhook-id).

The engine (services.notifier.engine) runs beside the loop: the scheduler (services.notifier.scheduler) decides
what goes out next; the deliveries API (services.notifier.deliveries_api) queries and replays the outbox.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from aiokafka import TopicPartition
from pydantic import ValidationError

from gridhub.kernel.batchloop import BatchHandler, read_range, read_to_end
from gridhub.kernel.batchout import KafkaDeadLetters, Outgoing
from gridhub.kernel.errors import PermanentError
from gridhub.kernel.localstate import seek_to_offsets, stale_file
from gridhub.kernel.problems import describe_validation_error
from gridhub.kernel.walfile import remove_wal_file
from schemas import (
    ClockKind,
    DeliveryAlertRaised,
    DeliveryOutcome,
    DeliveryRecorded,
    DurationUnit,
    NotificationType,
    SlaAlertRaised,
    TaskDispatched,
    TaskDispatchedHeader,
    TaskRole,
    topic_spec,
)
from services.notifier.delivery_alerts import DELIVERY_ALERT_JOB
from services.notifier.endpoints import notification_type, recipients, url_display
from services.notifier.engine import DeliveryEngine
from services.notifier.outbox import FINAL_STATES, Job, Outbox, now_ms
from services.notifier.scheduler import Scheduler
from services.notifier.settings import NotifierSettings
from services.notifier.targets import Targets

NEW_TASK, CO_OPERATING = NotificationType.NEW_TASK.value, NotificationType.CO_OPERATING_TASK.value
# Enum members looked up once: a class attribute lookup on an Enum goes through a descriptor each time.
RESOLVE, HOURS = ClockKind.RESOLVE, DurationUnit.HOURS
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
INPUTS = ("tasks.dispatched", "sla.alerts", "deliveries.alerts")
log = logging.getLogger(__name__)


def urgency_of_task(task: TaskDispatched | TaskDispatchedHeader) -> int:
    """The instant (ms) the task's resolve clock falls due, roughly: received_at plus the term (working days taken
    as calendar days: only the order matters here); without a resolve term, its shortest term."""
    resolve = shortest = None
    for term in task.deadlines:
        span = term.amount * (HOUR_MS if term.unit is HOURS else DAY_MS)
        if term.kind is RESOLVE:
            resolve = span if resolve is None else min(resolve, span)
        shortest = span if shortest is None else min(shortest, span)
    start = int(task.received_at.timestamp() * 1000)
    chosen = resolve if resolve is not None else shortest
    return start + (7 * DAY_MS if chosen is None else chosen)


class Wanted(NamedTuple):
    """What one input record asks to deliver: to whom, as what, how urgently (its first unit is its own)."""

    kind: str  # Job.kind: task | alert | delivery-alert
    webhook_id: str
    subject_id: str
    units: tuple[str, ...]
    event_type: str  # a NotificationType value: the endpoints' filter
    task_id: str
    urgency_ms: int
    causation_id: str


class NotifierHandler(BatchHandler):
    """Turns input records into outbox jobs; restores, rebuilds and drops partitions' outboxes."""

    def __init__(
        self,
        settings: NotifierSettings,
        targets: Targets,
        scheduler: Scheduler,
        dead_letters: KafkaDeadLetters,
        consumer: Any,
        before_restore: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.before_restore = before_restore
        self.settings = settings
        self.common = settings.common
        self.targets = targets
        self.scheduler = scheduler
        self.dead_letters = dead_letters
        self.consumer = consumer
        self.topics = [self.common.topic(t) for t in INPUTS]
        self.dispatched, self.alerts, self.delivery_alerts = self.topics
        self.results_topic = self.common.topic("deliveries.results")
        self.outboxes: dict[int, Outbox] = {}
        self.engine: DeliveryEngine | None = None
        self._open: dict[int, list[Job]] = {}
        self._offsets: dict[int, dict[str, int]] = {}

    def path(self, partition: int) -> Path:
        """The outbox file of a partition."""
        return self.settings.outbox_dir() / f"p{partition}.sqlite"

    # --- partitions ------------------------------------------------------------------------------

    async def restore(self, partitions: frozenset[TopicPartition]) -> None:
        """Open (or rebuild) each newly assigned partition's outbox, load its pending jobs, seek to its offsets."""
        if self.before_restore is not None:
            await self.before_restore()  # the endpoint registry caught up: jobs go to the endpoints units registered
        for p in sorted({tp.partition for tp in partitions} - self.outboxes.keys()):
            started = time.monotonic()
            path = self.path(p)
            outbox = Outbox(path, p)
            how = "open"
            if outbox.meta("complete") != "1" or await self._stale(p, outbox):
                outbox.close()
                remove_wal_file(path)
                outbox = Outbox(path, p)
                await self._rebuild(p, outbox)
                how = "rebuild"
            await seek_to_offsets(self.consumer(), self.topics, p, outbox.offsets())
            pending = outbox.pending()
            self.outboxes[p] = outbox
            self.scheduler.add_all(pending)
            if self.engine is not None:
                self.engine.health.seed(outbox.endpoint_health())
                self.engine.wake.set()
            log.info(
                "partition restored",
                extra={
                    "partition": p,
                    "how": how,
                    "pending": len(pending),
                    "seconds": round(time.monotonic() - started, 3),
                },
            )
        self._share_limits()

    async def _stale(self, p: int, outbox: Outbox) -> bool:
        """Whether the file has read further than the topics hold (they were recreated: an embedded broker's memory
        storage, a new cluster); its jobs describe messages that are gone, so it is rebuilt."""
        return await stale_file(self.consumer(), outbox.offsets(), p, "outbox")

    def revoked(self, partitions: frozenset[TopicPartition]) -> None:
        """Write what the engine recorded for them, forget their jobs, close their files."""
        for p in {tp.partition for tp in partitions}:
            self.scheduler.drop_partition(p)
            if self.engine is not None:
                self.engine.flush(p)
            outbox = self.outboxes.pop(p, None)
            self._open.pop(p, None)
            self._offsets.pop(p, None)
            if outbox is not None:
                outbox.close()
        self._share_limits()

    def _share_limits(self) -> None:
        """Endpoints' limits are the whole notifier's: this replica takes its partitions' share of them."""
        consumer = self.consumer()
        known = consumer.partitions_for_topic(self.dispatched) if consumer is not None else None
        total = len(known) if known else topic_spec("tasks.dispatched").partitions
        self.scheduler.set_share(len(self.outboxes) / max(1, total))

    async def _rebuild(self, p: int, outbox: Outbox) -> None:
        """Jobs from the inputs up to the group's committed offsets, minus those deliveries.results says are over."""
        consumer = self.consumer()
        if consumer is None:  # not connected (tests): a new, empty outbox
            outbox.set_meta(complete="1")
            return
        ends: dict[TopicPartition, int] = {}
        for topic in self.topics:
            tp = TopicPartition(topic, p)
            committed = await consumer.committed(tp)
            ends[tp] = int(committed or 0)
        jobs: dict[str, Job] = {}

        def take(record: Any) -> None:
            try:
                for job in self._jobs_of(self._read(record), record):
                    jobs.setdefault(job.delivery_id, job)
            except PermanentError:
                pass

        cut = {tp: end for tp, end in ends.items() if end > 0}
        await read_range(self.common, dict.fromkeys(cut), take, until=cut)
        finished: set[str] = set()
        attempts: dict[str, int] = {}

        def mark(record: Any) -> None:
            try:
                result = DeliveryRecorded.model_validate_json(record.value)
            except ValidationError:
                return
            if result.delivery_id is None:
                return
            attempts[result.delivery_id] = max(attempts.get(result.delivery_id, 0), result.attempts)
            if result.outcome.value in FINAL_STATES:
                finished.add(result.delivery_id)

        results = TopicPartition(self.results_topic, p)
        await read_to_end(self.common, [results], mark, timeout_s=600.0)
        now = now_ms()
        for job in jobs.values():
            job.attempts = attempts.get(job.delivery_id, 0)
            if job.delivery_id in finished:
                job.state = "delivered"
            job.next_at_ms = now

        def stored_order(job: Job) -> tuple[str, int]:
            topic, _, offset = job.source.rpartition(":")
            return (topic, int(offset) if offset.isdigit() else 0)

        outbox.store(sorted(jobs.values(), key=stored_order), {tp.topic: end for tp, end in ends.items()})
        outbox.set_meta(complete="1")
        log.warning(
            "outbox rebuilt from the topics", extra={"partition": p, "jobs": len(jobs), "finished": len(finished)}
        )

    # --- records ---------------------------------------------------------------------------------

    def process(self, record: Any) -> Sequence[Outgoing]:
        """The jobs of one task or alert (stored when the batch is sealed); no-endpoint messages are recorded."""
        p = record.partition
        self._offsets.setdefault(p, {})[record.topic] = record.offset + 1
        wanted = self._read(record)
        jobs = self._jobs_of(wanted, record)
        if jobs:
            self._open.setdefault(p, []).extend(jobs)
            return ()
        return self._no_endpoint(wanted, record)

    def _read(self, record: Any) -> Wanted:
        """What a record asks to deliver, read once (PermanentError when it cannot be read)."""
        if record.topic == self.dispatched:
            try:
                task = TaskDispatchedHeader.model_validate_json(record.value)
            except ValidationError as exc:
                raise PermanentError("malformed-task", describe_validation_error(exc)) from exc
            return Wanted(
                kind="task",
                webhook_id=f"task_{task.task_id}",
                subject_id=task.task_id,
                units=(task.unit_code,),
                event_type=CO_OPERATING if task.role is TaskRole.CO_OPERATING else NEW_TASK,
                task_id=task.task_id,
                urgency_ms=urgency_of_task(task),
                causation_id=task.message_id,
            )
        if record.topic == self.alerts:
            try:
                alert = SlaAlertRaised.model_validate_json(record.value)
            except ValidationError as exc:
                raise PermanentError("malformed-alert", describe_validation_error(exc)) from exc
            return Wanted(
                kind="alert",
                webhook_id=f"alert_{alert.alert_id}",
                subject_id=alert.alert_id,
                units=tuple(recipients(alert)),
                event_type=notification_type(alert).value,
                task_id=alert.task_id,
                urgency_ms=int(alert.due_at.timestamp() * 1000),
                causation_id=alert.message_id,
            )
        try:
            failed = DeliveryAlertRaised.model_validate_json(record.value)
        except ValidationError as exc:
            raise PermanentError("malformed-delivery-alert", describe_validation_error(exc)) from exc
        return Wanted(
            kind=DELIVERY_ALERT_JOB,
            webhook_id=f"alert_{failed.alert_id}",
            subject_id=failed.alert_id,
            units=(failed.unit_code,),
            event_type=NotificationType.DELIVERY_ALERT.value,
            task_id=failed.task_id,
            urgency_ms=int(failed.raised_at.timestamp() * 1000),  # due now: a unit is not receiving its work
            causation_id=failed.message_id,
        )

    def _jobs_of(self, wanted: Wanted, record: Any) -> list[Job]:
        now = now_ms()
        source = f"{record.topic}:{record.partition}:{record.offset}"
        jobs: list[Job] = []
        seen: set[str] = set()
        for unit in wanted.units:
            for target in self.targets.targets(unit, wanted.event_type):
                if target.endpoint_id in seen:
                    continue
                seen.add(target.endpoint_id)
                jobs.append(
                    Job(
                        delivery_id=f"{wanted.webhook_id}.{target.endpoint_id}",
                        webhook_id=wanted.webhook_id,
                        kind=wanted.kind,
                        subject_id=wanted.subject_id,
                        task_id=wanted.task_id,
                        unit_code=unit,
                        endpoint_id=target.endpoint_id,
                        url=url_display(target.url),
                        channel=target.channel,
                        body=bytes(record.value),
                        urgency_ms=wanted.urgency_ms,
                        causation_id=wanted.causation_id,
                        source=source,
                        next_at_ms=now,
                        created_ms=now,
                        updated_ms=now,
                        partition=record.partition,
                    )
                )
        return jobs

    def _no_endpoint(self, wanted: Wanted, record: Any) -> Sequence[Outgoing]:
        unit, task_id = wanted.units[0], wanted.task_id
        result = DeliveryRecorded(
            causation_id=wanted.causation_id,
            webhook_id=wanted.webhook_id,
            subject_id=wanted.subject_id,
            unit_code=unit,
            endpoint_url=None,
            outcome=DeliveryOutcome.NO_ENDPOINT,
            attempts=0,
            last_error="no webhook configured",
            finished_at=datetime.now(UTC),
            task_id=task_id,
        )
        return (
            Outgoing(self.results_topic, result.to_bytes(), task_id.encode()),
            self.dead_letters.of(
                record, "no-endpoint", f"单位 {unit} 没有可用的接收端点", causation_id=wanted.causation_id
            ),
        )

    def sealed(self) -> None:
        """Store the batch's jobs with the next input offsets, per partition, before the batch commits."""
        added: list[Job] = []
        for p, offsets in self._offsets.items():
            outbox = self.outboxes.get(p)
            if outbox is None:
                continue
            added += outbox.store(self._open.get(p, []), offsets)
        self._open.clear()
        self._offsets.clear()
        if added:
            self.scheduler.add_all(added)
            if self.engine is not None:
                self.engine.wake.set()

    def rolled_back(self) -> None:
        """Forget the unsealed batch (sealed ones are in the outbox already; stored again, they are ignored)."""
        self._open.clear()
        self._offsets.clear()
