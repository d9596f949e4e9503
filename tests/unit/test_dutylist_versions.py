"""Duty-list versions without a broker: the router's holder switches on a published record (its index built once,
before the switch), keeps its list on an invalid one; a candidate list's differences and its replay; the publish
command's refusals."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

import gridhub.dutylist_cli as cli
import services.router.decide as decide_module
from gridhub.cli import app
from gridhub.kernel.settings import CommonSettings
from schemas import DutyListPublished, EventNormalised, dutylist_sha256
from schemas.dutylist import DutyList, load_duty_list
from services.router.decide import RouterIndex, decide, router_index
from services.router.duty_follower import DutyListFollower
from services.router.duty_versions import ActiveDutyList, ActiveList, SwitchOutcome, list_changes
from services.router.evaluation import report_event
from services.router.replay_diff import diff_decisions

runner = CliRunner()
WHEN = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


def sample() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(resources.files("schemas").joinpath("data/dutylist.json").read_text("utf-8"))
    return data


def matter(data: dict[str, Any], code: str) -> dict[str, Any]:
    return next(m for m in data["matters"] if m["code"] == code)


def variant(version: str, **change: Any) -> DutyList:
    """The packaged list under another version: M09 (street lights) moved to PA-ZHZF with moved=True."""
    data = sample()
    data["version"] = version
    if change.get("moved"):
        matter(data, "M09")["primary"] = "PA-ZHZF"
    if "threshold" in change:
        data["confidence_threshold"] = change["threshold"]
    return DutyList.model_validate(data)


def record(duty: DutyList, by: str = "zhangmin") -> bytes:
    return DutyListPublished.of(duty, published_by=by, published_at=WHEN).to_bytes()


def street_light() -> EventNormalised:
    return report_event(
        "12345", "东街十字路口路灯不亮已经一周，晚上过路的人看不清", grid="PA-CG-01-002", source_id="L1"
    )


def gas_leak() -> EventNormalised:
    return report_event("110", "幸福小区3号楼燃气泄漏，闻到很大的煤气味", category="燃气泄漏", source_id="G1")


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The version of every RouterIndex built while the test runs."""
    built: list[str] = []

    class Counting(RouterIndex):
        def __init__(self, duty: DutyList) -> None:
            built.append(duty.version)
            super().__init__(duty)

    monkeypatch.setattr(decide_module, "RouterIndex", Counting)
    yield built


def test_a_published_record_switches_and_the_index_is_built_once_before(builds: list[str]) -> None:
    holder = ActiveDutyList(load_duty_list())
    assert (holder.version, holder.current.source, holder.current.published) == ("2026.11-47.2", "configured", None)
    seen: list[tuple[str, str]] = []
    holder.on_switch(lambda old, new: seen.append((old.version, new.version)))
    builds.clear()

    applied = holder.apply(record(variant("2026.12-48", moved=True)))

    assert applied.outcome is SwitchOutcome.SWITCHED and applied.switched
    assert (applied.previous.version, holder.version) == ("2026.11-47.2", "2026.12-48")
    assert applied.detail == "2026.11-47.2 → 2026.12-48（zhangmin @ 2026-11-23T09:30:00+00:00）"
    assert builds == ["2026.12-48"] and applied.build_s > 0  # built by the switch, before it took effect
    assert seen == [("2026.11-47.2", "2026.12-48")]
    active = holder.current
    assert active.published is not None and active.published.published_by == "zhangmin"
    assert active.index is router_index(active.duty)  # decide() finds the very index the switch built
    decisions = [decide(street_light(), holder.duty) for _ in range(3)]
    assert builds == ["2026.12-48"]  # the first events after the switch built nothing
    assert {d.routing.duty_list_version for d in decisions} == {"2026.12-48"}
    assert decisions[0].assignments[0].unit_code == "PA-ZHZF"


def test_an_invalid_record_keeps_the_list_in_force_and_says_why(builds: list[str]) -> None:
    holder = ActiveDutyList(load_duty_list())
    assert holder.apply(record(variant("2026.12-48"))).outcome is SwitchOutcome.SWITCHED
    before = holder.current
    builds.clear()
    good = json.loads(record(variant("2026.12-49")))

    broken = json.loads(json.dumps(good))
    matter(broken["duty_list"], "M09")["primary"] = "PA-NOPE"  # a reference that does not resolve
    text = json.dumps(broken["duty_list"], ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    broken["sha256"] = hashlib.sha256(text.encode()).hexdigest()  # the digest fits: only the reference is wrong
    tampered = {**good, "sha256": "0" * 64}
    mislabelled = {**good, "version": "2026.12-50"}
    cases = {
        b"not json": "invalid record",
        b'{"version": "x"}': "duty_list: Field required",
        json.dumps(broken, ensure_ascii=False).encode(): "PA-NOPE",
        json.dumps(tampered, ensure_ascii=False).encode(): "does not match the list's content",
        json.dumps(mislabelled, ensure_ascii=False).encode(): "is not the list's own version",
    }
    for value, why in cases.items():
        applied = holder.apply(value)
        assert applied.outcome is SwitchOutcome.INVALID and not applied.switched
        assert why in applied.detail, applied.detail
        assert holder.current is before and applied.active is before
    assert builds == []


def test_same_content_rebuilds_nothing_a_reused_version_still_switches_and_a_tombstone_reverts(
    builds: list[str],
) -> None:
    holder = ActiveDutyList(load_duty_list())
    base = holder.current
    builds.clear()
    same = holder.apply(record(load_duty_list(), by="lisi"))
    assert same.outcome is SwitchOutcome.UNCHANGED and builds == []
    assert holder.current.index is base.index and holder.current.published is not None  # the publication noted

    assert holder.apply(record(variant("2026.12-48"))).outcome is SwitchOutcome.SWITCHED
    reused = holder.apply(record(variant("2026.12-48", moved=True)))  # the CLI refuses this; another producer did it
    assert reused.outcome is SwitchOutcome.VERSION_REUSED and reused.switched
    assert "version reused with other content" in reused.detail
    assert holder.duty.matter("M09").primary == "PA-ZHZF"  # type: ignore[union-attr]

    reverted = holder.apply(None)
    assert reverted.outcome is SwitchOutcome.REVERTED and holder.current is holder.base
    assert holder.apply(None).outcome is SwitchOutcome.UNCHANGED


def test_records_read_together_build_only_the_one_that_ends_in_force(builds: list[str]) -> None:
    holder = ActiveDutyList(load_duty_list())
    builds.clear()
    results = holder.apply_latest(
        [record(variant("2026.12-48")), record(variant("2026.12-49", moved=True)), b"{}", None, record(variant("v9"))]
    )
    assert [r.outcome for r in results] == [SwitchOutcome.SKIPPED] * 4 + [SwitchOutcome.SWITCHED]
    assert builds == ["v9"]
    results = holder.apply_latest([record(variant("v10")), b"garbage"])
    assert [r.outcome for r in results] == [SwitchOutcome.SWITCHED, SwitchOutcome.INVALID]
    assert holder.version == "v10" and builds == ["v9", "v10"]
    assert holder.apply_latest([]) == []


def test_the_follower_applies_each_offset_once_and_counts_outcomes() -> None:
    registry = CollectorRegistry()
    holder = ActiveDutyList(load_duty_list())
    applied: list[SwitchOutcome] = []
    follower = DutyListFollower(
        CommonSettings(), holder, registry, ready_timeout_s=1, on_applied=lambda a: applied.append(a.outcome)
    )
    assert registry.get_sample_value("gridhub_router_dutylist_published_timestamp_seconds") == 0
    assert registry.get_sample_value("gridhub_router_dutylist_matters") == 47

    def records(*values: bytes | None, first: int = 0) -> list[Any]:
        return [SimpleNamespace(offset=first + i, value=v) for i, v in enumerate(values)]

    v48, v49 = record(variant("2026.12-48")), record(variant("2026.12-49", moved=True))
    follower._apply(records(v48, b"bad", v49))
    assert holder.version == "2026.12-49" and applied == ["skipped", "skipped", "switched"]
    follower._apply(records(v48, b"bad", v49))  # read again from the start after a failure: nothing switches back
    assert holder.version == "2026.12-49" and len(applied) == 3
    follower._apply(records(b"bad", first=3))
    assert holder.version == "2026.12-49" and applied[-1] == "invalid"

    def switches(outcome: str) -> float | None:
        return registry.get_sample_value("gridhub_router_dutylist_switches_total", {"outcome": outcome})

    assert (switches("switched"), switches("skipped"), switches("invalid"), switches("reverted")) == (1, 2, 1, 0)
    assert registry.get_sample_value("gridhub_router_dutylist_published_timestamp_seconds") == WHEN.timestamp()
    assert registry.get_sample_value("gridhub_router_dutylist_switched_timestamp_seconds") > 0  # type: ignore[operator]
    assert not follower.ready()


def test_diff_lists_the_events_a_moved_matter_routes_elsewhere() -> None:
    old, new = load_duty_list(), variant("2026.12-48", moved=True)
    events = [street_light(), gas_leak(), report_event("12345", "路灯坏了好几盏", grid="PA-CG-01-001", source_id="L2")]

    report = diff_decisions(events, old, new)

    assert (report.old_version, report.new_version) == ("2026.11-47.2", "2026.12-48")
    assert (report.replayed, report.same, report.different) == (3, 1, 2)
    assert dict(report.by_aspect) == {"unit": 2}
    assert {row.event_id for row in report.rows} == {events[0].event_id, events[2].event_id}
    row = report.rows[0]
    assert (row.old.unit, row.new.unit, row.old.matter, row.new.matter) == ("PA-ZJJ", "PA-ZHZF", "M09", "M09")
    assert row.changes == ("unit",) and row.channel == "12345"
    assert report.moves == {("M09", "PA-ZJJ", "M09", "PA-ZHZF"): 2}
    out = report.as_dict()
    assert (out["different_unit"], out["newly_to_triage"], out["events_left_out"]) == (2, 0, 0)

    stricter = diff_decisions(events, old, variant("2026.12-49", threshold=0.99), max_rows=1)
    assert stricter.by_aspect["to-triage"] == stricter.different == 3  # none is 99 % sure: all to triage
    assert len(stricter.rows) == 1 and stricter.rows_left_out == 2
    assert stricter.rows[0].new.unit == "PA-ZZZX" and stricter.rows[0].new.triage
    assert diff_decisions(events, old, old).different == 0


def test_list_changes_names_what_moved() -> None:
    data = sample()
    data["version"] = "2026.12-48"
    matter(data, "M09")["primary"] = "PA-ZHZF"
    matter(data, "M08")["keywords"]["渗水"] = 2
    del matter(data, "M08")["keywords"]["反流"]
    data["grids"].pop()
    data["confidence_threshold"] = 0.55
    changes = list_changes(load_duty_list(), DutyList.model_validate(data))
    assert not changes.empty and not changes.same_content
    assert [c.code for c in changes.matters.changed] == ["M08", "M09"]
    assert changes.matters.changed[1].what == ("primary PA-ZJJ → PA-ZHZF",)
    assert changes.matters.changed[0].what == ("关键词 keywords +渗水 −反流",)
    assert (changes.grids.before, changes.grids.after, len(changes.grids.removed)) == (56, 55, 1)
    assert changes.settings == ["confidence_threshold 0.5 → 0.55"]
    text = "\n".join(changes.lines())
    assert "~ M09 市政设施" in text and "- PA-" in text
    assert list_changes(load_duty_list(), load_duty_list()).same_content


# --- the publish command: refusals before anything is sent ---


def write(tmp_path: Path, duty: DutyList | dict[str, Any], name: str = "candidate.json") -> Path:
    data = duty.model_dump(mode="json") if isinstance(duty, DutyList) else duty
    path = tmp_path / name
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture
def topic(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """config.dutylist as the CLI reads it (records to apply), and what it would send (never a broker)."""
    state: dict[str, Any] = {"records": [], "sent": []}

    async def read_published(common: CommonSettings, base: DutyList, timeout_s: float = 30.0) -> cli.PublishedState:
        holder = ActiveDutyList(base)
        values = state["records"]
        applied = holder.apply_latest(values)
        history = [DutyListPublished.model_validate_json(v) for v in values]
        return cli.PublishedState(holder, history, applied, True)

    async def send_published(common: CommonSettings, published: DutyListPublished, timeout_s: float = 30.0) -> int:
        state["sent"].append(published)
        return len(state["sent"]) - 1

    monkeypatch.setattr(cli, "read_published", read_published)
    monkeypatch.setattr(cli, "send_published", send_published)
    yield state


def test_publish_refuses_an_invalid_file_with_every_problem(tmp_path: Path, topic: dict[str, Any]) -> None:
    data = sample()
    data["version"] = "2026.12-48"
    matter(data, "M08")["keywords"]["下水道"] = 4
    matter(data, "M09")["primary"] = "PA-NOPE"
    result = runner.invoke(app, ["dutylist", "publish", str(write(tmp_path, data)), "--yes"])
    assert result.exit_code == 2, result.output
    assert "清单无效 / invalid duty list" in result.output and "（2 个问题 problems）" in result.output
    assert "事项 M08 关键词“下水道”权重 4 超出 1–3 / matter M08: keyword '下水道' weight 4 outside 1-3" in result.output
    assert "事项 M09 引用了不存在的单位 PA-NOPE / matter M09: unknown unit PA-NOPE" in result.output
    assert topic["sent"] == []
    missing = runner.invoke(app, ["dutylist", "publish", str(tmp_path / "nope.json"), "--yes"])
    assert missing.exit_code == 2 and "无法读取文件 / cannot read" in missing.output


def test_publish_refuses_a_version_that_names_other_content(tmp_path: Path, topic: dict[str, Any]) -> None:
    changed_in_place = variant("2026.11-47.2", moved=True)  # the packaged version number, other content
    result = runner.invoke(app, ["dutylist", "publish", str(write(tmp_path, changed_in_place)), "--yes"])
    assert result.exit_code == 2, result.output
    assert "版本号 2026.11-47.2 已用于不同的内容" in result.output and "change `version`" in result.output

    topic["records"] = [record(variant("2026.12-48")), record(variant("2026.12-49"))]
    earlier = variant("2026.12-48", moved=True)  # 2026.12-48 was published with other content before
    result = runner.invoke(app, ["dutylist", "publish", str(write(tmp_path, earlier)), "--yes"])
    assert result.exit_code == 2 and "zhangmin 于 2026-11-23T09:30:00+00:00 发布" in result.output
    assert topic["sent"] == []


def test_publish_of_the_list_in_force_is_a_no_op(tmp_path: Path, topic: dict[str, Any]) -> None:
    topic["records"] = [record(variant("2026.12-48"))]
    result = runner.invoke(app, ["dutylist", "publish", str(write(tmp_path, variant("2026.12-48"))), "--yes"])
    assert result.exit_code == 0, result.output
    assert "已在用 / already active: 2026.12-48" in result.output and topic["sent"] == []


def test_publish_shows_the_changes_asks_and_sends(tmp_path: Path, topic: dict[str, Any]) -> None:
    path = write(tmp_path, variant("2026.12-48", moved=True))
    declined = runner.invoke(app, ["dutylist", "publish", str(path), "--by", "zhangmin"], input="n\n")
    assert declined.exit_code == 0 and "未发布 / not published" in declined.output and topic["sent"] == []
    assert "~ M09 市政设施（井盖、路灯、城镇道路与人行道）: primary PA-ZJJ → PA-ZHZF" in declined.output

    result = runner.invoke(app, ["dutylist", "publish", str(path), "--by", "zhangmin"], input="y\n")
    assert result.exit_code == 0, result.output
    assert "在用 / in force: 2026.11-47.2（配置的清单 configured" in result.output
    assert "已发布 / published: 2026.12-48" in result.output
    (sent,) = topic["sent"]
    assert (sent.version, sent.published_by, sent.previous_version) == ("2026.12-48", "zhangmin", "2026.11-47.2")
    assert sent.sha256 == dutylist_sha256(sent.duty_list) and sent.published_at.tzinfo is not None


def test_diff_replay_without_a_broker(tmp_path: Path, topic: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import gridhub.kernel.follower as follower

    events = [street_light(), gas_leak()]
    windows: list[dict[str, Any]] = []

    async def read_window(common: CommonSettings, name: str, apply: Any, **window: Any) -> int:
        windows.append({"topic": name, **window})
        for event in events:
            apply(SimpleNamespace(value=event.to_bytes()))
        apply(SimpleNamespace(value=b"{}"))
        return len(events) + 1

    monkeypatch.setattr(follower, "read_window", read_window)
    path = write(tmp_path, variant("2026.12-48", moved=True))
    result = runner.invoke(app, ["dutylist", "diff", str(path), "--replay", "--last", "50", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    replay = out["replay"]
    assert (replay["replayed"], replay["same"], replay["different_unit"], replay["unreadable"]) == (2, 1, 1, 1)
    assert replay["events"][0]["event_id"] == events[0].event_id
    assert replay["events"][0]["old"]["unit"] == "PA-ZJJ" and replay["events"][0]["new"]["unit"] == "PA-ZHZF"
    assert out["changes"]["matters"]["changed"][0]["code"] == "M09"
    assert windows[0]["last"] == 50 and windows[0]["since_ms"] is None

    text = runner.invoke(app, ["dutylist", "diff", str(path), "--replay", "--since", "2h"])
    assert text.exit_code == 0, text.output
    assert "主办单位不同 different unit" in text.output and "PA-ZJJ → PA-ZHZF" in text.output
    assert windows[1]["last"] is None and windows[1]["since_ms"] > 0
    both = runner.invoke(app, ["dutylist", "diff", str(path), "--replay", "--since", "2h", "--last", "5"])
    assert both.exit_code == 2
    assert runner.invoke(app, ["dutylist", "diff", str(path), "--replay", "--since", "yesterday"]).exit_code == 2


def test_active_prints_the_list_in_force(topic: dict[str, Any]) -> None:
    result = runner.invoke(app, ["dutylist", "active"])
    assert result.exit_code == 0, result.output
    assert "nothing published" in result.output and "2026.11-47.2" in result.output
    topic["records"] = [record(variant("2026.12-48")), record(variant("2026.12-49"))]
    out = json.loads(runner.invoke(app, ["dutylist", "active", "--json"]).output)
    assert (out["version"], out["source"], out["published_by"]) == ("2026.12-49", "published", "zhangmin")
    assert [h["version"] for h in out["history"]] == ["2026.12-48", "2026.12-49"]


def test_active_list_snapshot_is_immutable() -> None:
    holder = ActiveDutyList(load_duty_list())
    with pytest.raises(AttributeError):
        holder.current.duty = load_duty_list()  # type: ignore[misc]
    assert isinstance(holder.current, ActiveList)
