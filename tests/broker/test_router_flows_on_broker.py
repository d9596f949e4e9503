"""The router's flows on a real broker: returns, the triage queue over HTTP, summons, the ladder, redaction."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from gridhub.broker import free_port
from gridhub.kernel.kafka import create_topics, make_consumer, make_producer
from gridhub.kernel.settings import CommonSettings
from gridhub.up import Supervisor, command
from schemas import (
    Channel,
    EventNormalised,
    Location,
    Reporter,
    SourceRef,
    SummonDepartments,
    TaskDispatched,
    TaskRole,
    TaskUpdated,
    UpdateKind,
    new_id,
)
from schemas.task import WITHHELD_CONFIDENTIAL, WITHHELD_FROM_ACCUSED
from tests.broker.service_process import service_env, start_service
from tests.conftest import Broker

pytestmark = pytest.mark.broker

CST = timezone(timedelta(hours=8))
READY_S = 90
WAIT_S = 45
PETITIONER = Reporter(
    name="王秀兰", phone="13837124567", address="城关镇东街社区幸福小区3号楼2单元501", confidential=True
)


def report(
    text: str, *, source: Channel = Channel.HOTLINE_12345, reporter: Reporter | None = None, **extra: Any
) -> EventNormalised:
    """One normalised report as intake would publish it, with an event id of its own."""
    location = {k: extra.pop(k) for k in ("grid_code", "address") if k in extra}
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
        reporter=reporter or Reporter(name="张建国", phone="13912345678"),
        reported_at=datetime.now(CST),
        received_at=datetime.now(UTC),
        **extra,
    )


class Bus:
    """Send to the router's inputs; gather tasks, updates and triage commands in the background."""

    def __init__(self, common: CommonSettings, producer: AIOKafkaProducer, consumer: AIOKafkaConsumer) -> None:
        self.common = common
        self.producer = producer
        self.consumer = consumer
        self.tasks: list[TaskDispatched] = []
        self.raw_tasks: dict[str, bytes] = {}
        self.updates: list[TaskUpdated] = []
        self.restart: Callable[[], Awaitable[None]] | None = None  # stop the router process and start it again

    async def run(self) -> None:
        async for record in self.consumer:
            if record.topic == self.common.topic("tasks.dispatched"):
                task = TaskDispatched.model_validate_json(record.value)
                self.tasks.append(task)
                self.raw_tasks[task.task_id] = record.value
            else:
                self.updates.append(TaskUpdated.model_validate_json(record.value))

    async def send(self, topic: str, key: str, value: bytes) -> None:
        await self.producer.send_and_wait(self.common.topic(topic), value, key=key.encode())

    async def event(self, event: EventNormalised) -> None:
        await self.send("events.normalised", event.event_id, event.to_bytes())

    async def update(self, task: TaskDispatched, kind: UpdateKind, reason: str) -> None:
        update = TaskUpdated(
            update_id=new_id(),
            task_id=task.task_id,
            unit_code=task.unit_code,
            kind=kind,
            occurred_at=datetime.now(UTC),
            reason=reason,
        )
        await self.send("tasks.updates", task.task_id, update.to_bytes())

    def of(self, event: EventNormalised, **match: Any) -> list[TaskDispatched]:
        found = [t for t in self.tasks if t.event_id == event.event_id]
        for name, value in match.items():
            found = [
                t
                for t in found
                if (getattr(t.decision, name) if name in ("rule", "round") else getattr(t, name)) == value
            ]
        return found

    async def wait(self, what: str, done: Callable[[], Any], timeout_s: float = WAIT_S) -> Any:
        """Wait until done() is truthy and return it, failing with `what` after the time limit."""
        deadline = time.monotonic() + timeout_s
        while not (result := done()):
            assert time.monotonic() < deadline, (
                f"no {what} within {timeout_s} s: {[(t.unit_code, t.decision.rule) for t in self.tasks]}"
            )
            await asyncio.sleep(0.1)
        return result


@pytest.fixture
async def bus(broker: Broker, topic_prefix: str, tmp_path: Path) -> AsyncIterator[tuple[Bus, str]]:
    """Topics of this test's own, the router running as a process, a tail of its outputs; yields its URL."""
    prefix = f"{topic_prefix}f{uuid.uuid4().hex[:6]}."
    common = CommonSettings(kafka_bootstrap=broker.bootstrap, kafka_idempotence=broker.idempotence, topic_prefix=prefix)
    await asyncio.wait_for(create_topics(common), 60)
    port = free_port()
    env = service_env(common, "router", tmp_path / "var", port, GRIDHUB_ROUTER_MAX_RETURNS="2")
    sup = Supervisor(tmp_path / "logs")
    producer = make_producer(common)
    consumer = make_consumer(common, common.topic("tasks.dispatched"), common.topic("tasks.updates"), group_id=None)
    await producer.start()
    await consumer.start()
    tail = Bus(common, producer, consumer)
    reader = asyncio.create_task(tail.run())

    async def start() -> None:
        await start_service(sup, "router", env, READY_S)

    async def restart() -> None:
        running = sup.procs.pop("router")
        running.terminate()
        assert await asyncio.to_thread(running.wait, 30) == 0
        await start()

    tail.restart = restart
    try:
        await start()
        yield tail, f"http://127.0.0.1:{port}"
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await consumer.stop()
        await producer.stop()
        await asyncio.to_thread(sup.stop)


def dispatcher(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer dev-{name}"}


async def queued(http: httpx.AsyncClient, event: EventNormalised) -> dict[str, Any]:
    """The event's item in the triage queue, once the router lists it."""
    deadline = time.monotonic() + WAIT_S
    while True:
        response = await http.get("/triage", headers=dispatcher("zhangmin"))
        if response.status_code == 200:
            found = [i for i in response.json()["items"] if i["event_id"] == event.event_id]
            if found:
                return found[0]  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"{event.event_id} not in the triage queue: {response.text}"
        await asyncio.sleep(0.2)


async def test_returns_reroute_never_back_then_triage_and_a_dispatcher_routes_it(bus: tuple[Bus, str]) -> None:
    tail, url = bus
    sewer = report("小区下水道反流，污水冒到路面，已经三天了", grid_code="PA-CG-01-001")
    await tail.event(sewer)
    first = await tail.wait("the sewer's first tasks", lambda: tail.of(sewer, role=TaskRole.PRIMARY))
    assert first[0].unit_code == "PA-CG"

    # 1. The township returns it: the county co-operating department takes it over, with new task ids.
    await tail.update(first[0], UpdateKind.RETURNED, "主管网属县住建局市政管网，非我镇职责")
    [rerouted] = await tail.wait("the re-routed task", lambda: tail.of(sewer, rule="returned-reroute"))
    assert (rerouted.unit_code, rerouted.role, rerouted.decision.round) == ("PA-ZJJ", TaskRole.PRIMARY, 1)
    assert rerouted.decision.reason.startswith("退回后改派：城关镇综治中心（PA-CG）退回，理由：“主管网属县住建局")
    assert rerouted.decision.returned_by == ("PA-CG",)

    # 2. The router restarts (its flows and task index come back from topics), then the department returns it
    # too: the second return sends it to the command centre's triage queue.
    assert tail.restart is not None
    await tail.restart()
    await tail.update(rerouted, UpdateKind.RETURNED, "小区内部管网归物业，非市政管网")
    [centre] = await tail.wait("the triage task after two returns", lambda: tail.of(sewer, rule="triage", round=2))
    assert centre.unit_code == "PA-ZZZX"
    assert {t.unit_code for t in tail.of(sewer) if t.role is TaskRole.PRIMARY} == {"PA-CG", "PA-ZJJ", "PA-ZZZX"}

    async with httpx.AsyncClient(base_url=url, timeout=15) as http:
        item = await queued(http, sewer)
        assert (item["cause"], item["round"], item["state"]) == ("returns", 2, "queued")
        assert item["reason"].startswith("退回 2 次（城关镇综治中心、平安县住房和城乡建设局）")
        assert isinstance(item["age_minutes"], float)

        unauthenticated = await http.get("/triage")
        assert unauthenticated.status_code == 401
        assert unauthenticated.headers["content-type"].startswith("application/problem+json")

        # 3. A dispatcher claims it and gives it back; another claims it, the first cannot; it is dispatched.
        first_claim = await http.post(f"/triage/{sewer.event_id}/claim", headers=dispatcher("liqiang"))
        assert first_claim.status_code == 200, first_claim.text
        released = await http.post(
            f"/triage/{sewer.event_id}/release", headers=dispatcher("liqiang"), json={"note": "交张敏处理"}
        )
        assert (released.status_code, released.json()["state"]) == (200, "queued")
        claimed = await http.post(f"/triage/{sewer.event_id}/claim", headers=dispatcher("zhangmin"))
        assert claimed.status_code == 200, claimed.text
        assert (claimed.json()["state"], claimed.json()["claimed_by"]) == ("claimed", "zhangmin")
        clash = await http.post(f"/triage/{sewer.event_id}/claim", headers=dispatcher("liqiang"))
        assert clash.status_code == 409
        assert clash.json()["detail"].startswith(f"事件 {sewer.event_id} 已由调度员 zhangmin 于")
        bad = await http.post(
            f"/triage/{sewer.event_id}/dispatch", headers=dispatcher("zhangmin"), json={"primary": "PA-NOPE"}
        )
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "primary"
        choice = {
            "primary": "PA-CG",
            "co_operating": ["PA-ZJJ"],
            "matter_code": "M08",
            "note": "物业无力处置，由镇牵头",
        }
        dispatched = await http.post(f"/triage/{sewer.event_id}/dispatch", headers=dispatcher("zhangmin"), json=choice)
        assert dispatched.status_code == 200, dispatched.text
        assert dispatched.json()["state"] == "dispatched"
        expected = {t["task_id"]: t["unit_code"] for t in dispatched.json()["tasks"]}

        manual = await tail.wait(
            "the dispatcher's tasks", lambda: len(tail.of(sewer, rule="manual")) >= 2 and tail.of(sewer, rule="manual")
        )
        assert {t.task_id: t.unit_code for t in manual} == expected
        for task in manual:
            assert task.decision.dispatcher == "zhangmin" and task.decision.round == 3
            assert task.decision.reason.startswith("人工派单：调度员 zhangmin 派至 城关镇综治中心 主办")
            assert "说明：物业无力处置，由镇牵头" in task.decision.reason
        # The command centre's triage task is closed for it.
        closing = await tail.wait(
            "the closing update", lambda: [u for u in tail.updates if u.task_id == centre.task_id]
        )
        assert (closing[0].kind, closing[0].unit_code) == (UpdateKind.RESOLVED, "PA-ZZZX")
        gone = await http.post(f"/triage/{sewer.event_id}/claim", headers=dispatcher("liqiang"))
        assert gone.status_code == 404
        history = (await http.get(f"/triage/{sewer.event_id}", headers=dispatcher("liqiang"))).json()["history"]
        assert [line.split(" ", 1)[1] for line in history[1:]] == [
            "调度员 liqiang 认领",
            "调度员 liqiang 放回队列：交张敏处理",
            "调度员 zhangmin 认领",
            "调度员 zhangmin 派单至 PA-CG、PA-ZJJ",
        ]


async def test_summons_ladder_and_a_redacted_copy_for_the_accused(bus: tuple[Bus, str]) -> None:
    tail, _url = bus
    # A petition complaining about the township centre that handles it: its copy carries no identity.
    petition = report(
        "本人王秀兰（电话138-3712-4567，住城关镇东街社区幸福小区3号楼2单元501），邻居盖房占了我家宅基地半米，"
        "找城关镇综治中心三次，工作人员推诿扯皮，至今未调解。",
        source=Channel.PETITION,
        reporter=PETITIONER,
        complained_unit="城关镇综治中心",
        grid_code="PA-CG-01-001",
    )
    building = report("锦绣花园小区顶楼业主私自加盖两层阳光房，楼下渗水，物业劝阻无效", grid_code="PA-CG-02-001")
    await tail.event(petition)
    await tail.event(building)
    copies = await tail.wait("the petition's tasks", lambda: len(tail.of(petition)) >= 2 and tail.of(petition))
    by_unit = {t.unit_code: t for t in copies}
    accused = by_unit["PA-CG"]
    assert accused.reporter is not None and accused.reporter.notice == WITHHELD_FROM_ACCUSED
    wire = tail.raw_tasks[accused.task_id]
    for personal in ("王秀兰", "13837124567", "138-3712-4567", "城关镇东街社区幸福小区3号楼2单元501", "2单元501"):
        assert personal.encode() not in wire, personal
    assert by_unit["PA-SFJ"].reporter is not None and by_unit["PA-SFJ"].reporter.notice == WITHHELD_CONFIDENTIAL

    # 乡镇吹哨、部门报到: the township summons the housing bureau onto its illegal-building task.
    [township] = await tail.wait("the building's township task", lambda: tail.of(building, unit_code="PA-CG"))
    summons = SummonDepartments(
        task_id=township.task_id,
        unit_code="PA-CG",
        departments=("PA-ZJJ",),
        note="楼下渗水涉及房屋安全，请住建局到场",
        requested_at=datetime.now(UTC),
    )
    await tail.send("tasks.summons", township.task_id, summons.to_bytes())
    [summoned] = await tail.wait("the summoned task", lambda: tail.of(building, role=TaskRole.SUMMONED))
    assert (summoned.unit_code, summoned.decision.summoned_by, summoned.decision.rule) == ("PA-ZJJ", "PA-CG", "summons")

    # The dispute fails mediation twice at the township: it moves up to the county centre.
    await tail.update(accused, UpdateKind.MEDIATION_FAILED, "双方对边界各执一词")
    await tail.update(accused, UpdateKind.MEDIATION_FAILED, "对方拒不到场")
    [county] = await tail.wait("the ladder's next level", lambda: tail.of(petition, rule="mediation-ladder"))
    assert (county.unit_code, county.decision.mediation_level) == ("PA-ZZZX", "county-centre")


async def test_the_triage_api_answers_the_same_on_every_replica(
    broker: Broker, topic_prefix: str, tmp_path: Path
) -> None:
    prefix = f"{topic_prefix}r{uuid.uuid4().hex[:6]}."
    common = CommonSettings(kafka_bootstrap=broker.bootstrap, kafka_idempotence=broker.idempotence, topic_prefix=prefix)
    await asyncio.wait_for(create_topics(common), 60)
    sup = Supervisor(tmp_path / "logs")
    ports = [free_port(), free_port()]
    base = {k: v for k, v in os.environ.items() if not k.startswith("GRIDHUB_")} | {
        "KAFKA_BOOTSTRAP": common.kafka_bootstrap,
        "GRIDHUB_KAFKA_IDEMPOTENCE": str(common.kafka_idempotence).lower(),
        "GRIDHUB_TOPIC_PREFIX": prefix,
        "PYTHONUNBUFFERED": "1",
    }
    producer = make_producer(common)
    await producer.start()
    try:
        for i, port in enumerate(ports):
            env = base | {"GRIDHUB_DATA_DIR": str(tmp_path / f"var{i}"), "GRIDHUB_ROUTER_PORT": str(port)}
            sup.spawn(f"router{i}", command("serve", "router"), env)
        urls = {f"router{i}": f"http://127.0.0.1:{port}/readyz" for i, port in enumerate(ports)}
        await asyncio.to_thread(sup.wait_ready, urls, READY_S)
        vague = report("家门口那块地方一直有问题，反映好几次了没人管", grid_code="PA-HX-02-001")
        await producer.send_and_wait(common.topic("events.normalised"), vague.to_bytes(), key=vague.event_id.encode())
        clients = [httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=15) for port in ports]
        try:
            # Both replicas list it (one answers from its table, the other forwards), whichever owns the queue.
            items = [await queued(client, vague) for client in clients]
            assert items[0]["event_id"] == items[1]["event_id"] == vague.event_id
            claims = [
                await client.post(f"/triage/{vague.event_id}/claim", headers=dispatcher(name))
                for client, name in zip(clients, ("zhangmin", "liqiang"), strict=True)
            ]
            assert [c.status_code for c in claims] == [200, 409], [c.text for c in claims]
            seen = [(await c.get(f"/triage/{vague.event_id}", headers=dispatcher("x"))).json() for c in clients]
            assert seen[0]["claimed_by"] == seen[1]["claimed_by"] == "zhangmin"
        finally:
            for client in clients:
                await client.aclose()
    finally:
        await producer.stop()
        await asyncio.to_thread(sup.stop)
