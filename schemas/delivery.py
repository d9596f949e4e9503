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


class DeliveryRecorded(Message):
    """Outcome of delivering a task or alert to a unit's webhook, with every attempt counted."""

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
