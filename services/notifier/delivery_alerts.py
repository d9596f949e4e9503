"""Alerts for the command centre about deliveries (投递告警), pure: what to say when a delivery is given up or an
endpoint is disabled.

The notifier raises them on `deliveries.alerts` and delivers them like SLA alerts, to the command centre's endpoints
that take `alert.delivery`. A delivery of such an alert that fails raises none of its own: the chain ends there (its
dead letter and the metrics still show it).
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from schemas import DeliveryAlertKind, DeliveryAlertRaised
from services.notifier.outbox import Job

DELIVERY_ALERT_JOB = "delivery-alert"  # Job.kind of a delivery alert's own deliveries


def delivery_alert_id(kind: DeliveryAlertKind, delivery_id: str, attempts: int) -> str:
    """Deterministic id: the same attempt failing again after a restart raises the same alert (receivers dedupe)."""
    return hashlib.sha256(f"{kind.value}|{delivery_id}|{attempts}".encode()).hexdigest()[:32]


def _what(job: Job) -> str:
    if job.kind == "task":
        return f"任务 {job.task_id}"
    return f"任务 {job.task_id} 的时限提醒（{job.webhook_id}）"


def alert_text(kind: DeliveryAlertKind, job: Job, last: str, disable_after_s: float) -> str:
    """What the alert says, in Chinese, for the dispatchers on duty."""
    where = f"{job.unit_code} 的接收端点 {job.url}"
    if kind is DeliveryAlertKind.EXHAUSTED:
        return (
            f"{_what(job)}未能送达{where}：{job.attempts} 次尝试均失败（最后：{last}），已停止重试。"
            f"请电话联系该单位转交任务，端点修复后可用 /deliveries 重放。"
        )
    if kind is DeliveryAlertKind.GONE:
        reason = "回复 410（接收方已停用该地址）"
    else:
        reason = f"已连续失败 {disable_after_s / 3600:g} 小时"
    return (
        f"{where}{reason}，已停用，不再向其投递；此后发往该端点的任务和提醒转入死信。"
        f"请联系该单位核实地址，重新启用后可重放。"
    )


def delivery_alert(
    kind: DeliveryAlertKind,
    job: Job,
    *,
    command_centre: str,
    last_status: int | None,
    last_error: str | None,
    disable_after_s: float,
    now: datetime,
) -> DeliveryAlertRaised:
    """The alert about one job's failure (its attempts already counted), for the command centre."""
    last = str(last_status) if last_status is not None else (last_error or "无应答")
    return DeliveryAlertRaised(
        causation_id=job.causation_id,
        alert_id=delivery_alert_id(kind, job.delivery_id, job.attempts),
        kind=kind,
        unit_code=command_centre,
        endpoint_unit_code=job.unit_code,
        endpoint_id=job.endpoint_id,
        endpoint_url=job.url,
        task_id=job.task_id,
        webhook_id=job.webhook_id,
        delivery_id=job.delivery_id,
        attempts=job.attempts,
        last_status=last_status,
        last_error=last_error[:500] if last_error else None,
        raised_at=now,
        message=alert_text(kind, job, last[:200], disable_after_s),
    )
