"""Notifier endpoints: the contract, the registry (matching, fallback, rotation overlap) and the /v1/endpoints API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from aiokafka.errors import KafkaTimeoutError
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from gridhub.kernel.http import install_problem_handlers
from gridhub.kernel.keys import holder_of_key
from gridhub.kernel.settings import CommonSettings
from schemas import EndpointChannel, EndpointSaved, NotificationType, SlaAlertRaised, TaskRole, new_id
from schemas.catalogue import topic_spec
from services.notifier.endpoint_follower import EndpointFollower
from services.notifier.endpoints import (
    Endpoint,
    EndpointRegistry,
    notification_type,
    recipients,
    registry_from_settings,
    signing_secrets,
)
from services.notifier.endpoints_api import EndpointWriter, endpoints_api, producer_publish
from services.notifier.outbound import OutboundPolicy
from services.notifier.sealing import Sealer
from services.notifier.settings import DEV_SECRETS_KEY, DEV_SIGNING_SECRET, NotifierSettings
from services.notifier.signing import secret_bytes
from tests.unit.sla_tasks import task

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
OTHER_KEY = "2mNd4kjV7XhjJ-ddPelRK3AilHbYhL8WoFJh-q9B5Uc="
HOOK = "http://127.0.0.1:9/hook"
WECOM = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "GRIDHUB_MODE",
        "GRIDHUB_KAFKA_REPLICATION_FACTOR",
        "GRIDHUB_NOTIFIER_SIGNING_SECRET",
        "GRIDHUB_NOTIFIER_WEBHOOKS",
        "GRIDHUB_NOTIFIER_DEFAULT_WEBHOOK",
        "GRIDHUB_NOTIFIER_UNIT_KEYS",
        "GRIDHUB_NOTIFIER_SECRETS_KEY",
        "GRIDHUB_NOTIFIER_OUTBOUND_ALLOWLIST",
    ):
        monkeypatch.delenv(name, raising=False)


def endpoint(unit: str = "PA-CG-01", *types: NotificationType, enabled: bool = True, **extra: object) -> Endpoint:
    values: dict[str, object] = {
        "endpoint_id": new_id(),
        "unit_code": unit,
        "channel": EndpointChannel.WEBHOOK,
        "url": HOOK,
        "url_display": HOOK,
        "notification_types": frozenset(types or NotificationType),
        "enabled": enabled,
        "disabled_reason": None if enabled else "单位停用",
        "secret": DEV_SIGNING_SECRET,
        "created_at": NOW,
        "updated_at": NOW,
    }
    return Endpoint(**(values | extra))  # type: ignore[arg-type]


# --- contract --------------------------------------------------------------------------------


def test_topic_is_compacted_and_keyed_by_endpoint_id() -> None:
    spec = topic_spec("notifier.endpoints")
    assert spec.value_model is EndpointSaved
    assert spec.key == "endpoint_id"
    assert spec.config() == {"cleanup.policy": "compact"}


def test_record_carries_no_secret_in_clear_and_opens_only_with_the_key() -> None:
    sealer = Sealer(DEV_SECRETS_KEY)
    writer = EndpointWriter(EndpointRegistry(sealer), _never_publish, OutboundPolicy())
    wecom = endpoint(channel=EndpointChannel.WECOM, url=WECOM, url_display=WECOM.split("?")[0], secret=None)
    webhook = endpoint(previous_secret="whsec_" + "A" * 32, previous_secret_until=NOW + timedelta(hours=24))
    for one in (wecom, webhook):
        raw = writer.record(one, "PA-CG-01").to_bytes()
        assert b"693a91f6" not in raw and b"whsec_" not in raw
        registry = EndpointRegistry(sealer)
        registry.apply(one.endpoint_id.encode(), raw)
        assert registry.get(one.endpoint_id) == one
        other = EndpointRegistry(Sealer(OTHER_KEY))
        other.apply(one.endpoint_id.encode(), raw)
        assert other.get(one.endpoint_id) is None and other.records_rejected == 1
    # Key rotation: a new first key seals, the old one still opens what it sealed.
    both = EndpointRegistry(Sealer(f"{OTHER_KEY},{DEV_SECRETS_KEY}"))
    both.apply(b"k", writer.record(webhook, "PA-CG-01").to_bytes())
    assert both.get(webhook.endpoint_id) == webhook


def test_record_refuses_half_a_rotation_and_a_reason_on_an_enabled_endpoint() -> None:
    sealer = Sealer(DEV_SECRETS_KEY)
    record = EndpointRegistry(sealer)
    writer = EndpointWriter(record, _never_publish, OutboundPolicy())
    good = writer.record(endpoint(), "PA-CG-01").model_dump()
    with pytest.raises(ValidationError, match="go together"):
        EndpointSaved.model_validate(good | {"previous_secret_sealed": sealer.seal("x")})
    with pytest.raises(ValidationError, match="no disabled_reason"):
        EndpointSaved.model_validate(good | {"disabled_reason": "x"})


async def _never_publish(key: str, value: bytes | None) -> None:
    raise AssertionError("not expected to publish")


# --- registry ---------------------------------------------------------------------------------


def test_targets_match_unit_filter_and_enabled_flag() -> None:
    registry = EndpointRegistry(Sealer(DEV_SECRETS_KEY))
    tasks_only = endpoint("PA-CG-01", NotificationType.NEW_TASK)
    alerts = endpoint("PA-CG-01", NotificationType.OVERDUE, NotificationType.ESCALATION)
    off = endpoint("PA-CG-01", enabled=False)
    elsewhere = endpoint("PA-SW-01")
    for one in (tasks_only, alerts, off, elsewhere):
        registry.put(one)
    assert registry.targets("PA-CG-01", NotificationType.NEW_TASK) == [tasks_only]
    assert registry.targets("PA-CG-01", NotificationType.OVERDUE) == [alerts]
    assert registry.targets("PA-CG-01", NotificationType.WARNING) == []
    assert registry.targets("PA-SW-01", NotificationType.UPDATE) == [elsewhere]
    registry.apply(elsewhere.endpoint_id.encode(), None)  # tombstone
    assert registry.get(elsewhere.endpoint_id) is None and len(registry) == 3


def test_notification_type_of_messages() -> None:
    primary = task(NOW)
    assert notification_type(primary) is NotificationType.NEW_TASK
    co = primary.model_copy(update={"role": TaskRole.CO_OPERATING})
    assert notification_type(co) is NotificationType.CO_OPERATING_TASK
    alert = SlaAlertRaised.model_validate(
        {
            "alert_id": new_id(),
            "task_id": primary.task_id,
            "unit_code": primary.unit_code,
            "kind": "escalation",
            "clock": "resolve",
            "step": "escalation-county",
            "due_at": NOW,
            "deadline_at": NOW,
            "raised_at": NOW,
            "message": "超期未办结，升级至县指挥中心督办",
        }
    )
    assert notification_type(alert) is NotificationType.ESCALATION
    assert recipients(primary) == ["PA-CG-01"]
    assert recipients(alert) == ["PA-CG-01"]
    assert recipients(alert.model_copy(update={"escalate_to": "PA-ZX"})) == ["PA-CG-01", "PA-ZX"]


def test_follower_reads_the_prefixed_topic_into_the_registry() -> None:
    registry = EndpointRegistry(Sealer(DEV_SECRETS_KEY))
    follower = EndpointFollower(CommonSettings(topic_prefix="pa."), registry, CollectorRegistry(), ready_timeout_s=5)
    assert follower._follower.topic == "pa.notifier.endpoints" and follower.ready is False
    assert follower._follower.apply == registry.apply_records


def test_settings_fallback_keeps_configured_webhooks() -> None:
    settings = NotifierSettings(
        webhooks={"PA-CG-01": "http://127.0.0.1:8089/own"}, default_webhook="http://127.0.0.1:8089/hook"
    )
    registry = registry_from_settings(settings)
    [own] = registry.targets("PA-CG-01", NotificationType.NEW_TASK)
    assert (own.url, own.secret, own.from_settings) == ("http://127.0.0.1:8089/own", DEV_SIGNING_SECRET, True)
    [default] = registry.targets("PA-SW-01", NotificationType.OVERDUE)
    assert default.url == "http://127.0.0.1:8089/hook" and default.endpoint_id == "settings:default"
    # Once a unit registers its own, its registrations alone decide (a filter it chose is respected).
    registry.put(endpoint("PA-SW-01", NotificationType.NEW_TASK))
    assert registry.targets("PA-SW-01", NotificationType.OVERDUE) == []
    assert registry_from_settings(NotifierSettings()).targets("PA-SW-01", NotificationType.NEW_TASK) == []


def test_signing_secrets_overlap_after_rotation() -> None:
    rotated = endpoint(secret="whsec_new", previous_secret="whsec_old", previous_secret_until=NOW + timedelta(hours=24))
    assert signing_secrets(rotated, NOW) == ["whsec_new", "whsec_old"]
    assert signing_secrets(rotated, NOW + timedelta(hours=23, minutes=59)) == ["whsec_new", "whsec_old"]
    assert signing_secrets(rotated, NOW + timedelta(hours=24)) == ["whsec_new"]
    assert signing_secrets(endpoint(secret=None), NOW) == []


# --- settings ---------------------------------------------------------------------------------


def test_prod_refuses_dev_secrets_key_and_unit_keys() -> None:
    prod = CommonSettings(mode="prod", kafka_replication_factor=3)
    real = {
        "signing_secret": "whsec_" + "cmVhbC1zZWNyZXQtb2YtdGhlLWNvdW50eS0zMmJ5dGVz",
        "common": prod,
        "api_keys": {"k-operator": "operator"},
    }
    with pytest.raises(ValidationError, match="GRIDHUB_NOTIFIER_UNIT_KEYS"):
        NotifierSettings(**real)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="GRIDHUB_NOTIFIER_SECRETS_KEY"):
        NotifierSettings(**real, unit_keys={"PA-CG-01": "k-1"})  # type: ignore[arg-type]
    ok = NotifierSettings(**real, unit_keys={"PA-CG-01": "k-1"}, secrets_key=OTHER_KEY)  # type: ignore[arg-type]
    assert ok.secrets_key == OTHER_KEY
    with pytest.raises(ValidationError, match="Fernet keys"):
        NotifierSettings(secrets_key="not-a-key")
    with pytest.raises(ValidationError, match="neither a CIDR nor host:port"):
        NotifierSettings(outbound_allowlist=("localhost",))


def test_unit_keys_like_the_adapters() -> None:
    assert holder_of_key({}, "dev-PA-CG-01", True) == "PA-CG-01"
    assert holder_of_key({}, "dev-PA-CG-01", False) is None
    assert holder_of_key({"PA-CG-01": "k-1"}, "dev-PA-CG-01", True) is None
    assert holder_of_key({"PA-CG-01": "k-1"}, "k-1", False) == "PA-CG-01"
    assert holder_of_key({"PA-CG-01": "k-1"}, None, True) is None


# --- API --------------------------------------------------------------------------------------


class FakeProducer:
    """Records (topic, key, value) in place of Kafka; raises `error` when set."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes | None]] = []
        self.error: Exception | None = None

    async def send_and_wait(self, topic: str, value: bytes | None, key: bytes) -> None:
        if self.error is not None:
            raise self.error
        self.records.append((topic, key, value))


class Harness:
    def __init__(self) -> None:
        self.settings = NotifierSettings(outbound_allowlist=("127.0.0.0/8",))
        self.producer = FakeProducer()
        self.registry = registry_from_settings(self.settings)
        self.writer, router = endpoints_api(
            self.settings, self.registry, producer_publish(self.producer, self.settings.common)
        )
        self.app = FastAPI()
        install_problem_handlers(self.app)
        self.app.include_router(router)

    def replica(self) -> EndpointRegistry:
        """Another replica's registry, filled from what was published."""
        other = registry_from_settings(self.settings)
        for _, key, value in self.producer.records:
            other.apply(key, value)
        return other


@pytest.fixture
async def api() -> AsyncIterator[tuple[Harness, httpx.AsyncClient]]:
    harness = Harness()
    transport = httpx.ASGITransport(app=harness.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://notifier.test") as client:
        yield harness, client


CG = {"Authorization": "Bearer dev-PA-CG-01"}
SW = {"Authorization": "Bearer dev-PA-SW-01"}


async def test_register_returns_secret_once_and_publishes_sealed(api: tuple[Harness, httpx.AsyncClient]) -> None:
    harness, client = api
    answer = await client.post("/v1/endpoints", json={"url": HOOK, "notification_types": ["task.new"]}, headers=CG)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    secret = body["secret"]
    assert secret.startswith("whsec_") and len(secret_bytes(secret)) == 32
    assert body["unit_code"] == "PA-CG-01" and body["channel"] == "webhook" and body["signed"] is True
    [(topic, key, value)] = harness.producer.records
    assert topic == "gridhub.notifier.endpoints" and key == body["endpoint_id"].encode()
    assert value is not None and secret.encode() not in value
    [seen] = harness.replica().targets("PA-CG-01", NotificationType.NEW_TASK)
    assert seen.secret == secret and seen.url == HOOK
    listed = await client.get("/v1/endpoints", headers=CG)
    assert [e["endpoint_id"] for e in listed.json()] == [body["endpoint_id"]]
    assert "secret" not in listed.json()[0]
    assert (await client.get("/v1/endpoints", headers=SW)).json() == []


async def test_robot_url_query_is_never_shown(api: tuple[Harness, httpx.AsyncClient]) -> None:
    harness, client = api
    harness.writer.policy = OutboundPolicy.of((), [WECOM])  # no DNS in unit tests: trust the robot's host
    answer = await client.post("/v1/endpoints", json={"url": WECOM, "channel": "wecom"}, headers=CG)
    assert answer.status_code == 201, answer.text
    assert answer.json()["url"] == "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"
    assert answer.json()["secret"] is None and "693a91f6" not in answer.text


async def test_other_units_endpoints_are_not_found(api: tuple[Harness, httpx.AsyncClient]) -> None:
    harness, client = api
    made = (await client.post("/v1/endpoints", json={"url": HOOK}, headers=CG)).json()
    path = f"/v1/endpoints/{made['endpoint_id']}"
    for call in (
        client.get(path, headers=SW),
        client.patch(path, json={"enabled": False}, headers=SW),
        client.delete(path, headers=SW),
        client.post(path + "/rotate-secret", headers=SW),
    ):
        answer = await call
        assert answer.status_code == 404
        assert answer.headers["content-type"] == "application/problem+json"
        assert "没有端点" in answer.json()["detail"]
    assert len(harness.producer.records) == 1


async def test_unauthenticated_is_401_problem(api: tuple[Harness, httpx.AsyncClient]) -> None:
    _, client = api
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        answer = await client.post("/v1/endpoints", json={"url": HOOK}, headers=headers)
        assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"
        assert answer.json()["detail"].startswith("缺少或错误的单位密钥")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://10.0.0.5/hook", "内网地址"),
        ("http://169.254.169.254/latest/meta-data", "链路本地地址"),
        ("http://[::ffff:192.168.1.1]/hook", "内网地址"),
        ("ftp://hooks.example.cn/x", "http:// 或 https://"),
        ("http://user:pw@hooks.example.cn/x", "用户名或密码"),
    ],
)
async def test_registration_refuses_unsafe_urls(api: tuple[Harness, httpx.AsyncClient], url: str, why: str) -> None:
    harness, client = api
    answer = await client.post("/v1/endpoints", json={"url": url}, headers=CG)
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "url" and why in answer.json()["detail"]
    assert harness.producer.records == []


async def test_patch_disable_enable_filter_and_url(api: tuple[Harness, httpx.AsyncClient]) -> None:
    harness, client = api
    made = (await client.post("/v1/endpoints", json={"url": HOOK}, headers=CG)).json()
    path = f"/v1/endpoints/{made['endpoint_id']}"
    off = await client.patch(path, json={"enabled": False, "disabled_reason": "系统升级"}, headers=CG)
    assert off.status_code == 200 and off.json()["enabled"] is False and off.json()["disabled_reason"] == "系统升级"
    assert harness.replica().targets("PA-CG-01", NotificationType.NEW_TASK) == []
    on = await client.patch(path, json={"enabled": True, "notification_types": ["alert.overdue"]}, headers=CG)
    assert on.json()["enabled"] is True and on.json()["disabled_reason"] is None
    assert on.json()["notification_types"] == ["alert.overdue"]
    moved = await client.patch(path, json={"url": "http://127.0.0.2:8080/new?token=abc"}, headers=CG)
    assert moved.json()["url"] == "http://127.0.0.2:8080/new"
    [target] = harness.replica().targets("PA-CG-01", NotificationType.OVERDUE)
    assert target.url == "http://127.0.0.2:8080/new?token=abc" and target.secret == made["secret"]
    bad = await client.patch(path, json={"url": "http://192.168.0.1/"}, headers=CG)
    assert bad.status_code == 422
    wrong = await client.patch(path, json={"dingtalk_secret": "SEC0123456789"}, headers=CG)
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "dingtalk_secret"


async def test_rotate_secret_overlaps_then_delete(api: tuple[Harness, httpx.AsyncClient]) -> None:
    harness, client = api
    made = (await client.post("/v1/endpoints", json={"url": HOOK}, headers=CG)).json()
    path = f"/v1/endpoints/{made['endpoint_id']}"
    before = datetime.now(UTC)
    rotated = await client.post(path + "/rotate-secret", headers=CG)
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["secret"]
    until = datetime.fromisoformat(rotated.json()["previous_secret_until"])
    assert new_secret != made["secret"]
    assert timedelta(hours=23, minutes=59) < until - before < timedelta(hours=24, minutes=1)
    seen = harness.replica().get(made["endpoint_id"])
    assert seen is not None
    assert signing_secrets(seen, before) == [new_secret, made["secret"]]
    assert signing_secrets(seen, until) == [new_secret]
    short = await client.post(path + "/rotate-secret", json={"overlap_hours": 1}, headers=CG)
    seen = harness.replica().get(made["endpoint_id"])
    assert seen is not None and seen.previous_secret == new_secret
    assert datetime.fromisoformat(short.json()["previous_secret_until"]) - before < timedelta(hours=1, minutes=1)
    gone = await client.delete(path, headers=CG)
    assert gone.status_code == 204
    assert harness.producer.records[-1][2] is None  # tombstone
    assert harness.replica().get(made["endpoint_id"]) is None
    assert (await client.get(path, headers=CG)).status_code == 404


async def test_rotate_is_for_webhooks_dingtalk_secret_for_dingtalk(api: tuple[Harness, httpx.AsyncClient]) -> None:
    harness, client = api
    url = "http://127.0.0.1:9/robot/send?access_token=abc"
    made = await client.post(
        "/v1/endpoints", json={"url": url, "channel": "dingtalk", "dingtalk_secret": "SEC1234567890"}, headers=CG
    )
    assert made.status_code == 201 and made.json()["secret"] is None and made.json()["signed"] is True
    seen = harness.replica().get(made.json()["endpoint_id"])
    assert seen is not None and seen.secret == "SEC1234567890"
    rotate = await client.post(f"/v1/endpoints/{made.json()['endpoint_id']}/rotate-secret", headers=CG)
    assert rotate.status_code == 422 and "dingtalk_secret" in rotate.json()["detail"]
    wrong = await client.post("/v1/endpoints", json={"url": HOOK, "dingtalk_secret": "SEC1234567890"}, headers=CG)
    assert wrong.status_code == 422


async def test_broker_down_is_503_and_nothing_changes(api: tuple[Harness, httpx.AsyncClient]) -> None:
    harness, client = api
    harness.producer.error = KafkaTimeoutError()
    answer = await client.post("/v1/endpoints", json={"url": HOOK}, headers=CG)
    assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
    assert len(harness.registry) == 0


async def test_disable_for_the_delivery_engine(api: tuple[Harness, httpx.AsyncClient]) -> None:
    harness, client = api
    made = (await client.post("/v1/endpoints", json={"url": HOOK}, headers=CG)).json()
    assert await harness.writer.disable(made["endpoint_id"], "HTTP 410 Gone") is True
    seen = harness.replica().get(made["endpoint_id"])
    assert seen is not None and not seen.enabled and seen.disabled_reason == "HTTP 410 Gone"
    assert (await client.get(f"/v1/endpoints/{made['endpoint_id']}", headers=CG)).json()["enabled"] is False
    assert await harness.writer.disable(made["endpoint_id"], "again") is False  # already disabled
    assert await harness.writer.disable("settings:default", "410") is False
    assert await harness.writer.disable(new_id(), "410") is False
    assert EndpointSaved.model_validate_json(harness.producer.records[-1][2] or b"").updated_by == "notifier"


def test_a_record_naming_a_type_this_version_does_not_know_keeps_the_types_it_knows() -> None:
    # A newer replica saved it (rolling upgrade): the endpoint stays, with the types this replica can deliver.
    sealer = Sealer(DEV_SECRETS_KEY)
    writer = EndpointWriter(EndpointRegistry(sealer), _never_publish, OutboundPolicy())
    one = endpoint(previous_secret="whsec_" + "A" * 32, previous_secret_until=NOW + timedelta(hours=24))
    data = json.loads(writer.record(one, "PA-CG-01").to_bytes())
    data["notification_types"] = ["task.new", "task.someday"]
    registry = EndpointRegistry(sealer)
    registry.apply(b"k", json.dumps(data, ensure_ascii=False).encode())
    saved = registry.get(one.endpoint_id)
    assert saved == replace(one, notification_types=frozenset({NotificationType.NEW_TASK}))
    assert registry.records_rejected == 0
    # Only unknown types, or anything else wrong: refused as before.
    data["notification_types"] = ["task.someday"]
    registry.apply(b"k2", json.dumps(data).encode())
    data["notification_types"], data["url_display"] = ["task.new"], 5
    registry.apply(b"k3", json.dumps(data).encode())
    assert registry.records_rejected == 2
