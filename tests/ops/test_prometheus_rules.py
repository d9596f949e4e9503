"""The shipped Prometheus config and alert rules: promtool checks them and runs the rules' unit tests."""

from __future__ import annotations

import subprocess

import yaml

from tests.ops.conftest import PROMETHEUS_DIR, prometheus_binary

RULES = PROMETHEUS_DIR / "rules" / "gridhub.rules.yml"
RULE_TESTS = PROMETHEUS_DIR / "rules" / "gridhub.rules.test.yml"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
LOCAL_CONFIG = PROMETHEUS_DIR / "local.yml"

# The operations issue's alerts, each with the metric it reads.
REQUIRED_ALERTS = {
    "GridHubNoDeliveriesSucceeding": "gridhub_notifier_deliveries_total",
    "GridHubConsumerLagGrowing": "_consumer_lag_messages",
    "GridHubOverdueSpike": "gridhub_sla_alerts_raised_total",
    "GridHubDeadLettersRising": "_dead_letters_total",
    "GridHubCalendarDataMissing": "gridhub_sla_calendar_fallback_years",
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool (skipped when absent) with a time limit."""
    return subprocess.run(
        [prometheus_binary("promtool"), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_rules_pass_promtool_check() -> None:
    """`promtool check rules` accepts the shipped rules."""
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_unit_tests_pass() -> None:
    """`promtool test rules`: every alert fires on its synthetic series and stays quiet on healthy ones."""
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_config_passes_promtool_check() -> None:
    """`promtool check config` accepts the compose config (DNS service discovery is not resolved) and its rules."""
    result = promtool("check", "config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rule files found" in result.stdout


def test_local_config_scrapes_the_ports_make_up_uses() -> None:
    """deploy/prometheus/local.yml (README, operators) passes promtool and names every service's default port."""
    from gridhub.up import PORTS

    result = promtool("check", "config", str(LOCAL_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = {job["job_name"]: job for job in yaml.safe_load(LOCAL_CONFIG.read_text("utf-8"))["scrape_configs"]}
    assert set(jobs) == {"adapters", "intake", "router", "sla", "notifier"}
    for name, job in jobs.items():
        assert job["static_configs"][0]["targets"] == [f"127.0.0.1:{PORTS[name]}"]


def test_every_required_alert_has_for_severity_and_bilingual_annotations() -> None:
    """Each alert waits (`for:`), has a severity, and explains itself in Chinese and English."""
    groups = yaml.safe_load(RULES.read_text("utf-8"))["groups"]
    alerts = {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}
    assert set(REQUIRED_ALERTS) <= set(alerts)
    tested = RULE_TESTS.read_text("utf-8")
    for name, rule in alerts.items():
        assert rule.get("for"), name
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        for key in ("summary", "description"):
            text = rule["annotations"][key]
            assert any("\u4e00" <= ch <= "\u9fff" for ch in text), f"{name} {key} has no Chinese"
            assert any("a" <= ch.lower() <= "z" for ch in text), f"{name} {key} has no English"
        assert f"alertname: {name}" in tested, f"{name} has no promtool unit test"
    for name, metric in REQUIRED_ALERTS.items():
        assert metric in alerts[name]["expr"], name
