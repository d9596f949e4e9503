"""The SLA service on a real broker: alerts on time, a SIGKILL in the middle of open tasks, every alert once.

`gridhub serve sla` runs as a process with second-long escalation steps. Tasks whose 1-hour clocks (签收, 联系)
fall due 15 s after they are sent go in; the worker is killed with SIGKILL while their escalations are under way
and started again on the same data dir; then every expected alert has arrived exactly once (no alert lost,
none repeated). Last, the state file is deleted and the service rebuilds it from the topics: nothing is raised
again and the task's clocks answer from the rebuilt state.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from gridhub.broker import free_port
from gridhub.kernel.kafka import make_consumer, make_producer
from gridhub.kernel.settings import CommonSettings
from gridhub.up import Supervisor
from schemas import SlaAlertRaised, TaskDispatched, UpdateKind
from tests.broker.service_process import own_topics, service_env, start_service
from tests.conftest import Broker
from tests.unit.sla_tasks import task, update

pytestmark = pytest.mark.broker

READY_S = 90
LEAD_S = 15  # tasks fall due this long after they are sent
ESCALATE = (4, 8, 12)  # township, county, supervision: seconds after the deadline
REMINDER_S = 3
FINAL_REMINDERS = 2


class Alerts:
    """Everything on sla.alerts, gathered in the background."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self.consumer = consumer
        self.seen: list[SlaAlertRaised] = []

    async def run(self) -> None:
        async for record in self.consumer:
            self.seen.append(SlaAlertRaised.model_validate_json(record.value))

    async def wait(self, what: str, done: Callable[[], bool], timeout_s: float) -> None:
        """Wait until done() holds, failing with `what` after the time limit."""
        deadline = time.monotonic() + timeout_s
        while not done():
            assert time.monotonic() < deadline, f"no {what} within {timeout_s} s: {len(self.seen)} alerts"
            await asyncio.sleep(0.1)


@pytest.fixture
async def hub(broker: Broker, topic_prefix: str, tmp_path: Path) -> AsyncIterator[tuple[CommonSettings, Supervisor]]:
    """Topics of a prefix of this test's own, and a supervisor for the service process."""
    async with own_topics(broker, topic_prefix, tmp_path, "s") as running:
        yield running


def sla_env(common: CommonSettings, data_dir: Path, port: int) -> dict[str, str]:
    return service_env(
        common,
        "sla",
        data_dir,
        port,
        GRIDHUB_SLA_WARNING_FRACTIONS="[0.5, 0.8]",
        GRIDHUB_SLA_ESCALATE_TOWNSHIP_AFTER_S=str(ESCALATE[0]),
        GRIDHUB_SLA_ESCALATE_COUNTY_AFTER_S=str(ESCALATE[1]),
        GRIDHUB_SLA_ESCALATE_SUPERVISION_AFTER_S=str(ESCALATE[2]),
        GRIDHUB_SLA_REMINDER_INTERVAL_S=str(REMINDER_S),
        GRIDHUB_SLA_FINAL_REMINDERS=str(FINAL_REMINDERS),
        GRIDHUB_SLA_TIMER_IDLE_S="0.2",
    )


async def start_sla(sup: Supervisor, env: dict[str, str]) -> float:
    """Start the service; return how long it took to be ready."""
    return await start_service(sup, "sla", env, READY_S)


def expected_steps(levels: int) -> list[tuple[str, int]]:
    """A 1-hour clock sent 15 s before its deadline: warning-80 at once (warning-50 superseded), overdue, then
    the escalation rungs (3 for a village committee, 2 for a county department) with reminders every 3 s until
    the next step, and two after the last."""
    offsets = dict(zip(("township", "county", "supervision"), ESCALATE, strict=True))
    rungs = ["township", "county", "supervision"][3 - levels :]
    steps: list[tuple[str, int, float]] = [("overdue", 0, 0.0)]
    steps += [(f"escalation-{r}", 0, float(offsets[r])) for r in rungs]
    out: list[tuple[str, int]] = [("warning-80", 0)]
    for index, (step, _, at) in enumerate(steps):
        following = steps[index + 1][2] if index + 1 < len(steps) else None
        n = 0
        while True:
            out.append((step, n))
            n += 1
            if following is None and n > FINAL_REMINDERS:
                break
            if following is not None and at + n * REMINDER_S >= following:
                break
    return out


async def test_alerts_arrive_once_each_across_a_kill_and_a_rebuild(
    hub: tuple[CommonSettings, Supervisor], tmp_path: Path
) -> None:
    common, sup = hub
    port = free_port()
    data = tmp_path / "var"
    env = sla_env(common, data, port)
    await start_sla(sup, env)

    producer = make_producer(common)
    consumer = make_consumer(common, common.topic("sla.alerts"), group_id=None)
    await producer.start()
    await consumer.start()
    tail = Alerts(consumer)
    reader = asyncio.create_task(tail.run())

    async def send(topic: str, key: str, value: bytes) -> None:
        await producer.send_and_wait(common.topic(topic), value, key=key.encode())

    sent_at = datetime.now(UTC)
    received = sent_at - timedelta(hours=1) + timedelta(seconds=LEAD_S)
    village = [task(received, resolve_h=3) for _ in range(4)]
    county = [task(received, unit="PA-ZJJ", unit_name="平安县住房和城乡建设局", resolve_h=3) for _ in range(2)]
    resolved = task(received, resolve_h=3)
    paused = task(received, resolve_h=3)
    everything: list[TaskDispatched] = [*village, *county, resolved, paused]
    try:
        for t in everything:
            await send("tasks.dispatched", t.task_id, t.to_bytes())
        await send("tasks.updates", resolved.task_id, update(resolved, UpdateKind.RESOLVED, sent_at).to_bytes())
        await send("tasks.updates", paused.task_id, update(paused, UpdateKind.PAUSED, sent_at).to_bytes())
        deadline_s = time.monotonic() + LEAD_S - (datetime.now(UTC) - sent_at).total_seconds()

        # The warnings come at once; the overdue alerts at the deadline; kill the worker during the escalations.
        await tail.wait("overdue alerts", lambda: any(a.step == "overdue" for a in tail.seen), LEAD_S + 20)
        await asyncio.sleep(max(0.0, deadline_s + 5 - time.monotonic()))
        before = len(tail.seen)
        victim = sup.procs.pop("sla")
        victim.send_signal(signal.SIGKILL)
        assert await asyncio.to_thread(victim.wait, 10) == -signal.SIGKILL
        restart_s = await start_sla(sup, env)
        # The paused task is resumed 3 s after its pause (its unit's own time): every clock moves 3 s.
        await send(
            "tasks.updates",
            paused.task_id,
            update(paused, UpdateKind.RESUMED, sent_at + timedelta(seconds=3)).to_bytes(),
        )

        full, short = expected_steps(3), expected_steps(2)
        wanted: Counter[tuple[str, str, str, int]] = Counter()
        for t in [*village, paused]:
            for clock in ("ack", "contact"):
                for step, n in full:
                    if t is paused and step == "warning-80":
                        continue  # paused before any round could raise it (or not: checked below)
                    wanted[(t.task_id, clock, step, n)] += 1
        for t in county:
            for clock in ("ack", "contact"):
                for step, n in short:
                    wanted[(t.task_id, clock, step, n)] += 1

        def got() -> Counter[tuple[str, str, str, int]]:
            return Counter(
                (a.task_id, a.clock.value, a.step, a.reminder)
                for a in tail.seen
                if not (a.task_id == paused.task_id and a.step == "warning-80") and a.task_id != resolved.task_id
            )

        last_due = LEAD_S + 3 + ESCALATE[2] + FINAL_REMINDERS * REMINDER_S
        remaining = last_due - (datetime.now(UTC) - sent_at).total_seconds()
        await tail.wait("every expected alert", lambda: got() == wanted, max(10.0, remaining + 15))
        await asyncio.sleep(3)  # anything repeated or unexpected would arrive by now

        assert got() == wanted, (before, restart_s, set(got()) ^ set(wanted))
        ids = Counter(a.alert_id for a in tail.seen)
        assert max(ids.values()) == 1, [i for i, n in ids.items() if n > 1]
        # The resolved task: at most its warnings (raised before the resolution was applied), never more.
        assert {a.step for a in tail.seen if a.task_id == resolved.task_id} <= {"warning-80"}
        # The pause moved the paused task's deadlines by 3 s; its escalations went to its township centre.
        overdue = next(a for a in tail.seen if a.task_id == paused.task_id and a.step == "overdue")
        moved = received + timedelta(hours=1, seconds=3)
        assert abs(overdue.deadline_at - moved) < timedelta(milliseconds=1)  # instants are kept to the millisecond
        township = next(a for a in tail.seen if a.task_id == village[0].task_id and a.step == "escalation-township")
        assert township.escalate_to == "PA-CG" and "城关镇综治中心" in township.message
        assert all(a.escalate_to == "PA-DCS" for a in tail.seen if a.step == "escalation-supervision")
        on_time = [a for a in tail.seen if a.step != "warning-80" and a.raised_at > sent_at + timedelta(seconds=LEAD_S)]
        assert on_time and min((a.raised_at - a.due_at).total_seconds() for a in on_time) < 1.0

        # Another machine: the state file is gone. The service rebuilds it from the topics and raises nothing again.
        first = sup.procs.pop("sla")
        first.terminate()
        assert await asyncio.to_thread(first.wait, 30) == 0
        count = len(tail.seen)
        shutil.rmtree(data)
        await start_sla(sup, env)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            answer = (await client.get(f"/tasks/{paused.task_id}")).json()
            assert answer["status"] == "in-progress", answer
            missing = (await client.get("/tasks/01KAFZ0M3DY89XFXAKDNGGSZDK")).json()
            assert missing["title"] == "未找到该任务"
        await asyncio.sleep(4)
        assert len(tail.seen) == count, [(a.task_id, a.step, a.reminder) for a in tail.seen[count:]]
        files = await asyncio.to_thread(lambda: sorted(p.name for p in (data / "sla").glob("*.sqlite3")))
        assert len(files) == 6, files  # rebuilt: one file per partition
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await consumer.stop()
        await producer.stop()
