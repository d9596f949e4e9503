"""The notifier's record of delivering one message to one endpoint, and its alerts to the command centre."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from schemas.base import AwareDatetime, Message


class DeliveryOutcome(StrEnum):
    """Final outcome of a delivery after its retries."""

    DELIVERED = "delivered"
    EXHAUSTED = "exhausted"
    NO_ENDPOINT = "no-endpoint"
    RETRYING = "retrying"
    GONE = "gone"
    ENDPOINT_DISABLED = "endpoint-disabled"


class DeliveryRecorded(Message):
    """One attempt of delivering a task or alert to a unit's endpoint, with its outcome so far.

    Every attempt is recorded (outcome `retrying` while more attempts are planned, then `delivered`, `exhausted`
    or `gone` (410)); an endpoint disabled for failing too long is recorded once with `endpoint-disabled`: the
    command centre's alert (`alert` set, in Chinese). Keyed by the task id (an alert's task), so a task's records
    share a partition with the task.
    """

    webhook_id: str = Field(description="Standard Webhooks id; stable across retries.")
    subject_id: str = Field(description="task_id or alert_id that was delivered.")
    unit_code: str
    endpoint_url: str | None
    outcome: DeliveryOutcome
    attempts: int = Field(ge=0)
    last_status: int | None = Field(None, description="HTTP status of the last attempt.")
    last_error: str | None = Field(None, max_length=500)
    latency_ms: float | None = Field(None, description="Latency of the successful attempt.")
    finished_at: AwareDatetime
    delivery_id: str | None = Field(None, description="The outbox job: <webhook id>.<endpoint id>.")
    endpoint_id: str | None = Field(None, description="The endpoint delivered to.")
    task_id: str | None = Field(None, description="The task the message is about (the record's key).")
    attempt_latency_ms: float | None = Field(None, description="Latency of this attempt (failed ones too).")
    next_attempt_at: AwareDatetime | None = Field(None, description="When the next attempt is due (retrying).")
    alert: str | None = Field(None, description="For the command centre (Chinese): why an endpoint was disabled.")


class DeliveryAlertKind(StrEnum):
    """Why the command centre is told about a delivery."""

    EXHAUSTED = "delivery-exhausted"  # every retry failed: the task or alert never reached its unit
    GONE = "endpoint-gone"  # the endpoint answered 410: it is disabled
    DISABLED = "endpoint-disabled"  # the endpoint failed every attempt for GRIDHUB_NOTIFIER_DISABLE_AFTER_S


class DeliveryAlertRaised(Message):
    """A delivery the command centre must follow up (投递告警): a task or alert that never reached its unit, or a
    unit's endpoint the notifier disabled. Keyed by the task id, like the delivery it is about; the notifier
    delivers it to the command centre's endpoints that take `alert.delivery`."""

    alert_id: str = Field(
        pattern=r"^[0-9a-f]{32}$",
        description="Deterministic (kind, delivery, attempt): the same failure raised again has the same id.",
    )
    kind: DeliveryAlertKind
    unit_code: str = Field(description="Who is told: the county command centre.")
    endpoint_unit_code: str = Field(description="The unit whose endpoint failed.")
    endpoint_id: str
    endpoint_url: str = Field(description="The endpoint's URL without query (a robot's key is not shown).")
    task_id: str = Field(description="The task the failed delivery was about (the record's key).")
    webhook_id: str = Field(description="The failed delivery's webhook-id (task_<id> or alert_<id>).")
    delivery_id: str
    attempts: int = Field(ge=0)
    last_status: int | None = Field(None, description="HTTP status of the last attempt.")
    last_error: str | None = Field(None, max_length=500)
    raised_at: AwareDatetime
    message: str = Field(description="What it says, in Chinese, for the dispatchers on duty.")
