"""Duty-list versions on a real broker: `gridhub dutylist publish` puts v1 then v2 on config.dutylist and a running
router follower switches to v2 within a couple of seconds; `gridhub dutylist diff --replay` reads events.normalised
and reports the events a candidate list routes elsewhere."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from gridhub.cli import app
from gridhub.kernel.kafka import create_topics, make_producer
from gridhub.kernel.settings import CommonSettings
from schemas import EventNormalised, topic_spec
from schemas.dutylist import DutyList, load_duty_list
from services.router.decide import decide
from services.router.duty_follower import DutyListFollower
from services.router.duty_versions import ActiveDutyList
from services.router.evaluation import report_event
from tests.conftest import Broker

pytestmark = pytest.mark.broker
runner = CliRunner()


def settings(broker: Broker, topic_prefix: str, name: str) -> CommonSettings:
    return CommonSettings(
        kafka_bootstrap=broker.bootstrap,
        kafka_idempotence=broker.idempotence,
        topic_prefix=f"{topic_prefix}{name}{uuid.uuid4().hex[:6]}.",
    )


def write_list(tmp_path: Path, version: str, *, moved: bool = False) -> Path:
    """The packaged list as another version; moved: M09 (street lights) goes to PA-ZHZF instead of PA-ZJJ."""
    data = load_duty_list().model_dump(mode="json")
    data["version"] = version
    if moved:
        next(m for m in data["matters"] if m["code"] == "M09")["primary"] = "PA-ZHZF"
    DutyList.model_validate(data)
    path = tmp_path / f"{version}.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


async def gridhub(common: CommonSettings, *args: str) -> Result:
    """Run the `gridhub` command line (in a thread: it runs its own event loop) against the test's broker."""
    env: dict[str, str | None] = {
        "KAFKA_BOOTSTRAP": common.kafka_bootstrap,
        "GRIDHUB_KAFKA_IDEMPOTENCE": str(common.kafka_idempotence).lower(),
        "GRIDHUB_TOPIC_PREFIX": common.topic_prefix,
        "GRIDHUB_ROUTER_DUTY_LIST": None,
    }
    return await asyncio.wait_for(asyncio.to_thread(runner.invoke, app, list(args), env=env), 90)


async def test_a_published_version_reaches_a_running_follower_within_seconds(
    broker: Broker, topic_prefix: str, tmp_path: Path
) -> None:
    common = settings(broker, topic_prefix, "dl")
    v1, v2 = write_list(tmp_path, "2026.12-48"), write_list(tmp_path, "2026.12-49", moved=True)

    first = await gridhub(common, "dutylist", "publish", str(v1), "--yes", "--by", "zhangmin")
    assert first.exit_code == 0, first.output
    assert "已发布 / published: 2026.12-48（sha256 " in first.output
    assert f"{common.topic_prefix}config.dutylist offset 0" in first.output

    holder = ActiveDutyList(load_duty_list())
    registry = CollectorRegistry()
    follower = DutyListFollower(common, holder, registry, ready_timeout_s=30)
    await asyncio.wait_for(follower.start(), 30)
    try:
        assert await follower.wait_ready(40)
        assert holder.version == "2026.12-48"  # ready: caught up with what the topic held at start
        assert holder.current.published is not None and holder.current.published.published_by == "zhangmin"

        again = await gridhub(common, "dutylist", "publish", str(v1), "--yes")
        assert again.exit_code == 0 and "已在用 / already active: 2026.12-48" in again.output

        switched = asyncio.Event()
        switched_at: list[float] = []
        holder.on_switch(lambda old, new: (switched_at.append(time.time()), switched.set()))
        second = await gridhub(common, "dutylist", "publish", str(v2), "--yes", "--by", "lisi")
        assert second.exit_code == 0, second.output
        assert "~ M09 市政设施（井盖、路灯、城镇道路与人行道）: primary PA-ZJJ → PA-ZHZF" in second.output
        await asyncio.wait_for(switched.wait(), 5)
        assert holder.version == "2026.12-49"
        published = holder.current.published
        assert published is not None and published.published_by == "lisi"
        # From the record's creation (before the CLI connects its producer) to the follower's switch.
        latency = switched_at[0] - published.published_at.timestamp()
        print(f"published → follower switched: {latency:.3f} s")
        assert latency < 3.0

        event = report_event("12345", "东街十字路口路灯不亮已经一周", grid="PA-CG-01-002", source_id="L1")
        decision = decide(event, holder.current.duty)
        assert decision.routing.duty_list_version == "2026.12-49"
        assert decision.assignments[0].unit_code == "PA-ZHZF"
        switches = registry.get_sample_value("gridhub_router_dutylist_switches_total", {"outcome": "switched"})
        assert switches == 2

        active = await gridhub(common, "dutylist", "active", "--json")
        assert active.exit_code == 0, active.output
        out = json.loads(active.output)
        assert (out["version"], out["published_by"], out["previous_version"]) == ("2026.12-49", "lisi", "2026.12-48")

        (tmp_path / "other").mkdir()
        reused = await gridhub(
            common, "dutylist", "publish", str(write_list(tmp_path / "other", "2026.12-48", moved=True))
        )
        assert reused.exit_code == 2 and "版本号 2026.12-48 已用于不同的内容" in reused.output
    finally:
        await asyncio.wait_for(follower.stop(), 30)


async def produce_events(common: CommonSettings, events: list[EventNormalised]) -> None:
    producer = make_producer(common)
    await asyncio.wait_for(producer.start(), 30)
    try:
        for event in events:
            await producer.send(common.topic("events.normalised"), event.to_bytes(), key=event.event_id.encode())
        await asyncio.wait_for(producer.flush(), 30)
    finally:
        await producer.stop()


async def test_diff_replay_reports_the_events_a_candidate_routes_elsewhere(
    broker: Broker, topic_prefix: str, tmp_path: Path
) -> None:
    common = settings(broker, topic_prefix, "rp")
    await asyncio.wait_for(create_topics(common, (topic_spec("events.normalised"),)), 60)
    lights = [
        report_event("12345", "东街十字路口路灯不亮已经一周", grid="PA-CG-01-002", source_id="L1"),
        report_event("12345", "路灯坏了好几盏，晚上很黑", grid="PA-CG-01-001", source_id="L2"),
    ]
    # Eight events on six partitions: some share a partition and a produce batch (Tansu's end offset lags those).
    gas = [
        report_event("110", f"幸福小区{n}号楼燃气泄漏，闻到很大的煤气味", category="燃气泄漏", source_id=f"G{n}")
        for n in range(1, 7)
    ]
    events = [*lights, *gas]
    await produce_events(common, events)
    candidate = write_list(tmp_path, "2026.12-48", moved=True)

    for window in (["--last", "10"], ["--since", "1h"]):
        result = await gridhub(common, "dutylist", "diff", str(candidate), "--replay", *window, "--json")
        assert result.exit_code == 0, result.output
        out: dict[str, Any] = json.loads(result.output)
        assert out["active"]["source"] == "configured"  # nothing published on this prefix
        replay = out["replay"]
        assert (replay["old_version"], replay["new_version"]) == ("2026.11-47.2", "2026.12-48")
        assert (replay["replayed"], replay["same"], replay["different"], replay["different_unit"]) == (8, 6, 2, 2)
        assert {row["event_id"] for row in replay["events"]} == {e.event_id for e in lights}
        assert replay["moves"] == [
            {"old_matter": "M09", "old_unit": "PA-ZJJ", "new_matter": "M09", "new_unit": "PA-ZHZF", "events": 2}
        ]

    text = await gridhub(common, "dutylist", "diff", str(candidate), "--replay", "--last", "1")
    assert text.exit_code == 0, text.output
    assert "主办单位不同 different unit" in text.output and "PA-ZJJ → PA-ZHZF" in text.output
