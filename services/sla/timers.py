"""The alert timer: fires due alerts from the partitions' due indexes onto sla.alerts, marks them once acked.

One round: ask every open partition store for its timers due by now (index range scan, earliest first, at most
`timer_batch` in all), build each alert (services.sla.alerts: the planned alert at the timer's position, its
deterministic id and Chinese message), produce them to sla.alerts partition p (the task's partition: sla.alerts
is co-partitioned with the inputs, and this worker is the only writer of p), wait for the acks, then in one
transaction per partition advance each timer past what it raised and record how far sla.alerts p is written.
A round never raises an alert twice: a timer moves only after its alert is acked, and the next round starts
after that. A task with changes not yet committed waits for its commit (its timers are replanned then).

Crash windows: an alert acked but not marked (killed in between) is found on sla.alerts p by the next owner
before it fires anything (PartitionStore.reconcile from `alerts_next`), so it is not raised again; an alert
produced but never acked is either on the topic (found the same way) or not (raised again, late, same id). A
produce that fails leaves the partition to be reconciled the same way before its next round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaProducer

from services.sla.alerts import AlertPolicy, alert_record, superseded
from services.sla.store import DueTimer, Fired, PartitionStore, planned_after, to_ms

if TYPE_CHECKING:
    from services.sla.worker import SlaHandler, SlaMetrics

log = logging.getLogger(__name__)
METRICS_EVERY_S = 5.0


@dataclass
class _Outbox:
    """One partition's alerts of a round."""

    store: PartitionStore
    fired: list[Fired] = field(default_factory=list)
    records: list[tuple[bytes, bytes, float, str, str, str]] = field(default_factory=list)


class AlertTimer:
    """Background component of the SLA service: fires due alerts on time."""

    def __init__(
        self,
        handler: SlaHandler,
        policy: AlertPolicy,
        metrics: SlaMetrics,
        producer: Callable[[], AIOKafkaProducer | None],
        topic: str,
        *,
        batch: int,
        idle_s: float,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.handler = handler
        self.policy = policy
        self.metrics = metrics
        self.producer = producer
        self.topic = topic
        self.batch = batch
        self.idle_s = idle_s
        self.now = now
        self.wake = asyncio.Event()
        self.busy: set[int] = set()  # partitions with a round in flight (restore and revoke wait for it)
        self.rounds = 0
        self._task: asyncio.Task[None] | None = None
        self._metrics_at = 0.0
        self._round_over = asyncio.Condition()

    async def start(self) -> None:
        """Start the timer loop in the background."""
        self._task = asyncio.create_task(self._run(), name="sla-alert-timer")

    async def stop(self) -> None:
        """Stop the loop (a round in flight is cancelled: its alerts, if acked, are found again on restart)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def idle(self, partition: int) -> None:
        """Wait until no round is in flight for the partition."""
        async with self._round_over:
            await self._round_over.wait_for(lambda: partition not in self.busy)

    async def _run(self) -> None:
        while True:
            try:
                fired = await self.round()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("alert timer round failed; trying again in 1 s")
                await asyncio.sleep(1.0)
                continue
            self._publish_metrics()
            if not fired:
                await self._sleep()

    async def _sleep(self) -> None:
        """Until the earliest planned timer, a commit's wake-up, or idle_s."""
        wait = self.idle_s
        now_ms = int(self.now() * 1000)
        for store in list(self.handler.stores.values()):
            if store.closed:
                continue
            due = store.next_due_ms()
            if due is not None:
                wait = min(wait, max(0.0, (due - now_ms) / 1000))
        if wait <= 0:
            # Due but held back (its task has a batch not yet committed): the commit wakes the timer.
            wait = 0.05
        self.wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), wait)

    async def round(self) -> int:
        """Fire what is due now; return how many timers moved (raised or passed over)."""
        producer = self.producer()
        if producer is None:
            return 0
        now_s = self.now()
        now_ms = int(now_s * 1000)
        candidates: list[tuple[int, DueTimer]] = []
        stores = {p: s for p, s in self.handler.stores.items() if not s.closed and p not in self.handler.retiring}
        share = self.batch // max(1, len(stores)) + 1  # each partition's earliest: a round stays within `batch`
        for p, store in stores.items():
            if p in self.handler.needs_reconcile:
                await self.handler.reconcile(p)
                continue
            candidates += [(p, t) for t in store.due(now_ms, share)]
        if not candidates:
            return 0
        candidates.sort(key=lambda pt: pt[1].due_ms)
        outboxes: dict[int, _Outbox] = {}
        raised_at = datetime.fromtimestamp(now_s, UTC)
        now_dt = raised_at
        wanted: dict[int, list[str]] = {}
        for p, timer in candidates:
            wanted.setdefault(p, []).append(timer.task_id)
        facts_of = {p: stores[p].facts_many(ids) for p, ids in wanted.items()}
        for index, (p, timer) in enumerate(candidates):
            if self.handler.uncommitted(p, timer.task_id):
                continue  # replanned when its batch commits
            box = outboxes.get(p)
            if box is None:
                box = outboxes[p] = _Outbox(stores[p])
            seen = (timer.fired, timer.due_ms)
            facts = facts_of[p].get(timer.task_id)
            current, following = (None, None) if facts is None else planned_after(timer, facts, self.policy)
            next_ms = None if following is None else to_ms(following.due_at)
            if current is None or facts is None:
                box.fired.append(Fired(timer.task_id, timer.clock, timer.fired, None, seen))
                continue
            if to_ms(current.due_at) > now_ms:
                # Replanned since (a resume moved the deadline): wait for the new instant.
                box.fired.append(Fired(timer.task_id, timer.clock, timer.fired, to_ms(current.due_at), seen))
                continue
            box.fired.append(Fired(timer.task_id, timer.clock, current.position, next_ms, seen))
            suppress = self.handler.suppress_before(p)
            if superseded(current, following, now_dt) or to_ms(current.due_at) < suppress:
                reason = "superseded" if to_ms(current.due_at) >= suppress else "before-rebuild-horizon"
                self.metrics.alerts_suppressed.labels(current.kind.value, reason).inc()
                continue
            lateness = now_s - current.due_at.timestamp()
            box.records.append(
                (
                    facts.task_id.encode(),
                    alert_record(current, facts, raised_at),
                    lateness,
                    current.kind.value,
                    current.clock.value,
                    current.step,
                )
            )
            if index % 200 == 199:
                await asyncio.sleep(0)  # let the batch loop and the web server run meanwhile
        if not outboxes:
            return 0
        self.busy |= outboxes.keys()
        try:
            moved = 0
            for p, box in outboxes.items():
                moved += await self._send(producer, p, box)
            return moved
        finally:
            self.busy -= outboxes.keys()
            self.rounds += 1
            async with self._round_over:
                self._round_over.notify_all()

    async def _send(self, producer: AIOKafkaProducer, partition: int, box: _Outbox) -> int:
        """Produce one partition's alerts, await the acks, then mark them (one transaction)."""
        alerts_next: int | None = None
        if box.records:
            try:
                alerts_next = await self._produce(producer, partition, box.records)
            except Exception:
                log.exception("producing alerts failed; partition %d is reconciled before its next round", partition)
                self.handler.needs_reconcile.add(partition)
                return 0
        if box.store.closed:
            return 0  # revoked meanwhile: the next owner reconciles from sla.alerts
        box.store.mark_fired(box.fired, alerts_next)
        raised: dict[tuple[str, str, str], int] = {}
        lateness_of: dict[str, list[float]] = {}
        for _key, _value, lateness, kind, clock, step in box.records:
            raised[(kind, clock, step)] = raised.get((kind, clock, step), 0) + 1
            lateness_of.setdefault(kind, []).append(max(0.0, lateness))
        for (kind, clock, step), n in raised.items():
            self.metrics.alerts_raised.labels(kind, clock, step).inc(n)
        for kind, values in lateness_of.items():
            histogram = self.metrics.alert_lateness.labels(kind)
            for value in values:
                histogram.observe(value)
        return len(box.fired)

    async def _produce(
        self, producer: AIOKafkaProducer, partition: int, records: list[tuple[bytes, bytes, float, str, str, str]]
    ) -> int:
        """Send records to sla.alerts partition p in batches; return the offset after the last one."""
        sends: list[tuple[Awaitable[Any], int]] = []
        batch = producer.create_batch()
        count = 0
        for key, value, *_ in records:
            if batch.append(key=key, value=value, timestamp=None) is None:
                batch.close()
                sends.append((await producer.send_batch(batch, self.topic, partition=partition), count))
                batch = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
                count = 0
            count += 1
        batch.close()
        sends.append((await producer.send_batch(batch, self.topic, partition=partition), count))
        end = 0
        for ack, n in sends:
            metadata = await ack
            end = max(end, int(metadata.offset) + n)
        return end

    def _publish_metrics(self) -> None:
        now = time.monotonic()
        if now - self._metrics_at < METRICS_EVERY_S:
            return
        self._metrics_at = now
        stores = [s for s in self.handler.stores.values() if not s.closed]
        self.metrics.open_tasks.set(sum(s.open_tasks for s in stores))
        self.metrics.store_size.set(sum(s.size_bytes() for s in stores))
