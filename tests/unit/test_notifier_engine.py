"""Notifier delivery engine: retry verdicts, scheduler (order, urgency, limits), outbox store, engine, API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
from aiohttp import web
from aiokafka import TopicPartition
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from standardwebhooks import Webhook

from gridhub.broker import free_port
from gridhub.kernel.batchout import KafkaDeadLetters
from gridhub.kernel.errors import PermanentError
from gridhub.kernel.http import install_problem_handlers
from gridhub.kernel.settings import CommonSettings
from schemas import DeliveryRecorded, ReportDeadLettered
from services.notifier.deliveries_api import deliveries_router
from services.notifier.engine import DeliveryEngine, NotifierMetrics
from services.notifier.handler import NotifierHandler, urgency_of_task
from services.notifier.outbox import Attempt, Job, JobUpdate, Outbox, now_ms
from services.notifier.retry import AttemptResult, verdict
from services.notifier.scheduler import Limits, Scheduler
from services.notifier.settings import DEV_SIGNING_SECRET, NotifierSettings
from services.notifier.signing import signed_headers
from services.notifier.targets import SettingsTargets
from tests.unit.sla_tasks import task as sla_task

SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


def job(
    n: int,
    *,
    task: str = "T1",
    endpoint: str = "E1",
    urgency: int = 1000,
    next_at: int = 0,
    partition: int = 0,
    url: str = "http://127.0.0.1:1/h",
) -> Job:
    return Job(
        delivery_id=f"d{n}.{endpoint}",
        webhook_id=f"task_{task}-{n}",
        kind="task",
        subject_id=task,
        task_id=task,
        unit_code="PA-CG",
        endpoint_id=endpoint,
        url=url,
        channel="webhook",
        body=json.dumps({"n": n, "task_id": task}).encode(),
        urgency_ms=urgency,
        causation_id=None,
        source=f"t.tasks.dispatched:{partition}:{n}",
        next_at_ms=next_at,
        seq=n,
        partition=partition,
    )


# --- retry verdicts ----------------------------------------------------------------------------


def test_verdict_follows_the_published_schedule_then_exhausts() -> None:
    failed = AttemptResult(500, "内部错误")
    delays = [verdict(SCHEDULE, n, failed).delay_s for n in range(len(SCHEDULE))]
    assert delays == list(SCHEDULE)
    assert verdict(SCHEDULE, len(SCHEDULE), failed).outcome == "exhausted"
    assert verdict(SCHEDULE, 0, failed).slow_down is True


def test_verdict_honours_retry_after_and_pauses_the_endpoint_on_429() -> None:
    v = verdict(SCHEDULE, 0, AttemptResult(429, retry_after_s=20.0))
    assert (v.outcome, v.delay_s, v.slow_down, v.pause_s) == ("retrying", 20.0, True, 20.0)
    shorter = verdict(SCHEDULE, 1, AttemptResult(503, retry_after_s=2.0))
    assert (shorter.delay_s, shorter.pause_s) == (300.0, 2.0)  # never shortens the schedule


def test_verdict_gone_delivered_and_network_error() -> None:
    assert verdict(SCHEDULE, 0, AttemptResult(410)).outcome == "gone"
    assert verdict(SCHEDULE, 3, AttemptResult(204)).outcome == "delivered"
    network = verdict(SCHEDULE, 0, AttemptResult(None, "ClientConnectorError"))
    assert (network.outcome, network.delay_s, network.slow_down) == ("retrying", 5.0, False)
    assert verdict(SCHEDULE, 0, AttemptResult(404)).slow_down is False


# --- scheduler ---------------------------------------------------------------------------------


def test_most_urgent_due_job_goes_first() -> None:
    s = Scheduler(lambda _e: Limits(concurrency=100, rate_per_s=1e6, burst=1000))
    s.add(job(1, task="A", urgency=9000))
    s.add(job(2, task="B", urgency=1000, endpoint="E2"))
    s.add(job(3, task="C", urgency=5000, endpoint="E3"))
    s.add(job(4, task="D", urgency=1, next_at=10_000))  # most urgent but not due yet
    assert [j.task_id for j in s.take(now_ms=100, limit=2)] == ["B", "C"]
    assert [j.task_id for j in s.take(now_ms=100, limit=10)] == ["A"]
    assert s.next_wake_ms() == 10_000
    assert [j.task_id for j in s.take(now_ms=10_000, limit=10)] == ["D"]


def test_same_task_and_endpoint_keep_their_order_while_retrying() -> None:
    s = Scheduler()
    first, second, other = job(1), job(2), job(3, task="T2")
    for j in (first, second, other):
        s.add(j)
    taken = s.take(now_ms=0, limit=10)
    assert {j.delivery_id for j in taken} == {first.delivery_id, other.delivery_id}  # second waits for first
    s.finished(first, 5000, now_ms=10)  # first failed: retry at 5 s; second still waits
    s.finished(other, None, now_ms=10)
    assert s.take(now_ms=100, limit=10) == []
    assert s.take(now_ms=5000, limit=10) == [first]
    s.finished(first, None, now_ms=5001)
    assert s.take(now_ms=5001, limit=10) == [second]


def test_endpoint_concurrency_and_slow_down() -> None:
    s = Scheduler(lambda _e: Limits(concurrency=2, rate_per_s=1e6, burst=1000))
    jobs = [job(n, task=f"T{n}") for n in range(5)]
    s.add_all(jobs)
    taken = s.take(now_ms=0, limit=10)
    assert len(taken) == 2
    s.finished(taken[0], 50_000, now_ms=1, slow_until_ms=30_000)  # 5xx: one at a time until 30 s
    assert s.take(now_ms=2, limit=10) == []  # still one in flight, the slowed limit is 1
    s.finished(taken[1], None, now_ms=3)
    assert len(s.take(now_ms=4, limit=10)) == 1
    assert s.in_flight() == 1


def test_endpoint_rate_limit_and_retry_after_pause() -> None:
    s = Scheduler(lambda _e: Limits(concurrency=100, rate_per_s=10, burst=2))
    s.add_all([job(n, task=f"T{n}") for n in range(6)])
    assert len(s.take(now_ms=0, limit=10)) == 2  # the burst
    assert s.take(now_ms=50, limit=10) == []
    assert s.next_wake_ms() is not None and s.next_wake_ms() <= 101  # type: ignore[operator]
    assert len(s.take(now_ms=101, limit=10)) == 1  # 10/s: one more token after 100 ms
    s2 = Scheduler(lambda _e: Limits(concurrency=100, rate_per_s=1e6, burst=100))
    s2.add_all([job(n, task=f"T{n}") for n in range(3)])
    first = s2.take(now_ms=0, limit=1)[0]
    s2.finished(first, 20_000, now_ms=0, not_before_ms=20_000)  # 429 Retry-After 20 s: the whole endpoint waits
    assert s2.take(now_ms=10_000, limit=10) == []
    assert len(s2.take(now_ms=20_000, limit=10)) == 3


def test_backlog_of_one_endpoint_does_not_hold_up_another() -> None:
    s = Scheduler(lambda e: Limits(concurrency=1 if e == "slow" else 10, rate_per_s=1e6, burst=1000))
    s.add_all([job(n, task=f"S{n}", endpoint="slow", urgency=1) for n in range(1000)])
    s.add(job(5000, task="F", endpoint="fast", urgency=10**9))
    taken = s.take(now_ms=0, limit=10)
    assert sorted(j.endpoint_id for j in taken) == ["fast", "slow"]


def test_dropped_partition_is_forgotten() -> None:
    s = Scheduler()
    s.add(job(1, partition=0))
    s.add(job(2, task="T9", partition=1))
    s.drop_partition(0)
    assert [j.partition for j in s.take(now_ms=0, limit=10)] == [1]
    assert len(s) == 1


# --- outbox ------------------------------------------------------------------------------------


def test_outbox_stores_jobs_once_with_offsets_and_records_attempts(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "p0.sqlite", 0)
    added = box.store([job(1), job(2, task="T2")], {"t.tasks.dispatched": 3})
    assert [j.seq for j in added] == [1, 2]
    assert box.store([job(1)], {"t.tasks.dispatched": 4}) == []  # read again: stored once, offsets move on
    assert box.offsets() == {"t.tasks.dispatched": 4}
    assert box.depth() == 2 and box.oldest_due_ms() == 0
    box.record(
        [JobUpdate("d1.E1", "pending", 1, 5000, 500, "内部错误", 10)],
        [Attempt("d1.E1", 1, 9, 500, 12.5, "内部错误", "retrying")],
    )
    assert [j.delivery_id for j in box.due(now_ms=100)] == ["d2.E1"]
    box.record(
        [JobUpdate("d1.E1", "exhausted", 2, 0, 503, "x" * 500, 20)],
        [Attempt("d1.E1", 2, 19, 503, 3.0, None, "exhausted")],
    )
    box.close()
    box = Outbox(tmp_path / "p0.sqlite", 0)  # reopened: everything durable
    assert [a.status for a in box.attempts_of("d1.E1")] == [500, 503]
    assert [j.delivery_id for j in box.by_endpoint("E1", 15, failed_only=True)] == ["d1.E1"]
    assert [j.delivery_id for j in box.pending()] == ["d2.E1"]
    replayed = box.replay("d1.E1", 30)
    assert replayed is not None and (replayed.state, replayed.replay_base, replayed.next_at_ms) == ("pending", 2, 30)
    assert [j.task_id for j in box.by_task("T1")] == ["T1"]


# --- settings targets ---------------------------------------------------------------------------


def test_settings_targets_and_disable_persist(tmp_path: Path) -> None:
    state = tmp_path / "disabled.json"
    targets = SettingsTargets({"PA-CG": "https://cg.example/h"}, "http://127.0.0.1:9/h", DEV_SIGNING_SECRET, state)
    assert [t.endpoint_id for t in targets.targets("PA-CG", "task.new")] == ["settings:PA-CG"]
    assert [t.endpoint_id for t in targets.targets("PA-HX", "alert.warning")] == ["settings:default"]
    targets.disable("settings:PA-CG", "gone")
    again = SettingsTargets({"PA-CG": "https://cg.example/h"}, None, DEV_SIGNING_SECRET, state)
    assert again.targets("PA-CG", "new-task") == [] and not again.is_enabled("settings:PA-CG")


def test_two_secrets_both_sign_and_either_verifies() -> None:
    other = "whsec_" + "b3RoZXItc2VjcmV0LWZvci1yb3RhdGlvbi0zMmJ5dGVz"
    body = b'{"task_id": "T1"}'
    hdrs = signed_headers((DEV_SIGNING_SECRET, other), "task_T1", int(datetime.now(UTC).timestamp()), body)
    assert Webhook(DEV_SIGNING_SECRET).verify(body, hdrs) == {"task_id": "T1"}
    assert Webhook(other).verify(body, hdrs) == {"task_id": "T1"}


# --- engine against a real local receiver --------------------------------------------------------


class FakeBatch:
    def __init__(self) -> None:
        self.records: list[tuple[bytes | None, bytes]] = []

    def append(self, *, key: bytes | None, value: bytes, timestamp: int | None) -> object:
        self.records.append((key, value))
        return object()

    def close(self) -> None:
        return None


class FakeProducer:
    """The producer calls the engine makes: per-partition batches, as the kernel's OutputWriter builds them."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None]] = []

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2}

    def create_batch(self) -> FakeBatch:
        return FakeBatch()

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> Any:
        self.sent.extend((topic, value, key) for key, value in batch.records)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def run_engine(
    tmp_path: Path,
    answers: list[int],
    jobs: list[Job],
    until: int,
    texts: list[str] | None = None,
    robot: bool = False,
    *,
    command_centre: str | None = "PA-ZZZX",
    disable_after_s: float = 3600,
    settled: Callable[[Outbox], bool] = lambda _box: True,
) -> tuple[Any, ...]:
    """Run the engine against a receiver answering `answers` in turn until `until` requests arrived and `settled`."""
    seen: list[tuple[str, int]] = []
    verifier = Webhook(DEV_SIGNING_SECRET)

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        if not robot:
            verifier.verify(body, dict(request.headers))
        n = min(len(seen), len(answers) - 1)
        status = answers[n]
        seen.append((request.headers.get("webhook-id", "robot"), status))
        return web.Response(status=status, text=texts[n] if texts else f"answer {status}")

    app = web.Application()
    app.router.add_post("/h", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    box = Outbox(tmp_path / "p0.sqlite", 0)
    for j in jobs:
        j.url = f"http://127.0.0.1:{port}/h"
    stored = box.store(jobs, {"t.tasks.dispatched": len(jobs)})
    scheduler = Scheduler()
    scheduler.add_all(stored)
    producer = FakeProducer()
    url = f"http://127.0.0.1:{port}/h"
    targets = SettingsTargets({"E1": url}, url, DEV_SIGNING_SECRET, tmp_path / "disabled.json")
    engine = DeliveryEngine(
        CommonSettings(topic_prefix="t."),
        scheduler=scheduler,
        outboxes={0: box},
        targets=targets,
        metrics=NotifierMetrics(CollectorRegistry()),
        producer=lambda: producer,
        schedule=(0.05, 0.05),
        concurrency=8,
        timeout_s=5,
        slow_down_s=0.0,
        disable_after_s=disable_after_s,
        record_every_ms=5,
        secrets_of=lambda _j: (DEV_SIGNING_SECRET,),
        render=lambda j: (j.url, b'{"msgtype":"markdown"}', {"content-type": "application/json"}),
        accept=lambda _j, status, answer: (
            (status == 200 and b'"errcode":0' in answer, b"93000" not in answer, answer.decode()[:100])
        ),
        command_centre=command_centre,
    )
    await engine.start()
    try:
        async with asyncio.timeout(10):
            while len(seen) < until or scheduler.in_flight() or not settled(box):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
    finally:
        await engine.stop()
        await runner.cleanup()
    return seen, box, producer, targets


async def test_engine_retries_then_delivers_and_records_every_attempt(tmp_path: Path) -> None:
    seen, box, producer, _ = await run_engine(tmp_path, [500, 503, 200], [job(1, url="")], until=3)
    assert seen == [("task_T1-1", 500), ("task_T1-1", 503), ("task_T1-1", 200)]
    delivered = box.get("d1.E1")
    assert delivered is not None and (delivered.state, delivered.attempts) == ("delivered", 3)
    assert [(a.status, a.outcome) for a in box.attempts_of("d1.E1")] == [
        (500, "retrying"),
        (503, "retrying"),
        (200, "delivered"),
    ]
    records = [DeliveryRecorded.model_validate_json(v) for t, v, _ in producer.sent if t == "t.deliveries.results"]
    assert [r.outcome.value for r in records] == ["retrying", "retrying", "delivered"]
    assert records[0].last_error == "answer 500" and records[0].next_attempt_at is not None
    assert all(k == b"T1" for _, _, k in producer.sent)


async def test_engine_records_are_the_bytes_the_model_writes(tmp_path: Path) -> None:
    """The engine serialises its records without building the model: the bytes must be the model's own."""
    texts = ['服务器内部错误 "引号" \\ 反斜杠', "答复", "好"]
    _, _, producer, _ = await run_engine(tmp_path, [500, 503, 200], [job(1, url="")], until=3, texts=texts)
    values = [v for t, v, _ in producer.sent if t == "t.deliveries.results"]
    assert len(values) == 3
    for value in values:
        assert DeliveryRecorded.model_validate_json(value).to_bytes() == value
    assert DeliveryRecorded.model_validate_json(values[0]).last_error == texts[0]


async def test_engine_dead_letters_an_exhausted_delivery(tmp_path: Path) -> None:
    _, box, producer, _ = await run_engine(tmp_path, [500], [job(1, url="")], until=3)
    final = box.get("d1.E1")
    assert final is not None and (final.state, final.attempts) == ("exhausted", 3)
    dead = [ReportDeadLettered.model_validate_json(v) for t, v, _ in producer.sent if t == "t.events.deadletter"]
    assert len(dead) == 1 and dead[0].reason == "delivery-exhausted" and dead[0].original_offset == 1


async def test_engine_gone_disables_the_endpoint(tmp_path: Path) -> None:
    jobs = [job(1, url="", endpoint="default"), job(2, url="", endpoint="default")]
    seen, box, producer, targets = await run_engine(tmp_path, [410], jobs, until=1)
    assert len(seen) == 1  # the second delivery never went out
    assert not targets.is_enabled("default")
    states = {j: box.get(j).state for j in ("d1.default", "d2.default")}
    assert states == {"d1.default": "gone", "d2.default": "disabled"}
    outcomes = [DeliveryRecorded.model_validate_json(v).outcome.value for t, v, _ in producer.sent if "results" in t]
    assert "endpoint-disabled" in outcomes and "gone" in outcomes


# --- API ---------------------------------------------------------------------------------------


class Owner:
    def __init__(self, box: Outbox) -> None:
        self.outboxes = {0: box}
        self.scheduler = Scheduler()


class Waker:
    def __init__(self) -> None:
        self.wake = asyncio.Event()

    def flush(self, partition: int | None = None) -> None:
        pass


def make_api(tmp_path: Path) -> tuple[httpx.AsyncClient, Owner]:
    box = Outbox(tmp_path / "p0.sqlite", 0)
    box.store([job(1), job(2, task="T2")], {})
    box.record(
        [JobUpdate("d1.E1", "exhausted", 8, 0, 500, "错误", 2_000_000_000_000)],
        [Attempt("d1.E1", 8, 1, 500, 3.2, "错误", "exhausted")],
    )
    owner = Owner(box)
    owner.scheduler.add(box.get("d2.E1"))  # type: ignore[arg-type]
    app = FastAPI()
    app.include_router(deliveries_router(owner, Waker(), {"dev-operator-key": "operator"}))
    install_problem_handlers(app)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://notifier.test"), owner


AUTH = {"Authorization": "Bearer dev-operator-key"}


async def test_api_requires_a_key_and_answers_problems(tmp_path: Path) -> None:
    client, _ = make_api(tmp_path)
    async with client:
        denied = await client.get("/deliveries?task_id=T1")
        assert denied.status_code == 401 and denied.headers["content-type"].startswith("application/problem+json")
        assert (await client.get("/deliveries", headers=AUTH)).status_code == 400
        bad = await client.get("/deliveries?endpoint_id=E1&since=yesterday", headers=AUTH)
        assert bad.status_code == 400


async def test_api_lists_by_task_and_endpoint_with_attempts(tmp_path: Path) -> None:
    client, _ = make_api(tmp_path)
    async with client:
        by_task = (await client.get("/deliveries?task_id=T1", headers=AUTH)).json()
        assert by_task["count"] == 1
        log = by_task["deliveries"][0]["attempt_log"]
        assert [(a["n"], a["status"], a["latency_ms"], a["response_excerpt"]) for a in log] == [(8, 500, 3.2, "错误")]
        since = (datetime(2033, 5, 18, tzinfo=UTC) - timedelta(days=1)).isoformat()
        found = await client.get("/deliveries", params={"endpoint_id": "E1", "since": since}, headers=AUTH)
        assert [d["delivery_id"] for d in found.json()["deliveries"]] == ["d1.E1"]


async def test_api_replays_one_and_everything_failed_since(tmp_path: Path) -> None:
    client, owner = make_api(tmp_path)
    async with client:
        assert (await client.post("/deliveries/d2.E1/replay", headers=AUTH)).status_code == 409  # still pending
        assert (await client.post("/deliveries/nope/replay", headers=AUTH)).status_code == 404
        one = await client.post("/deliveries/d1.E1/replay", headers=AUTH)
        assert one.status_code == 202 and one.json()["state"] == "pending"
        assert "d1.E1" in owner.scheduler
        params = {"endpoint_id": "E1", "since": "2020-01-01T00:00:00+08:00"}
        again = await client.post("/deliveries/replay", params=params, headers=AUTH)
        assert again.status_code == 202 and again.json()["count"] == 0  # nothing failed any more


# --- the batch handler: records to outbox jobs ---------------------------------------------------


class Record(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


async def test_handler_stores_jobs_with_offsets_once_and_records_no_endpoint(tmp_path: Path) -> None:
    settings = NotifierSettings(common=CommonSettings(topic_prefix="t.", data_dir=tmp_path))
    scheduler = Scheduler()
    targets = SettingsTargets({"PA-CG": "http://127.0.0.1:9/cg"}, None, DEV_SIGNING_SECRET, None)
    registry = CollectorRegistry()
    handler = NotifierHandler(
        settings, targets, scheduler, KafkaDeadLetters(settings.common, "notifier", registry), lambda: None
    )
    await handler.restore(frozenset({TopicPartition("t.tasks.dispatched", 2), TopicPartition("t.sla.alerts", 2)}))
    received = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    urgent, later = sla_task(received, unit="PA-CG", resolve_h=2), sla_task(received, unit="PA-CG", resolve_h=48)
    other = sla_task(received, unit="PA-HX")
    records = [Record("t.tasks.dispatched", 2, n, None, t.to_bytes()) for n, t in enumerate((later, urgent, other))]
    outputs = [handler.process(r) for r in records]
    assert [len(o) for o in outputs] == [0, 0, 2]  # PA-HX has no endpoint: a no-endpoint record and a dead letter
    handler.sealed()
    box = handler.outboxes[2]
    assert box.offsets() == {"t.tasks.dispatched": 3}
    assert [j.webhook_id for j in box.pending()] == [f"task_{later.task_id}", f"task_{urgent.task_id}"]
    assert urgency_of_task(urgent) < urgency_of_task(later)
    assert [j.task_id for j in scheduler.take(now_ms=now_ms(), limit=1)] == [urgent.task_id]  # least time left
    for record in records[:2]:  # read again after a rollback: stored once
        handler.process(record)
    handler.sealed()
    assert box.depth() == 2 and len(scheduler) == 2
    handler.revoked(frozenset({TopicPartition("t.tasks.dispatched", 2)}))
    assert 2 not in handler.outboxes and len(scheduler) == 0


async def test_handler_reads_only_a_tasks_header_and_still_accounts_for_every_record(tmp_path: Path) -> None:
    """The notifier validates the fields it uses (tolerant reader): a task odd elsewhere is still delivered or
    recorded, one without the fields it needs is dead-lettered; none passes without a trace."""
    settings = NotifierSettings(common=CommonSettings(topic_prefix="t.", data_dir=tmp_path))
    targets = SettingsTargets({"PA-CG": "http://127.0.0.1:9/cg"}, None, DEV_SIGNING_SECRET, None)
    handler = NotifierHandler(
        settings, targets, Scheduler(), KafkaDeadLetters(settings.common, "notifier", CollectorRegistry()), lambda: None
    )
    await handler.restore(frozenset({TopicPartition("t.tasks.dispatched", 0)}))
    received = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)

    def odd(unit: str) -> bytes:
        data = json.loads(sla_task(received, unit=unit).to_bytes())
        data["title"] = 42  # not a string: the whole model refuses it, the notifier reads no title
        return json.dumps(data, ensure_ascii=False).encode()

    to_cg = handler.process(Record("t.tasks.dispatched", 0, 0, None, odd("PA-CG")))
    to_nobody = handler.process(Record("t.tasks.dispatched", 0, 1, None, odd("PA-HX")))
    assert to_cg == ()  # a job: forwarded as it is, the receiver's to judge
    assert [o.topic for o in to_nobody] == ["t.deliveries.results", "t.events.deadletter"]
    headless = json.loads(odd("PA-CG"))
    del headless["unit_code"]
    with pytest.raises(PermanentError, match="malformed-task"):
        handler.process(Record("t.tasks.dispatched", 0, 2, None, json.dumps(headless).encode()))


async def test_robot_errcode_is_retried_or_given_up(tmp_path: Path) -> None:
    texts = ['{"errcode":45009,"errmsg":"api freq out of limit"}', '{"errcode":0,"errmsg":"ok"}']
    robot = job(1, url="")
    robot.channel = "wecom"
    _, box, _, _ = await run_engine(tmp_path, [200, 200], [robot], until=2, texts=texts, robot=True)
    assert [a.outcome for a in box.attempts_of("d1.E1")] == ["retrying", "delivered"]
    assert box.attempts_of("d1.E1")[0].excerpt.startswith('{"errcode":45009')
    gone = job(2, url="")
    gone.channel = "dingtalk"
    texts = ['{"errcode":93000,"errmsg":"invalid webhook url"}']
    _, box2, _, _ = await run_engine(tmp_path / "b", [200], [gone], until=1, texts=texts, robot=True)
    assert box2.get("d2.E1").state == "exhausted"  # a permanent errcode: no retries
