"""The router on a real broker: one incident from three channels is dispatched once and linked twice."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from gridhub.broker import free_port
from gridhub.kernel.kafka import make_consumer, make_producer
from gridhub.kernel.settings import CommonSettings
from gridhub.up import Supervisor
from schemas import CaseLinked, Channel, EventNormalised, Location, Reporter, SourceRef, TaskDispatched, new_id
from tests.broker.service_process import own_topics, service_env, start_service
from tests.broker.test_dutylist_publish_on_broker import gridhub, write_list
from tests.conftest import Broker

pytestmark = pytest.mark.broker

CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 11, 20, 9, 30, tzinfo=CST)
READY_S = 90
WAIT_S = 45


def report(text: str, source: Channel, minutes: int, **location: Any) -> EventNormalised:
    """One normalised report as intake would publish it."""
    return EventNormalised(
        causation_id=new_id(),
        event_id=new_id(),
        sources=(
            SourceRef(source=source, source_id=f"{source.value}-{uuid.uuid4().hex[:8]}", raw_message_id=new_id()),
        ),
        type="投诉",
        title=text[:60],
        description=text,
        location=Location(**location),
        reporter=Reporter(),
        reported_at=T0 + timedelta(minutes=minutes),
        received_at=datetime.now(UTC),
        declared_category="设施故障" if source is Channel.GRID_APP else None,
    )


class Tail:
    """Everything on some topics since the beginning, decoded, gathered in the background."""

    def __init__(self, consumer: AIOKafkaConsumer, common: CommonSettings) -> None:
        self.consumer = consumer
        self.links_topic = common.topic("cases.links")
        self.tasks: list[TaskDispatched] = []
        self.links: list[CaseLinked] = []

    async def run(self) -> None:
        async for record in self.consumer:
            if record.topic == self.links_topic:
                self.links.append(CaseLinked.model_validate_json(record.value))
            else:
                self.tasks.append(TaskDispatched.model_validate_json(record.value))

    async def wait(self, what: str, done: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
        """Wait until done() holds, failing with `what` after the time limit."""
        deadline = time.monotonic() + timeout_s
        while not done():
            assert time.monotonic() < deadline, f"no {what} within {timeout_s} s: {self.tasks=} {self.links=}"
            await asyncio.sleep(0.1)


@pytest.fixture
async def hub(broker: Broker, topic_prefix: str, tmp_path: Path) -> AsyncIterator[tuple[CommonSettings, Supervisor]]:
    """Topics of a prefix of this test's own and the router running as a process."""
    async with own_topics(broker, topic_prefix, tmp_path, "m") as running:
        yield running


def router_env(common: CommonSettings, data_dir: Path, port: int) -> dict[str, str]:
    return service_env(common, "router", data_dir, port)


async def start_router(sup: Supervisor, env: dict[str, str]) -> None:
    await start_service(sup, "router", env, READY_S)


async def test_one_incident_from_three_channels_is_dispatched_once_and_linked_twice(
    hub: tuple[CommonSettings, Supervisor], tmp_path: Path
) -> None:
    common, sup = hub
    env = router_env(common, tmp_path / "var", free_port())
    await start_router(sup, env)

    hotline = report(
        "幸福小区3号楼下水管爆裂，水漫到路上，请尽快处理。",
        Channel.HOTLINE_12345,
        0,
        address="城关镇东街社区幸福小区3号楼",
        grid_code="PA-CG-01-001",
    )
    wechat = report("3号楼门口水管爆了好大水", Channel.WECHAT, 12, lat=35.1015, lon=114.2034)
    grid = report(
        "网格员巡查发现3号楼供水管破裂，已设置警示",
        Channel.GRID_APP,
        35,
        grid_code="PA-CG-01-001",
        lat=35.1014,
        lon=114.2033,
    )
    other = report("邻居盖房占了我家宅基地半米，两家吵架好几次", Channel.HOTLINE_12345, 20, grid_code="PA-HX-02-001")

    producer = make_producer(common)
    consumer = make_consumer(common, common.topic("tasks.dispatched"), common.topic("cases.links"), group_id=None)
    await producer.start()
    await consumer.start()
    tail = Tail(consumer, common)
    reader = asyncio.create_task(tail.run())

    async def send(*events: EventNormalised) -> None:
        for e in events:
            await producer.send_and_wait(common.topic("events.normalised"), e.to_bytes(), key=e.event_id.encode())

    def tasks_of(e: EventNormalised) -> list[TaskDispatched]:
        return [t for t in tail.tasks if t.event_id == e.event_id]

    try:
        await send(hotline)
        await tail.wait("tasks for the first report", lambda: bool(tasks_of(hotline)))
        # One at a time: the three travel on different partitions, and the grid report's best match
        # (asserted below) is the WeChat report only if that one is already in the case.
        await send(wechat)
        await tail.wait("the WeChat report's link", lambda: len(tail.links) >= 1)
        await send(grid, other)
        await tail.wait("two links", lambda: len(tail.links) >= 2)
        await tail.wait("tasks for the unrelated report", lambda: bool(tasks_of(other)))
        await asyncio.sleep(2)  # anything else the router was going to publish arrives by now

        assert {t.event_id for t in tail.tasks} == {hotline.event_id, other.event_id}
        first_tasks = {(t.task_id, t.unit_code) for t in tasks_of(hotline)}
        assert {t.unit_code for t in tasks_of(other)} == {"PA-HX", "PA-SFJ"}
        by_event = {link.event_id: link for link in tail.links}
        assert set(by_event) == {wechat.event_id, grid.event_id}
        assert {link.case_id for link in tail.links} == {hotline.event_id}
        assert by_event[wechat.event_id].causation_id == wechat.message_id
        assert "同一网格 PA-CG-01-001" in by_event[wechat.event_id].explanation
        assert by_event[grid.event_id].matched_event_id == wechat.event_id
        metres = by_event[grid.event_id].distance_m
        assert metres is not None and metres < 50
        assert [s.source for s in by_event[grid.event_id].sources] == [
            Channel.HOTLINE_12345,
            Channel.WECHAT,
            Channel.GRID_APP,
        ]

        # A replay of a merged report is the same link, not a new case; after a restart too (changelog).
        await send(wechat)
        await tail.wait("the replayed link", lambda: len(tail.links) >= 3)
        assert tail.links[2] == by_event[wechat.event_id]
        first = sup.procs.pop("router")
        first.terminate()
        assert await asyncio.to_thread(first.wait, 30) == 0
        await start_router(sup, env)
        await send(grid, hotline)
        await tail.wait("the link replayed after a restart", lambda: len(tail.links) >= 4)
        await tail.wait("the first report's tasks again", lambda: len(tasks_of(hotline)) >= 2 * len(first_tasks))
        assert tail.links[3] == by_event[grid.event_id]
        assert {(t.task_id, t.unit_code) for t in tasks_of(hotline)} == first_tasks  # same deterministic ids
        assert {t.event_id for t in tail.tasks} == {hotline.event_id, other.event_id}
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await consumer.stop()
        await producer.stop()


async def test_a_published_list_switches_a_running_router_and_decisions_name_it(
    hub: tuple[CommonSettings, Supervisor], tmp_path: Path
) -> None:
    common, sup = hub
    # Merging off: the street lights below are one place and one kind of incident (they would be one case).
    env = router_env(common, tmp_path / "var", free_port()) | {"GRIDHUB_ROUTER_MERGE_ENABLED": "false"}
    await start_router(sup, env)
    producer = make_producer(common)
    consumer = make_consumer(common, common.topic("tasks.dispatched"), group_id=None)
    await producer.start()
    await consumer.start()
    tail = Tail(consumer, common)
    reader = asyncio.create_task(tail.run())

    async def street_light(minutes: int) -> EventNormalised:
        event = report(f"东街第{minutes}号路灯不亮，晚上很黑", Channel.HOTLINE_12345, minutes, grid_code="PA-CG-01-001")
        await producer.send_and_wait(common.topic("events.normalised"), event.to_bytes(), key=event.event_id.encode())
        return event

    def primary(event: EventNormalised) -> TaskDispatched | None:
        return next((t for t in tail.tasks if t.event_id == event.event_id and t.role.value == "primary"), None)

    try:
        before = await street_light(0)
        await tail.wait("the first street light's task", lambda: primary(before) is not None)
        first = primary(before)
        assert first is not None and first.decision.duty_list_version == "2026.11-47.2"
        assert first.unit_code == "PA-ZJJ"

        published = await gridhub(
            common, "dutylist", "publish", str(write_list(tmp_path, "2026.12-49", moved=True)), "--yes"
        )
        assert published.exit_code == 0, published.output
        switched_at = time.monotonic()
        after: EventNormalised | None = None
        for minute in range(1, 60):  # no restart: the next events are decided on the new list
            after = await street_light(minute)
            await tail.wait("a street light's task", lambda e=after: primary(e) is not None)  # type: ignore[misc]
            task = primary(after)
            if task is not None and task.decision.duty_list_version == "2026.12-49":
                break
        task = primary(after) if after is not None else None
        assert task is not None and task.decision.duty_list_version == "2026.12-49"
        assert task.unit_code == "PA-ZHZF" and "2026.12-49" in task.decision.reason
        assert time.monotonic() - switched_at < 10
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await consumer.stop()
        await producer.stop()
