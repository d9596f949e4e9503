"""The foundation slice on a real broker: HTTP in, webhook out, unit update, SLA closes the task."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from schemas import (
    EventNormalised,
    ReportDeadLettered,
    SelfResolvedRecorded,
    TaskDispatched,
    TaskUpdated,
    UpdateKind,
    new_id,
)
from tests.e2e.conftest import FAIL_FIRST_MARKER, Hub, Receiver, tail_logs

pytestmark = pytest.mark.broker


# Each order number happens on a day of its own: the same sewer in the same grid within the router's
# merging window (6 h) would be one incident, linked to the first order's case instead of dispatched again.
_ORDER_DAYS: dict[str, int] = {}


def order(order_no: str, **overrides: Any) -> dict[str, Any]:
    """A valid 12345 work order: a sewer backing up in a Chengguan grid, on a day no other order has."""
    day = _ORDER_DAYS.setdefault(order_no, len(_ORDER_DAYS))
    call_time = datetime(2026, 11, 19, 9, 30, tzinfo=timezone(timedelta(hours=8))) - timedelta(days=day)
    return {
        "order_no": order_no,
        "caller_name": "张先生",
        "caller_phone": "13912345678",
        "appeal_type": "投诉",
        "content": "我们小区下水道反流，污水漫到一楼楼道，味道很大，请尽快处理。",
        "address": "城关镇东街社区幸福小区3号楼",
        "district": "城关镇",
        "grid_code": "PA-CG-01-001",
        "urgency": "一般",
        "call_time": call_time.isoformat(),
        **overrides,
    }


def new_order_no() -> str:
    """A unique work-order number."""
    return f"E2E{uuid.uuid4().hex[:12].upper()}"


async def post_order(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    """POST a work order with the dev hotline key."""
    return await client.post("/v1/12345/work-orders", json=body, headers={"X-Api-Key": "dev-12345-key"})


async def read_topic(hub: Hub, topic: str, match: Any, timeout_s: float = 30.0, settle_s: float = 0.0) -> list[bytes]:
    """Values on a topic for which match(value) is true; waits for one, then `settle_s` more for any others."""
    consumer = AIOKafkaConsumer(
        hub.common.topic(topic),
        bootstrap_servers=hub.common.kafka_bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    found: list[bytes] = []
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            found += [r.value for records in batches.values() for r in records if match(r.value)]
            if found and settle_s:
                deadline = min(deadline, time.monotonic() + settle_s)
                settle_s = 0
            elif found and not settle_s and deadline - time.monotonic() > 1 and not batches:
                break
        return found
    finally:
        await consumer.stop()


async def metric(hub: Hub, service: str, pattern: str) -> float:
    """Sum of the samples of a service's /metrics lines matching a regex."""
    async with httpx.AsyncClient(base_url=hub.url(service), timeout=5) as client:
        text = (await client.get("/metrics")).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if re.match(pattern, line))


async def test_work_order_becomes_tasks_delivered_and_closed_on_time(hub: Hub, receiver: Receiver) -> None:
    async with httpx.AsyncClient(base_url=hub.url("adapters"), timeout=10) as client:
        response = await post_order(client, order(new_order_no()))
        assert response.status_code == 202, response.text
        event_id = response.json()["event_id"]

        deliveries = await receiver.wait_for(event_id, 2, timeout_s=60)
        tasks = {d.body["role"]: TaskDispatched.model_validate(d.body) for d in deliveries}
        assert tasks["primary"].unit_code == "PA-CG", tasks
        assert tasks["co-operating"].unit_code == "PA-ZJJ"
        primary = tasks["primary"]
        assert primary.matter_code == "M08"
        assert primary.deadline_class.value == "public-service"
        assert "下水道" in primary.decision.reason
        assert receiver.bad_signatures == 0

        update = await client.post(
            f"/v1/tasks/{primary.task_id}/updates",
            json={"kind": "resolved", "note": "已疏通"},
            headers={"Authorization": "Bearer dev-PA-CG"},
        )
        assert update.status_code == 202, update.text

    async with httpx.AsyncClient(base_url=hub.url("sla"), timeout=5) as sla:
        deadline = time.monotonic() + 30
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            got = await sla.get(f"/tasks/{primary.task_id}")
            if got.status_code == 200 and (status := got.json())["status"] == "closed":
                break
            await asyncio.sleep(0.2)
    assert status.get("status") == "closed", tail_logs(hub)
    assert status["on_time"] is True
    resolve = next(c for c in status["clocks"] if c["kind"] == "resolve")
    assert "2 个工作日" in resolve["explanation"]


async def test_update_on_another_units_task_is_refused_and_the_sla_checks_owners_too(
    hub: Hub, receiver: Receiver
) -> None:
    async with httpx.AsyncClient(base_url=hub.url("adapters"), timeout=10) as client:
        event_id = (await post_order(client, order(new_order_no()))).json()["event_id"]
        primary = next(d.body for d in await receiver.wait_for(event_id, 2) if d.body["role"] == "primary")
        task_id = primary["task_id"]
        # The webhook may outrun the adapters' read of tasks.dispatched; until then the task is unknown (202).
        deadline = time.monotonic() + 15
        while True:
            wrong = await client.post(
                f"/v1/tasks/{task_id}/updates", json={"kind": "resolved"}, headers={"Authorization": "Bearer dev-PA-HX"}
            )
            if wrong.status_code != 202 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert wrong.status_code == 403, wrong.text
        assert wrong.json()["detail"] == f"任务 {task_id} 不属于单位 PA-HX，不能更新。"

    # Second line of defence: an update that never passed the adapters (produced straight to tasks.updates).
    update = TaskUpdated(
        update_id=new_id(), task_id=task_id, unit_code="PA-HX", kind=UpdateKind.RESOLVED, occurred_at=datetime.now(UTC)
    )
    producer = AIOKafkaProducer(bootstrap_servers=hub.common.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(hub.common.topic("tasks.updates"), update.to_bytes(), key=task_id.encode())
    finally:
        await producer.stop()

    def is_ours(value: bytes) -> bool:
        record = json.loads(value)
        original = base64.b64decode(record.get("original_value", ""))
        return record.get("reason") == "not-task-owner" and update.update_id.encode() in original

    dead = await read_topic(hub, "events.deadletter", is_ours)
    record = ReportDeadLettered.model_validate_json(dead[0])
    assert record.stage == "sla" and "PA-HX" in record.detail


async def test_invalid_work_order_is_dead_lettered_with_reason(hub: Hub) -> None:
    order_no = new_order_no()
    async with httpx.AsyncClient(base_url=hub.url("adapters"), timeout=10) as client:
        response = await post_order(client, order(order_no, appeal_type="抱怨", call_time="2026-11-20 09:30"))
    assert response.status_code == 202
    dead = await read_topic(hub, "events.deadletter", lambda v: f'"12345:{order_no}"'.encode() in v)
    record = ReportDeadLettered.model_validate_json(dead[0])
    assert record.stage == "intake"
    assert record.reason == "invalid-payload"
    assert "appeal_type" in record.detail and "call_time" in record.detail
    assert order_no in base64.b64decode(record.original_value).decode()


async def test_same_work_order_twice_yields_one_event(hub: Hub) -> None:
    order_no = new_order_no()
    before = await metric(hub, "intake", r'gridhub_intake_events_total\{channel="12345",outcome="duplicate"\}')
    async with httpx.AsyncClient(base_url=hub.url("adapters"), timeout=10) as client:
        first = await post_order(client, order(order_no))
        second = await post_order(client, order(order_no))
    # The adapters know their own acceptance: the repeat gets the same event id and publishes nothing.
    assert (first.status_code, second.status_code) == (202, 200)
    assert second.json() == {**first.json(), "status": "duplicate"}
    # A repeat that reaches intake another way (a replica that had not heard of it yet, or a Kafka-native
    # source) is dropped there, keeping the first event id.
    producer = AIOKafkaProducer(bootstrap_servers=hub.common.kafka_bootstrap)
    await producer.start()
    try:
        body = json.dumps(order(order_no), ensure_ascii=False).encode()
        await producer.send_and_wait(hub.common.topic("raw.12345"), body, key=f"12345:{order_no}".encode())
    finally:
        await producer.stop()
    deadline = time.monotonic() + 30
    while await metric(hub, "intake", r'gridhub_intake_events_total\{channel="12345",outcome="duplicate"\}') <= before:
        assert time.monotonic() < deadline, "intake never reported the duplicate"
        await asyncio.sleep(0.2)
    events = await read_topic(hub, "events.normalised", lambda v: order_no.encode() in v, settle_s=1.0)
    assert len(events) == 1
    assert EventNormalised.model_validate_json(events[0]).event_id == first.json()["event_id"]
    # Intake indexed it on reports.index, which the adapters follow; a repeat now is still the same event.
    deadline = time.monotonic() + 30
    while await metric(hub, "adapters", r"gridhub_adapters_index_keys") < 1:
        assert time.monotonic() < deadline, "the adapters never read intake's report index"
        await asyncio.sleep(0.2)
    async with httpx.AsyncClient(base_url=hub.url("adapters"), timeout=10) as client:
        third = await post_order(client, order(order_no))
    assert third.status_code == 200
    assert third.json()["event_id"] == first.json()["event_id"]


async def test_failed_delivery_is_retried_with_the_same_webhook_id(hub: Hub, receiver: Receiver) -> None:
    content = f"小区门口水管爆管，路面积水。{FAIL_FIRST_MARKER}"
    async with httpx.AsyncClient(base_url=hub.url("adapters"), timeout=10) as client:
        event_id = (await post_order(client, order(new_order_no(), content=content))).json()["event_id"]
    delivered = await receiver.wait_for(event_id, 2)
    for delivery in delivered:
        attempts = [d for d in receiver.deliveries if d.webhook_id == delivery.webhook_id]
        assert [a.status for a in attempts] == [503, 200]


def test_hub_started_within_budget(hub: Hub) -> None:
    # Five processes on two cores; each Faust worker joins its group in ~3 s on Tansu (6 s session).
    print(f"hub ready in {hub.started_in_s:.1f} s")
    assert hub.started_in_s < 60


async def test_urgent_110_hand_over_reaches_emergency_management_with_the_2_hour_class(
    hub: Hub, receiver: Receiver
) -> None:
    incident = {
        "incident_no": f"110-{uuid.uuid4().hex[:10]}",
        "call_time": "2026-11-20T21:05:00+08:00",
        "incident_type": "燃气泄漏",
        "summary": "报警人称楼下饭店闻到很浓的煤气味，人员已疏散。",
        "district": "城关镇",
        "urgency": "紧急",
    }
    async with httpx.AsyncClient(base_url=hub.url("adapters"), timeout=10) as client:
        response = await client.post("/v1/110/incidents", json=incident, headers={"X-Api-Key": "dev-110-key"})
    assert response.status_code == 202, response.text
    deliveries = await receiver.wait_for(response.json()["event_id"], 2)
    tasks = {d.body["role"]: TaskDispatched.model_validate(d.body) for d in deliveries}
    assert (tasks["primary"].unit_code, tasks["co-operating"].unit_code) == ("PA-YJJ", "PA-CG")
    assert tasks["primary"].decision.rule == "channel-category"
    assert tasks["primary"].deadline_class.value == "urgent"
    resolve = next(term for term in tasks["primary"].deadlines if term.kind.value == "resolve")
    assert (resolve.amount, resolve.unit.value) == (2, "hours")


async def test_petition_reaches_its_units_without_the_petitioners_identity(hub: Hub, receiver: Receiver) -> None:
    case = {
        "case_no": f"XF-{uuid.uuid4().hex[:10]}",
        "form": "网上信访",
        "registered_at": "2026-11-20T09:10:00+08:00",
        "petitioner": {"name": "李秀英", "phone": "13903711234", "address": "河西乡王庄村三组"},
        "demands": "反映邻居盖房占用我家宅基地半米，两家多次发生纠纷，村里调解没有结果。",
        "complained_unit": "河西乡王庄村村委会",
        "district": "河西乡",
        "grid_code": "PA-HX-02-001",
    }
    async with httpx.AsyncClient(base_url=hub.url("adapters"), timeout=10) as client:
        response = await client.post("/v1/petitions", json=case, headers={"X-Api-Key": "dev-petition-key"})
    assert response.status_code == 202, response.text
    deliveries = await receiver.wait_for(response.json()["event_id"], 2)
    assert {d.body["unit_code"] for d in deliveries} == {"PA-HX", "PA-SFJ"}
    for delivery in deliveries:
        raw_body = str(delivery.body)
        for secret in ("李秀英", "13903711234", "王庄村三组"):
            assert secret not in raw_body, f"{secret} reached {delivery.body['unit_code']}"


async def test_grid_report_is_dispatched_and_a_self_resolved_one_only_recorded(hub: Hub, receiver: Receiver) -> None:
    base = {
        "worker_id": "WGY-0317",
        "grid_code": "PA-CG-01-001",
        "reported_at": "2026-11-20T08:40:00+08:00",
        "photos": ["https://oss.pingan.example/wg/0317/a1.jpg"],
    }
    to_dispatch = {
        **base,
        "report_no": f"WG-{uuid.uuid4().hex[:10]}",
        "category": "设施故障",
        "description": "幸福小区3号楼下水道堵塞反流，需要疏通主管道。",
    }
    done = {
        **base,
        "report_no": f"WG-{uuid.uuid4().hex[:10]}",
        "category": "安全隐患",
        "description": "楼道杂物堵塞消防通道，已劝导清理。",
        "self_resolved": True,
        "resolved_at": "2026-11-20T09:05:00+08:00",
        "resolution": "已现场清理",
    }
    headers = {"X-Api-Key": "dev-gridapp-key"}
    async with httpx.AsyncClient(base_url=hub.url("adapters"), timeout=10) as client:
        dispatched = await client.post("/v1/gridapp/reports", json=to_dispatch, headers=headers)
        resolved = await client.post("/v1/gridapp/reports", json=done, headers=headers)
    assert dispatched.status_code == resolved.status_code == 202
    deliveries = await receiver.wait_for(dispatched.json()["event_id"], 2)
    primary = next(d.body for d in deliveries if d.body["role"] == "primary")
    assert primary["unit_code"] == "PA-CG" and primary["decision"]["rule"] == "channel-candidates"

    records = await read_topic(hub, "events.self-resolved", lambda v: done["report_no"].encode() in v)
    record = SelfResolvedRecorded.model_validate_json(records[0])
    assert record.event.event_id == resolved.json()["event_id"]
    assert record.worker_id == "WGY-0317"
    assert receiver.delivered(resolved.json()["event_id"]) == []  # recorded, never sent to a unit


async def test_a_source_can_produce_its_bare_payload_straight_to_the_raw_topic(hub: Hub, receiver: Receiver) -> None:
    order_no = new_order_no()
    producer = AIOKafkaProducer(bootstrap_servers=hub.common.kafka_bootstrap)
    await producer.start()
    try:
        body = json.dumps(order(order_no), ensure_ascii=False).encode()
        await producer.send_and_wait(hub.common.topic("raw.12345"), body, key=f"12345:{order_no}".encode())
    finally:
        await producer.stop()
    events = await read_topic(hub, "events.normalised", lambda v: order_no.encode() in v)
    event = EventNormalised.model_validate_json(events[0])
    assert event.sources[0].source_id == order_no
    assert {d.body["unit_code"] for d in await receiver.wait_for(event.event_id, 2)} == {"PA-CG", "PA-ZJJ"}


async def test_sla_answers_an_unknown_task_with_a_problem(hub: Hub) -> None:
    async with httpx.AsyncClient(base_url=hub.url("sla"), timeout=5) as sla:
        response = await sla.get("/tasks/01KAFZ0M3DY89XFXAKDNGGSZDK")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["title"] == "未找到该任务"
