"""The ops console's pure figures: metrics text → rates, on-time and success shares, quantiles, bars, the queue."""

from __future__ import annotations

import math
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gridhub.kernel.metrics import LATENCY_BUCKETS, render
from services.console.figures import (
    Counters,
    Figures,
    chart_points,
    histogram_quantile,
    lag_gauges,
    on_time_percent,
    parse_metrics,
    ranking,
    short_name,
    slim_triage,
    success_percent,
    summed,
    top_bars,
    triage_counts,
)


class Hub:
    """The metrics of the five services as they expose them, on registries the test moves forward."""

    def __init__(self) -> None:
        self.registries = {name: CollectorRegistry() for name in ("adapters", "intake", "router", "sla", "notifier")}
        r = self.registries
        self.events = Counter("gridhub_intake_events", "", ("channel", "outcome"), registry=r["intake"])
        self.decisions = Counter("gridhub_router_decisions", "", ("matter", "tier", "triage"), registry=r["router"])
        self.closed = Counter("gridhub_sla_tasks_closed", "", ("on_time",), registry=r["sla"])
        self.deliveries = Counter("gridhub_notifier_deliveries", "", ("outcome",), registry=r["notifier"])
        self.latency = Histogram(
            "gridhub_notifier_delivery_latency_seconds", "", buckets=LATENCY_BUCKETS, registry=r["notifier"]
        )
        self.group_lag = Gauge("gridhub_sla_consumer_lag_messages", "", ("group", "topic"), registry=r["sla"])
        self.view_lag = Gauge("gridhub_router_triage_view_lag_records", "", registry=r["router"])

    def snapshots(self, down: tuple[str, ...] = ()) -> dict[str, Any]:
        return {
            name: None if name in down else parse_metrics(render(registry).decode())
            for name, registry in self.registries.items()
        }


def test_parse_metrics_keeps_every_sample_with_sorted_labels() -> None:
    hub = Hub()
    hub.events.labels("12345", "normalised").inc(3)
    hub.latency.observe(0.02)
    snap = parse_metrics(render(hub.registries["intake"]).decode())
    assert snap[("gridhub_intake_events_total", (("channel", "12345"), ("outcome", "normalised")))] == 3
    notifier = parse_metrics(render(hub.registries["notifier"]).decode())
    assert notifier[("gridhub_notifier_delivery_latency_seconds_bucket", (("le", "0.025"),))] == 1
    assert notifier[("gridhub_notifier_delivery_latency_seconds_count", ())] == 1


def test_summed_groups_by_a_label_and_filters() -> None:
    hub = Hub()
    hub.events.labels("12345", "normalised").inc(3)
    hub.events.labels("12345", "duplicate").inc(1)
    hub.events.labels("110", "normalised").inc(2)
    snap = parse_metrics(render(hub.registries["intake"]).decode())
    assert summed(snap, "gridhub_intake_events_total", "channel") == {"12345": 4, "110": 2}
    assert summed(snap, "gridhub_intake_events_total", "channel", [("outcome", "duplicate")]) == {"12345": 1}
    assert summed(snap, "gridhub_nothing_total", "channel") == {}


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    buckets = {"0.1": 0.0, "0.2": 50.0, "0.5": 100.0, "+Inf": 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.2)
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.15)
    assert histogram_quantile(0.75, buckets) == pytest.approx(0.35)
    # Beyond the last finite bucket: that bucket's bound. Nothing counted: no answer.
    assert histogram_quantile(0.99, {"0.1": 1.0, "+Inf": 10.0}) == pytest.approx(0.1)
    assert histogram_quantile(0.5, {"0.1": 0.0, "+Inf": 0.0}) is None
    assert histogram_quantile(0.5, {}) is None


def test_shares_in_percent_and_none_without_data() -> None:
    assert on_time_percent({"true": 3, "false": 1}) == 75.0
    assert on_time_percent({}) is None
    assert success_percent({"delivered": 9, "retrying": 1}) == 90.0
    assert success_percent({"delivered": 0}) is None


def test_counters_carry_on_across_a_restart() -> None:
    counters = Counters()
    counters.update("channel", {"12345": 10, "110": 4})
    counters.update("channel", {"12345": 15, "110": 4})
    counters.update("channel", {"12345": 2, "110": 1})  # the service restarted: its counters began again at 0
    counters.update("channel", {"12345": 5, "110": 1})
    assert counters.copy()["channel"] == {"12345": 20, "110": 5}


def test_lag_gauges_sum_groups_over_topics_and_name_followers() -> None:
    hub = Hub()
    hub.group_lag.labels("gridhub.sla", "tasks.dispatched").set(7)
    hub.group_lag.labels("gridhub.sla", "tasks.updates").set(3)
    hub.view_lag.set(2)
    assert lag_gauges(hub.snapshots(down=("adapters",))) == {"sla 消费组": 10, "router triage_view": 2}


def test_top_bars_largest_first_named_and_without_zeros() -> None:
    labels, values = top_bars({"M08": 3, "M01": 5, "M02": 0, "M03": 3}, {"M08": "供水", "M01": "道路"}, 2)
    assert labels == ["M01 道路", "M03"]
    assert values == [5, 3]


def test_short_name_drops_the_explanation_and_caps_the_length() -> None:
    assert short_name("供排水设施故障（下水道堵塞、污水反流、停水）") == "供排水设施故障"
    assert short_name("拖欠农民工工资") == "拖欠农民工工资"
    assert short_name("一二三四五六七八九十十一") == "一二三四五六七八九…"


TRIAGE = {
    "count": 3,
    "items": [
        {"event_id": "E1", "title": "无法定位的反映", "state": "queued", "reason": "长文本", "age_minutes": 3.5},
        {"event_id": "E2", "title": "两可的事项", "state": "claimed", "claimed_by": "d1", "history": ["..."]},
        {"event_id": "E3", "title": "又一件", "state": "queued"},
    ],
}


def test_triage_counts_by_state_and_slim_items() -> None:
    assert triage_counts(TRIAGE) == {"queued": 2, "claimed": 1}
    assert triage_counts({"count": 0, "items": []}) == {"queued": 0, "claimed": 0}
    assert triage_counts(None) is None
    slim = slim_triage(TRIAGE, limit=2)
    assert [i["event_id"] for i in slim] == ["E1", "E2"]
    assert "history" not in slim[1] and "reason" not in slim[0]  # only what the page shows


SUMMARY: dict[str, Any] = {
    "period": "2026-W47",
    "as_of": "2026-11-23T10:00:00+08:00",
    "min_due_for_rank": 3,
    "county": {"key": "PA", "name": "平安县", "received": 9, "on_time_rate": 0.8, "open": 5, "overdue": 2},
    "rows": [
        {"rank": None, "key": "U3", "name": "水务局", "received": 1, "open": 1, "overdue": 0},
        {"rank": 2, "key": "U2", "name": "住建局", "received": 3, "open": 2, "overdue": 2},
        {"rank": 1, "key": "U1", "name": "城关镇综治中心", "received": 5, "open": 2, "overdue": 0},
    ],
}


def test_ranking_orders_ranked_units_first() -> None:
    week = ranking(SUMMARY)
    assert week is not None
    assert [r["key"] for r in week["rows"]] == ["U1", "U2", "U3"]
    assert week["county"]["name"] == "平安县" and week["period"] == "2026-W47"
    assert ranking(None) is None


def observe(figures: Figures, hub: Hub, t: float, **kwargs: Any) -> None:
    figures.observe(t, hub.snapshots(), **kwargs)


def series_of(figures: Figures, chart_id: str) -> dict[str, Any]:
    return next(c for c in figures.as_json()["charts"] if c["id"] == chart_id)


def last(chart: dict[str, Any], label: str) -> float | None:
    points = next(s for s in chart["series"] if s["label"] == label)["points"]
    value: float | None = points[-1][1]
    return value


def test_figures_rates_shares_and_bars_over_polls() -> None:
    hub = Hub()
    figures = Figures(window_s=300, interval_s=5, rate_window_s=60, matter_names={"M08": "供水"})
    observe(figures, hub, 1000.0, triage_listing=TRIAGE, summary=SUMMARY)
    # The first poll has nothing to take a rate from.
    assert last(series_of(figures, "throughput"), "12345热线") is None
    for step in range(1, 13):  # a minute of traffic: 12345 at 30 a minute, 110 at 6
        hub.events.labels("12345", "normalised").inc(2.5)
        hub.events.labels("110", "normalised").inc(0.5)
        if step % 4 == 0:
            hub.decisions.labels("M08", "county", "false").inc(2)
            hub.decisions.labels("none", "command-centre", "true").inc(1)
        hub.closed.labels("true").inc()
        if step == 12:
            hub.closed.labels("false").inc()
        hub.deliveries.labels("delivered").inc(3)
        hub.deliveries.labels("retrying").inc(1 if step % 3 == 0 else 0)
        for _ in range(10):
            hub.latency.observe(0.02)
        observe(figures, hub, 1000.0 + 5 * step, triage_listing=TRIAGE)

    throughput = series_of(figures, "throughput")
    assert last(throughput, "12345热线") == pytest.approx(30.0)
    assert last(throughput, "110非警务") == pytest.approx(6.0)
    assert last(throughput, "微信公众号") == 0.0  # every channel drawn, zero when quiet
    triage = series_of(figures, "triage")
    assert last(triage, "待分拨 queued") == 2 and last(triage, "已认领 claimed") == 1
    assert last(triage, "转人工 /分钟 new") == pytest.approx(3.0)
    on_time = series_of(figures, "on_time")
    assert last(on_time, "累计 since start") == pytest.approx(100 * 12 / 13, abs=0.1)
    delivery = series_of(figures, "delivery")
    assert last(delivery, "成功率 (近60秒)") == pytest.approx(100 * 36 / 40)
    latency = series_of(figures, "latency")
    p50 = last(latency, "p50")
    assert p50 is not None and 10 < p50 <= 25  # 20 ms observations fall in the (10, 25] ms bucket
    matters = series_of(figures, "routing_matter")
    assert matters["labels"] == ["M08 供水", "none 未定事项，转人工"]
    assert matters["datasets"][0]["data"] == [6, 3]
    units = series_of(figures, "routing_unit")
    assert units["labels"] == ["城关镇综治中心", "住建局", "水务局"]
    overdue = series_of(figures, "overdue_unit")
    assert overdue["labels"][0] == "住建局"  # overdue first, then open
    assert [d["label"] for d in overdue["datasets"]] == ["超期 overdue", "在办 open"]
    assert all(chart_points(c) > 0 for c in figures.as_json()["charts"] if c["id"] not in ("lag", "delivery_rate"))


def test_figures_memory_is_bounded_by_the_window() -> None:
    hub = Hub()
    figures = Figures(window_s=60, interval_s=5)
    for step in range(200):
        hub.events.labels("12345", "normalised").inc()
        observe(figures, hub, 5.0 * step)
    assert len(figures.readings) <= 60 / 5 + 2
    for per_label in figures.series.values():
        for points in per_label.values():
            assert len(points) <= figures.capacity
    # The window's count is the last minute's only.
    assert figures.readings[-1][0] - figures.readings[0][0] <= 65


def test_a_series_no_longer_reported_leaves_with_the_window() -> None:
    hub = Hub()
    hub.view_lag.set(4)
    figures = Figures(window_s=60, interval_s=5)
    observe(figures, hub, 0.0)
    assert "router triage_view" in figures.series["lag"]
    for step in range(1, 20):  # the router stops answering: its lag gauge is not read any more
        figures.observe(5.0 * step, hub.snapshots(down=("router",)))
    assert "router triage_view" not in figures.series["lag"]
    assert all(when >= 95.0 - 60 for points in figures.series["throughput"].values() for when, _ in points)


def test_unreachable_service_leaves_gaps_not_zeros() -> None:
    hub = Hub()
    figures = Figures(window_s=300, interval_s=5)
    observe(figures, hub, 0.0, triage_listing=TRIAGE)
    figures.observe(5.0, hub.snapshots(down=("router", "intake")), None)
    data = figures.as_json()
    assert data["up"]["router"] is False and data["up"]["sla"] is True
    triage = series_of(figures, "triage")
    assert last(triage, "待分拨 queued") is None and last(triage, "转人工 /分钟 new") is None
    assert last(series_of(figures, "throughput"), "12345热线") is None
    assert data["triage"] and data["triage"][0]["event_id"] == "E1"  # the last list read stays on the page


def test_as_json_has_every_chart_and_nan_free_values() -> None:
    hub = Hub()
    figures = Figures()
    observe(figures, hub, 0.0)
    data = figures.as_json()
    ids = [c["id"] for c in data["charts"]]
    assert ids == [
        "throughput",
        "routing_matter",
        "routing_unit",
        "triage",
        "on_time",
        "overdue_unit",
        "delivery",
        "delivery_rate",
        "latency",
        "lag",
    ]
    for c in data["charts"]:
        for s in c.get("series", []):
            assert all(v is None or math.isfinite(v) for _, v in s["points"])
