"""Notifier channel formats: Standard Webhooks (both secrets during rotation), WeCom and DingTalk robot markdown."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import urllib.parse
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from schemas import (
    AlertKind,
    ClockKind,
    ClockTerm,
    DurationUnit,
    EndpointChannel,
    Location,
    NotificationType,
    SlaAlertRaised,
    Urgency,
    new_id,
)
from services.notifier.channels import (
    WECOM_MAX_BYTES,
    accepted,
    dingtalk_sign,
    dingtalk_url,
    render,
    task_deadline,
    webhook_id,
)
from services.notifier.endpoints import Endpoint
from services.notifier.settings import DEV_SIGNING_SECRET
from tests.unit.sla_tasks import task

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
RECEIVED = datetime(2026, 11, 23, 1, 30, tzinfo=UTC)  # 09:30 in Beijing
NEW_SECRET = "whsec_" + base64.b64encode(b"new-secret-of-the-county-32bytes").decode()
LINK = "https://gridhub.pingan.gov.cn/tasks/{task_id}"
DINGTALK_SECRET = "SECd7a6f1c0b9e84f2a9c3b5d7e1f0a2b4c6d8e0f1a3b5c7d9e1f3a5b7c9d1e3f5a"


def endpoint(channel: EndpointChannel, url: str, **extra: object) -> Endpoint:
    values: dict[str, object] = {
        "endpoint_id": new_id(),
        "unit_code": "PA-CG-01",
        "channel": channel,
        "url": url,
        "url_display": url.split("?")[0],
        "notification_types": frozenset(NotificationType),
    }
    return Endpoint(**(values | extra))  # type: ignore[arg-type]


def alert(**extra: object) -> SlaAlertRaised:
    values: dict[str, object] = {
        "alert_id": new_id(),
        "task_id": new_id(),
        "unit_code": "PA-CG-01",
        "kind": AlertKind.OVERDUE,
        "clock": ClockKind.RESOLVE,
        "step": "overdue",
        "due_at": NOW,
        "deadline_at": NOW,
        "raised_at": NOW,
        "message": "任务已超过办结时限，请立即办理",
    }
    return SlaAlertRaised.model_validate(values | extra)


# --- generic webhook ----------------------------------------------------------------------------


def test_webhook_body_is_the_record_and_verifies_with_both_secrets_during_rotation() -> None:
    the_task = task(RECEIVED)
    record = the_task.to_bytes()
    hook = endpoint(
        EndpointChannel.WEBHOOK,
        "https://hooks.example.cn/gridhub",
        secret=NEW_SECRET,
        previous_secret=DEV_SIGNING_SECRET,
        previous_secret_until=NOW + timedelta(hours=24),
    )
    request = render(hook, the_task, now=NOW, link_template=LINK, body=record)
    assert request.url == "https://hooks.example.cn/gridhub" and request.body == record
    assert request.headers["webhook-id"] == f"task_{the_task.task_id}" == webhook_id(the_task)
    assert request.headers["webhook-timestamp"] == str(int(NOW.timestamp()))
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    # Receivers on the old secret and on the new one both verify (the library checks the timestamp against now).
    fresh = render(hook, the_task, now=datetime.now(UTC), link_template=LINK, body=record)
    for secret in (NEW_SECRET, DEV_SIGNING_SECRET):
        assert Webhook(secret).verify(fresh.body, fresh.headers) == json.loads(record)
    # After the overlap only the new secret signs.
    later = datetime.now(UTC) + timedelta(hours=25)
    after = render(hook, the_task, now=later, link_template=LINK, body=record)
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    with pytest.raises(WebhookVerificationError):
        Webhook(DEV_SIGNING_SECRET).verify(after.body, after.headers)


def test_webhook_id_of_an_alert_and_body_default() -> None:
    raised = alert()
    hook = endpoint(EndpointChannel.WEBHOOK, "https://hooks.example.cn/x", secret=NEW_SECRET)
    request = render(hook, raised, now=datetime.now(UTC), link_template=LINK)
    assert request.headers["webhook-id"] == f"alert_{raised.alert_id}"
    assert Webhook(NEW_SECRET).verify(request.body, request.headers)["alert_id"] == raised.alert_id


# --- WeCom --------------------------------------------------------------------------------------


WECOM_URL = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"


def test_wecom_markdown_card_of_a_task() -> None:
    the_task = task(RECEIVED).model_copy(
        update={"location": Location(address="幸福小区3号楼", district="城关镇", grid_code="PA-CG-01-001")}
    )
    request = render(endpoint(EndpointChannel.WECOM, WECOM_URL), the_task, now=NOW, link_template=LINK)
    assert request.url == WECOM_URL
    assert request.headers == {"content-type": "application/json; charset=utf-8"}
    card = json.loads(request.body)
    assert list(card) == ["msgtype", "markdown"] and card["msgtype"] == "markdown"
    assert list(card["markdown"]) == ["content"]
    content = card["markdown"]["content"]
    assert "幸福小区3号楼".encode() in request.body  # UTF-8, not \\u escapes
    assert content.startswith("## 【新任务·主办】幸福小区3号楼下水管爆裂\n")
    assert "> 事项：供排水设施" in content
    assert "> 地点：城关镇 幸福小区3号楼（网格 PA-CG-01-001）" in content
    assert "> 办结时限：2026-11-23 11:30 前（2 小时）" in content  # 09:30 Beijing + 2 h
    assert '> 紧急程度：<font color="warning">紧急</font>' in content
    assert f"[查看任务 {the_task.task_id}](https://gridhub.pingan.gov.cn/tasks/{the_task.task_id})" in content
    assert "reporter" not in content and "138" not in content


def test_wecom_card_stays_within_4096_bytes_and_user_text_is_inert() -> None:
    noisy = task(RECEIVED).model_copy(
        update={
            "title": '<font color="info">假冒</font>[点我](http://evil.example)' + "长" * 3000,
            "description": "**描述**\n# 标题\n" + "水" * 5000,
            "urgency": Urgency.NORMAL,
        }
    )
    request = render(endpoint(EndpointChannel.WECOM, WECOM_URL), noisy, now=NOW, link_template=LINK)
    content = json.loads(request.body)["markdown"]["content"]
    assert len(content.encode("utf-8")) <= WECOM_MAX_BYTES
    assert '<font color="info">' not in content and "](http://evil" not in content and "\n# 标题" not in content
    assert '<font color="comment">一般</font>' in content


def test_working_day_terms_are_stated_not_guessed() -> None:
    the_task = task(RECEIVED).model_copy(
        update={"deadlines": (ClockTerm(kind=ClockKind.RESOLVE, amount=7, unit=DurationUnit.WORKING_DAYS),)}
    )
    assert task_deadline(the_task) == "自 2026-11-23 09:30 起 7 个工作日内"
    assert task_deadline(the_task.model_copy(update={"deadlines": ()})) == "—"


def test_wecom_card_of_an_alert() -> None:
    raised = alert(kind=AlertKind.ESCALATION, step="escalation-county", reminder=2, escalate_to="PA-ZX")
    content = json.loads(render(endpoint(EndpointChannel.WECOM, WECOM_URL), raised, now=NOW, link_template=LINK).body)[
        "markdown"
    ]["content"]
    assert content.startswith("## 【升级督办】办结时限\n")
    assert "> 办结时限：2026-11-23 10:00" in content and "第 2 次提醒" in content and "> 督办至：PA-ZX" in content
    assert "任务已超过办结时限，请立即办理" in content and raised.task_id in content


# --- DingTalk -----------------------------------------------------------------------------------


DINGTALK_URL = "https://oapi.dingtalk.com/robot/send?access_token=0123456789abcdef"


def test_dingtalk_signature_matches_the_documented_algorithm() -> None:
    timestamp = 1_700_000_000_000
    # The documented Python sample, verbatim in substance: HmacSHA256(secret, "timestamp\nsecret"), base64, urlencode.
    string_to_sign = f"{timestamp}\n{DINGTALK_SECRET}".encode()
    digest = hmac.new(DINGTALK_SECRET.encode("utf-8"), string_to_sign, digestmod=hashlib.sha256).digest()
    documented = urllib.parse.quote_plus(base64.b64encode(digest))
    assert dingtalk_sign(DINGTALK_SECRET, timestamp) == documented == "y6gCr9yUWFEOZvWbiBi57C4cGGpRY0AEpE%2BVFAUrfN4%3D"
    signed = dingtalk_url(DINGTALK_URL, DINGTALK_SECRET, timestamp)
    assert signed == f"{DINGTALK_URL}&timestamp={timestamp}&sign={documented}"
    assert dingtalk_url(DINGTALK_URL, None, timestamp) == DINGTALK_URL


def test_dingtalk_markdown_card_with_signed_url() -> None:
    the_task = task(RECEIVED)
    robot = endpoint(EndpointChannel.DINGTALK, DINGTALK_URL, secret=DINGTALK_SECRET)
    request = render(robot, the_task, now=NOW, link_template=LINK)
    ms = int(NOW.timestamp() * 1000)
    assert request.url == f"{DINGTALK_URL}&timestamp={ms}&sign={dingtalk_sign(DINGTALK_SECRET, ms)}"
    card = json.loads(request.body)
    assert card["msgtype"] == "markdown" and list(card["markdown"]) == ["title", "text"]
    assert card["markdown"]["title"] == "【新任务·主办】幸福小区3号楼下水管爆裂"
    text = card["markdown"]["text"]
    assert "> 事项：供排水设施" in text and "> 紧急程度：紧急" in text and "<font" not in text
    assert "\n\n> 地点：网格 PA-CG-01-001\n\n" in text  # DingTalk joins single newlines: blank lines between
    assert f"(https://gridhub.pingan.gov.cn/tasks/{the_task.task_id})" in text
    unsigned = render(endpoint(EndpointChannel.DINGTALK, DINGTALK_URL), the_task, now=NOW, link_template=LINK)
    assert unsigned.url == DINGTALK_URL


# --- what counts as delivered --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "status", "body", "ok", "retryable", "says"),
    [
        (EndpointChannel.WEBHOOK, 200, b"", True, False, None),
        (EndpointChannel.WEBHOOK, 204, b"", True, False, None),
        (EndpointChannel.WEBHOOK, 410, b"gone", False, False, "410"),
        (EndpointChannel.WEBHOOK, 429, b"slow down", False, True, "429"),
        (EndpointChannel.WEBHOOK, 503, b"", False, True, "503"),
        (EndpointChannel.WEBHOOK, 301, b"", False, True, "不跟随跳转"),
        (EndpointChannel.WECOM, 200, b'{"errcode":0,"errmsg":"ok"}', True, False, None),
        (EndpointChannel.WECOM, 200, b'{"errcode":45009,"errmsg":"api freq out of limit"}', False, True, "45009"),
        (EndpointChannel.WECOM, 200, b'{"errcode":93000,"errmsg":"invalid webhook url"}', False, False, "93000"),
        (EndpointChannel.WECOM, 200, b"<html>", False, True, "errcode"),
        (EndpointChannel.WECOM, 502, b"", False, True, "502"),
        (EndpointChannel.DINGTALK, 200, b'{"errcode":0,"errmsg":"ok"}', True, False, None),
        (EndpointChannel.DINGTALK, 200, b'{"errcode":130101,"errmsg":"send too fast"}', False, True, "130101"),
        (EndpointChannel.DINGTALK, 200, b'{"errcode":310000,"errmsg":"sign not match"}', False, False, "加签"),
        (EndpointChannel.DINGTALK, 200, b'{"errcode":300001,"errmsg":"token is not exist"}', False, False, "300001"),
    ],
)
def test_accepted(
    channel: EndpointChannel, status: int, body: bytes, ok: bool, retryable: bool, says: str | None
) -> None:
    verdict = accepted(channel, status, body)
    assert (verdict.ok, verdict.retryable) == (ok, retryable)
    if says is None:
        assert verdict.error is None
    else:
        assert verdict.error is not None and says in verdict.error
    assert tuple(verdict) == (verdict.ok, verdict.retryable, verdict.error)
