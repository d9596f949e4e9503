"""Kernel: metric names, common settings, secrets, JSON logs, health, dead letters, and the schema contract."""

from __future__ import annotations

import base64
import json
import logging
import re
import sys
from datetime import UTC, datetime, timedelta, timezone

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from ulid import ULID

from gridhub.kernel.deadletter import dead_letter
from gridhub.kernel.health import Health
from gridhub.kernel.logging import JsonFormatter
from gridhub.kernel.metrics import ServiceMetrics, metric_name, render
from gridhub.kernel.settings import CommonSettings, require_secret
from schemas import CATALOGUE, Channel, Message, ReportDeadLettered, ReportReceived, new_id, topic_spec
from schemas.jsonschema import stale_files

ULID_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
CST = timezone(timedelta(hours=8))


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "GRIDHUB_MODE",
        "GRIDHUB_KAFKA_BOOTSTRAP",
        "KAFKA_BOOTSTRAP",
        "GRIDHUB_KAFKA_SESSION_TIMEOUT_S",
        "GRIDHUB_KAFKA_REPLICATION_FACTOR",
        "GRIDHUB_TOPIC_PREFIX",
        "GRIDHUB_KAFKA_IDEMPOTENCE",
    ):
        monkeypatch.delenv(name, raising=False)


# --- metrics ---------------------------------------------------------------------------------


def test_metric_name_builds_snake_case() -> None:
    assert metric_name("router", "decisions", "total") == "gridhub_router_decisions_total"
    assert metric_name("sla", "open_tasks", "count") == "gridhub_sla_open_tasks_count"


@pytest.mark.parametrize(
    ("service", "noun", "unit"),
    [
        ("Router", "decisions", "total"),
        ("router", "dead-letters", "total"),
        ("router", "", "total"),
        ("router", "2xx", "total"),
        ("router", "decisions", "秒"),
        ("sla ", "x", "total"),
    ],
)
def test_metric_name_refuses_non_snake_case(service: str, noun: str, unit: str) -> None:
    with pytest.raises(ValueError, match="must be snake_case"):
        metric_name(service, noun, unit)


def test_service_metrics_render_with_gridhub_names() -> None:
    registry = CollectorRegistry()
    m = ServiceMetrics("x", registry)
    counter = m.counter("y", "Things counted.", ("outcome",))
    gauge = m.gauge("open_tasks", "count", "Open tasks.")
    histogram = m.histogram("publish", "Publish latency.")
    counter.labels("ok").inc(3)
    gauge.set(7)
    histogram.observe(0.003)

    text = render(registry).decode()
    assert 'gridhub_x_y_total{outcome="ok"} 3.0' in text
    assert "# TYPE gridhub_x_y_total counter" in text
    assert "gridhub_x_open_tasks_count 7.0" in text
    assert 'gridhub_x_publish_seconds_bucket{le="0.005"} 1.0' in text
    assert 'gridhub_x_publish_seconds_bucket{le="0.0025"} 0.0' in text
    assert "gridhub_x_publish_seconds_count 1.0" in text


def test_service_metrics_use_their_own_registry() -> None:
    a, b = CollectorRegistry(), CollectorRegistry()
    ServiceMetrics("intake", a).counter("events", "Events.")
    ServiceMetrics("intake", b).counter("events", "Events.")  # no duplicate-timeseries error
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        ServiceMetrics("intake", a).counter("events", "Events.")


# --- settings --------------------------------------------------------------------------------


def test_session_timeout_by_mode_and_explicit() -> None:
    assert CommonSettings(mode="dev").session_timeout_s == 6.0
    assert CommonSettings(mode="prod", kafka_replication_factor=3).session_timeout_s == 45.0
    assert CommonSettings(mode="dev", kafka_session_timeout_s=12.5).session_timeout_s == 12.5
    assert CommonSettings(mode="prod", kafka_replication_factor=3, kafka_session_timeout_s=30).session_timeout_s == 30.0


def test_session_timeout_must_be_positive() -> None:
    with pytest.raises(ValidationError):
        CommonSettings(kafka_session_timeout_s=0)


@pytest.mark.parametrize("factor", [1, 2])
def test_prod_requires_replication_factor_three(factor: int) -> None:
    with pytest.raises(ValidationError, match="GRIDHUB_KAFKA_REPLICATION_FACTOR must be at least 3 in prod mode"):
        CommonSettings(mode="prod", kafka_replication_factor=factor)


def test_dev_allows_replication_factor_one() -> None:
    assert CommonSettings(mode="dev", kafka_replication_factor=1).kafka_replication_factor == 1


def test_topic_and_group_prefixing() -> None:
    common = CommonSettings(topic_prefix="pa-county.")
    assert common.topic("raw.12345") == "pa-county.raw.12345"
    assert common.group("router") == "pa-county.router"
    bare = CommonSettings(topic_prefix="")
    assert bare.topic("tasks.updates") == "tasks.updates"
    assert CommonSettings(topic_prefix="gridhub.").topic("events.normalised") == "gridhub.events.normalised"


def test_topic_prefix_pattern() -> None:
    with pytest.raises(ValidationError):
        CommonSettings(topic_prefix="平安县/")


def test_defaults() -> None:
    common = CommonSettings()
    assert common.mode == "dev"
    assert common.kafka_bootstrap == "127.0.0.1:9092"
    assert common.topic_prefix == "gridhub."


def test_kafka_bootstrap_env_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "kafka-1.pa.internal:9092,kafka-2.pa.internal:9092")
    assert CommonSettings().kafka_bootstrap == "kafka-1.pa.internal:9092,kafka-2.pa.internal:9092"


def test_kafka_bootstrap_prefixed_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDHUB_KAFKA_BOOTSTRAP", "10.8.0.5:9092")
    assert CommonSettings().kafka_bootstrap == "10.8.0.5:9092"


def test_mode_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDHUB_MODE", "prod")
    monkeypatch.setenv("GRIDHUB_KAFKA_REPLICATION_FACTOR", "3")
    common = CommonSettings()
    assert (common.mode, common.kafka_replication_factor, common.session_timeout_s) == ("prod", 3, 45.0)


def test_require_secret() -> None:
    require_secret("dev", "GRIDHUB_X", "")
    require_secret("dev", "GRIDHUB_X", {})
    require_secret("prod", "GRIDHUB_X", "f3b9c1e0a7d24c5e")
    require_secret("prod", "GRIDHUB_X", {"PA-CG": "k-cg-8d1f", "PA-HX": "k-hx-2a9b"})
    for bad in ("", "dev-12345-key", {}, {"PA-CG": "k-cg-8d1f", "PA-HX": ""}, {"12345": "dev-12345-key"}):
        with pytest.raises(ValueError, match="GRIDHUB_X must be set to real secrets in prod mode"):
            require_secret("prod", "GRIDHUB_X", bad)


# --- logging ---------------------------------------------------------------------------------


def test_json_formatter_keeps_chinese_and_extras() -> None:
    record = logging.LogRecord(
        "services.intake", logging.WARNING, __file__, 10, "dead-lettered %s", ("燃气泄漏",), None
    )
    record.reason = "invalid-payload"
    record.detail = "content: 必填字段缺失"
    line = JsonFormatter("intake").format(record)

    assert "\\u" not in line
    assert "燃气泄漏" in line and "必填字段缺失" in line
    entry = json.loads(line)
    assert entry["msg"] == "dead-lettered 燃气泄漏"
    assert entry["level"] == "warning"
    assert entry["service"] == "intake"
    assert entry["logger"] == "services.intake"
    assert entry["reason"] == "invalid-payload"
    assert entry["detail"] == "content: 必填字段缺失"
    assert datetime.fromisoformat(entry["ts"]).tzinfo is not None
    assert "exc" not in entry


def test_json_formatter_includes_exception() -> None:
    try:
        raise RuntimeError("拖欠工资记录缺失")
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    entry = json.loads(JsonFormatter("router").format(record))
    assert "RuntimeError: 拖欠工资记录缺失" in entry["exc"]


# --- health ----------------------------------------------------------------------------------


def test_health_readiness() -> None:
    health = Health("sla")
    assert health.readiness() == (True, {})
    health.add("kafka", lambda: True)
    health.add("assignment", lambda: 1)  # type: ignore[arg-type,return-value]
    assert health.readiness() == (True, {"kafka": True, "assignment": True})

    def broken() -> bool:
        raise ConnectionError("broker 10.8.0.5:9092 unreachable")

    health.add("table", broken)
    assert health.readiness() == (False, {"kafka": True, "assignment": True, "table": False})


def test_health_check_returning_false() -> None:
    health = Health("router")
    health.add("kafka", lambda: False)
    assert health.readiness() == (False, {"kafka": False})


# --- dead letters ----------------------------------------------------------------------------


def test_dead_letter_keeps_original_bytes() -> None:
    original = '{"order_no":"GD-2026-1120-00421","content":"小区下水道反流"'.encode()  # truncated JSON
    now = datetime(2026, 11, 20, 1, 31, tzinfo=UTC)
    record = dead_letter(
        stage="intake",
        reason="malformed-envelope",
        detail="content: 必填字段缺失" * 500,
        topic="gridhub.raw.12345",
        value=original,
        now=now,
        key=b"12345:GD-2026-1120-00421",
        partition=3,
        offset=1207,
        causation_id=None,
    )
    assert isinstance(record, ReportDeadLettered)
    assert base64.b64decode(record.original_value) == original
    assert record.original_value == base64.b64encode(original).decode("ascii")
    assert record.original_key == "12345:GD-2026-1120-00421"
    assert (record.original_topic, record.original_partition, record.original_offset) == ("gridhub.raw.12345", 3, 1207)
    assert len(record.detail) == 4000
    assert record.stage == "intake"
    assert record.reason == "malformed-envelope"
    assert record.dead_lettered_at == now
    # round-trips through the wire format
    assert ReportDeadLettered.model_validate_json(record.to_bytes()) == record


def test_dead_letter_without_key_and_with_binary_key() -> None:
    now = datetime(2026, 11, 20, 1, 31, tzinfo=UTC)
    keyless = dead_letter(stage="router", reason="r", detail="d", topic="t", value=b"\xff\x00", now=now)
    assert keyless.original_key is None
    assert keyless.original_value == "/wA="
    weird = dead_letter(stage="router", reason="r", detail="d", topic="t", value=b"", now=now, key=b"\xff")
    assert weird.original_key == "\ufffd"
    assert weird.original_value == ""


# --- schemas ---------------------------------------------------------------------------------


def test_catalogue_covers_every_channel_and_stage() -> None:
    names = [spec.name for spec in CATALOGUE]
    assert names[:5] == [f"raw.{c.value}" for c in Channel]
    assert names[5:] == [
        "events.normalised",
        "reports.index",
        "events.supplements",
        "events.self-resolved",
        "events.deadletter",
        "tasks.dispatched",
        "cases.links",
        "router.commands",
        "tasks.updates",
        "tasks.summons",
        "tasks.status",
        "sla.alerts",
        "deliveries.results",
        "deliveries.alerts",
        "config.dutylist",
        "notifier.endpoints",
    ]
    assert len(set(names)) == len(names)
    assert topic_spec("tasks.status").config() == {"cleanup.policy": "compact"}
    assert topic_spec("raw.12345").config() == {"cleanup.policy": "delete", "retention.ms": str(90 * 86_400_000)}
    with pytest.raises(KeyError, match=re.escape("unknown topic 'raw.weibo'")):
        topic_spec("raw.weibo")


@pytest.mark.parametrize("spec", CATALOGUE, ids=lambda s: s.name)
def test_every_value_model_is_versioned_with_ulid_message_id(spec: object) -> None:
    model: type[Message] = spec.value_model  # type: ignore[attr-defined]
    assert issubclass(model, Message)
    assert model.SCHEMA_VERSION == 1
    assert model.model_fields["schema_version"].default == 1
    factory = model.model_fields["message_id"].default_factory
    assert factory is new_id
    generated = new_id()
    assert ULID_RE.fullmatch(generated)
    assert str(ULID.from_str(generated)) == generated
    assert model.model_config.get("extra") == "forbid"
    assert model.model_config.get("frozen") is True


def test_json_schema_files_are_current() -> None:
    assert stale_files() == []


def raw(**changes: object) -> ReportReceived:
    fields: dict[str, object] = {
        "source": "12345",
        "source_id": "GD-2026-1120-00421",
        "proposed_event_id": "01KAFZ0M3DB3XG7M2Q4J8K6P1Z",
        "received_at": datetime(2026, 11, 20, 9, 31, tzinfo=CST),
        "adapter_version": "gridhub-adapters/0.1.0",
        "payload": {"order_no": "GD-2026-1120-00421", "content": "物业费涨价"},
    }
    fields.update(changes)
    return ReportReceived.model_validate(fields)


def test_report_received_defaults_and_dedupe_key() -> None:
    report = raw()
    assert report.schema_version == 1
    assert ULID_RE.fullmatch(report.message_id)
    assert report.dedupe_key == "12345:GD-2026-1120-00421"
    assert report.content_type == "application/json"
    assert ReportReceived.model_validate_json(report.to_bytes()) == report
    assert "物业费涨价".encode() in report.to_bytes()


def test_report_received_rejects_naive_datetime() -> None:
    with pytest.raises(ValidationError, match="timestamp must carry a UTC offset"):
        raw(received_at=datetime(2026, 11, 20, 9, 31))
    with pytest.raises(ValidationError, match="timestamp must carry a UTC offset"):
        raw(received_at="2026-11-20T09:31:00")


@pytest.mark.parametrize(
    "changes",
    [
        {"message_id": "not-a-ulid"},
        {"proposed_event_id": "01KAFZ0M3DB3XG7M2Q4J8K6P1U"},
        {"source": "weibo"},
        {"source_id": ""},
        {"unexpected": 1},
    ],
)
def test_report_received_rejects_bad_fields(changes: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        raw(**changes)


def test_messages_are_frozen() -> None:
    report = raw()
    with pytest.raises(ValidationError):
        report.source_id = "GD-2026-1120-00999"  # type: ignore[misc]
