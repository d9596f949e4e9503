"""Reports on a real broker: the SLA worker's report view replays and follows tasks.*, and `gridhub report weekly`
reads the same topics group-less; both give the pure function's figures."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from gridhub.cli import app
from gridhub.kernel.kafka import create_topics, make_producer
from gridhub.kernel.settings import CommonSettings
from schemas import Message
from schemas.dutylist import load_duty_list
from services.sla.report_view import ReportView
from services.sla.reports import GroupBy, summarise
from tests.conftest import Broker
from tests.unit.report_data import dispatched, status
from tests.unit.test_sla_reports import AFTER, CAL, W47, at, task, week_tasks

pytestmark = pytest.mark.broker


async def publish(common: CommonSettings, records: list[tuple[str, str, Message]]) -> None:
    """What the router and the SLA service publish (here: the test)."""
    producer = make_producer(common)
    await asyncio.wait_for(producer.start(), 30)
    try:
        for topic, key, record in records:
            await producer.send(common.topic(topic), record.to_bytes(), key=key.encode())
        await asyncio.wait_for(producer.flush(), 30)
    finally:
        await producer.stop()


def bus_records() -> list[tuple[str, str, Message]]:
    """Every status before its task (the two topics are read independently)."""
    out: list[tuple[str, str, Message]] = []
    for t in week_tasks():
        record = status(t)
        if record is not None:
            out.append(("tasks.status", record.task_id, record))
    out += [("tasks.dispatched", d.task_id, d) for d in (dispatched(t) for t in week_tasks())]
    return out


async def test_report_view_and_weekly_command_on_the_bus(
    broker: Broker, topic_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    common = CommonSettings(
        kafka_bootstrap=broker.bootstrap,
        kafka_idempotence=broker.idempotence,
        topic_prefix=f"{topic_prefix}rep{uuid.uuid4().hex[:6]}.",
        data_dir=tmp_path,
    )
    await asyncio.wait_for(create_topics(common), 60)
    await publish(common, bus_records())
    expected = summarise(week_tasks(), W47, AFTER, CAL, county_name="平安县").as_dict()

    view = ReportView(common, CollectorRegistry(), CAL, directory=tmp_path, duty=load_duty_list(), cache_s=0)
    await view.start()
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while not view.ready() or (shown := (await view.summary(W47, GroupBy.UNIT, now=AFTER)).as_dict()) != expected:
            assert asyncio.get_running_loop().time() < deadline, shown
            await asyncio.sleep(0.2)

        # Followed live: 城关镇 resolves a4 on Saturday, within its deadline.
        a4 = task("a4", ("PA-CG", "城关镇综治中心"), at(20, 9), due=at(1, 0, month=12), resolved=at(21, 10))
        record = status(a4)
        assert record is not None
        await publish(common, [("tasks.status", record.task_id, record)])
        while True:
            cg = next(r for r in (await view.summary(W47, GroupBy.UNIT, now=AFTER)).rows if r.key == "PA-CG")
            if cg.resolved == 4:
                break
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.2)
        assert (cg.open, cg.due) == (0, 3) and 15.0 in cg.hours  # Friday 09:00-24:00; Saturday is not worked
    finally:
        await view.stop()

    # The command reads the same topics group-less (settings from the environment, as every command).
    monkeypatch.setenv("KAFKA_BOOTSTRAP", broker.bootstrap)
    monkeypatch.setenv("GRIDHUB_TOPIC_PREFIX", common.topic_prefix)
    monkeypatch.setenv("GRIDHUB_KAFKA_IDEMPOTENCE", str(broker.idempotence).lower())
    args = ["report", "weekly", "--week", "2026-W47", "--now", "2026-11-30T09:00:00+08:00", "--out", str(tmp_path)]
    result = await asyncio.to_thread(CliRunner().invoke, app, [*args, "--json", "--no-chart"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = {r["key"]: r for r in json.loads(result.stdout)["rows"]}
    assert rows["PA-CG"]["resolved"] == 4
    assert rows["PA-ZJJ"] == next(r for r in expected["rows"] if r["key"] == "PA-ZJJ")
