"""The SLA service on the kernel's batch loop: task clocks and alerts, state in one SQLite file per partition.

Inputs, co-partitioned by task id (range assignment: one member owns partition p of both): `tasks.dispatched`
starts a task's clocks (a task already known is ignored), `tasks.updates` moves them (services.sla.clocks);
an update that beats its task is held until the task arrives; an update from a unit that does not hold the
task is dead-lettered. Every change publishes a `TaskStatusChanged` on `tasks.status`. The alert timer
(services.sla.timers) fires warnings, overdue alerts, escalations and reminders onto `sla.alerts` partition p.

State and offsets. A batch's changes are kept in memory (per batch, per partition) until the loop has the
batch's outputs acked and its offsets committed; then `committed()` writes them to partition p's SQLite file
(services.sla.store) in one transaction together with the next input offsets of p. The file is therefore
always the state after exactly the offsets it records, and on assignment the worker seeks the consumer to them
(the group's committed offsets only serve a rebuild). A rolled-back batch is simply forgotten.

Crash windows, and what a restart does about each:

* killed after the outputs were acked (and maybe the group offsets committed) but before the transaction:
  the file's offsets are older, the inputs after them are read again; the state comes out the same, the
  status records are repeated (tasks.status is compacted; a duplicate is harmless), no alert is involved.
* killed after an alert was acked on sla.alerts but before its timer was marked: on assignment the worker reads
  sla.alerts p from the file's `alerts_next` to the end and marks every alert it finds (reconcile) before the
  timer fires anything for p, so the alert is not raised again (and would be the same alert id if it were).
* killed before an alert was acked: it is raised after the restart, late, with the same id.
* the file is missing (another machine, a new volume) or was left half-built: it is rebuilt from the topics:
  tasks.dispatched p and tasks.updates p from their start up to the group's committed offsets (every output of
  those records is acked already; inputs after them go through the loop as usual), then sla.alerts p from its
  start marks what was raised. Alerts due before the first retained record of sla.alerts p (when retention
  has deleted older ones, 90 days) cannot be known and are not raised; everything later is. A file whose
  offsets lie past an empty (or far shorter) topic describes topics that were recreated and is rebuilt too.

A new calendar (files changed, or `POST /calendar/reload`): services.sla.calendar_reload swaps it in and
recounts the open tasks of the owned partitions, publishing and writing the ones that moved; a partition whose
file records another calendar digest is recounted when assigned.

One data dir per replica (a volume of its own): two processes sharing a partition's file would both fire it.

`GET /tasks/{id}` answers from the state (uncommitted changes first) when this replica owns the task's partition;
otherwise 421 Misdirected Request (problem+json naming the partition: ask the replica that owns it; the
deployment runs one replica, which owns all) and 503 while partitions are being assigned or restored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from aiokafka import AIOKafkaConsumer, TopicPartition
from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from gridhub.kernel.batchloop import BatchHandler, read_range
from gridhub.kernel.batchout import KafkaDeadLetters, Outgoing, partition_for
from gridhub.kernel.batchserve import BatchService, batch_service
from gridhub.kernel.errors import PermanentError
from gridhub.kernel.http import ProblemJSONResponse
from gridhub.kernel.kafka import make_consumer
from gridhub.kernel.localstate import seek_to_offsets, stale_file
from gridhub.kernel.metrics import ServiceMetrics
from gridhub.kernel.problems import describe_validation_error
from gridhub.kernel.settings import CommonSettings
from gridhub.kernel.walfile import remove_wal_file
from schemas import CATALOGUE, ClockKind, SlaAlertRaised, TaskDispatched, TaskStatus, TaskUpdated
from schemas.dutylist import DutyList, load_duty_list
from services.sla.alerts import AlertPolicy, TaskFacts, escalation_chain, position_of
from services.sla.calendar import WorkingCalendar
from services.sla.calendar_reload import CalendarReloader, calendar_digest, calendar_router
from services.sla.clocks import TaskClockState, apply_update, recompute, start_clocks, status_event
from services.sla.report_api import report_router
from services.sla.report_view import ReportView
from services.sla.settings import SlaSettings
from services.sla.store import PartitionChanges, PartitionStore, TaskEntry
from services.sla.timers import AlertTimer

SERVICE = "sla"
INPUTS = ("tasks.dispatched", "tasks.updates")
REBUILD_CHUNK = 5000  # records applied between writes while a partition is rebuilt
log = logging.getLogger(__name__)
LATENESS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class SlaMetrics:
    """SLA counters, gauges and histograms (gridhub_sla_*), bounded labels only."""

    def __init__(self, registry: CollectorRegistry) -> None:
        m = ServiceMetrics(SERVICE, registry)
        self.started = m.counter("clocks_started", "Task clocks started, by deadline class.", ("deadline_class",))
        self.updates = m.counter("updates", "Unit updates applied, by kind and outcome.", ("kind", "outcome"))
        self.closed = m.counter("tasks_closed", "Tasks closed, by whether on time.", ("on_time",))
        self.calendar_fallback = m.counter(
            "calendar_fallback_clocks", "Clocks computed with the weekends-only fallback (no calendar data)."
        )
        self.processing = m.histogram("processing", "Time to process one task or update.")
        self.alerts_raised = m.counter(
            "alerts_raised", "Alerts raised on sla.alerts (acked), by kind, clock and step.", ("kind", "clock", "step")
        )
        self.alerts_suppressed = m.counter(
            "alerts_suppressed",
            "Planned alerts not raised: a warning superseded by a later due alert, or due before a rebuild's horizon.",
            ("kind", "reason"),
        )
        self.alert_lateness = m.histogram(
            "alert_lateness", "Alert raised time minus its due time.", ("kind",), buckets=LATENESS_BUCKETS
        )
        self.open_tasks = m.gauge("open_tasks", "count", "Tasks with a clock still running, in owned partitions.")
        self.store_size = m.gauge("store_size", "bytes", "Bytes of the partition state files (with their logs).")
        self.restore = m.histogram(
            "restore",
            "Time to open (or rebuild) a partition's state and reconcile its alerts.",
            ("how",),
            buckets=(0.01, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0),
        )
        self.reconciled = m.counter(
            "alerts_reconciled", "Clocks marked from alerts found on sla.alerts (raised before a crash, not marked)."
        )
        self.calendar_reloads = m.counter(
            "calendar_reloads", "Calendar file reloads, by outcome (loaded, unchanged, failed).", ("outcome",)
        )
        self.recomputed = m.counter("calendar_recomputed_tasks", "Open tasks recounted on a newly loaded calendar.")
        self.recomputed_changed = m.counter(
            "calendar_changed_tasks", "Open tasks whose clocks moved when recounted on a newly loaded calendar."
        )
        self.calendar_fallback_years = m.gauge(
            "calendar_fallback",
            "years",
            "Years the calendar in use has counted weekends-only (no statutory data): load a holiday-cn file for them.",
        )


class HeldRecord(NamedTuple):
    """Where a held update came from, for its dead letter (it has no position of its own any more)."""

    topic: str
    value: bytes
    key: bytes
    partition: int | None = None
    offset: int | None = None


class SlaHandler(BatchHandler):
    """Tasks and updates of the partitions this worker owns; state in memory until commit, then on disk."""

    def __init__(
        self,
        settings: SlaSettings,
        calendar: WorkingCalendar,
        duty: DutyList,
        metrics: SlaMetrics,
        dead_letters: KafkaDeadLetters,
        consumer: Callable[[], AIOKafkaConsumer | None] = lambda: None,
    ) -> None:
        common = settings.common
        self.settings = settings
        self.common = common
        self.calendar = calendar
        self.duty = duty
        self.policy: AlertPolicy = settings.alert_policy()
        self.metrics = metrics
        self.dead_letters = dead_letters
        self.consumer = consumer
        self.dispatched = common.topic("tasks.dispatched")
        self.updates = common.topic("tasks.updates")
        self.status_topic = common.topic("tasks.status")
        self.alerts_topic = common.topic("sla.alerts")
        self.topics = [common.topic(name) for name in INPUTS]
        self.directory = settings.store_dir()
        self.stores: dict[int, PartitionStore] = {}
        self.retiring: set[int] = set()
        self.needs_reconcile: set[int] = set()
        self._suppress: dict[int, int] = {}
        self._open: dict[int, PartitionChanges] = {}
        self._sealed: deque[dict[int, PartitionChanges]] = deque()
        self._chains: dict[str, Any] = {}
        self._started: dict[tuple[Any, ...], TaskClockState] = {}
        self._building: dict[int, PartitionStore] = {}  # partitions being rebuilt (not yet the timer's)
        self.timer: AlertTimer | None = None
        # The calendar's files digest (services.sla.calendar_reload), partitions whose open tasks are not yet
        # recounted on it, and whether a calendar was swapped in (paused tasks are recounted when updated).
        self.calendar_digest = ""
        self.stale_partitions: set[int] = set()
        self.recount_wanted = asyncio.Event()
        self.recount_on_update = False

    # --- files and partitions ------------------------------------------------------------------------

    def path(self, partition: int) -> Path:
        """The SQLite file of a partition (the topic prefix names it, so deployments never share one)."""
        return self.directory / f"{self.common.topic_prefix}tasks-p{partition}.sqlite3"

    def partitions_count(self) -> int:
        """Partitions of tasks.dispatched (from the consumer's metadata, else the catalogue)."""
        consumer = self.consumer()
        found = consumer.partitions_for_topic(self.dispatched) if consumer is not None else None
        if found:
            return len(found)
        return next(spec.partitions for spec in CATALOGUE if spec.name == "tasks.dispatched")

    def partition_of(self, task_id: str) -> int:
        """The partition a task id is keyed to."""
        return partition_for(task_id.encode(), list(range(self.partitions_count())))

    def suppress_before(self, partition: int) -> int:
        """Alerts due before this instant (ms) are not raised in a partition (a rebuild's horizon)."""
        return self._suppress.get(partition, 0)

    async def restore(self, partitions: frozenset[TopicPartition]) -> None:
        """Open (or rebuild) each newly assigned partition's file, reconcile its alerts, seek to its offsets."""
        for p in sorted({tp.partition for tp in partitions} - self.stores.keys()):
            started = time.monotonic()
            if self.timer is not None:
                await self.timer.idle(p)
            path = self.path(p)
            store = PartitionStore(path, p, self.policy)
            how = "open"
            if not store.complete or await self._stale(p, store):
                store.close()
                remove_wal_file(path)
                store = PartitionStore(path, p, self.policy)
                await self._rebuild(p, store)
                how = "rebuild"
            await self._reconcile(p, store)
            self._suppress[p] = int(store.meta("suppress_before_ms") or 0)
            await seek_to_offsets(self.consumer(), self.topics, p, store.offsets())
            self.stores[p] = store
            self.retiring.discard(p)
            self._check_calendar(p, store)
            seconds = time.monotonic() - started
            self.metrics.restore.labels(how).observe(seconds)
            log.info(
                "partition restored",
                extra={"partition": p, "how": how, "seconds": round(seconds, 3), "open_tasks": store.open_tasks},
            )
        if self.timer is not None:
            self.timer.wake.set()

    def _check_calendar(self, p: int, store: PartitionStore) -> None:
        """Queue a partition whose open tasks were last counted on other calendar files for a recount."""
        if store.meta("calendar") == self.calendar_digest:
            return
        if store.open_tasks == 0:
            store.set_meta(calendar=self.calendar_digest)
            return
        self.stale_partitions.add(p)
        self.recount_on_update = True
        self.recount_wanted.set()

    def use_calendar(self, calendar: WorkingCalendar, digest: str) -> None:
        """Count on a newly loaded calendar from now on; every owned partition is to be recounted."""
        self.calendar = calendar
        self.calendar_digest = digest
        self._started.clear()
        self.recount_on_update = True
        self.stale_partitions |= set(self.stores)
        self.recount_wanted.set()

    def _recount_first(self, p: int, state: TaskClockState) -> bool:
        """Whether an update recounts its task on the calendar first (~50 µs): while its partition is not yet
        recounted, and for a paused task (the recount reads only tasks with a clock running) once a calendar was
        swapped in."""
        return p in self.stale_partitions or (self.recount_on_update and state.status is TaskStatus.PAUSED)

    def publish_fallback_years(self) -> None:
        """Set the gauge of years counted weekends-only by the calendar in use."""
        self.metrics.calendar_fallback_years.set(len(self.calendar.fallback_years_used()))

    async def _stale(self, p: int, store: PartitionStore) -> bool:
        """Whether the file has read further than the topics hold: they were recreated (an embedded broker's
        memory storage, a new cluster), so the file describes tasks that are gone; it is rebuilt."""
        return await stale_file(self.consumer(), store.offsets(), p, "partition file")

    def revoked(self, partitions: frozenset[TopicPartition]) -> None:
        """Close the files of partitions given away (every batch of theirs is committed or rolled back)."""
        for p in {tp.partition for tp in partitions}:
            store = self.stores.pop(p, None)
            self._open.pop(p, None)
            self.stale_partitions.discard(p)
            if store is None:
                continue
            if self.timer is not None and p in self.timer.busy:
                # A round is producing for it: close once the round is over (its marks are then skipped, and
                # the next owner reconciles from sla.alerts).
                self.retiring.add(p)
                asyncio.get_running_loop().create_task(self._close_later(p, store))
            else:
                store.close()

    async def _close_later(self, p: int, store: PartitionStore) -> None:
        if self.timer is not None:
            await self.timer.idle(p)
        store.close()
        self.retiring.discard(p)

    async def reconcile(self, p: int) -> None:
        """Mark alerts found on sla.alerts p after the file's `alerts_next` (after a failed produce)."""
        store = self.stores.get(p)
        if store is not None:
            await self._reconcile(p, store)
        self.needs_reconcile.discard(p)

    async def _reconcile(self, p: int, store: PartitionStore) -> None:
        seen: list[tuple[str, ClockKind, tuple[int, int]]] = []

        def note(record: Any) -> None:
            try:
                alert = SlaAlertRaised.model_validate_json(record.value)
            except ValidationError:
                return
            seen.append((alert.task_id, alert.clock, position_of(alert.step, alert.reminder)))

        tp = TopicPartition(self.alerts_topic, p)
        start = store.alerts_next()
        end = await read_range(self.common, {tp: start}, note)
        advanced = store.reconcile(seen, end[tp])
        if advanced:
            self.metrics.reconciled.inc(advanced)
            log.warning("alerts raised before a restart were marked", extra={"partition": p, "clocks": advanced})

    async def _rebuild(self, p: int, store: PartitionStore) -> None:
        """Build partition p's file from the topics up to the group's committed offsets (see the module doc).

        All tasks first, then the updates in their order: the state is the one the live worker reached (an update
        that beat its task was held and applied when the task came, the same as applying it after). Written in
        chunks; the file is marked complete only at the end (a crash in between rebuilds it again)."""
        consumer = self.consumer()
        ends: dict[TopicPartition, int] = {}
        for topic in self.topics:
            tp = TopicPartition(topic, p)
            committed = await consumer.committed(tp) if consumer is not None else None
            ends[tp] = int(committed or 0)
        counts = dict.fromkeys(self.topics, 0)
        self._building[p] = store
        self._open[p] = PartitionChanges()

        def apply(record: Any) -> None:
            self._quietly(record)
            counts[record.topic] += 1
            if counts[record.topic] % REBUILD_CHUNK == 0:
                store.commit(self._open[p])
                self._open[p] = PartitionChanges()

        try:
            for tp, end in ends.items():
                if end > 0:
                    await read_range(self.common, {tp: None}, apply, until={tp: end})
            store.commit(self._open[p])
            store.commit(PartitionChanges(offsets={tp.topic: end for tp, end in ends.items()}))
        finally:
            self._open.pop(p, None)
            self._building.pop(p, None)
        horizon = await alerts_horizon(self.common, TopicPartition(self.alerts_topic, p))
        store.set_meta(suppress_before_ms=str(horizon), complete="1")
        log.info(
            "partition rebuilt from the topics",
            extra={"partition": p, "records": counts, "suppress_before_ms": horizon},
        )

    def _quietly(self, record: Any) -> None:
        """Apply a record during a rebuild: state only (its outputs are on the topics already)."""
        with contextlib.suppress(PermanentError):
            self.process(record)

    # --- records -------------------------------------------------------------------------------------

    def process(self, record: Any) -> Sequence[Outgoing]:
        """The outputs of one task or update; the state change waits for the batch's commit."""
        started = time.perf_counter()
        p = record.partition
        changes = self._open.get(p)
        if changes is None:
            changes = self._open[p] = PartitionChanges()
        changes.offsets[record.topic] = record.offset + 1
        try:
            if record.topic == self.dispatched:
                return self._task(record, p, changes)
            return self._update(record, p, changes)
        finally:
            self.metrics.processing.observe(time.perf_counter() - started)

    def _task(self, record: Any, p: int, changes: PartitionChanges) -> Sequence[Outgoing]:
        try:
            task = TaskDispatched.model_validate_json(record.value)
        except ValidationError as exc:
            raise PermanentError("malformed-task", describe_validation_error(exc)) from exc
        return self.accept_task(task, p, changes)

    def accept_task(self, task: TaskDispatched, p: int, changes: PartitionChanges) -> Sequence[Outgoing]:
        """Start a task's clocks (the same path for records and the bench); a task already known is ignored."""
        if self._has(p, task.task_id):
            return ()  # a redelivered task: its clocks are already running
        state = self._start(task)
        self.metrics.started.labels(task.deadline_class.value).inc()
        if any(c.calendar_fallback for c in state.clocks):
            self.metrics.calendar_fallback.inc()
            self.publish_fallback_years()
        facts = TaskFacts(
            task_id=task.task_id,
            unit_code=task.unit_code,
            unit_name=task.unit_name,
            title=task.title,
            chain=self._chain(task.unit_code),
            causation_id=task.message_id,
        )
        outs: list[Outgoing] = []
        held = self._pending(p, task.task_id)
        if held:
            changes.pending[task.task_id] = None
        for raw in held:
            update = TaskUpdated.model_validate(raw)
            try:
                state = self._apply(state, update)
            except PermanentError as exc:
                self.metrics.updates.labels(update.kind.value, "rejected").inc()
                held_record = HeldRecord(self.updates, update.to_bytes(), update.task_id.encode())
                outs.append(self.dead_letters.of(held_record, exc.reason, exc.detail, update.message_id))
                continue
            self.metrics.updates.labels(update.kind.value, "applied").inc()
        changes.tasks[task.task_id] = TaskEntry(state, facts)
        changes.new.add(task.task_id)
        outs.append(self._status(state, task.message_id))
        return outs

    def _update(self, record: Any, p: int, changes: PartitionChanges) -> Sequence[Outgoing]:
        try:
            update = TaskUpdated.model_validate_json(record.value)
        except ValidationError as exc:
            raise PermanentError("malformed-update", describe_validation_error(exc)) from exc
        entry = self.lookup(p, update.task_id)
        if entry is None:
            # The unit can be faster than this partition; keep the update until its task arrives.
            held = [*self._pending(p, update.task_id), update.model_dump(mode="json")]
            changes.pending[update.task_id] = held
            self.metrics.updates.labels(update.kind.value, "pending").inc()
            return ()
        base = recompute(entry.state, self.calendar) if self._recount_first(p, entry.state) else entry.state
        try:
            state = self._apply(base, update)
        except PermanentError:
            self.metrics.updates.labels(update.kind.value, "rejected").inc()
            raise
        if state == entry.state:
            return ()  # an update applied before (a replay)
        self.metrics.updates.labels(update.kind.value, "applied").inc()
        changes.tasks[update.task_id] = TaskEntry(state, entry.facts)
        return (self._status(state, update.message_id),)

    def _start(self, task: TaskDispatched) -> TaskClockState:
        """start_clocks, remembering the last few results: a task's clocks depend on its terms and receipt only,
        and the tasks of one event (primary, co-operating units) share both."""
        key = (task.deadlines, task.deadline_class, task.received_at)
        template = self._started.get(key)
        if template is None:
            template = start_clocks(task, self.calendar)
            if len(self._started) >= 64:
                self._started.pop(next(iter(self._started)))
            self._started[key] = template
        return template.model_copy(update={"task_id": task.task_id, "unit_code": task.unit_code})

    def _apply(self, state: TaskClockState, update: TaskUpdated) -> TaskClockState:
        # The service's calendar moves working-day deadlines on resume and starts the reply clock.
        return apply_update(state, update, self.calendar)

    def _status(self, state: TaskClockState, causation_id: str) -> Outgoing:
        event = status_event(state, datetime.now(UTC), causation_id)
        if state.status is TaskStatus.CLOSED and event.on_time is not None:
            self.metrics.closed.labels(str(event.on_time).lower()).inc()
        return Outgoing(self.status_topic, event.to_bytes(), state.task_id.encode())

    def _chain(self, unit_code: str) -> Any:
        chain = self._chains.get(unit_code)
        if chain is None:
            chain = self._chains[unit_code] = escalation_chain(self.duty, unit_code)
        return chain

    # --- reading state (uncommitted first) -------------------------------------------------------------

    def _layers(self, p: int) -> list[PartitionChanges]:
        layers = []
        current = self._open.get(p)
        if current is not None:
            layers.append(current)
        for batch in reversed(self._sealed):
            sealed = batch.get(p)
            if sealed is not None:
                layers.append(sealed)
        return layers

    def _store(self, p: int) -> PartitionStore | None:
        return self.stores.get(p) or self._building.get(p)

    def lookup(self, p: int, task_id: str) -> TaskEntry | None:
        """A task's latest state, uncommitted changes first."""
        for layer in self._layers(p):
            entry = layer.tasks.get(task_id)
            if entry is not None:
                return entry
        store = self._store(p)
        return store.task(task_id) if store is not None else None

    def _has(self, p: int, task_id: str) -> bool:
        if any(task_id in layer.tasks for layer in self._layers(p)):
            return True
        store = self._store(p)
        return store is not None and store.has_task(task_id)

    def _pending(self, p: int, task_id: str) -> list[dict[str, Any]]:
        for layer in self._layers(p):
            if task_id in layer.pending:
                return list(layer.pending[task_id] or [])
        store = self._store(p)
        return store.pending(task_id) if store is not None else []

    def uncommitted(self, p: int, task_id: str) -> bool:
        """Whether a batch not yet committed changed the task."""
        return any(task_id in layer.tasks for layer in self._layers(p))

    # --- the batch's life ----------------------------------------------------------------------------

    def sealed(self) -> None:
        """The batch is complete: its changes wait for its commit."""
        self._sealed.append(self._open)
        self._open = {}

    def committed(self) -> None:
        """The oldest batch's outputs are acked and its offsets committed: write it, one transaction per partition."""
        if not self._sealed:
            return
        batch = self._sealed.popleft()
        for p, changes in batch.items():
            store = self.stores.get(p)
            if store is not None and not store.closed:
                store.commit(changes)
        if self.timer is not None:
            self.timer.wake.set()

    def rolled_back(self) -> None:
        """Every uncommitted batch will be read again: forget its changes."""
        self._open = {}
        self._sealed.clear()


async def alerts_horizon(common: CommonSettings, tp: TopicPartition) -> int:
    """Timestamp (ms) of the first retained alert when retention has deleted older ones, else 0 (all known)."""
    consumer = make_consumer(common, group_id=None)
    await consumer.start()
    try:
        consumer.assign([tp])
        begin = (await consumer.beginning_offsets([tp]))[tp]
        if begin <= 0:
            return 0
        consumer.seek(tp, begin)
        batch = await consumer.getmany(tp, timeout_ms=5000, max_records=1)
        records = batch.get(tp, [])
        return int(records[0].timestamp) if records else int(time.time() * 1000)
    finally:
        await consumer.stop()


def status_publisher(
    handler: SlaHandler, producer: Callable[[], Any]
) -> Callable[[Sequence[TaskClockState]], Awaitable[None]]:
    """Produce TaskStatusChanged records of recounted tasks on the batch loop's producer and await their acks
    (keyed by task id like the loop's, so the default partitioner puts them where the loop does)."""

    async def publish(states: Sequence[TaskClockState]) -> None:
        out = producer()
        if out is None:
            raise RuntimeError("the batch loop's producer is not started")
        now = datetime.now(UTC)
        acks = [
            await out.send(handler.status_topic, status_event(s, now, None).to_bytes(), key=s.task_id.encode())
            for s in states
        ]
        await asyncio.gather(*acks)

    return publish


def tasks_router(handler: SlaHandler, ready: Callable[[], bool]) -> APIRouter:
    """`GET /tasks/{task_id}`: the task's clocks as a TaskStatusChanged, from the replica owning its partition."""
    router = APIRouter(tags=["tasks"])

    def problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> Response:
        body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
        return ProblemJSONResponse(body, status_code=status, headers=headers)

    @router.get("/tasks/{task_id}")
    async def task_clocks(task_id: str) -> Response:
        p = handler.partition_of(task_id)
        if p not in handler.stores:
            if not ready():
                detail = "SLA 服务正在分配或恢复分区状态，请稍后重试。"
                return problem(503, "服务暂不可用，请稍后重试", detail, {"Retry-After": "2"})
            return problem(
                421,
                "任务不由本副本负责",
                f"任务 {task_id} 属于分区 {p}，由 SLA 服务的另一个副本负责；请向该副本查询。",
            )
        entry = handler.lookup(p, task_id)
        if entry is None:
            return problem(404, "未找到该任务", f"SLA 服务没有任务 {task_id} 的计时（编号错误，或尚未派发）。")
        event = status_event(entry.state, datetime.now(UTC), None)
        return Response(event.to_bytes(), media_type="application/json")

    return router


def create_app(
    settings: SlaSettings,
    registry: CollectorRegistry,
    calendar: WorkingCalendar | None = None,
    duty: DutyList | None = None,
) -> BatchService:
    """The SLA service: the batch loop over tasks and updates, the alert timer, and the web server."""
    common = settings.common
    calendar = calendar or WorkingCalendar.with_files(settings.calendar_files)
    if duty is None:
        duty = load_duty_list(settings.duty_list) if settings.duty_list is not None else load_duty_list()
    metrics = SlaMetrics(registry)
    dead_letters = KafkaDeadLetters(common, SERVICE, registry)
    service: BatchService | None = None

    def consumer() -> AIOKafkaConsumer | None:
        return service.loop.consumer if service is not None else None

    def producer() -> Any:
        return service.loop.producer if service is not None else None

    handler = SlaHandler(settings, calendar, duty, metrics, dead_letters, consumer)
    handler.calendar_digest = calendar_digest(settings.calendar_files)
    timer = AlertTimer(
        handler,
        handler.policy,
        metrics,
        producer,
        handler.alerts_topic,
        batch=settings.timer_batch,
        idle_s=settings.timer_idle_s,
    )
    handler.timer = timer
    # The reports' read model (services/sla/report_view.py) follows tasks.dispatched and tasks.status beside the
    # loop; /reports/summary answers 503 until it has caught up (the worker's readiness does not wait for it).
    view = ReportView(common, registry, calendar, directory=settings.store_dir() / "reports", duty=duty)
    reloader = CalendarReloader(
        handler,
        settings.calendar_files,
        status_publisher(handler, producer),
        poll_s=settings.calendar_poll_s,
        on_calendar=[lambda new: setattr(view, "calendar", new)],
    )
    routers = [
        tasks_router(handler, lambda: service is not None and service.loop.ready()),
        report_router(view),
        calendar_router(reloader, settings.admin_keys),
    ]
    service = batch_service(
        SERVICE,
        common,
        handler.topics,
        handler,
        registry,
        host=settings.host,
        port=settings.port,
        dead_letters=dead_letters,
        routers=routers,
        components=[view, timer, reloader],
    )
    return service


def main() -> None:
    """Entry point of `gridhub serve sla`."""
    create_app(SlaSettings(), CollectorRegistry()).run()
