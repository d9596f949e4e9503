"""Adapters HTTP API against an in-memory publisher: work orders and task updates in, raw records out."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from aiokafka.errors import KafkaTimeoutError
from fastapi import FastAPI
from ulid import ULID

from gridhub.kernel.settings import CommonSettings
from schemas import Channel, ReportReceived, TaskUpdated, UpdateKind
from services.adapters.api import ADAPTER_VERSION
from services.adapters.auth import body_signature
from services.adapters.settings import AdaptersSettings
from tests.unit.adapter_harness import FakePublisher, api_with, served

API_KEY = "test-12345-key"
POLICE_KEY = "test-110-key"
HMAC_SECRET = "110-指挥中心-共享密钥-2026"
TASK_ID = "01KAFZ0M3DY89XFXAKDNGGSZDK"
CST = timezone(timedelta(hours=8))
PROBLEM = "application/problem+json"

ORDER = {
    "order_no": "GD-2026-1120-00421",
    "caller_name": "王秀兰",
    "caller_phone": "13837124567",
    "appeal_type": "投诉",
    "content": "幸福里小区3号楼下水道反流，污水漫到单元门口，已经三天没人处理。",
    "address": "平安县城关镇东街幸福里小区3号楼",
    "grid_code": "PA-CG-01-001",
    "urgency": "紧急",
    "call_time": "2026-11-20T09:30:00+08:00",
    "extra": {"坐席": "12号", "录音": None},
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "GRIDHUB_MODE",
        "GRIDHUB_TOPIC_PREFIX",
        "GRIDHUB_ADAPTERS_SOURCE_KEYS",
        "GRIDHUB_ADAPTERS_UNIT_KEYS",
        "GRIDHUB_ADAPTERS_MAX_BODY_BYTES",
        "GRIDHUB_KAFKA_REPLICATION_FACTOR",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture()
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture()
def app(publisher: FakePublisher) -> FastAPI:
    settings = AdaptersSettings(
        common=CommonSettings(mode="dev", topic_prefix="gridhub."),
        source_keys={"12345": API_KEY, "110": POLICE_KEY},
        source_hmac_secrets={"110": HMAC_SECRET},
        unit_keys={},
        max_body_bytes=4096,
    )

    return api_with(settings, publisher)


@pytest.fixture()
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with served(app) as c:
        yield c


async def post_order(
    client: httpx.AsyncClient, body: Any = ORDER, key: str | None = API_KEY, raw: bytes | None = None
) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["x-api-key"] = key
    content = raw if raw is not None else json.dumps(body, ensure_ascii=False).encode()
    return await client.post("/v1/12345/work-orders", content=content, headers=headers)


def assert_problem(response: httpx.Response, status: int, title: str) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["type"] == "about:blank"
    assert body["status"] == status
    assert body["title"] == title
    return body


async def test_work_order_published_raw(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    before = datetime.now(UTC)
    response = await post_order(client)

    assert response.status_code == 202
    answer = response.json()
    assert set(answer) == {"event_id", "source", "source_id", "status"}
    assert answer["source"] == "12345"
    assert answer["source_id"] == "GD-2026-1120-00421"
    assert answer["status"] == "accepted"
    assert str(ULID.from_str(answer["event_id"])) == answer["event_id"]

    assert len(publisher.records) == 1
    topic, key, value = publisher.records[0]
    assert topic == "gridhub.raw.12345"
    assert key == b"12345:GD-2026-1120-00421"
    raw = ReportReceived.model_validate_json(value)
    assert raw.source is Channel.HOTLINE_12345
    assert raw.source_id == "GD-2026-1120-00421"
    assert raw.proposed_event_id == answer["event_id"]
    assert raw.payload == ORDER
    assert raw.adapter_version == ADAPTER_VERSION == "gridhub-adapters/0.1.0"
    assert raw.content_type == "application/json"
    assert before <= raw.received_at <= datetime.now(UTC)
    # Chinese kept as UTF-8 on the wire, not \\u escapes
    assert "下水道反流".encode() in value


async def test_padded_order_no_is_refused_not_silently_changed(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    # The id becomes the Kafka key and the dedupe key: it is taken exactly as sent or refused.
    response = await post_order(client, {**ORDER, "order_no": "  GD-2026-1120-00422 "})
    assert_problem(response, 422, "请求内容校验未通过")
    assert publisher.records == []


@pytest.mark.parametrize("key", [None, "wrong-key", ""])
async def test_missing_or_wrong_api_key(client: httpx.AsyncClient, publisher: FakePublisher, key: str | None) -> None:
    response = await post_order(client, key=key)
    body = assert_problem(response, 401, "未认证：缺少或错误的密钥")
    assert body["detail"] == "缺少或错误的 X-Api-Key，或签名（X-Timestamp、X-Signature）无效或已过期。"
    assert response.headers["www-authenticate"] == "ApiKey"
    assert publisher.records == []


async def test_non_json_is_400(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    response = await post_order(client, raw="工单编号=GD-2026-1120-00421".encode())
    body = assert_problem(response, 400, "请求无效")
    assert body["detail"].startswith("请求体不是有效的 UTF-8 JSON：")
    assert publisher.records == []


async def test_non_utf8_is_400(client: httpx.AsyncClient) -> None:
    response = await post_order(client, raw=json.dumps(ORDER, ensure_ascii=False).encode("gbk"))
    assert_problem(response, 400, "请求无效")


async def test_json_array_is_422(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    response = await post_order(client, [ORDER])
    body = assert_problem(response, 422, "请求内容校验未通过")
    assert body["detail"] == "请求体应为 JSON 对象。"
    assert body["errors"] == [{"field": "(body)", "message": "应为 JSON 对象"}]
    assert publisher.records == []


@pytest.mark.parametrize("order_no", [..., "", "   ", 20261120421, "G" * 65, "GD 2026", "工单-1"])
async def test_missing_or_bad_order_no_is_422(
    client: httpx.AsyncClient, publisher: FakePublisher, order_no: object
) -> None:
    body = {k: v for k, v in ORDER.items() if k != "order_no"}
    if order_no is not ...:
        body["order_no"] = order_no
    problem = assert_problem(await post_order(client, body), 422, "请求内容校验未通过")
    assert problem["detail"] == "缺少或无效的工单编号 order_no。"
    assert problem["errors"][0]["field"] == "order_no"
    assert publisher.records == []


async def test_body_too_large_is_413(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    big = {**ORDER, "content": "物业费涨价，" * 800}
    body = assert_problem(await post_order(client, big), 413, "请求体过大")
    assert body["detail"] == "请求体超过 4096 字节。"
    assert publisher.records == []


async def test_kafka_timeout_is_503_with_retry_after(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    publisher.error = KafkaTimeoutError()
    response = await post_order(client)
    body = assert_problem(response, 503, "服务暂不可用，请稍后重试")
    assert body["detail"] == "消息总线暂不可用，报告未被接收，请稍后重试。"
    assert response.headers["retry-after"] == "5"


async def test_task_update_published(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    response = await client.post(
        f"/v1/tasks/{TASK_ID}/updates",
        json={"kind": "resolved", "note": "已疏通下水道，住户确认不再反流", "occurred_at": "2026-11-21T16:20:00+08:00"},
        headers={"Authorization": "Bearer dev-PA-CG"},
    )
    assert response.status_code == 202
    answer = response.json()
    assert answer["task_id"] == TASK_ID
    assert answer["status"] == "accepted"

    assert len(publisher.records) == 1
    topic, key, value = publisher.records[0]
    assert topic == "gridhub.tasks.updates"
    assert key == TASK_ID.encode()
    update = TaskUpdated.model_validate_json(value)
    assert update.update_id == answer["update_id"]
    assert update.task_id == TASK_ID
    assert update.unit_code == "PA-CG"
    assert update.kind is UpdateKind.RESOLVED
    assert update.note == "已疏通下水道，住户确认不再反流"
    assert update.occurred_at == datetime(2026, 11, 21, 16, 20, tzinfo=CST)


async def test_task_update_without_time_uses_now(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    before = datetime.now(UTC)
    response = await client.post(
        f"/v1/tasks/{TASK_ID}/updates", json={"kind": "accepted"}, headers={"Authorization": "bearer dev-PA-HX"}
    )
    assert response.status_code == 202
    update = TaskUpdated.model_validate_json(publisher.records[0][2])
    assert update.unit_code == "PA-HX"
    assert before <= update.occurred_at <= datetime.now(UTC)


@pytest.mark.parametrize("authorization", [None, "Bearer ", "Basic dev-PA-CG", "Bearer dev-"])
async def test_task_update_without_bearer_is_401(
    client: httpx.AsyncClient, publisher: FakePublisher, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = await client.post(f"/v1/tasks/{TASK_ID}/updates", json={"kind": "accepted"}, headers=headers)
    body = assert_problem(response, 401, "未认证：缺少或错误的密钥")
    assert body["detail"] == "缺少或错误的单位密钥（Authorization: Bearer ...）。"
    assert response.headers["www-authenticate"] == "Bearer"
    assert publisher.records == []


async def test_returned_without_reason_is_422(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    response = await client.post(
        f"/v1/tasks/{TASK_ID}/updates", json={"kind": "returned"}, headers={"Authorization": "Bearer dev-PA-CG"}
    )
    body = assert_problem(response, 422, "请求内容校验未通过")
    assert body["errors"][0]["field"] == "reason"
    assert "returned needs a reason" in body["errors"][0]["message"]
    assert publisher.records == []


async def test_returned_without_reason_detail_names_the_problem(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"/v1/tasks/{TASK_ID}/updates", json={"kind": "returned"}, headers={"Authorization": "Bearer dev-PA-CG"}
    )
    detail = response.json()["detail"]
    assert "reason" in detail
    assert "errors.pydantic.dev" not in detail


async def test_feedback_without_satisfaction_names_satisfaction(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"/v1/tasks/{TASK_ID}/updates", json={"kind": "feedback"}, headers={"Authorization": "Bearer dev-PA-CG"}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "satisfaction"


async def test_feedback_with_satisfaction_is_accepted(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    response = await client.post(
        f"/v1/tasks/{TASK_ID}/updates",
        json={"kind": "feedback", "satisfaction": 5, "note": "群众表示满意"},
        headers={"Authorization": "Bearer dev-PA-CG"},
    )
    assert response.status_code == 202
    assert TaskUpdated.model_validate_json(publisher.records[0][2]).satisfaction == 5


@pytest.mark.parametrize("task_id", ["GD-2026-1120-00421", "01KAFZ0M3DY89XFXAKDNGGSZD", "01KAFZ0M3DY89XFXAKDNGGSZDU"])
async def test_bad_task_id_is_422(client: httpx.AsyncClient, publisher: FakePublisher, task_id: str) -> None:
    response = await client.post(
        f"/v1/tasks/{task_id}/updates", json={"kind": "accepted"}, headers={"Authorization": "Bearer dev-PA-CG"}
    )
    body = assert_problem(response, 422, "请求内容校验未通过")
    assert body["errors"][0]["field"] == "path.task_id"
    assert publisher.records == []


async def test_unknown_kind_and_naive_time_are_422(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    auth = {"Authorization": "Bearer dev-PA-CG"}
    r1 = await client.post(f"/v1/tasks/{TASK_ID}/updates", json={"kind": "已办结"}, headers=auth)
    assert_problem(r1, 422, "请求内容校验未通过")
    assert r1.json()["errors"][0]["field"] == "kind"
    r2 = await client.post(
        f"/v1/tasks/{TASK_ID}/updates", json={"kind": "accepted", "occurred_at": "2026-11-21T16:20:00"}, headers=auth
    )
    assert_problem(r2, 422, "请求内容校验未通过")
    assert r2.json()["errors"][0]["field"] == "occurred_at"
    assert publisher.records == []


async def test_task_update_publish_failure_is_503(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    publisher.error = KafkaTimeoutError()
    response = await client.post(
        f"/v1/tasks/{TASK_ID}/updates", json={"kind": "accepted"}, headers={"Authorization": "Bearer dev-PA-CG"}
    )
    assert_problem(response, 503, "服务暂不可用，请稍后重试")
    assert response.headers["retry-after"] == "5"


def dispatched_to(app: FastAPI, task_id: str, unit: str) -> None:
    """What the tasks.dispatched follower records when the router dispatches a task to a unit."""
    app.state.report_index.owners.apply([(task_id, unit)])


async def test_owners_update_on_its_own_task_is_accepted(
    app: FastAPI, client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    dispatched_to(app, TASK_ID, "PA-CG")
    response = await client.post(
        f"/v1/tasks/{TASK_ID}/updates", json={"kind": "accepted"}, headers={"Authorization": "Bearer dev-PA-CG"}
    )
    assert response.status_code == 202, response.text
    assert TaskUpdated.model_validate_json(publisher.records[0][2]).unit_code == "PA-CG"


async def test_update_on_another_units_task_is_403_and_nothing_published(
    app: FastAPI, client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    dispatched_to(app, TASK_ID, "PA-CG")
    response = await client.post(
        f"/v1/tasks/{TASK_ID}/updates", json={"kind": "resolved"}, headers={"Authorization": "Bearer dev-PA-HX"}
    )
    body = assert_problem(response, 403, "无权操作")
    assert body["detail"] == f"任务 {TASK_ID} 不属于单位 PA-HX，不能更新。"
    assert body["errors"] == [{"field": "task_id", "message": body["detail"]}]
    assert publisher.records == []
    # Refused before the body's own rules: another unit learns nothing about what this task would need.
    returned = await client.post(
        f"/v1/tasks/{TASK_ID}/updates", json={"kind": "returned"}, headers={"Authorization": "Bearer dev-PA-HX"}
    )
    assert returned.status_code == 403
    metrics = (await client.get("/metrics")).text
    assert 'gridhub_adapters_updates_total{kind="resolved",outcome="forbidden"} 1.0' in metrics
    assert 'gridhub_adapters_updates_total{kind="returned",outcome="forbidden"} 1.0' in metrics


async def test_update_on_a_task_not_yet_known_is_accepted(
    app: FastAPI, client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    # Dispatched moments ago and not yet followed here: the SLA service holds it and checks the owner.
    dispatched_to(app, "01KAFZ0M3DY89XFXAKDNGGSZD9", "PA-HX")
    response = await client.post(
        f"/v1/tasks/{TASK_ID}/updates", json={"kind": "accepted"}, headers={"Authorization": "Bearer dev-PA-CG"}
    )
    assert response.status_code == 202, response.text
    assert len(publisher.records) == 1


async def test_healthz_readyz_and_metrics(client: httpx.AsyncClient) -> None:
    health = await client.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "service": "adapters"}

    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "checks": {"kafka-producer": True}, "service": "adapters"}

    await post_order(client)
    await post_order(client, key="wrong-key")
    metrics = (await client.get("/metrics")).text
    assert 'gridhub_adapters_reports_total{channel="12345",outcome="accepted"} 1.0' in metrics
    assert 'gridhub_adapters_reports_total{channel="12345",outcome="unauthorised"} 1.0' in metrics
    assert "gridhub_adapters_publish_seconds_count 1.0" in metrics


async def test_readyz_before_lifespan_is_503(app: FastAPI) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://adapters.test") as c:
        ready = await c.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"kafka-producer": False}


INCIDENT = {
    "incident_no": "110-20261120-000731",
    "call_time": "2026-11-20T21:05:00+08:00",
    "incident_type": "燃气泄漏",
    "summary": "报警人称楼下饭店燃气泄漏，闻到很浓的煤气味。",
    "urgency": "紧急",
}


async def test_110_incident_published_raw_on_its_own_topic(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    response = await client.post("/v1/110/incidents", json=INCIDENT, headers={"x-api-key": POLICE_KEY})
    assert response.status_code == 202
    assert response.json()["source"] == "110"
    topic, key, value = publisher.records[0]
    assert (topic, key) == ("gridhub.raw.110", b"110:110-20261120-000731")
    assert ReportReceived.model_validate_json(value).payload == INCIDENT


async def test_110_needs_its_own_key_not_the_hotlines(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    response = await client.post("/v1/110/incidents", json=INCIDENT, headers={"x-api-key": API_KEY})
    assert_problem(response, 401, "未认证：缺少或错误的密钥")
    assert publisher.records == []


async def test_110_without_incident_no_names_the_field(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    body = {k: v for k, v in INCIDENT.items() if k != "incident_no"}
    response = await client.post("/v1/110/incidents", json=body, headers={"x-api-key": POLICE_KEY})
    problem_body = assert_problem(response, 422, "请求内容校验未通过")
    assert problem_body["errors"][0]["field"] == "incident_no"
    assert "警情编号" in problem_body["detail"]
    assert publisher.records == []


def signed_headers(body: bytes, secret: str = HMAC_SECRET, at: float | None = None) -> dict[str, str]:
    timestamp = str(int(time.time() if at is None else at))
    return {
        "content-type": "application/json",
        "x-timestamp": timestamp,
        "x-signature": body_signature(secret, timestamp, body),
    }


async def test_110_may_sign_instead_of_sending_a_key(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    body = json.dumps(INCIDENT, ensure_ascii=False).encode()
    response = await client.post("/v1/110/incidents", content=body, headers=signed_headers(body))
    assert response.status_code == 202, response.text
    assert len(publisher.records) == 1


@pytest.mark.parametrize(
    "tamper",
    ["body", "secret", "stale", "future", "no-timestamp", "other-channel"],
)
async def test_bad_signature_is_401(client: httpx.AsyncClient, publisher: FakePublisher, tamper: str) -> None:
    body = json.dumps(INCIDENT, ensure_ascii=False).encode()
    headers = signed_headers(body)
    path = "/v1/110/incidents"
    if tamper == "body":
        body = body.replace("燃气".encode(), "火情".encode())
    elif tamper == "secret":
        headers = signed_headers(body, secret="猜的密钥")
    elif tamper == "stale":
        headers = signed_headers(body, at=time.time() - 301)
    elif tamper == "future":
        headers = signed_headers(body, at=time.time() + 301)
    elif tamper == "no-timestamp":
        del headers["x-timestamp"]
    else:
        path = "/v1/12345/work-orders"  # 12345 has no HMAC secret configured
    response = await client.post(path, content=body, headers=headers)
    assert_problem(response, 401, "未认证：缺少或错误的密钥")
    assert publisher.records == []
