"""What goes on the wire for each channel, and whether the answer means delivered (pure).

* `webhook`: the message's own JSON (the record's bytes), signed per Standard Webhooks with every secret that
  signs now (during a rotation both: `webhook-signature: v1,<sig new> v1,<sig old>`); webhook-id `task_<task id>`
  or `alert_<alert id>`, stable across retries. Delivered: any 2xx.
* `wecom` (企业微信群机器人): `{"msgtype":"markdown","markdown":{"content":...}}` in WeCom's markdown subset
  (headings, bold, links, quotes, `<font color="warning|info|comment">`), at most 4096 bytes of UTF-8.
* `dingtalk` (钉钉自定义机器人): `{"msgtype":"markdown","markdown":{"title":...,"text":...}}`; with 加签 the URL
  gets `timestamp` (ms) and `sign` = urlencode(base64(HMAC-SHA256(secret, f"{timestamp}\\n{secret}"))).
  Both robots answer HTTP 200 with `{"errcode":0,"errmsg":"ok"}` when delivered and another errcode when not.

Robot cards carry no reporter data (a group chat is not the unit's case file): matter, place, deadline, urgency
and a link to the task.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple
from urllib.parse import quote_plus

from schemas import (
    ClockKind,
    DeliveryAlertKind,
    DeliveryAlertRaised,
    DurationUnit,
    EndpointChannel,
    SlaAlertRaised,
    TaskDispatched,
    TaskRole,
    Urgency,
)
from services.notifier.endpoints import Endpoint, signing_secrets
from services.notifier.signing import secret_bytes, sign

CHINA = timezone(timedelta(hours=8), "CST")  # no daylight saving: a fixed offset is exact
WECOM_MAX_BYTES = 4096
DINGTALK_MAX_BYTES = 4096  # DingTalk allows more; one card is enough for a task
JSON_CONTENT_TYPE = "application/json; charset=utf-8"
ROLE_ZH = {TaskRole.PRIMARY: "主办", TaskRole.CO_OPERATING: "配合", TaskRole.SUMMONED: "报到（吹哨）"}
ALERT_ZH = {"warning": "预警", "overdue": "超期", "escalation": "升级督办"}
CLOCK_ZH = {ClockKind.ACK: "签收", ClockKind.CONTACT: "联系", ClockKind.RESOLVE: "办结", ClockKind.REPLY: "回复"}

# Robot answers (errcode) that retrying the same message cannot fix: the robot is gone or refuses the message.
# Believed permanent from the platforms' documentation and common reports; any other errcode is retried.
PERMANENT_ERRCODES = {
    EndpointChannel.WECOM: {93000: "webhook 地址无效（机器人已删除？）", 40008: "消息类型无效", 44004: "内容为空"},
    EndpointChannel.DINGTALK: {
        300001: "access_token 无效（机器人已删除？）",
        310000: "安全设置校验未通过（关键词/加签/IP）",
    },
}

Message = TaskDispatched | SlaAlertRaised | DeliveryAlertRaised
DELIVERY_ALERT_ZH = {
    DeliveryAlertKind.EXHAUSTED: "投递失败",
    DeliveryAlertKind.GONE: "端点已停用（410）",
    DeliveryAlertKind.DISABLED: "端点已停用（持续失败）",
}
# Markdown's active characters in user text, swapped for look-alikes that do nothing.
INERT = str.maketrans("<>[]*`#", "＜＞【】＊'＃")


@dataclass(frozen=True)
class OutboundRequest:
    """One POST: where, the body, the headers."""

    url: str
    body: bytes
    headers: dict[str, str]


class Acceptance(NamedTuple):
    """How an answer counts: delivered, worth retrying, and why not (None when delivered)."""

    ok: bool
    retryable: bool
    error: str | None


def webhook_id(message: Message) -> str:
    """The Standard Webhooks id: the same for every attempt and replay of one task or alert."""
    if isinstance(message, TaskDispatched):
        return f"task_{message.task_id}"
    return f"alert_{message.alert_id}"  # SLA alerts: ULIDs; delivery alerts: 32 hex digits


def _plain(text: str | None, limit: int) -> str:
    """User text made inert in markdown (no tags, links, emphasis, headings), on one line, at most limit chars."""
    if not text:
        return "—"
    text = re.sub(r"\s+", " ", text).strip()
    text = text.translate(INERT)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _when(at: datetime) -> str:
    return at.astimezone(CHINA).strftime("%Y-%m-%d %H:%M")


def task_deadline(task: TaskDispatched) -> str:
    """The resolve clock's deadline from the task's terms: a time for hours, the term for working days.

    Working days are counted by the SLA service on the statutory calendar (it alone holds it); the card says the
    term and when it started, and the link shows the computed due time.
    """
    term = next((t for t in task.deadlines if t.kind is ClockKind.RESOLVE), None)
    if term is None:
        return "—"
    if term.unit is DurationUnit.HOURS:
        return f"{_when(task.received_at + timedelta(hours=term.amount))} 前（{term.amount} 小时）"
    return f"自 {_when(task.received_at)} 起 {term.amount} 个工作日内"


def _place(task: TaskDispatched) -> str:
    where = task.location
    parts = [p for p in (where.district, where.address) if p]
    grid = f"网格 {_plain(where.grid_code, 40)}" if where.grid_code else None
    if not parts:
        return grid or "—"
    text = _plain(" ".join(parts), 120)
    return f"{text}（{grid}）" if grid else text


def _task_lines(task: TaskDispatched, link: str, colour: bool) -> tuple[str, list[str]]:
    urgent = task.urgency is Urgency.URGENT
    urgency = "紧急" if urgent else "一般"
    if colour:
        urgency = f'<font color="{"warning" if urgent else "comment"}">{urgency}</font>'
    matter = _plain(task.decision.matter_name or task.matter_code, 60)
    title = f"【新任务·{ROLE_ZH[task.role]}】{_plain(task.title, 80)}"
    lines = [
        f"> 事项：{matter}",
        f"> 地点：{_place(task)}",
        f"> 办结时限：{task_deadline(task)}",
        f"> 紧急程度：{urgency}",
        f"> 承办单位：{_plain(task.unit_name, 60)}",
        "",
        _plain(task.description, 300),
        "",
        f"[查看任务 {task.task_id}]({link})",
    ]
    return title, lines


def _alert_lines(alert: SlaAlertRaised, link: str, colour: bool) -> tuple[str, list[str]]:
    kind = ALERT_ZH.get(alert.kind.value, alert.kind.value)
    if colour:
        kind = f'<font color="warning">{kind}</font>'
    title = f"【{ALERT_ZH.get(alert.kind.value, alert.kind.value)}】{CLOCK_ZH[alert.clock]}时限"
    lines = [
        f"> 类型：{kind}（{_plain(alert.step, 40)}{f'，第 {alert.reminder} 次提醒' if alert.reminder else ''}）",
        f"> {CLOCK_ZH[alert.clock]}时限：{_when(alert.deadline_at)}",
        f"> 承办单位：{_plain(alert.unit_code, 60)}",
        *([f"> 督办至：{_plain(alert.escalate_to, 60)}"] if alert.escalate_to else []),
        "",
        _plain(alert.message, 300),
        "",
        f"[查看任务 {alert.task_id}]({link})",
    ]
    return title, lines


def _delivery_alert_lines(alert: DeliveryAlertRaised, link: str, colour: bool) -> tuple[str, list[str]]:
    kind = DELIVERY_ALERT_ZH[alert.kind]
    shown = f'<font color="warning">{kind}</font>' if colour else kind
    title = f"【投递告警】{kind}"
    last = alert.last_status if alert.last_status is not None else _plain(alert.last_error, 80)
    lines = [
        f"> 类型：{shown}",
        f"> 接收单位：{_plain(alert.endpoint_unit_code, 60)}",
        f"> 端点：{_plain(alert.endpoint_url, 120)}",
        f"> 尝试次数：{alert.attempts}，最后结果：{last}",
        "",
        _plain(alert.message, 300),
        "",
        f"[查看任务 {alert.task_id}]({link})",
    ]
    return title, lines


def _fit(text: str, max_bytes: int) -> str:
    """Cut a text to max_bytes of UTF-8 on a character boundary (a last guard: fields are capped already)."""
    raw = text.encode("utf-8")
    if len(raw) <= max_bytes:
        return text
    return raw[: max_bytes - 3].decode("utf-8", "ignore") + "…"


def markdown(message: Message, link: str, *, colour: bool, gap: str = "\n") -> tuple[str, str]:
    """(title, markdown text) of a robot card; `colour`: WeCom's <font color> (DingTalk has none); `gap`: between
    lines (DingTalk's renderer joins single newlines, so its cards use blank lines)."""
    if isinstance(message, TaskDispatched):
        title, lines = _task_lines(message, link, colour)
    elif isinstance(message, DeliveryAlertRaised):
        title, lines = _delivery_alert_lines(message, link, colour)
    else:
        title, lines = _alert_lines(message, link, colour)
    body = gap.join(line for line in lines if line or gap == "\n")
    return title, f"## {title}{gap}{body}"


def task_link(template: str, message: Message) -> str:
    """The link on a card: the template with {task_id} filled in."""
    return template.replace("{task_id}", message.task_id)


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk 加签: base64(HMAC-SHA256(key=secret, f"{timestamp}\\n{secret}")), URL-encoded."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest).decode("ascii"))


def dingtalk_url(url: str, secret: str | None, timestamp_ms: int) -> str:
    """The robot URL with timestamp and sign appended when the robot has 加签 set."""
    if not secret:
        return url
    joiner = "&" if "?" in url else "?"
    return f"{url}{joiner}timestamp={timestamp_ms}&sign={dingtalk_sign(secret, timestamp_ms)}"


def _json(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def webhook_headers(secrets: list[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Standard Webhooks headers signed with every given secret (space-separated signatures)."""
    signatures = " ".join(sign(secret_bytes(secret), msg_id, timestamp, body) for secret in secrets)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signatures,
        "content-type": JSON_CONTENT_TYPE,
    }


def render(
    endpoint: Endpoint, message: Message, *, now: datetime, link_template: str, body: bytes | None = None
) -> OutboundRequest:
    """The request for one attempt to one endpoint (render again for each attempt: timestamps are signed).

    `body`: the record's own bytes for a generic webhook (what receivers have always got); the message's JSON if
    omitted.
    """
    if endpoint.channel is EndpointChannel.WEBHOOK:
        payload = body if body is not None else message.to_bytes()
        secrets = signing_secrets(endpoint, now)
        if not secrets:
            raise ValueError(f"webhook endpoint {endpoint.endpoint_id} has no signing secret")
        hdrs = webhook_headers(secrets, webhook_id(message), int(now.timestamp()), payload)
        return OutboundRequest(endpoint.url, payload, hdrs)
    link = task_link(link_template, message)
    headers = {"content-type": JSON_CONTENT_TYPE}
    if endpoint.channel is EndpointChannel.WECOM:
        _, text = markdown(message, link, colour=True)
        card = {"msgtype": "markdown", "markdown": {"content": _fit(text, WECOM_MAX_BYTES)}}
        return OutboundRequest(endpoint.url, _json(card), headers)
    title, text = markdown(message, link, colour=False, gap="\n\n")
    card = {"msgtype": "markdown", "markdown": {"title": title, "text": _fit(text, DINGTALK_MAX_BYTES)}}
    url = dingtalk_url(endpoint.url, endpoint.secret, int(now.timestamp() * 1000))
    return OutboundRequest(url, _json(card), headers)


def _excerpt(body: bytes) -> str:
    return body[:500].decode("utf-8", "replace")


def accepted(channel: EndpointChannel, status: int, body: bytes, location: str | None = None) -> Acceptance:
    """Whether an HTTP answer means delivered, and if not whether to retry.

    Any channel: a 3xx is a failure (redirects are never followed; register the final URL), 410 Gone is
    permanent (the endpoint is retired: disable it), other non-2xx answers are retried on the schedule. Robots:
    a 2xx must also carry errcode 0; a known permanent errcode is not retried, any other is (rate limits such as
    WeCom 45009 and DingTalk 130101 included: the schedule slows down).
    """
    if 300 <= status < 400:
        where = f" 到 {location}" if location else ""
        return Acceptance(False, True, f"HTTP {status} 跳转{where}：不跟随跳转，请登记最终地址")
    if status == 410:
        return Acceptance(False, False, f"HTTP 410 Gone：接收方已停用该地址 {_excerpt(body)}".strip())
    if not 200 <= status < 300:
        return Acceptance(False, True, f"HTTP {status} {_excerpt(body)}".strip())
    if channel is EndpointChannel.WEBHOOK:
        return Acceptance(True, False, None)
    try:
        answer = json.loads(body)
        errcode = int(answer["errcode"])
    except (ValueError, TypeError, KeyError):
        return Acceptance(False, True, f"机器人答复不是 {{errcode, errmsg}} JSON：{_excerpt(body)}")
    if errcode == 0:
        return Acceptance(True, False, None)
    errmsg = str(answer.get("errmsg", ""))[:300]
    permanent = PERMANENT_ERRCODES[channel].get(errcode)
    if permanent is not None:
        return Acceptance(False, False, f"errcode {errcode}（{permanent}）：{errmsg}")
    return Acceptance(False, True, f"errcode {errcode}：{errmsg}")
