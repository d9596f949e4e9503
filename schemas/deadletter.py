"""A message no stage could process, with the reason and the original bytes."""

from __future__ import annotations

from pydantic import Field

from schemas.base import AwareDatetime, Message


class ReportDeadLettered(Message):
    """Anything a stage rejected permanently: reason code, message, and the original bytes."""

    stage: str = Field(description="Service that rejected it: intake, router, sla, notifier.")
    reason: str = Field(description="Bounded reason code, e.g. invalid-payload, unknown-task.")
    detail: str = Field(max_length=4000, description="What exactly was wrong, for an operator.")
    original_topic: str
    original_partition: int | None = None
    original_offset: int | None = None
    original_key: str | None = None
    original_value: str = Field(description="Original message bytes, base64.")
    dead_lettered_at: AwareDatetime
