"""Notifier: Standard Webhooks signing (checked with the independent library), retries, delivery, settings."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from pydantic import ValidationError
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from gridhub.broker import free_port
from gridhub.kernel.settings import CommonSettings
from services.notifier.delivery import DeliveryReport, deliver, new_session
from services.notifier.retry import MAX_RETRY_AFTER_S, AttemptResult, next_delay, parse_retry_after
from services.notifier.settings import DEV_SIGNING_SECRET, NotifierSettings
from services.notifier.signing import headers, secret_bytes, sign

SECRET = "whsec_" + base64.b64encode("平安县综治中心-webhook-密钥-2026".encode()).decode()
KEY = secret_bytes(SECRET)
WEBHOOK_ID = "msg_01KAFZ0M3DY89XFXAKDNGGSZDK"
PATH = "/gridhub/hook"
BODY = json.dumps(
    {"task_id": "01KAFZ0M3DY89XFXAKDNGGSZDK", "unit_code": "PA-CG", "title": "[投诉] 小区下水道反流"},
    ensure_ascii=False,
).encode("utf-8")
SCHEDULE = (1.0, 5.0, 30.0, 120.0)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "GRIDHUB_MODE",
        "GRIDHUB_KAFKA_REPLICATION_FACTOR",
        "GRIDHUB_NOTIFIER_SIGNING_SECRET",
        "GRIDHUB_NOTIFIER_WEBHOOKS",
        "GRIDHUB_NOTIFIER_DEFAULT_WEBHOOK",
    ):
        monkeypatch.delenv(name, raising=False)


# --- signing ---------------------------------------------------------------------------------


def test_secret_bytes_decodes_whsec() -> None:
    assert secret_bytes(SECRET) == "平安县综治中心-webhook-密钥-2026".encode()
    assert secret_bytes(DEV_SIGNING_SECRET) == b"dev-gridhub-signing-secret-32bytes!"


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("ZGV2LWdyaWRodWItc2lnbmluZy1zZWNyZXQtMzJieXRlcyE=", "must look like whsec_<base64>"),
        ("whsec_不是base64", "not valid base64 after whsec_"),
        ("whsec_c2hvcnQta2V5", "at least 24 bytes"),
        ("whsec_", "at least 24 bytes"),
    ],
)
def test_bad_secrets_rejected(secret: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        secret_bytes(secret)


def test_signature_is_hmac_over_id_timestamp_body() -> None:
    import hashlib
    import hmac

    expected = hmac.new(KEY, f"{WEBHOOK_ID}.1763600000.".encode() + BODY, hashlib.sha256).digest()
    assert sign(KEY, WEBHOOK_ID, 1763600000, BODY) == "v1," + base64.b64encode(expected).decode()


def test_headers_verify_with_standardwebhooks() -> None:
    now = int(time.time())
    hdrs = headers(KEY, WEBHOOK_ID, now, BODY)
    assert set(hdrs) == {"webhook-id", "webhook-timestamp", "webhook-signature", "content-type"}
    assert hdrs["webhook-id"] == WEBHOOK_ID
    assert hdrs["webhook-timestamp"] == str(now)
    assert hdrs["content-type"] == "application/json; charset=utf-8"
    assert Webhook(SECRET).verify(BODY, hdrs) == {
        "task_id": "01KAFZ0M3DY89XFXAKDNGGSZDK",
        "unit_code": "PA-CG",
        "title": "[投诉] 小区下水道反流",
    }


def test_tampered_body_fails_verification() -> None:
    hdrs = headers(KEY, WEBHOOK_ID, int(time.time()), BODY)
    tampered = BODY.replace("下水道反流".encode(), "燃气泄漏".encode())
    with pytest.raises(WebhookVerificationError, match="No matching signature found"):
        Webhook(SECRET).verify(tampered, hdrs)


def test_other_secret_or_id_fails_verification() -> None:
    hdrs = headers(KEY, WEBHOOK_ID, int(time.time()), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(DEV_SIGNING_SECRET).verify(BODY, hdrs)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(BODY, {**hdrs, "webhook-id": "msg_other"})


# --- retry -----------------------------------------------------------------------------------


def test_next_delay_follows_schedule_then_stops() -> None:
    failed = AttemptResult(500, "服务器内部错误")
    assert [next_delay(SCHEDULE, n, failed) for n in range(6)] == [1.0, 5.0, 30.0, 120.0, None, None]


def test_network_error_is_retried() -> None:
    assert next_delay(SCHEDULE, 0, AttemptResult(None, "ConnectError: refused")) == 1.0


def test_retry_after_raises_delay_but_never_shortens() -> None:
    assert next_delay(SCHEDULE, 0, AttemptResult(503, retry_after_s=20.0)) == 20.0
    assert next_delay(SCHEDULE, 2, AttemptResult(429, retry_after_s=2.0)) == 30.0


def test_parse_retry_after() -> None:
    assert parse_retry_after(None) is None
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("-7") == 0.0
    assert parse_retry_after("86400") == MAX_RETRY_AFTER_S == 300.0
    assert parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT") is None


def test_capped_retry_after_in_delay() -> None:
    result = AttemptResult(503, retry_after_s=parse_retry_after("3600"))
    assert next_delay(SCHEDULE, 0, result) == 300.0


def test_gone_is_permanent_and_delivered_stops() -> None:
    assert AttemptResult(410).permanent is True
    assert next_delay(SCHEDULE, 0, AttemptResult(410, "endpoint retired")) is None
    assert AttemptResult(204).delivered is True
    assert next_delay(SCHEDULE, 0, AttemptResult(204)) is None
    assert AttemptResult(None).delivered is False
    assert AttemptResult(404).permanent is False
    assert next_delay(SCHEDULE, 0, AttemptResult(404)) == 1.0


# --- delivery --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One scripted answer of the fake receiver; drop=True closes the connection instead."""

    status: int = 200
    text: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False


@dataclass(frozen=True)
class Seen:
    """One request the fake receiver got."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Recorder:
    """A real local HTTP receiver that answers from a script and keeps every request."""

    def __init__(self, answers: list[Answer]) -> None:
        self.answers = answers
        self.requests: list[Seen] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(Seen(request.method, request.path, dict(request.headers), await request.read()))
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if answer.drop:
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)
        return web.Response(status=answer.status, text=answer.text, headers=answer.headers)


def fake_sleep() -> tuple[list[float], Callable[[float], Awaitable[None]]]:
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    return delays, sleep


async def run(recorder: Recorder, schedule: tuple[float, ...] = SCHEDULE) -> tuple[DeliveryReport, list[float]]:
    delays, sleep = fake_sleep()
    now = int(time.time())
    app = web.Application()
    app.router.add_post(PATH, recorder.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with new_session(concurrency=4, timeout_s=5) as session:
            url = f"http://127.0.0.1:{port}{PATH}"
            report = await deliver(session, url, KEY, WEBHOOK_ID, BODY, schedule, clock=lambda: now, sleep=sleep)
    finally:
        await runner.cleanup()
    return report, delays


async def test_delivered_after_two_failures() -> None:
    recorder = Recorder(
        [
            Answer(500, text="内部错误"),
            Answer(503, headers={"Retry-After": "2"}, text="维护中"),
            Answer(200, text='{"ok": true}'),
        ]
    )
    report, delays = await run(recorder)

    assert report.delivered is True
    assert report.attempts == 3
    assert report.last.status == 200
    assert report.last.error is None
    assert report.latency_ms is not None and report.latency_ms >= 0
    # after the 500: schedule[0]; after the 503: max(schedule[1]=5, Retry-After 2)
    assert delays == [1.0, 5.0]
    assert len(recorder.requests) == 3
    assert {r.headers["webhook-id"] for r in recorder.requests} == {WEBHOOK_ID}
    for request in recorder.requests:
        assert request.path == PATH
        assert request.method == "POST"
        assert request.body == BODY
        assert Webhook(SECRET).verify(request.body, request.headers)["unit_code"] == "PA-CG"


async def test_retry_after_longer_than_schedule_is_honoured() -> None:
    recorder = Recorder([Answer(429, headers={"Retry-After": "45"}), Answer(202)])
    report, delays = await run(recorder)
    assert (report.delivered, report.attempts, delays) == (True, 2, [45.0])


async def test_dropped_connection_counts_as_attempt() -> None:
    recorder = Recorder([Answer(drop=True), Answer(204)])
    report, delays = await run(recorder)
    assert report.delivered is True
    assert report.attempts == 2
    assert delays == [1.0]


async def test_exhausted_after_schedule_plus_one_attempts() -> None:
    recorder = Recorder([Answer(drop=True)])
    report, delays = await run(recorder)

    assert report.delivered is False
    assert report.attempts == len(SCHEDULE) + 1 == 5
    assert delays == list(SCHEDULE)
    assert report.last.status is None
    assert report.last.error is not None and report.last.error.startswith("ServerDisconnectedError")
    assert report.latency_ms is None
    assert len(recorder.requests) == 5


async def test_refused_connection_is_a_failed_attempt_not_an_exception() -> None:
    delays, sleep = fake_sleep()
    async with new_session(concurrency=1, timeout_s=2) as session:
        report = await deliver(session, f"http://127.0.0.1:{free_port()}/h", KEY, WEBHOOK_ID, BODY, (0.1,), sleep=sleep)
    assert (report.delivered, report.attempts, delays) == (False, 2, [0.1])
    assert report.last.error is not None and report.last.error.startswith("ClientConnectorError")


async def test_exhausted_keeps_last_http_status_and_body() -> None:
    recorder = Recorder([Answer(502, text="上游网关错误")])
    report, delays = await run(recorder, schedule=(0.5,))
    assert (report.delivered, report.attempts, delays) == (False, 2, [0.5])
    assert report.last == AttemptResult(502, "上游网关错误", None)


async def test_redirect_is_not_followed() -> None:
    recorder = Recorder([Answer(302, headers={"Location": "http://169.254.169.254/latest/meta-data"})])
    report, _ = await run(recorder, schedule=())
    assert (report.delivered, report.attempts, report.last.status) == (False, 1, 302)
    assert len(recorder.requests) == 1


async def test_gone_stops_at_once() -> None:
    recorder = Recorder([Answer(410, text="该接口已停用")])
    report, delays = await run(recorder)
    assert report.delivered is False
    assert report.attempts == 1
    assert delays == []
    assert report.last.status == 410
    assert report.last.error == "该接口已停用"
    assert len(recorder.requests) == 1


# --- settings --------------------------------------------------------------------------------


def test_prod_refuses_dev_signing_secret() -> None:
    with pytest.raises(ValidationError, match="GRIDHUB_NOTIFIER_SIGNING_SECRET must be set to real secrets"):
        NotifierSettings(
            common=CommonSettings(mode="prod", kafka_replication_factor=3), signing_secret=DEV_SIGNING_SECRET
        )


def test_prod_refuses_default_signing_secret() -> None:
    with pytest.raises(ValidationError, match="GRIDHUB_NOTIFIER_SIGNING_SECRET"):
        NotifierSettings(common=CommonSettings(mode="prod", kafka_replication_factor=3))


def test_prod_accepts_real_secret_and_dev_accepts_dev_secret() -> None:
    prod = NotifierSettings(
        common=CommonSettings(mode="prod", kafka_replication_factor=3),
        signing_secret=SECRET,
        unit_keys={"PA-CG": "cg-real-key-2026"},
        secrets_key=base64.urlsafe_b64encode(b"prod-notifier-secrets-key-32byte").decode(),
        api_keys={"ops-real-key-2026": "operator"},
    )
    assert prod.signing_secret == SECRET
    dev = NotifierSettings(common=CommonSettings(mode="dev"), signing_secret=DEV_SIGNING_SECRET)
    assert secret_bytes(dev.signing_secret) == b"dev-gridhub-signing-secret-32bytes!"
    # The published schedule (Svix's): immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
    assert dev.retry_schedule_s == (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


def test_malformed_secret_refused_even_in_dev() -> None:
    with pytest.raises(ValidationError, match="whsec_"):
        NotifierSettings(common=CommonSettings(mode="dev"), signing_secret="dev-secret")


def test_endpoint_for_falls_back_to_default() -> None:
    settings = NotifierSettings(
        common=CommonSettings(mode="dev"),
        webhooks={"PA-CG": "https://cg.pingan.example/hook"},
        default_webhook="http://127.0.0.1:8199/webhooks",
    )
    assert settings.endpoint_for("PA-CG") == "https://cg.pingan.example/hook"
    assert settings.endpoint_for("PA-HX") == "http://127.0.0.1:8199/webhooks"
    no_default = NotifierSettings(common=CommonSettings(mode="dev"), webhooks={"PA-CG": "https://cg.example/h"})
    assert no_default.endpoint_for("PA-RSJ") is None
