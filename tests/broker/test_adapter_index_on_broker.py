"""The adapters follow reports.index and tasks.dispatched on a real broker: a known report is answered with intake's
event id, and a unit's update on another unit's task is refused."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from gridhub.kernel.kafka import create_topics, make_consumer, make_producer
from gridhub.kernel.settings import CommonSettings
from schemas import Channel, TaskDispatched, new_id
from schemas.catalogue import PARTITIONS
from schemas.index import IndexOutcome, ReportIndexed
from services.adapters.api import create_api
from services.adapters.settings import AdaptersSettings
from tests.conftest import Broker

pytestmark = pytest.mark.broker
KEY = "broker-12345-key"


def indexed(source_id: str) -> ReportIndexed:
    return ReportIndexed(
        source=Channel.HOTLINE_12345,
        source_id=source_id,
        event_id=new_id(),
        outcome=IndexOutcome.EVENT,
        indexed_at=datetime.now(UTC),
    )


def dispatched(unit_code: str) -> TaskDispatched:
    """A task as the router dispatches it to one unit."""
    now = datetime.now(UTC)
    return TaskDispatched.model_validate(
        {
            "task_id": new_id(),
            "event_id": new_id(),
            "unit_code": unit_code,
            "unit_name": "测试单位",
            "role": "primary",
            "matter_code": "M08",
            "tier": "township",
            "deadline_class": "public-service",
            "urgency": "normal",
            "title": "[求助] 下水道反流",
            "description": "幸福里小区下水道反流",
            "location": {"address": "城关镇东街幸福里小区"},
            "received_at": now,
            "dispatched_at": now,
            "deadlines": [{"kind": "resolve", "amount": 2, "unit": "working-days"}],
            "decision": {
                "matter_code": "M08",
                "matter_name": None,
                "rule": "explicit-category",
                "confidence": 1.0,
                "reason": "报送时已指定事项 M08",
                "duty_list_version": "test",
            },
        }
    )


async def own_topics(broker: Broker, prefix: str, data_dir: Path) -> CommonSettings:
    """Settings on topics of the test's own prefix, the catalogue's topics created."""
    common = CommonSettings(
        kafka_bootstrap=broker.bootstrap, kafka_idempotence=broker.idempotence, topic_prefix=prefix, data_dir=data_dir
    )
    await asyncio.wait_for(create_topics(common), 60)
    return common


async def publish(common: CommonSettings, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    """Produce (key, value) records, as intake or the router would (here: someone other than the adapters)."""
    producer = make_producer(common)
    await asyncio.wait_for(producer.start(), 30)
    try:
        for key, value in records:
            await producer.send(common.topic(topic), value, key=key)
        await asyncio.wait_for(producer.flush(), 30)
    finally:
        await producer.stop()


async def publish_index(common: CommonSettings, records: list[ReportIndexed]) -> None:
    """What intake does for each report it accepts."""
    await publish(common, "reports.index", [(r.dedupe_key.encode(), r.to_bytes()) for r in records])


async def publish_tasks(common: CommonSettings, tasks: list[TaskDispatched]) -> None:
    """What the router does for each task it dispatches."""
    await publish(common, "tasks.dispatched", [(t.task_id.encode(), t.to_bytes()) for t in tasks])


async def raw_count(common: CommonSettings) -> int:
    consumer = make_consumer(common, group_id=None)
    await asyncio.wait_for(consumer.start(), 30)
    try:
        partitions = [TopicPartition(common.topic("raw.12345"), p) for p in range(PARTITIONS)]
        ends = await asyncio.wait_for(consumer.end_offsets(partitions), 30)
        return sum(ends.values())
    finally:
        await consumer.stop()


async def gauge(client: httpx.AsyncClient, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", (await client.get("/metrics")).text, re.M)
    return float(found.group(1)) if found else 0.0


async def index_keys(client: httpx.AsyncClient) -> float:
    return await gauge(client, "gridhub_adapters_index_keys")


async def update(client: httpx.AsyncClient, task_id: str, unit: str) -> httpx.Response:
    body: dict[str, Any] = {"kind": "accepted"}
    return await client.post(f"/v1/tasks/{task_id}/updates", json=body, headers={"Authorization": f"Bearer dev-{unit}"})


async def test_adapters_answer_from_the_index_someone_else_published(
    broker: Broker, topic_prefix: str, tmp_path: Path
) -> None:
    common = await own_topics(broker, f"{topic_prefix}ix{uuid.uuid4().hex[:6]}.", tmp_path)
    before_start = [indexed(f"GD-OLD-{n}") for n in range(50)]
    await publish_index(common, before_start)
    settings = AdaptersSettings(common=common, source_keys={"12345": KEY}, index_ready_timeout_s=30)
    app = create_api(settings, CollectorRegistry())

    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://adapters.test") as client,
    ):
        async with asyncio.timeout(40):
            while (ready := await client.get("/readyz")).status_code != 200:
                assert ready.json()["checks"]["kafka-producer"] is True
                await asyncio.sleep(0.1)
        assert ready.json()["checks"] == {
            "kafka-producer": True,
            "report-index": True,
            "task-owners": True,
            "recent-acceptances": True,
        }
        assert await index_keys(client) == 50  # ready means caught up with what was there at the start

        old = before_start[17]
        answer = await client.post(
            "/v1/12345/work-orders", json={"order_no": old.source_id}, headers={"x-api-key": KEY}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "event_id": old.event_id,
            "source": "12345",
            "source_id": old.source_id,
            "status": "duplicate",
        }

        live = indexed("GD-LIVE-1")
        await publish_index(common, [live])
        async with asyncio.timeout(30):
            while (keys := await index_keys(client)) < 51:
                assert keys == 50
                await asyncio.sleep(0.05)
        batch = await client.post(
            "/v1/12345/work-orders/batch",
            json=[{"order_no": live.source_id}, {"order_no": "GD-NEW-1"}],
            headers={"x-api-key": KEY},
        )
        assert batch.status_code == 200, batch.text
        items = batch.json()["items"]
        assert (items[0]["status"], items[0]["event_id"]) == ("duplicate", live.event_id)
        assert items[1]["status"] == "accepted"

    assert await raw_count(common) == 1  # only GD-NEW-1 was published
    assert list((tmp_path / "adapters").iterdir()) == []  # the index's scratch file is gone


async def test_adapters_refuse_an_update_on_another_units_task(
    broker: Broker, topic_prefix: str, tmp_path: Path
) -> None:
    common = CommonSettings(
        kafka_bootstrap=broker.bootstrap,
        kafka_idempotence=broker.idempotence,
        topic_prefix=f"{topic_prefix}ow{uuid.uuid4().hex[:6]}.",
        data_dir=tmp_path,
    )
    await asyncio.wait_for(create_topics(common), 60)
    earlier = [dispatched("PA-CG") for _ in range(20)]
    await publish_tasks(common, earlier)
    settings = AdaptersSettings(common=common, source_keys={"12345": KEY}, index_ready_timeout_s=30)
    app = create_api(settings, CollectorRegistry())

    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://adapters.test") as client,
    ):
        async with asyncio.timeout(40):
            while (ready := await client.get("/readyz")).status_code != 200:
                assert ready.json()["checks"]["kafka-producer"] is True
                await asyncio.sleep(0.1)
        assert ready.json()["checks"]["task-owners"] is True
        assert await gauge(client, "gridhub_adapters_task_owners_tasks") == 20  # ready: caught up

        assert (await update(client, earlier[3].task_id, "PA-CG")).status_code == 202
        refused = await update(client, earlier[3].task_id, "PA-HX")
        assert refused.status_code == 403, refused.text
        assert refused.json()["detail"] == f"任务 {earlier[3].task_id} 不属于单位 PA-HX，不能更新。"
        assert (await update(client, new_id(), "PA-HX")).status_code == 202  # unknown: the SLA service decides

        live = dispatched("PA-ZJJ")
        await publish_tasks(common, [live])
        async with asyncio.timeout(30):
            while (tasks := await gauge(client, "gridhub_adapters_task_owners_tasks")) < 21:
                assert tasks == 20
                await asyncio.sleep(0.05)
        assert (await update(client, live.task_id, "PA-CG")).status_code == 403
        assert (await update(client, live.task_id, "PA-ZJJ")).status_code == 202


async def test_a_retry_after_a_restart_gets_the_id_of_an_acceptance_intake_has_not_indexed(
    broker: Broker, topic_prefix: str, tmp_path: Path
) -> None:
    """A report accepted just before the replica stopped, not yet indexed (no intake here): a new replica reads it
    back from the raw topic, so the source's retry is a duplicate of the same event, not a new id."""
    common = await own_topics(broker, f"{topic_prefix}rt{uuid.uuid4().hex[:6]}.", tmp_path)
    settings = AdaptersSettings(common=common, source_keys={"12345": KEY}, index_ready_timeout_s=30)
    order = {
        "order_no": "RT-0001",
        "content": "小区下水道反流，污水漫到一楼楼道",
        "call_time": "2026-11-20T09:30:00+08:00",
        "grid_code": "PA-CG-01-001",
    }

    async def replica_answers() -> httpx.Response:
        app = create_api(settings, CollectorRegistry())
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://adapters.test") as client,
        ):
            async with asyncio.timeout(40):
                while (ready := await client.get("/readyz")).status_code != 200:
                    assert ready.status_code == 503
                    await asyncio.sleep(0.1)
            return await client.post("/v1/12345/work-orders", json=order, headers={"x-api-key": KEY})

    first = await replica_answers()
    assert first.status_code == 202, first.text
    retry = await replica_answers()  # a new replica: the first one's memory of it is gone
    assert retry.status_code == 200, retry.text
    assert retry.json()["event_id"] == first.json()["event_id"]
    assert retry.json()["status"] == "duplicate"
    assert await raw_count(common) == 1  # the retry published nothing
