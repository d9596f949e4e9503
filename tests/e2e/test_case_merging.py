"""Cross-channel merging end to end: a burst pipe phoned into 12345, then reported by the grid worker."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from schemas import CaseLinked
from tests.e2e.conftest import Hub, Receiver, tail_logs

pytestmark = pytest.mark.broker


async def wait_for_link(hub: Hub, event_id: str, timeout_s: float = 45.0) -> CaseLinked:
    """The CaseLinked of one event on cases.links."""
    consumer = AIOKafkaConsumer(
        hub.common.topic("cases.links"),
        bootstrap_servers=hub.common.kafka_bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for record in (r for records in batches.values() for r in records):
                if event_id.encode() in record.value:
                    return CaseLinked.model_validate_json(record.value)
        raise AssertionError(f"no link for {event_id} in {timeout_s} s\n{tail_logs(hub)}")
    finally:
        await consumer.stop()


async def test_grid_workers_report_of_a_phoned_in_burst_pipe_is_linked_not_dispatched(
    hub: Hub, receiver: Receiver
) -> None:
    # A day and a grid no other e2e test uses, so only these two reports can meet.
    order = {
        "order_no": f"E2E-M-{uuid.uuid4().hex[:10]}",
        "appeal_type": "求助",
        "content": "锦绣花园5号楼门口自来水管爆裂，水漫到路上，请尽快派人。",
        "address": "城关镇西关社区锦绣花园5号楼",
        "district": "城关镇",
        "grid_code": "PA-CG-02-001",
        "call_time": "2026-11-10T14:05:00+08:00",
    }
    grid_report = {
        "report_no": f"WG-M-{uuid.uuid4().hex[:10]}",
        "worker_id": "WGY-0521",
        "grid_code": "PA-CG-02-001",
        "category": "设施故障",
        "description": "网格员巡查发现锦绣花园5号楼供水管破裂，路面积水，已设置警示。",
        "reported_at": "2026-11-10T14:40:00+08:00",
        "photos": ["https://oss.pingan.example/wg/0521/b1.jpg"],
    }
    async with httpx.AsyncClient(base_url=hub.url("adapters"), timeout=10) as client:
        first = await client.post("/v1/12345/work-orders", json=order, headers={"X-Api-Key": "dev-12345-key"})
        assert first.status_code == 202, first.text
        case_id = first.json()["event_id"]
        dispatched = await receiver.wait_for(case_id, 1)
        second = await client.post("/v1/gridapp/reports", json=grid_report, headers={"X-Api-Key": "dev-gridapp-key"})
        assert second.status_code == 202, second.text
    linked_id = second.json()["event_id"]

    link = await wait_for_link(hub, linked_id)
    assert link.case_id == case_id
    assert [(s.source.value, s.source_id) for s in link.sources] == [
        ("12345", order["order_no"]),
        ("gridapp", grid_report["report_no"]),
    ]
    assert "同一网格 PA-CG-02-001" in link.explanation and "相隔 35 分钟" in link.explanation
    assert "水管" in link.explanation
    await asyncio.sleep(2)  # a task for the linked report would have reached the receiver by now
    assert receiver.delivered(linked_id) == []
    assert {d.body["event_id"] for d in dispatched} == {case_id}
