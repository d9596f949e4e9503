"""deploy/grafana: dashboards parse, panel ids are unique, and every metric and label their PromQL names exists in
the services' registries (each service built on its own CollectorRegistry, see conftest.registries)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import GRAFANA_DIR, Registries

DASHBOARDS = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
# Series Prometheus makes itself, and labels every scraped series gets.
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
TARGET_LABELS = {"job", "instance"}
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset", "inf",
    "nan", "le",
}  # fmt: skip
PANELS_WANTED = {  # what the operations issue asks the dashboards to show, as metrics that show it
    "throughput by channel": "gridhub_adapters_reports_total",
    "routing by matter": "gridhub_router_decisions_total",
    "routing by unit": "gridhub_sla_unit_open_tasks",
    "triage backlog": "gridhub_router_triage_backlog_events",
    "SLA on-time rate by unit": "gridhub_sla_unit_on_time_ratio",
    "overdue by unit": "gridhub_sla_unit_overdue_tasks",
    "delivery success": "gridhub_notifier_deliveries_total",
    "delivery latency": "gridhub_notifier_delivery_latency_seconds_bucket",
    "consumer lag": "gridhub_intake_consumer_lag_messages",
}


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def expressions(dashboard: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(where, PromQL, legend) of every panel target and query variable."""
    for panel in all_panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if "expr" in target:
                yield f"panel {panel['id']} {panel['title']!r}", target["expr"], target.get("legendFormat", "")
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            match = re.fullmatch(r"label_values\((?:(?P<expr>.+),\s*)?(?P<label>\w+)\)", query.strip())
            assert match, f"variable {var['name']}: {query}"
            expr = match["expr"] or "up"
            yield f"variable {var['name']}", f"sum by ({match['label']}) ({expr})", ""


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_SELECTOR = re.compile(r"(?<![\w$:.])([a-zA-Z_:][\w:]*)\s*(\{[^}]*\})?(\s*\()?")


def parse(expr: str) -> tuple[dict[str, set[str]], set[str]]:
    """The metrics an expression selects (name -> label names in its matchers) and the labels it groups by."""
    grouping: set[str] = set()
    for _, labels in _GROUPING.findall(expr):
        grouping |= {label.strip() for label in labels.split(",") if label.strip()}
    stripped = _GROUPING.sub(" ", expr)
    stripped = re.sub(r"\[[^\]]*\]", " ", stripped)  # range selectors, subqueries
    metrics: dict[str, set[str]] = {}
    for name, matchers, call in _SELECTOR.findall(stripped):
        if call or name.lower() in PROMQL_WORDS:
            continue  # a function, or a keyword
        labels = {m.split("=")[0].strip("!~ ") for m in _STRING.sub("", matchers.strip("{}")).split(",") if m.strip()}
        metrics.setdefault(name, set()).update(labels)
    return metrics, grouping


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.name for p in DASHBOARDS])
def test_dashboard_parses_with_unique_ids(path: Path) -> None:
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    assert dashboard["uid"] and dashboard["title"]
    ids = [panel["id"] for panel in all_panels(dashboard["panels"])]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(i for i in ids if ids.count(i) > 1)}"
    for panel in all_panels(dashboard["panels"]):
        if panel["type"] != "row":
            assert panel.get("targets"), f"panel {panel['id']} has no query"
            assert panel["datasource"]["uid"] in ("${datasource}", "prometheus"), panel["id"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, f"panel {panel['id']} is wider than the dashboard"


def test_dashboard_uids_are_unique() -> None:
    uids = [json.loads(p.read_text(encoding="utf-8"))["uid"] for p in DASHBOARDS]
    assert DASHBOARDS and len(uids) == len(set(uids))


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.name for p in DASHBOARDS])
def test_every_metric_and_label_exists(path: Path, registries: Registries) -> None:
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    problems = []
    for where, expr, legend in expressions(dashboard):
        metrics, grouping = parse(expr)
        assert metrics, f"{where}: no metric in {expr}"
        available = set(TARGET_LABELS)
        for name, matched in metrics.items():
            if name in PROMETHEUS_SERIES:
                continue
            if name not in registries.labels:
                problems.append(f"{where}: no metric {name} in the services' registries")
                continue
            labels = registries.labels[name] | TARGET_LABELS | ({"le"} if name.endswith("_bucket") else set())
            available |= labels
            if matched - labels:
                problems.append(f"{where}: {name} has no label {sorted(matched - labels)}")
        if grouping - available - {"le"}:
            problems.append(f"{where}: grouped by {sorted(grouping - available)}, which no metric of it has")
        for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", legend):
            if label not in grouping | available:
                problems.append(f"{where}: legend names {label}, not a label of the result")
    assert not problems, "\n".join(problems)


def test_dashboards_show_what_the_issue_asks_for() -> None:
    text = "\n".join(p.read_text(encoding="utf-8") for p in DASHBOARDS)
    missing = [what for what, metric in PANELS_WANTED.items() if metric not in text]
    assert not missing, f"no panel for {missing}"


def test_provisioning_reads_the_dashboards_and_the_datasource() -> None:
    provider = yaml.safe_load((GRAFANA_DIR / "provisioning/dashboards/gridhub.yaml").read_text(encoding="utf-8"))
    (file_provider,) = provider["providers"]
    assert file_provider["type"] == "file" and file_provider["options"]["path"]
    sources = yaml.safe_load((GRAFANA_DIR / "provisioning/datasources/prometheus.yaml").read_text(encoding="utf-8"))
    (prometheus,) = sources["datasources"]
    assert prometheus["type"] == "prometheus" and prometheus["uid"] == "prometheus"
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["datasource"]["query"] == "prometheus", path.name
