"""Task updates reported by the unit that holds the task."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, model_validator

from schemas.base import AwareDatetime, Message, UlidStr


class UpdateKind(StrEnum):
    """What a unit did: 签收, 联系, 办结, 回复, 退回, 暂停, 恢复, 回访评价."""

    ACCEPTED = "accepted"
    CONTACTED = "contacted"
    RESOLVED = "resolved"
    REPLIED = "replied"
    RETURNED = "returned"
    PAUSED = "paused"
    RESUMED = "resumed"
    FEEDBACK = "feedback"


class TaskUpdated(Message):
    """A unit's report on one of its tasks."""

    update_id: UlidStr
    task_id: UlidStr
    unit_code: str = Field(description="The authenticated unit that sent the update.")
    kind: UpdateKind
    occurred_at: AwareDatetime
    note: str | None = Field(None, max_length=2000)
    reason: str | None = Field(None, max_length=500, description="Required for returned and paused.")
    satisfaction: int | None = Field(None, ge=1, le=5, description="Citizen's rating, 1-5, for feedback.")

    @model_validator(mode="after")
    def _kind_needs_fields(self) -> TaskUpdated:
        if self.kind in (UpdateKind.RETURNED, UpdateKind.PAUSED) and not self.reason:
            raise ValueError(f"{self.kind.value} needs a reason")
        if self.kind is UpdateKind.FEEDBACK and self.satisfaction is None:
            raise ValueError("feedback needs a satisfaction rating 1-5")
        return self
