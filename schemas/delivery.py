"""The notifier's record of delivering one message to one endpoint."""

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
