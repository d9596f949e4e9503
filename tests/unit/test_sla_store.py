"""The SLA's state: the per-partition SQLite store (due index, fired marks, offsets, reopen), the handler's
uncommitted changes, and the alert timer's rounds against a fake producer (marks only once acked)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from gridhub.kernel.batchout import KafkaDeadLetters
from gridhub.kernel.errors import PermanentError
from gridhub.kernel.settings import CommonSettings
from schemas import ClockKind, SlaAlertRaised, TaskStatusChanged, UpdateKind
from schemas.dutylist import load_duty_list
from services.sla.alerts import position_of
from services.sla.calendar import WorkingCalendar
from services.sla.settings import SlaSettings
from services.sla.store import Fired, PartitionStore, planned_after, to_ms
from services.sla.timers import AlertTimer
from services.sla.worker import SlaHandler, SlaMetrics
from tests.unit.sla_tasks import task, update

S = timedelta(seconds=1)
PREFIX = "unit."


@dataclass
class Record:
    """A consumed record as the batch loop hands it over."""

    topic: str
    partition: int
    offset: int
    value: bytes
    key: bytes | None = None


@pytest.fixture
def settings(tmp_path: Path) -> SlaSettings:
    return SlaSettings(
        common=CommonSettings(topic_prefix=PREFIX, data_dir=tmp_path),
        warning_fractions=(0.5, 0.8),
        escalate_township_after_s=2,
        escalate_county_after_s=4,
        escalate_supervision_after_s=6,
        reminder_interval_s=3,
        final_reminders=1,
    )


@pytest.fixture
def handler(settings: SlaSettings) -> Iterator[SlaHandler]:
    registry = CollectorRegistry()
    h = SlaHandler(
        settings,
        WorkingCalendar.default(),
        load_duty_list(),
        SlaMetrics(registry),
        KafkaDeadLetters(settings.common, "sla", registry),
    )
    h.stores[0] = PartitionStore(h.path(0), 0, h.policy)
    yield h
    for store in h.stores.values():
        store.close()


def dispatched(h: SlaHandler, t: Any, offset: int) -> Record:
    return Record(h.dispatched, 0, offset, t.to_bytes(), t.task_id.encode())


def updated(h: SlaHandler, u: Any, offset: int) -> Record:
    return Record(h.updates, 0, offset, u.to_bytes(), u.task_id.encode())


def commit_batch(h: SlaHandler) -> None:
    h.sealed()
    h.committed()


# --- the store ---------------------------------------------------------------------------------------------


def test_due_index_returns_only_what_is_due_earliest_first(handler: SlaHandler) -> None:
    now = datetime.now(UTC)
    soon = task(now - timedelta(minutes=59))  # ack/contact 1 h: warnings passed, overdue in a minute
    later = task(now)  # everything 30 minutes away or more
    for offset, t in enumerate((soon, later)):
        handler.process(dispatched(handler, t, offset))
    commit_batch(handler)
    store = handler.stores[0]
    due_now = store.due(to_ms(now), 100)
    # The warnings of soon's 1-hour clocks are due (its 2-hour resolve clock's are not); later has nothing due.
    assert {t.task_id for t in due_now} == {soon.task_id}
    assert [t.due_ms for t in due_now] == sorted(t.due_ms for t in due_now)
    assert {t.clock for t in due_now} == {ClockKind.ACK, ClockKind.CONTACT}
    assert store.next_due_ms() == min(t.due_ms for t in due_now)
    assert store.planned_count() == 6  # ack, contact, resolve of each
    assert store.open_tasks == 2
    assert store.offsets() == {handler.dispatched: 2}


def test_fired_marks_move_the_timer_and_survive_a_reopen(handler: SlaHandler, settings: SlaSettings) -> None:
    now = datetime.now(UTC)
    t = task(now - timedelta(minutes=59))
    handler.process(dispatched(handler, t, 0))
    commit_batch(handler)
    store = handler.stores[0]
    timer = next(d for d in store.due(to_ms(now), 10) if d.clock is ClockKind.CONTACT)
    assert timer.fired == (0, 0)
    facts = store.facts(t.task_id)
    assert facts is not None
    current, following = planned_after(timer, facts, handler.policy)
    assert current is not None and following is not None and current.step == "warning-50"
    store.mark_fired(
        [Fired(t.task_id, ClockKind.CONTACT, current.position, to_ms(following.due_at), (timer.fired, timer.due_ms))], 7
    )
    store.close()

    reopened = PartitionStore(handler.path(0), 0, handler.policy)
    try:
        assert reopened.timer(t.task_id, ClockKind.CONTACT) == ((500, 0), to_ms(following.due_at))
        assert reopened.alerts_next() == 7
        assert reopened.offsets() == {handler.dispatched: 1}
        assert reopened.open_tasks == 1
        entry = reopened.task(t.task_id)
        assert entry is not None and entry.state.task_id == t.task_id and entry.facts.chain[0].unit_code == "PA-CG"
    finally:
        reopened.close()


def test_a_mark_after_a_commit_replanned_the_timer_plans_from_the_committed_state(handler: SlaHandler) -> None:
    now = datetime.now(UTC)
    t = task(now - timedelta(minutes=59))
    handler.process(dispatched(handler, t, 0))
    commit_batch(handler)
    store = handler.stores[0]
    timer = next(d for d in store.due(to_ms(now), 10) if d.clock is ClockKind.CONTACT)
    # Meanwhile the unit contacted the citizen and that batch committed: the contact clock is met.
    handler.process(updated(handler, update(t, UpdateKind.CONTACTED, now), 0))
    commit_batch(handler)
    assert store.timer(t.task_id, ClockKind.CONTACT) == ((0, 0), None)
    # The timer's mark (read before the commit) must not plan the met clock again.
    store.mark_fired([Fired(t.task_id, ClockKind.CONTACT, (500, 0), to_ms(now + S), (timer.fired, timer.due_ms))])
    assert store.timer(t.task_id, ClockKind.CONTACT) == ((500, 0), None)


def test_reconcile_marks_alerts_found_on_the_topic(handler: SlaHandler) -> None:
    now = datetime.now(UTC)
    t = task(now - timedelta(minutes=59))
    handler.process(dispatched(handler, t, 0))
    commit_batch(handler)
    store = handler.stores[0]
    advanced = store.reconcile([(t.task_id, ClockKind.ACK, position_of("warning-80", 0))], 12)
    assert advanced == 1
    (fired, due), next_ms = store.timer(t.task_id, ClockKind.ACK), store.alerts_next()  # type: ignore[misc]
    assert fired == (800, 0) and next_ms == 12
    # The next ack alert is the overdue one at the deadline.
    assert due == to_ms(t.received_at + timedelta(hours=1))
    assert store.reconcile([(t.task_id, ClockKind.ACK, (500, 0))], 13) == 0  # older than the mark: nothing


# --- the handler: uncommitted changes ------------------------------------------------------------------


def test_changes_wait_for_the_commit_and_a_rollback_forgets_them(handler: SlaHandler) -> None:
    t = task(datetime.now(UTC))
    outs = handler.process(dispatched(handler, t, 0))
    assert len(outs) == 1 and outs[0].topic == PREFIX + "tasks.status"
    assert TaskStatusChanged.model_validate_json(outs[0].value or b"").task_id == t.task_id
    assert handler.lookup(0, t.task_id) is not None and handler.uncommitted(0, t.task_id)
    assert handler.stores[0].task(t.task_id) is None
    handler.sealed()
    handler.rolled_back()
    assert handler.lookup(0, t.task_id) is None

    handler.process(dispatched(handler, t, 0))
    handler.sealed()
    handler.process(updated(handler, update(t, UpdateKind.ACCEPTED, datetime.now(UTC)), 0))
    handler.sealed()
    handler.committed()  # the first batch only
    assert handler.stores[0].task(t.task_id) is not None
    assert handler.stores[0].offsets() == {handler.dispatched: 1}
    entry = handler.lookup(0, t.task_id)
    assert entry is not None and entry.state.accepted_at is not None  # the second batch, not yet written
    handler.committed()
    assert handler.stores[0].offsets() == {handler.dispatched: 1, handler.updates: 1}
    assert not handler.uncommitted(0, t.task_id)


def test_a_redelivered_task_is_ignored_and_an_update_before_its_task_is_held(handler: SlaHandler) -> None:
    t = task(datetime.now(UTC))
    early = update(t, UpdateKind.ACCEPTED, datetime.now(UTC))
    assert handler.process(updated(handler, early, 0)) == ()
    commit_batch(handler)
    assert handler.stores[0].pending(t.task_id)
    outs = handler.process(dispatched(handler, t, 0))
    commit_batch(handler)
    status = TaskStatusChanged.model_validate_json(outs[-1].value or b"")
    assert status.accepted_at is not None
    assert handler.stores[0].pending(t.task_id) == []
    assert handler.process(dispatched(handler, t, 1)) == ()


def test_an_update_from_another_unit_is_refused_and_a_held_one_dead_lettered(handler: SlaHandler) -> None:
    t = task(datetime.now(UTC))
    handler.process(dispatched(handler, t, 0))
    with pytest.raises(PermanentError) as refused:
        handler.process(updated(handler, update(t, UpdateKind.RESOLVED, datetime.now(UTC), unit="PA-HX"), 0))
    assert refused.value.reason == "not-task-owner"

    other = task(datetime.now(UTC))
    handler.process(updated(handler, update(other, UpdateKind.RESOLVED, datetime.now(UTC), unit="PA-HX"), 1))
    outs = handler.process(dispatched(handler, other, 1))
    assert [o.topic for o in outs] == [PREFIX + "events.deadletter", PREFIX + "tasks.status"]


# --- the timer ---------------------------------------------------------------------------------------------


@dataclass
class FakeProducer:
    """Enough of AIOKafkaProducer for the timer: batches, acks with offsets, a log per partition."""

    log: dict[int, list[bytes]] = field(default_factory=dict)
    fail: bool = False

    def create_batch(self) -> Any:
        records: list[bytes] = []

        def append(*, key: bytes, value: bytes, timestamp: Any) -> object | None:
            records.append(value)
            return object()

        return SimpleNamespace(append=append, close=lambda: None, records=records)

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.fail:
            future.set_exception(RuntimeError("broker away"))
            return future
        written = self.log.setdefault(partition, [])
        future.set_result(SimpleNamespace(offset=len(written)))
        written.extend(batch.records)
        return future


def timer_of(handler: SlaHandler, producer: FakeProducer, clock: list[float]) -> AlertTimer:
    timer = AlertTimer(
        handler,
        handler.policy,
        handler.metrics,
        lambda: producer,  # type: ignore[arg-type,return-value]
        handler.alerts_topic,
        batch=1000,
        idle_s=0.1,
        now=lambda: clock[0],
    )
    handler.timer = timer
    return timer


def alerts(producer: FakeProducer) -> list[SlaAlertRaised]:
    return [SlaAlertRaised.model_validate_json(v) for v in producer.log.get(0, [])]


async def test_the_timer_fires_each_alert_once_in_order_and_marks_it(handler: SlaHandler) -> None:
    start = time.time()
    received = datetime.fromtimestamp(start, UTC) - timedelta(hours=1) + 10 * S
    t = task(received, contact_h=1, resolve_h=5)
    handler.process(dispatched(handler, t, 0))
    commit_batch(handler)
    producer = FakeProducer()
    clock = [start]
    timer = timer_of(handler, producer, clock)

    while await timer.round():
        pass
    first = alerts(producer)
    # ack and contact: both warnings passed, warning-50 superseded by warning-80; resolve: warning-50 not yet due
    assert sorted((a.clock.value, a.step) for a in first) == [("ack", "warning-80"), ("contact", "warning-80")]
    assert handler.metrics.alerts_suppressed.labels("warning", "superseded")._value.get() == 2
    assert await timer.round() == 0  # nothing more due now, nothing twice

    # Walk the clock past the deadline (+10 s) and the escalation steps (+2, +4, +6 s, reminders every 3 s).
    for step in range(1, 40):
        clock[0] = start + step * 0.5
        while await timer.round():
            pass
    raised = [a for a in alerts(producer) if a.clock is ClockKind.CONTACT]
    assert [(a.step, a.reminder) for a in raised] == [
        ("warning-80", 0),
        ("overdue", 0),
        ("escalation-township", 0),
        ("escalation-county", 0),
        ("escalation-supervision", 0),
        ("escalation-supervision", 1),
    ]
    ids = [a.alert_id for a in alerts(producer)]
    assert len(ids) == len(set(ids))
    assert all(a.raised_at >= a.due_at for a in raised)
    assert all(a.raised_at - a.due_at < 0.6 * S for a in raised[1:])
    store = handler.stores[0]
    assert store.alerts_next() == len(producer.log[0])
    assert store.timer(t.task_id, ClockKind.CONTACT) == ((1003, 1), None)  # done: the plan is over


async def test_a_failed_produce_marks_nothing_and_the_partition_is_reconciled_first(handler: SlaHandler) -> None:
    start = time.time()
    t = task(datetime.fromtimestamp(start, UTC) - timedelta(hours=1) + 10 * S)
    handler.process(dispatched(handler, t, 0))
    commit_batch(handler)
    producer = FakeProducer(fail=True)
    timer = timer_of(handler, producer, [start])
    while await timer.round():
        pass  # the superseded warnings move; the warnings to raise fail
    assert 0 in handler.needs_reconcile
    known = handler.stores[0].timer(t.task_id, ClockKind.CONTACT)
    # warning-50 was passed over (superseded, nothing to send); warning-80 is not marked: it may or may not be on
    # the topic, which the partition's reconcile reads before its next round.
    assert known is not None and known[0] == (500, 0)
    assert handler.stores[0].alerts_next() is None


# --- GET /tasks/{id} -----------------------------------------------------------------------------------


async def test_task_route_answers_for_owned_partitions_only(handler: SlaHandler) -> None:
    import httpx
    from fastapi import FastAPI

    from services.sla.worker import tasks_router

    ready = [True]
    app = FastAPI()
    app.include_router(tasks_router(handler, lambda: ready[0]))

    def in_partition(owned: bool) -> Any:
        return next(
            t for t in (task(datetime.now(UTC)) for _ in range(200)) if (handler.partition_of(t.task_id) == 0) == owned
        )

    ours, missing, theirs = in_partition(True), in_partition(True), in_partition(False)
    handler.process(dispatched(handler, ours, 0))  # uncommitted: answered already
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sla.test") as client:
        found = await client.get(f"/tasks/{ours.task_id}")
        assert found.status_code == 200
        assert TaskStatusChanged.model_validate_json(found.content).task_id == ours.task_id

        unknown = await client.get(f"/tasks/{missing.task_id}")
        assert unknown.status_code == 404 and unknown.headers["content-type"].startswith("application/problem+json")
        assert unknown.json()["title"] == "未找到该任务"

        elsewhere = await client.get(f"/tasks/{theirs.task_id}")
        assert elsewhere.status_code == 421 and elsewhere.json()["title"] == "任务不由本副本负责"
        assert f"分区 {handler.partition_of(theirs.task_id)}" in elsewhere.json()["detail"]
        ready[0] = False
        starting = await client.get(f"/tasks/{theirs.task_id}")
        assert starting.status_code == 503 and starting.headers["retry-after"] == "2"
