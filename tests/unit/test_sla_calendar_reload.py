"""Loading a new calendar at runtime (issue 5): open tasks recounted over the store, their timers replanned,
a TaskStatusChanged per moved task (acked before the write), untouched tasks left alone; POST /calendar/reload.

tests/unit/data/sample-2027-holiday-cn.json is made-up TEST DATA (2027-01-01..03 off), not the real schedule."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from gridhub.kernel.batchout import KafkaDeadLetters
from gridhub.kernel.batchserve import ops_app
from gridhub.kernel.settings import CommonSettings
from schemas import ClockKind, ClockTerm, DurationUnit, TaskDispatched, UpdateKind
from schemas.dutylist import load_duty_list
from services.sla.calendar import WorkingCalendar
from services.sla.calendar_reload import CalendarReloader, calendar_digest, calendar_router, recompute_store
from services.sla.clocks import TaskClockState
from services.sla.settings import SlaSettings
from services.sla.store import PartitionStore, to_ms
from services.sla.worker import SlaHandler, SlaMetrics, create_app
from tests.unit.sla_tasks import task, update
from tests.unit.test_sla_store import Record

SAMPLE_2027 = Path(__file__).parent / "data" / "sample-2027-holiday-cn.json"
SH = ZoneInfo("Asia/Shanghai")
RECEIVED = datetime(2026, 12, 30, 9, tzinfo=SH)  # Wednesday: 2 working days run into 2027


class Published:
    """A fake publish step: records the states it was handed (as if acked)."""

    def __init__(self) -> None:
        self.states: list[TaskClockState] = []

    async def __call__(self, states: Sequence[TaskClockState]) -> None:
        self.states.extend(states)


@pytest.fixture
def handler(tmp_path: Path) -> Iterator[SlaHandler]:
    settings = SlaSettings(common=CommonSettings(topic_prefix="unit.", data_dir=tmp_path))
    registry = CollectorRegistry()
    h = SlaHandler(
        settings,
        WorkingCalendar.default(),  # no 2027 data: weekends-only fallback
        load_duty_list(),
        SlaMetrics(registry),
        KafkaDeadLetters(settings.common, "sla", registry),
    )
    h.registry = registry  # type: ignore[attr-defined]
    h.calendar_digest = calendar_digest(())
    h.stores[0] = PartitionStore(h.path(0), 0, h.policy)
    yield h
    for store in h.stores.values():
        store.close()


def working_days_task() -> TaskDispatched:
    t = task(RECEIVED)
    terms = (ClockTerm(kind=ClockKind.RESOLVE, amount=2, unit=DurationUnit.WORKING_DAYS),)
    return t.model_copy(update={"deadlines": terms})


def dispatch(h: SlaHandler, tasks: Sequence[TaskDispatched]) -> None:
    for offset, t in enumerate(tasks):
        h.process(Record(h.dispatched, 0, offset, t.to_bytes(), t.task_id.encode()))
    h.sealed()
    h.committed()


def resolve_timer(store: PartitionStore, task_id: str) -> tuple[int | None, int]:
    row = store.db.execute(
        "SELECT due_ms, deadline_ms FROM timers WHERE task_id = ? AND clock = ?", (task_id, ClockKind.RESOLVE.value)
    ).fetchone()
    return row[0], row[1]


def sample(h: SlaHandler, name: str) -> float:
    value = h.registry.get_sample_value(name)  # type: ignore[attr-defined]
    return 0.0 if value is None else float(value)


async def test_reload_recounts_open_tasks_replans_timers_and_publishes_only_the_moved(
    handler: SlaHandler, tmp_path: Path
) -> None:
    moving = [working_days_task() for _ in range(3)]
    untouched = [task(RECEIVED) for _ in range(2)]  # hours only: no calendar involved
    dispatch(handler, [*moving, *untouched])
    store = handler.stores[0]
    before = store.task(moving[0].task_id)
    assert before is not None
    # 2 working days from Wed 12-30 without 2027 data: 12-31 and Fri 2027-01-01, due 01-02 00:00.
    assert before.state.due(ClockKind.RESOLVE) == datetime(2027, 1, 2, tzinfo=SH)
    assert before.state.clock(ClockKind.RESOLVE).calendar_fallback is True  # type: ignore[union-attr]
    timers_before = {t.task_id: resolve_timer(store, t.task_id) for t in moving}

    path = tmp_path / "holiday-2027.json"
    shutil.copy(SAMPLE_2027, path)
    published = Published()
    reloader = CalendarReloader(handler, [path], published, poll_s=60)
    result = await reloader.reload()

    assert result.outcome == "loaded"
    body = result.body()
    assert 2027 in body["years"] and body["sources"] == {"2027": "file:holiday-2027.json"}
    assert 2027 not in body["fallback_years"]
    assert (body["recomputed"], body["changed"], body["complete"]) == (5, 3, True)
    assert sorted(s.task_id for s in published.states) == sorted(t.task_id for t in moving)
    for t in moving:
        entry = store.task(t.task_id)
        assert entry is not None
        resolve = entry.state.clock(ClockKind.RESOLVE)
        assert resolve is not None
        # 2027-01-01..03 off in the file: 12-31 and Mon 01-04, due 01-05 00:00.
        assert resolve.due_at == datetime(2027, 1, 5, tzinfo=SH)
        assert (resolve.calendar_fallback, resolve.fallback_years) == (False, ())
        due_ms, deadline_ms = resolve_timer(store, t.task_id)
        assert deadline_ms == to_ms(resolve.due_at) and deadline_ms != timers_before[t.task_id][1]
        assert due_ms is not None and due_ms != timers_before[t.task_id][0]  # the next warning moved too
    assert store.meta("calendar") == calendar_digest([path])
    assert handler.calendar is result.calendar and not handler.stale_partitions
    assert (
        handler.registry.get_sample_value(  # type: ignore[attr-defined]
            "gridhub_sla_calendar_reloads_total", {"outcome": "loaded"}
        )
        == 1.0
    )
    assert sample(handler, "gridhub_sla_calendar_recomputed_tasks_total") == 5.0
    assert sample(handler, "gridhub_sla_calendar_changed_tasks_total") == 3.0
    assert sample(handler, "gridhub_sla_calendar_fallback_years") == 0.0

    # The same files again: nothing loaded, nothing published.
    again = await reloader.reload()
    assert again.outcome == "unchanged" and len(published.states) == 3

    # A broken file keeps the calendar in use and counts a failure.
    path.write_text("{not json", encoding="utf-8")
    failed = await reloader.reload()
    assert failed.outcome == "failed" and failed.error
    assert handler.calendar is result.calendar
    assert (
        handler.registry.get_sample_value(  # type: ignore[attr-defined]
            "gridhub_sla_calendar_reloads_total", {"outcome": "failed"}
        )
        == 1.0
    )


async def test_tasks_in_flight_wait_for_their_commit_and_a_batch_committed_meanwhile_wins(
    handler: SlaHandler,
) -> None:
    first, second = working_days_task(), working_days_task()
    dispatch(handler, [first, second])
    store = handler.stores[0]
    calendar = WorkingCalendar.with_files([SAMPLE_2027])
    in_flight = {first.task_id}
    published = Published()

    async def publish(states: Sequence[TaskClockState]) -> None:
        await published(states)
        if len(published.states) == 1:
            # A batch commits an update of `second` while its record is being acked: it wins.
            u = update(second, UpdateKind.ACCEPTED, RECEIVED + timedelta(minutes=5))
            handler.process(Record(handler.updates, 0, 0, u.to_bytes(), u.task_id.encode()))
            handler.sealed()
            handler.committed()
        in_flight.clear()  # the batch of `first` commits meanwhile

    def uncommitted(task_id: str) -> bool:
        return task_id in in_flight

    done = await recompute_store(store, calendar, publish, uncommitted=uncommitted, deferred_wait_s=1.0)
    assert done.complete
    assert [s.task_id for s in published.states] == [second.task_id, first.task_id]
    assert done.written == 1  # `first`, recounted after its commit; `second` was changed meanwhile and kept
    entry = store.task(first.task_id)
    assert entry is not None and entry.state.due(ClockKind.RESOLVE) == datetime(2027, 1, 5, tzinfo=SH)
    kept = store.task(second.task_id)
    assert kept is not None and kept.state.accepted_at is not None  # the batch's state, not overwritten


async def test_a_partition_counted_on_other_files_is_recounted_and_updates_recount_first(
    handler: SlaHandler,
) -> None:
    t = working_days_task()
    dispatch(handler, [t])
    store = handler.stores[0]
    handler._check_calendar(0, store)
    assert handler.stale_partitions == {0} and handler.recount_on_update
    handler.calendar = WorkingCalendar.with_files([SAMPLE_2027])
    # An update processed before the recount reaches the task counts it on the new calendar first.
    u = update(t, UpdateKind.ACCEPTED, RECEIVED + timedelta(minutes=5))
    outs = handler.process(Record(handler.updates, 0, 0, u.to_bytes(), u.task_id.encode()))
    assert len(outs) == 1
    entry = handler.lookup(0, t.task_id)
    assert entry is not None and entry.state.due(ClockKind.RESOLVE) == datetime(2027, 1, 5, tzinfo=SH)


async def test_post_calendar_reload_needs_the_operator_key_and_answers_the_years(
    handler: SlaHandler, tmp_path: Path
) -> None:
    path = tmp_path / "holiday-2027.json"
    shutil.copy(SAMPLE_2027, path)
    dispatch(handler, [working_days_task()])
    published = Published()
    reloader = CalendarReloader(handler, [path], published, poll_s=60)
    app = FastAPI()
    app.include_router(calendar_router(reloader, handler.settings.admin_keys))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sla") as client:
        refused = await client.post("/calendar/reload", headers={"Authorization": "Bearer wrong"})
        assert refused.status_code == 401
        assert refused.headers["content-type"].startswith("application/problem+json")
        ok = await client.post("/calendar/reload", headers={"Authorization": "Bearer dev-operator"})
        assert ok.status_code == 200
        body = ok.json()
        assert body["outcome"] == "loaded" and 2027 in body["years"]
        assert (body["recomputed"], body["changed"]) == (1, 1) and body["fallback_years"] == []
        path.write_text("[]", encoding="utf-8")
        bad = await client.post("/calendar/reload", headers={"Authorization": "Bearer dev-operator"})
        assert bad.status_code == 422
        assert bad.headers["content-type"].startswith("application/problem+json")


def test_admin_keys_are_required_in_prod() -> None:
    with pytest.raises(ValueError, match="GRIDHUB_SLA_ADMIN_KEYS"):
        SlaSettings(common=CommonSettings(mode="prod", kafka_replication_factor=3))


async def test_the_workers_app_reloads_a_replaced_file_without_a_broker(tmp_path: Path) -> None:
    path = tmp_path / "holiday-2027.json"
    first = json.loads(SAMPLE_2027.read_text(encoding="utf-8"))
    first["days"] = first["days"][:1]  # only 01-01 off
    path.write_text(json.dumps(first), encoding="utf-8")
    settings = SlaSettings(common=CommonSettings(topic_prefix="unit.", data_dir=tmp_path), calendar_files=(path,))
    service = create_app(settings, CollectorRegistry())
    app = ops_app(service.service, service.registry, service.health, service.routers)
    shutil.copy(SAMPLE_2027, path)  # the operator replaces the file
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sla") as client:
        ok = await client.post("/calendar/reload", headers={"Authorization": "Bearer dev-operator"})
        assert ok.status_code == 200, ok.text
        assert ok.json()["outcome"] == "loaded" and ok.json()["sources"] == {"2027": "file:holiday-2027.json"}
        again = await client.post("/calendar/reload", headers={"Authorization": "Bearer dev-operator"})
        assert again.json()["outcome"] == "unchanged"
        refused = await client.post("/calendar/reload")
        assert refused.status_code == 401


async def test_a_paused_task_is_recounted_when_it_resumes(handler: SlaHandler, tmp_path: Path) -> None:
    t = working_days_task()
    dispatch(handler, [t])
    paused = update(t, UpdateKind.PAUSED, datetime(2026, 12, 31, 12, tzinfo=SH))
    handler.process(Record(handler.updates, 0, 0, paused.to_bytes(), t.task_id.encode()))
    handler.sealed()
    handler.committed()
    path = tmp_path / "holiday-2027.json"
    shutil.copy(SAMPLE_2027, path)
    published = Published()
    result = await CalendarReloader(handler, [path], published, poll_s=60).reload()
    assert (result.recount.recomputed, published.states) == (0, [])  # no clock running: not read
    resumed = update(t, UpdateKind.RESUMED, datetime(2026, 12, 31, 18, tzinfo=SH))
    handler.process(Record(handler.updates, 0, 1, resumed.to_bytes(), t.task_id.encode()))
    entry = handler.lookup(0, t.task_id)
    assert entry is not None and entry.state.due(ClockKind.RESOLVE) == datetime(2027, 1, 5, 6, tzinfo=SH)
