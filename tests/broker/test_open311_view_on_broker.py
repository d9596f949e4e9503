"""Open311 status on a real broker: the adapters' view replays and follows reports.index, tasks.*, and answers."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from gridhub.kernel.kafka import create_topics, make_producer
from gridhub.kernel.settings import CommonSettings
from schemas import (
    Channel,
    IndexOutcome,
    Message,
    ReportIndexed,
    TaskDispatched,
    TaskRole,
    TaskStatus,
    TaskStatusChanged,
    new_id,
)
from services.adapters.api import create_api
from services.adapters.settings import AdaptersSettings
from tests.conftest import Broker

pytestmark = pytest.mark.broker
KEY = "broker-12345-key"
NOW = datetime.now(UTC)


def index(source_id: str, event_id: str, source: Channel = Channel.HOTLINE_12345) -> ReportIndexed:
    return ReportIndexed(
        source=source, source_id=source_id, event_id=event_id, outcome=IndexOutcome.EVENT, indexed_at=NOW
    )


def task(event_id: str, unit: tuple[str, str], role: TaskRole) -> TaskDispatched:
    return TaskDispatched.model_validate(
        {
            "task_id": new_id(),
            "event_id": event_id,
            "unit_code": unit[0],
            "unit_name": unit[1],
            "role": role,
            "matter_code": "M08",
            "tier": "township",
            "deadline_class": "public-service",
            "urgency": "normal",
            "title": "[求助] 下水道反流",
            "description": "幸福里小区下水道反流",
            "location": {"address": "城关镇东街幸福里小区", "lat": 35.1013, "lon": 114.2033},
            "received_at": NOW,
            "dispatched_at": NOW + timedelta(seconds=1),
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


def status(of: TaskDispatched, state: TaskStatus, minutes: int, **facts: Any) -> TaskStatusChanged:
    return TaskStatusChanged(
        task_id=of.task_id,
        unit_code=of.unit_code,
        status=state,
        clocks=[{"kind": "resolve", "due_at": NOW + timedelta(days=3), "explanation": "2 个工作日"}],
        changed_at=NOW + timedelta(minutes=minutes),
        **facts,
    )


async def publish(common: CommonSettings, records: list[tuple[str, str, Message]]) -> None:
    """What intake, the router and the SLA service publish (here: the test)."""
    producer = make_producer(common)
    await asyncio.wait_for(producer.start(), 30)
    try:
        for topic, key, record in records:
            await producer.send(common.topic(topic), record.to_bytes(), key=key.encode())
        await asyncio.wait_for(producer.flush(), 30)
    finally:
        await producer.stop()


def life(
    source_id: str, event_id: str, states: list[tuple[TaskStatus, dict[str, Any]]]
) -> tuple[list[tuple[str, str, Message]], TaskDispatched]:
    """An Open311 request's index record, a primary and a co-operating task, the primary's statuses; the primary."""
    primary = task(event_id, ("PA-CG", "城关镇综治中心"), TaskRole.PRIMARY)
    helper = task(event_id, ("PA-ZJJ", "平安县住房和城乡建设局"), TaskRole.CO_OPERATING)
    record = index(source_id, event_id)
    out: list[tuple[str, str, Message]] = [
        ("tasks.status", primary.task_id, status(primary, states[0][0], 0, **states[0][1])),  # status first
        ("tasks.dispatched", primary.task_id, primary),
        ("tasks.dispatched", helper.task_id, helper),
        ("reports.index", record.dedupe_key, record),
    ]
    out += [("tasks.status", primary.task_id, status(primary, s, n, **f)) for n, (s, f) in enumerate(states[1:], 1)]
    return out, primary


async def wait_for_stage(
    client: httpx.AsyncClient, request_id: str, stage: str, timeout_s: float = 60
) -> dict[str, Any]:
    """Poll the status until it shows `stage`; fail after timeout_s."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    last = None
    while asyncio.get_running_loop().time() < deadline:
        response = await client.get(f"/open311/v2/requests/{request_id}.json")
        last = response
        if response.status_code == 200 and response.json()[0]["detailed_status"] == stage:
            shown: dict[str, Any] = response.json()[0]
            return shown
        await asyncio.sleep(0.2)
    raise AssertionError(
        f"{request_id} never reached {stage}; last answer {last and last.status_code}: {last and last.text}"
    )


async def test_open311_status_from_the_bus(broker: Broker, topic_prefix: str, tmp_path: Path) -> None:
    common = CommonSettings(
        kafka_bootstrap=broker.bootstrap,
        kafka_idempotence=broker.idempotence,
        topic_prefix=f"{topic_prefix}o311{uuid.uuid4().hex[:6]}.",
        data_dir=tmp_path,
    )
    await asyncio.wait_for(create_topics(common), 60)
    # Before the adapters start: other traffic, and one Open311 request already closed (the replay path).
    noise_event = new_id()
    noise = task(noise_event, ("PA-HX", "河西乡综治中心"), TaskRole.PRIMARY)
    old_event = new_id()
    await publish(
        common,
        [
            ("reports.index", "110:110-1", index("110-1", noise_event, Channel.POLICE_110)),
            ("tasks.dispatched", noise.task_id, noise),
            ("tasks.status", noise.task_id, status(noise, TaskStatus.OPEN, 0)),
            *life("O311-replayed", old_event, [(TaskStatus.OPEN, {}), (TaskStatus.CLOSED, {"resolved_at": NOW})])[0],
        ],
    )

    settings = AdaptersSettings(common=common, source_keys={"12345": KEY}, index_ready_timeout_s=30, duty_list=None)
    app = create_api(settings, CollectorRegistry())
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://adapters.test") as client,
    ):
        replayed = await wait_for_stage(client, "O311-replayed", "办结")
        assert replayed["status"] == "closed" and replayed["agency_responsible"] == "城关镇综治中心"

        form = {
            "api_key": KEY,
            "service_code": "M08",
            "description": "幸福里小区下水道反流",
            "lat": "35.1",
            "long": "114.2",
        }
        created = await client.post("/open311/v2/requests.json", data=form)
        assert created.status_code == 202, created.text
        request_id = created.json()[0]["service_request_id"]

        event_id = new_id()
        records, primary = life(request_id, event_id, [(TaskStatus.ACCEPTED, {"accepted_at": NOW})])
        await publish(common, records)
        shown = await wait_for_stage(client, request_id, "签收")
        assert (shown["status"], shown["event_id"]) == ("open", event_id)
        assert shown["status_notes"] == "签收：主办单位 城关镇综治中心；配合单位：平安县住房和城乡建设局（派单）"
        assert shown["expected_datetime"] is not None

        closed = status(primary, TaskStatus.CLOSED, 300, accepted_at=NOW, resolved_at=NOW + timedelta(hours=5))
        await publish(common, [("tasks.status", primary.task_id, closed)])
        shown = await wait_for_stage(client, request_id, "办结")
        assert shown["status"] == "closed"
        listed = await client.get("/open311/v2/requests.json", params={"status": "closed"})
        assert {r["service_request_id"] for r in listed.json()} == {request_id, "O311-replayed"}
