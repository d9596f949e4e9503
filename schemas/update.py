"""Task updates reported by the unit that holds the task."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, model_validator

from schemas.base import AwareDatetime, Message, UlidStr


class UpdateKind(StrEnum):
    """What a unit did: 签收, 联系, 办结, 回复, 退回, 暂停, 恢复, 回访评价, 调解不成."""

    ACCEPTED = "accepted"
    CONTACTED = "contacted"
    RESOLVED = "resolved"
    REPLIED = "replied"
    RETURNED = "returned"
    PAUSED = "paused"
    RESUMED = "resumed"
    FEEDBACK = "feedback"
    MEDIATION_FAILED = "mediation-failed"  # 调解不成: a dispute's mediation at this level failed once more


# Fields an update of a kind cannot do without (a return, pause or failed mediation needs its reason,
# feedback its rating).
REQUIRED_FIELDS: dict[UpdateKind, str] = {
    UpdateKind.RETURNED: "reason",
    UpdateKind.PAUSED: "reason",
    UpdateKind.FEEDBACK: "satisfaction",
    UpdateKind.MEDIATION_FAILED: "reason",
}


def missing_required_field(kind: UpdateKind, reason: str | None, satisfaction: int | None) -> str | None:
    """The field an update of this kind lacks, or None."""
    field = REQUIRED_FIELDS.get(kind)
    value = {"reason": reason, "satisfaction": satisfaction}.get(field or "")
    return field if field and value in (None, "") else None


class TaskUpdated(Message):
    """A unit's report on one of its tasks."""

    update_id: UlidStr
    task_id: UlidStr
    unit_code: str = Field(description="The authenticated unit that sent the update.")
    kind: UpdateKind
    occurred_at: AwareDatetime
    note: str | None = Field(None, max_length=2000)
    reason: str | None = Field(None, max_length=500, description="Required for returned, paused and mediation-failed.")
    satisfaction: int | None = Field(None, ge=1, le=5, description="Citizen's rating, 1-5, for feedback.")

    @model_validator(mode="after")
    def _kind_needs_fields(self) -> TaskUpdated:
        if field := missing_required_field(self.kind, self.reason, self.satisfaction):
            raise ValueError(f"{self.kind.value} needs a {field}")
        return self
