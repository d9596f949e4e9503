"""Adapter-level idempotency and the batch endpoints, against an in-memory publisher; the report index alone."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaTimeoutError
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from gridhub.kernel.settings import CommonSettings
from schemas import ReportReceived, TaskDispatched, TaskRole
from services.adapters.auth import body_signature
from services.adapters.channels import too_deep
from services.adapters.index_follower import IndexMetrics, open_report_index, task_owner_applier
from services.adapters.report_index import InFlight, ReportIndex
from services.adapters.settings import AdaptersSettings
from tests.unit.adapter_harness import FakePublisher as RecordingPublisher
from tests.unit.adapter_harness import api_with, served

API_KEY = "test-12345-key"
HMAC_SECRET = "110-指挥中心-共享密钥-2026"
PROBLEM = "application/problem+json"
BATCH = "/v1/12345/work-orders/batch"


def order(n: int | str) -> dict[str, Any]:
    return {
        "order_no": f"GD-2026-1120-{n}",
        "appeal_type": "投诉",
        "content": "幸福里小区3号楼下水道反流，污水漫到单元门口。",
        "call_time": "2026-11-20T09:30:00+08:00",
    }


class FakePublisher(RecordingPublisher):
    """Records (topic, key, value); holds every send until `release` is set; raises `error` when set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.release.set()
        self.in_flight = 0
        self.most_in_flight = 0

    async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            async with asyncio.timeout(5):
                await self.release.wait()
            await super().send_and_wait(topic, value, key)
        finally:
            self.in_flight -= 1


@pytest.fixture()
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture()
def app(publisher: FakePublisher, monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    for name in ("GRIDHUB_MODE", "GRIDHUB_TOPIC_PREFIX", "GRIDHUB_ADAPTERS_BATCH_MAX_ITEMS"):
        monkeypatch.delenv(name, raising=False)
    settings = AdaptersSettings(
        common=CommonSettings(mode="dev", topic_prefix="gridhub."),
        source_keys={"12345": API_KEY, "110": "test-110-key"},
        source_hmac_secrets={"110": HMAC_SECRET},
        unit_keys={},
        max_body_bytes=4096,
        batch_max_items=20,
    )

    return api_with(settings, publisher)


@pytest.fixture()
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with served(app) as c:
        yield c


async def wait_until(done: Callable[[], bool], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not done():  # noqa: ASYNC110 - polling the fake's counter is the simplest correct wait here
            await asyncio.sleep(0.01)


async def post(client: httpx.AsyncClient, path: str, body: Any, key: str = API_KEY) -> httpx.Response:
    return await client.post(path, json=body, headers={"x-api-key": key})


async def test_repeat_is_200_with_the_same_event_id_and_publishes_nothing(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    first = await post(client, "/v1/12345/work-orders", order(1))
    assert first.status_code == 202
    assert first.json()["status"] == "accepted"

    again = await post(client, "/v1/12345/work-orders", {**order(1), "content": "再次来电催办"})

    assert again.status_code == 200
    assert again.json() == {**first.json(), "status": "duplicate"}
    assert len(publisher.records) == 1
    metrics = (await client.get("/metrics")).text
    assert 'gridhub_adapters_reports_total{channel="12345",outcome="duplicate"} 1.0' in metrics


async def test_same_id_on_another_channel_is_another_report(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    a = await post(client, "/v1/12345/work-orders", order(7))
    b = await post(client, "/v1/110/incidents", {"incident_no": "GD-2026-1120-7"}, key="test-110-key")
    assert (a.status_code, b.status_code) == (202, 202)
    assert a.json()["event_id"] != b.json()["event_id"]
    assert len(publisher.records) == 2


async def test_concurrent_identical_submissions_share_one_publish(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    publisher.release.clear()  # hold the first publish until all five are in
    posts = [asyncio.create_task(post(client, "/v1/12345/work-orders", order(2))) for _ in range(5)]
    await wait_until(lambda: publisher.in_flight >= 1)
    await asyncio.sleep(0.05)  # let the other four reach the index and join
    publisher.release.set()
    answers = await asyncio.gather(*posts)

    assert sorted(a.status_code for a in answers) == [200, 200, 200, 200, 202]
    assert len({a.json()["event_id"] for a in answers}) == 1
    assert len(publisher.records) == 1


async def test_failed_publish_is_503_for_every_waiter_and_not_remembered(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    publisher.release.clear()
    publisher.error = KafkaTimeoutError()
    posts = [asyncio.create_task(post(client, "/v1/12345/work-orders", order(3))) for _ in range(3)]
    await wait_until(lambda: publisher.in_flight >= 1)
    await asyncio.sleep(0.05)
    publisher.release.set()
    answers = await asyncio.gather(*posts)
    assert [a.status_code for a in answers] == [503, 503, 503]
    assert all(a.headers["retry-after"] == "5" for a in answers)

    publisher.error = None
    retry = await post(client, "/v1/12345/work-orders", order(3))
    assert retry.status_code == 202
    assert len(publisher.records) == 1


async def test_deeply_nested_json_is_400_not_500(client: httpx.AsyncClient) -> None:
    headers = {"x-api-key": API_KEY, "content-type": "application/json"}
    single = await client.post("/v1/12345/work-orders", content=b"[" * 4000, headers=headers)
    batch = await client.post(BATCH, content=b"[" * 4000, headers=headers)
    assert (single.status_code, batch.status_code) == (400, 400)
    assert batch.headers["content-type"] == PROBLEM


async def test_valid_json_nested_too_deep_to_publish_is_400_not_500(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    # json.loads takes 300 levels; the envelope's serialiser stops near 255, so it used to fail at publish.
    deep: Any = "反流"
    for _ in range(300):
        deep = [deep]
    single = await post(client, "/v1/12345/work-orders", {**order(40), "extra": deep})
    assert single.status_code == 400, single.text
    assert single.json()["detail"] == "请求体的 JSON 嵌套超过 64 层。"
    batch = await post(client, BATCH, [{**order(41), "extra": deep}, order(42)])
    assert batch.status_code == 200, batch.text
    items = batch.json()["items"]
    assert [item["status"] for item in items] == ["rejected", "accepted"]
    assert items[0]["problem"]["status"] == 400
    assert len(publisher.records) == 1


async def test_batch_mixed_good_duplicate_and_bad(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    known = (await post(client, "/v1/12345/work-orders", order("known"))).json()["event_id"]
    items = [order(10), order("known"), {"content": "没有工单编号"}, order(11), order(10), {"order_no": " 空格 "}]

    response = await post(client, BATCH, items)

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["source"], body["accepted"], body["duplicate"], body["rejected"], body["failed"]) == (
        "12345",
        2,
        2,
        2,
        0,
    )
    results = body["items"]
    assert [r["index"] for r in results] == list(range(6))
    assert [r["status"] for r in results] == ["accepted", "duplicate", "rejected", "accepted", "duplicate", "rejected"]
    assert results[1]["event_id"] == known
    assert results[4]["event_id"] == results[0]["event_id"]  # the same order twice in one batch: one event
    assert results[0]["source_id"] == "GD-2026-1120-10"
    rejected = results[2]["problem"]
    assert rejected["status"] == 422
    assert rejected["title"] == "请求内容校验未通过"
    assert rejected["detail"] == "缺少或无效的工单编号 order_no。"
    assert rejected["errors"][0]["field"] == "order_no"
    # the single order before, then the two new ones of the batch, nothing else
    assert sorted(k for _, k, _ in publisher.records) == [
        b"12345:GD-2026-1120-10",
        b"12345:GD-2026-1120-11",
        b"12345:GD-2026-1120-known",
    ]
    raw = ReportReceived.model_validate_json(next(v for _, k, v in publisher.records if k.endswith(b"-11")))
    assert raw.payload == order(11)


async def test_batch_sends_every_item_before_awaiting_acks(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    publisher.release.clear()
    task = asyncio.create_task(post(client, BATCH, [order(f"p{n}") for n in range(20)]))
    await wait_until(lambda: publisher.in_flight >= 20)
    publisher.release.set()
    response = await task
    assert response.json()["accepted"] == 20
    assert publisher.most_in_flight == 20


async def test_batch_publish_failure_marks_items_failed(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    publisher.error = KafkaTimeoutError()
    body = (await post(client, BATCH, [order(20), {"order_no": ""}])).json()
    assert [r["status"] for r in body["items"]] == ["failed", "rejected"]
    assert body["items"][0]["problem"]["status"] == 503
    publisher.error = None
    again = (await post(client, BATCH, [order(20)])).json()
    assert again["items"][0]["status"] == "accepted"  # a failed item was not remembered: sending it again works


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        (b'{"order_no": "GD-1"}', 422, "请求体应为 JSON 数组。"),
        (b"[]", 422, "批量请求中没有报告。"),
        (json.dumps([order(n) for n in range(21)]).encode(), 422, "一次最多 20 条，本次 21 条，请分批发送。"),
        (b'[{"order_no": "GD-1"}, 42]', 422, "第 1 条不是 JSON 对象。"),
        ("工单".encode("gbk"), 400, None),
    ],
)
async def test_bad_batch_is_a_problem(
    client: httpx.AsyncClient, publisher: FakePublisher, body: bytes, status: int, detail: str | None
) -> None:
    response = await client.post(BATCH, content=body, headers={"x-api-key": API_KEY})
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    if detail:
        assert response.json()["detail"] == detail
    assert publisher.records == []


async def test_batch_item_larger_than_the_single_limit_is_rejected_alone(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    big = {**order(30), "content": "物业费涨价，" * 800}  # over the 4096-byte single-request limit
    body = (await post(client, BATCH, [big, order(31)])).json()
    assert [r["status"] for r in body["items"]] == ["rejected", "accepted"]
    assert body["items"][0]["problem"]["status"] == 413
    assert len(publisher.records) == 1


async def test_batch_needs_the_channel_key(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    response = await post(client, BATCH, [order(40)], key="test-110-key")
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM
    assert publisher.records == []


async def test_batch_may_be_signed(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    body = json.dumps([{"incident_no": "110-20261120-000731"}], ensure_ascii=False).encode()
    timestamp = str(int(time.time()))
    headers = {"x-timestamp": timestamp, "x-signature": body_signature(HMAC_SECRET, timestamp, body)}
    response = await client.post("/v1/110/incidents/batch", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
    assert publisher.records[0][1] == b"110:110-20261120-000731"


async def test_readyz_has_no_index_check_without_a_follower(client: httpx.AsyncClient) -> None:
    ready = await client.get("/readyz")
    assert ready.json()["checks"] == {"kafka-producer": True}


# The index alone


def test_index_answers_own_acceptances_until_they_expire() -> None:
    index = ReportIndex(":memory:", provisional_ttl_s=10)
    index.remember("12345:A", "01KAFZ0M3DY89XFXAKDNGGSZDK", now=100.0)
    assert index.lookup("12345:A", now=109.9) == "01KAFZ0M3DY89XFXAKDNGGSZDK"
    # A report intake dead-lettered is never indexed: a corrected resend must get through after the TTL.
    assert index.lookup("12345:A", now=110.0) is None
    assert index.provisional == 0


def test_intakes_record_wins_over_an_own_acceptance() -> None:
    index = ReportIndex(":memory:", provisional_ttl_s=10)
    index.remember("12345:A", "01KAFZ0M3DY89XFXAKDNGGSZD1", now=0)
    index.remember("12345:B", "01KAFZ0M3DY89XFXAKDNGGSZD2", now=0)
    applied = index.apply([("12345:A", "01KAFZ0M3DY89XFXAKDNGGSZD9"), ("12345:B", "01KAFZ0M3DY89XFXAKDNGGSZD2")])
    assert applied.new_keys == 2
    assert applied.superseded == [("12345:A", "01KAFZ0M3DY89XFXAKDNGGSZD1", "01KAFZ0M3DY89XFXAKDNGGSZD9")]
    assert index.lookup("12345:A", now=1000) == "01KAFZ0M3DY89XFXAKDNGGSZD9"  # never expires
    assert (index.size, index.provisional) == (2, 0)


def test_index_applies_in_topic_order_first_wins_with_tombstones() -> None:
    index = ReportIndex(":memory:", provisional_ttl_s=10)
    applied = index.apply([("k:1", "E1"), ("k:1", "E2"), ("k:2", "E3"), ("k:2", None), ("k:3", "E4")])
    assert applied.new_keys == 3
    assert [index.lookup(k, 0) for k in ("k:1", "k:2", "k:3")] == ["E1", None, "E4"]
    assert index.size == 2
    assert index.apply([("k:1", "E2")]).new_keys == 0
    assert index.lookup("k:1", 0) == "E1"


def test_own_acceptances_are_capped() -> None:
    index = ReportIndex(":memory:", provisional_ttl_s=10, max_provisional=3)
    for n in range(5):
        index.remember(f"k:{n}", f"E{n}", now=n * 0.1)
    assert index.provisional == 3
    assert [index.lookup(f"k:{n}", 1.0) for n in range(5)] == [None, None, "E2", "E3", "E4"]


def test_scratch_index_leaves_no_file_behind(tmp_path: Path) -> None:
    index = open_report_index(AdaptersSettings(index_cache_mib=1), tmp_path / "adapters")
    assert list((tmp_path / "adapters").iterdir()) == []
    applied = index.apply([(f"12345:{n}", f"E{n}") for n in range(5000)])
    assert applied.new_keys == 5000
    assert index.lookup("12345:4999", 0) == "E4999"
    index.close()


def test_task_owners_first_dispatch_wins_beside_the_reports() -> None:
    index = ReportIndex(":memory:", provisional_ttl_s=10)
    assert index.owners.apply([("T1", "PA-CG"), ("T2", "PA-ZJJ"), ("T1", "PA-CG")]) == 2
    assert index.owners.apply([("T1", "PA-HX")]) == 0  # a replay names the same unit; the first is kept
    assert [index.owners.owner(t) for t in ("T1", "T2", "T3")] == ["PA-CG", "PA-ZJJ", None]
    assert (index.owners.size, index.size) == (2, 0)  # a sibling table: reports are not counted


def test_owner_applier_reads_the_contracts_task_dispatched() -> None:
    task = TaskDispatched(
        task_id="01KAFZ0M3DY89XFXAKDNGGSZDK",
        event_id="01KAFZ0M3DY89XFXAKDNGGSZD1",
        unit_code="PA-ZJJ",
        unit_name="住房和城乡建设局",
        role=TaskRole.CO_OPERATING,
        matter_code="M08",
        tier="township",
        deadline_class="public-service",
        urgency="normal",
        title="[求助] 下水道反流",
        description="下水道反流",
        location={"address": "东街"},
        received_at=datetime(2026, 11, 20, 1, 30, tzinfo=UTC),
        dispatched_at=datetime(2026, 11, 20, 1, 31, tzinfo=UTC),
        deadlines=[{"kind": "resolve", "amount": 2, "unit": "working-days"}],
        decision={
            "matter_code": "M08",
            "matter_name": None,
            "rule": "explicit-category",
            "confidence": 1.0,
            "reason": "报送时已指定事项",
            "duty_list_version": "test",
        },
    )
    index = ReportIndex(":memory:", provisional_ttl_s=10)
    registry = CollectorRegistry()
    apply = task_owner_applier(index.owners, IndexMetrics(registry))

    def record(offset: int, value: bytes) -> ConsumerRecord[bytes, bytes]:
        return ConsumerRecord("gridhub.tasks.dispatched", 0, offset, 0, 0, task.task_id.encode(), value, None, 0, 0, [])

    apply([record(0, task.to_bytes()), record(1, b'{"task_id": "not a task"}')])

    assert index.owners.owner(task.task_id) == "PA-ZJJ"
    assert registry.get_sample_value("gridhub_adapters_task_owners_tasks") == 1
    assert registry.get_sample_value("gridhub_adapters_task_owner_records_total", {"outcome": "invalid"}) == 1


@pytest.mark.parametrize(("depth", "deep"), [(64, False), (65, True), (300, True)])
def test_too_deep_counts_nesting_without_recursing(depth: int, deep: bool) -> None:
    value: Any = "叶"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    assert too_deep(value) is deep
    assert too_deep({"order_no": "A1", "photos": ["a", "b"], "extra": {"录音": None}}) is False


async def test_in_flight_joiners_share_the_outcome_and_survive_the_first_caller_leaving() -> None:
    gate = asyncio.Event()
    calls = 0

    async def work() -> str:
        nonlocal calls
        calls += 1
        await gate.wait()
        return "E1"

    in_flight: InFlight[str] = InFlight()
    first = asyncio.create_task(in_flight.run("k", work))
    second = asyncio.create_task(in_flight.run("k", work))
    await asyncio.sleep(0)
    first.cancel()  # the first client went away; the publish the second waits for goes on
    gate.set()
    assert await second == ("E1", True)
    assert calls == 1
    await asyncio.sleep(0)
    assert len(in_flight) == 0
