"""The ops page's figures from the services' /metrics, the triage queue and the weekly summary (pure: no I/O, no clock).

Each poll hands `Figures.observe` the parsed /metrics of every service it reached (a `Snapshot`; None for one it did
not), the router's triage listing and, now and then, the week's summary by unit. Counters are summed over the labels
the page needs and corrected for resets (a restarted service starts its counters again at 0; `Counters` carries on
as Prometheus' `increase()` does), so a rate over the last minute or a count over the window is the difference of
two stored readings. Memory is bounded: one reading and one point per series per poll, kept for `window_s` only.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]
Snapshot = dict[tuple[str, Labels], float]
"""Every sample of one /metrics answer: (sample name, sorted labels) → value."""

# Counter groups the page needs: group → (service, sample name, label summed by, fixed label filter).
COUNTERS: dict[str, tuple[str, str, str, tuple[tuple[str, str], ...]]] = {
    "channel": ("intake", "gridhub_intake_events_total", "channel", ()),
    "matter": ("router", "gridhub_router_decisions_total", "matter", ()),
    "triaged": ("router", "gridhub_router_decisions_total", "triage", ()),
    "closed": ("sla", "gridhub_sla_tasks_closed_total", "on_time", ()),
    "delivery": ("notifier", "gridhub_notifier_deliveries_total", "outcome", ()),
    "latency": ("notifier", "gridhub_notifier_delivery_latency_seconds_bucket", "le", ()),
}

CHANNEL_NAMES = {
    "12345": "12345热线",
    "110": "110非警务",
    "wechat": "微信公众号",
    "petition": "信访",
    "gridapp": "网格App",
}
OUTCOME_NAMES = {
    "delivered": "成功",
    "retrying": "失败待重试",
    "exhausted": "重试用尽",
    "gone": "410 已注销",
    "endpoint-disabled": "端点停用",
    "no-endpoint": "无端点",
}
TRIAGE_STATES = {"queued": "待分拨 queued", "claimed": "已认领 claimed"}
# The fields of a triage item the page shows: no report text beyond its title, no reporter.
TRIAGE_FIELDS: tuple[str, ...] = (
    "event_id",
    "title",
    "channel",
    "matter_code",
    "matter_name",
    "confidence",
    "cause",
    "township",
    "state",
    "claimed_by",
    "queued_at",
    "age_minutes",
)
RANKING_FIELDS: tuple[str, ...] = (
    "rank",
    "key",
    "name",
    "received",
    "resolved",
    "due",
    "on_time",
    "on_time_rate",
    "response_rate",
    "satisfaction_rate",
    "median_hours",
    "open",
    "overdue",
)


def parse_metrics(text: str) -> Snapshot:
    """Every sample of a Prometheus text exposition (NaN samples dropped)."""
    out: Snapshot = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if math.isnan(sample.value):
                continue
            out[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return out


def summed(snapshot: Snapshot, name: str, by: str, where: Iterable[tuple[str, str]] = ()) -> dict[str, float]:
    """Samples named `name` summed by the value of label `by` (those without it under ""), filtered by `where`."""
    wanted = tuple(where)
    out: dict[str, float] = {}
    for (sample, labels), value in snapshot.items():
        if sample != name:
            continue
        found = dict(labels)
        if any(found.get(k) != v for k, v in wanted):
            continue
        key = found.get(by, "")
        out[key] = out.get(key, 0.0) + value
    return out


def lag_gauges(snapshots: Mapping[str, Snapshot | None]) -> dict[str, float]:
    """Messages not yet read, from every service's /metrics: a consumer group's lag (`*_consumer_lag_messages`, summed
    over its topics: "intake 消费组") and each follower's (`*_lag_records`: "router triage_view")."""
    out: dict[str, float] = {}
    for service, snapshot in snapshots.items():
        if snapshot is None:
            continue
        prefix = f"gridhub_{service}_"
        for (sample, _labels), value in snapshot.items():
            if sample.endswith("_consumer_lag_messages"):
                key = f"{service} 消费组"
            elif sample.endswith("_lag_records"):
                key = f"{service} {sample.removeprefix(prefix).removesuffix('_lag_records')}"
            else:
                continue
            out[key] = out.get(key, 0.0) + value
    return out


def histogram_quantile(q: float, buckets: Mapping[str, float]) -> float | None:
    """The q-quantile of a histogram's cumulative bucket counts ("le" → count), as Prometheus interpolates it;
    None when the histogram counted nothing."""
    points = sorted((math.inf if le == "+Inf" else float(le), count) for le, count in buckets.items() if le)
    if not points or points[-1][0] != math.inf:
        return None
    total = points[-1][1]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in points:
        if count >= rank:
            if bound == math.inf:
                return lower_bound  # beyond the last finite bucket: its bound is the best answer
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return None


def on_time_percent(closed: Mapping[str, float]) -> float | None:
    """Share of closed tasks closed on time (on_time="true"), in percent; None when none closed."""
    total = sum(closed.values())
    return None if total <= 0 else round(100.0 * closed.get("true", 0.0) / total, 1)


def success_percent(outcomes: Mapping[str, float]) -> float | None:
    """Share of delivery attempts that delivered, in percent; None when none were made."""
    total = sum(outcomes.values())
    return None if total <= 0 else round(100.0 * outcomes.get("delivered", 0.0) / total, 1)


def difference(now: Mapping[str, float], then: Mapping[str, float]) -> dict[str, float]:
    """now − then per label (reset-corrected cumulatives, so never negative)."""
    return {k: max(0.0, v - then.get(k, 0.0)) for k, v in now.items()}


def short_name(name: str, most: int = 10) -> str:
    """A name for a chart's axis: without its explanation in brackets, at most `most` characters."""
    for bracket in ("（", "("):
        name = name.split(bracket, 1)[0]
    name = name.strip()
    return name if len(name) <= most else name[: most - 1] + "…"


def top_bars(values: Mapping[str, float], names: Mapping[str, str], top: int) -> tuple[list[str], list[float]]:
    """The `top` largest non-zero values, largest first (ties by key), labelled "code 名称"."""
    ranked = sorted(((k, v) for k, v in values.items() if v > 0), key=lambda kv: (-kv[1], kv[0]))[:top]
    return [f"{k} {names[k]}" if k in names else k for k, _ in ranked], [round(v, 2) for _, v in ranked]


def triage_counts(listing: Mapping[str, Any] | None) -> dict[str, float] | None:
    """Open triage items by state from GET /triage; None when the queue could not be read."""
    if listing is None:
        return None
    counts = dict.fromkeys(TRIAGE_STATES, 0.0)
    for item in listing.get("items", []):
        state = str(item.get("state", "queued"))
        counts[state] = counts.get(state, 0.0) + 1
    return counts


def slim_triage(listing: Mapping[str, Any] | None, limit: int = 50) -> list[dict[str, Any]]:
    """The oldest `limit` open items with only the fields the page shows."""
    if listing is None:
        return []
    return [{k: item.get(k) for k in TRIAGE_FIELDS} for item in list(listing.get("items", []))[:limit]]


def ranking(summary: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The weekly ranking from GET /reports/summary?by=unit: the period, the county row and each unit's row."""
    if summary is None:
        return None
    rows = [{k: row.get(k) for k in RANKING_FIELDS} for row in summary.get("rows", [])]
    rows.sort(key=lambda r: (r["rank"] is None, r["rank"] or 0, -(r["received"] or 0), r["key"] or ""))
    county = summary.get("county") or {}
    return {
        "period": summary.get("period"),
        "as_of": summary.get("as_of"),
        "min_due_for_rank": summary.get("min_due_for_rank"),
        "county": {k: county.get(k) for k in RANKING_FIELDS},
        "rows": rows,
    }


def unit_values(summary: Mapping[str, Any] | None, figure: str) -> dict[str, float]:
    """One figure of each unit's row of a by-unit summary, keyed by unit name."""
    if summary is None:
        return {}
    return {str(row.get("name") or row.get("key")): float(row.get(figure) or 0) for row in summary.get("rows", [])}


@dataclass
class Counters:
    """Reset-corrected cumulative counters: a raw value below the last one means the service restarted."""

    corrected: dict[str, dict[str, float]] = field(default_factory=dict)
    raw: dict[str, dict[str, float]] = field(default_factory=dict)

    def update(self, group: str, values: Mapping[str, float]) -> None:
        """Take a group's current raw values (one scrape)."""
        corrected = self.corrected.setdefault(group, {})
        last = self.raw.setdefault(group, {})
        if any(v < last.get(k, 0.0) for k, v in values.items()):
            last.clear()  # a restart: every series of the group starts again at 0
        for key, value in values.items():
            corrected[key] = corrected.get(key, 0.0) + max(0.0, value - last.get(key, 0.0))
            last[key] = value

    def copy(self) -> dict[str, dict[str, float]]:
        """The corrected values now (a reading)."""
        return {group: dict(values) for group, values in self.corrected.items()}


Point = tuple[float, float | None]
"""(time in seconds since the epoch, value; None draws a gap)."""


@dataclass
class Figures:
    """The page's time series over a fixed window, fed by `observe` once per poll."""

    window_s: float = 900.0
    interval_s: float = 5.0
    rate_window_s: float = 60.0
    matter_names: Mapping[str, str] = field(default_factory=dict)
    counters: Counters = field(default_factory=Counters)
    readings: deque[tuple[float, dict[str, dict[str, float]]]] = field(default_factory=deque)
    series: dict[str, dict[str, deque[Point]]] = field(default_factory=dict)
    bars: dict[str, tuple[list[str], list[float]]] = field(default_factory=dict)
    triage: list[dict[str, Any]] = field(default_factory=list)
    week: dict[str, Any] | None = None
    up: dict[str, bool] = field(default_factory=dict)
    polled_at: float | None = None

    @property
    def window_minutes(self) -> int:
        """The window in whole minutes, for labels."""
        return round(self.window_s / 60)

    @property
    def capacity(self) -> int:
        """Points kept per series (the window at the poll interval, and one more)."""
        return int(self.window_s / self.interval_s) + 2

    def _add(self, chart: str, label: str, t: float, value: float | None) -> None:
        points = self.series.setdefault(chart, {}).setdefault(label, deque(maxlen=self.capacity))
        points.append((t, None if value is None else round(value, 3)))

    def _prune(self, t: float) -> None:
        """Drop points older than the window, and series left without any (a label no longer reported)."""
        oldest = t - self.window_s
        for chart in self.series.values():
            for label in list(chart):
                points = chart[label]
                while points and points[0][0] < oldest:
                    points.popleft()
                if not points:
                    del chart[label]

    def _since(self, t: float, seconds: float) -> tuple[float, dict[str, dict[str, float]]]:
        """The oldest reading at most `seconds` before t (the first one while the window fills)."""
        for when, reading in self.readings:
            if when >= t - seconds - self.interval_s / 2:
                return when, reading
        return self.readings[-1]

    def observe(
        self,
        t: float,
        snapshots: Mapping[str, Snapshot | None],
        triage_listing: Mapping[str, Any] | None = None,
        summary: Mapping[str, Any] | None = None,
    ) -> None:
        """One poll at time t (seconds): every service's /metrics (None if unreachable), the triage queue and (when
        fetched this poll) the week's by-unit summary."""
        self.polled_at = t
        self.up = {service: snapshot is not None for service, snapshot in snapshots.items()}
        for group, (service, name, by, where) in COUNTERS.items():
            snapshot = snapshots.get(service)
            if snapshot is not None:  # an unreachable service's counters stand still
                self.counters.update(group, summed(snapshot, name, by, where))
        reading = self.counters.copy()
        self.readings.append((t, reading))
        while self.readings and self.readings[0][0] < t - self.window_s - self.interval_s:
            self.readings.popleft()

        then_t, then = self._since(t, self.rate_window_s)
        minutes = (t - then_t) / 60.0

        def seen(service: str, value: float | None) -> float | None:
            return value if snapshots.get(service) is not None else None  # a gap while a service is away

        recent = {group: difference(values, then.get(group, {})) for group, values in reading.items()}
        for channel in sorted(set(CHANNEL_NAMES) | set(reading.get("channel", {}))):
            label = CHANNEL_NAMES.get(channel, channel)
            per_min = recent.get("channel", {}).get(channel, 0.0) / minutes if minutes > 0 else None
            self._add("throughput", label, t, seen("intake", per_min))

        counts = triage_counts(triage_listing)
        for state, label in TRIAGE_STATES.items():
            self._add("triage", label, t, None if counts is None else counts.get(state, 0.0))
        triaged = recent.get("triaged", {}).get("true", 0.0)
        self._add("triage", "转人工 /分钟 new", t, seen("router", triaged / minutes if minutes > 0 else None))
        if triage_listing is not None:
            self.triage = slim_triage(triage_listing)

        window = self.readings[0][1]
        in_window = {group: difference(values, window.get(group, {})) for group, values in reading.items()}
        closed_window, closed = in_window.get("closed", {}), reading.get("closed", {})
        self._add("on_time", f"近{self.window_minutes}分钟 window", t, seen("sla", on_time_percent(closed_window)))
        self._add("on_time", "累计 since start", t, seen("sla", on_time_percent(closed)))

        self._add(
            "delivery",
            f"成功率 (近{round(self.rate_window_s)}秒)",
            t,
            seen("notifier", success_percent(recent.get("delivery", {}))),
        )
        for outcome, label in OUTCOME_NAMES.items():
            if outcome in reading.get("delivery", {}):
                per_min = recent["delivery"].get(outcome, 0.0) / minutes if minutes > 0 else None
                self._add("delivery_rate", label, t, seen("notifier", per_min))
        latency = recent.get("latency", {})
        for q, label in ((0.5, "p50"), (0.95, "p95")):
            seconds = histogram_quantile(q, latency)
            self._add("latency", label, t, seen("notifier", None if seconds is None else seconds * 1000.0))

        for label, value in sorted(lag_gauges(snapshots).items()):
            self._add("lag", label, t, value)
        self._prune(t)

        names = {"none": "未定事项，转人工", **self.matter_names}
        self.bars["routing_matter"] = top_bars(in_window.get("matter", {}), names, 12)
        if summary is not None:
            self.week = ranking(summary)
            self.bars["routing_unit"] = top_bars(unit_values(summary, "received"), {}, 12)
            overdue = unit_values(summary, "overdue")
            open_now = unit_values(summary, "open")
            labels, _ = top_bars({k: overdue.get(k, 0.0) * 1e6 + v for k, v in open_now.items()}, {}, 12)
            self.bars["overdue_unit"] = (labels, [overdue.get(k, 0.0) for k in labels])
            self.bars["open_unit"] = (labels, [open_now.get(k, 0.0) for k in labels])

    def as_json(self) -> dict[str, Any]:
        """What GET /ops/api/series answers: line series as [[ms, value], ...], bars, the queue, the ranking."""

        def lines(chart: str) -> list[dict[str, Any]]:
            return [
                {"label": label, "points": [[round(when * 1000), v] for when, v in points]}
                for label, points in self.series.get(chart, {}).items()
            ]

        def bar(*names: tuple[str, str]) -> dict[str, Any]:
            labels = self.bars.get(names[0][0], ([], []))[0]
            return {
                "labels": labels,
                "datasets": [{"label": title, "data": self.bars.get(key, ([], []))[1]} for key, title in names],
            }

        charts = [
            chart("throughput", "各渠道受理量 Throughput by channel", "件/分钟", "line", series=lines("throughput")),
            chart(
                "routing_matter",
                f"近{self.window_minutes}分钟分派 · 按事项 Routing by matter",
                "件",
                "bar",
                **bar(("routing_matter", "分派事件数")),
            ),
            chart(
                "routing_unit", "本周受理 · 按单位 Routing by unit (week)", "件", "bar", **bar(("routing_unit", "受理"))
            ),
            chart("triage", "人工分拨队列 Triage backlog", "件", "line", series=lines("triage")),
            chart("on_time", "按期办结率 SLA on-time rate", "%", "line", series=lines("on_time")),
            chart(
                "overdue_unit",
                "在办与超期 · 按单位 Open and overdue by unit",
                "件",
                "bar",
                **bar(("overdue_unit", "超期 overdue"), ("open_unit", "在办 open")),
            ),
            chart("delivery", "推送成功率 Delivery success", "%", "line", series=lines("delivery")),
            chart("delivery_rate", "推送结果 Delivery outcomes", "次/分钟", "line", series=lines("delivery_rate")),
            chart("latency", "推送时延 Delivery latency", "毫秒 ms", "line", series=lines("latency")),
            chart("lag", "消费积压 Consumer lag", "条 records", "line", series=lines("lag")),
        ]
        return {
            "polled_at": None if self.polled_at is None else round(self.polled_at * 1000),
            "window_s": self.window_s,
            "interval_s": self.interval_s,
            "up": self.up,
            "charts": charts,
            "triage": self.triage,
            "ranking": self.week,
        }


def chart(chart_id: str, title: str, unit: str, kind: str, **data: Any) -> dict[str, Any]:
    """One chart of the page: a line chart has `series`, a bar chart `labels` and `datasets`."""
    return {"id": chart_id, "title": title, "unit": unit, "kind": kind, **data}


def chart_points(chart_json: Mapping[str, Any]) -> int:
    """How many values a chart of `as_json` has to draw (what the page puts in data-points)."""
    if chart_json["kind"] == "bar":
        return sum(1 for d in chart_json["datasets"] for v in d["data"] if v)
    return sum(1 for s in chart_json["series"] for _, v in s["points"] if v is not None)
