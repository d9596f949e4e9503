"""POST /v1/tasks/{task_id}/updates: a unit's progress on its own task, published to tasks.updates.

A unit may update only the tasks dispatched to it. The adapters know each task's unit from `tasks.dispatched`
(TaskOwners, filled by a follower) and refuse another unit's update at once with 403. A task they do not know
is still accepted (202): a task dispatched a few milliseconds ago may not have reached this replica's index
yet, and no read of the index can prove it never will, so "unknown" is never turned into a 404 here. The SLA
service stays the authority: it holds an update that arrives before its task and dead-letters one from a unit
that does not hold the task (reason `not-task-owner`), which also covers a replica still catching up.
"""
# No "from __future__ import annotations": FastAPI must see the Depends(unit_of) of a closure at runtime.

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from gridhub.kernel.http import problem
from schemas import TaskUpdated, UpdateKind, new_id
from schemas.base import AwareDatetime, UlidStr
from schemas.update import REQUIRED_FIELDS, missing_required_field

log = logging.getLogger(__name__)
FIELD_NEEDED_ZH = {"reason": "退回、暂停或调解不成须说明原因", "satisfaction": "回访评价须给出 1-5 分满意度"}
NOT_YOURS_ZH = "任务 {task_id} 不属于单位 {unit}，不能更新。"
UNAUTHORISED_ZH = "缺少或错误的单位密钥（Authorization: Bearer ...）。"

Publish = Callable[[str, str, bytes], Awaitable[Response | None]]


class UpdateRequest(BaseModel):
    """A unit's update on its task."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"kind": "resolved", "note": "已疏通"}],
            # What missing_required_field enforces, stated in the schema so clients and fuzzers know it.
            "allOf": [
                {
                    "if": {"properties": {"kind": {"const": kind.value}}, "required": ["kind"]},
                    "then": {"required": [field], "properties": {field: {"not": {"type": "null"}}}},
                }
                for kind, field in REQUIRED_FIELDS.items()
            ],
        },
    )

    kind: UpdateKind
    occurred_at: AwareDatetime | None = Field(None, description="When it happened; now if omitted.")

    @field_validator("occurred_at", mode="before")
    @classmethod
    def _iso_text_only(cls, value: object) -> object:
        # pydantic would also take a number as Unix time; the documented contract is ISO 8601 text.
        if value is not None and not isinstance(value, str):
            raise ValueError("应为 ISO 8601 时间文本，如 2026-11-20T10:00:00+08:00")
        return value

    note: str | None = Field(None, max_length=2000)
    reason: str | None = Field(
        None, min_length=1, max_length=500, description="Required for returned, paused and mediation-failed."
    )
    satisfaction: int | None = Field(None, ge=1, le=5, description="Citizen's rating 1-5, for feedback.")


class UpdateAccepted(BaseModel):
    """202 answer for a task update."""

    update_id: str
    task_id: str
    status: str = "accepted"


def refusal(task_id: str, unit: str, owner: str | None) -> str | None:
    """Why this unit may not update the task (Chinese), or None; an unknown owner (None) is not a refusal."""
    if owner is None or owner == unit:
        return None
    return NOT_YOURS_ZH.format(task_id=task_id, unit=unit)


def updates_router(
    unit_of: Callable[..., str | None],
    owner_of: Callable[[str], str | None],
    publish: Publish,
    updates: Counter,
) -> APIRouter:
    """The unit-updates route: authenticate the unit, refuse another unit's task, publish to tasks.updates."""
    router = APIRouter()

    @router.post(
        "/v1/tasks/{task_id}/updates",
        status_code=202,
        response_model=UpdateAccepted,
        tags=["units"],
        summary="A unit reports progress on its task (签收/联系/办结/回复/退回/暂停/恢复/回访/调解不成)",
        description="Publish a unit's update. An update on another unit's task is refused (403). A task this "
        "replica does not know yet is accepted: it may have been dispatched moments ago, and the SLA service "
        "checks the owner when the update reaches it (another unit's update is dead-lettered there).",
        responses={
            401: {"description": "Missing or wrong bearer key"},
            403: {"description": "The task was dispatched to another unit"},
        },
    )
    async def receive_update(
        task_id: UlidStr, update: UpdateRequest, unit: Annotated[str | None, Depends(unit_of)]
    ) -> Response:
        """Publish a unit's update on its own task (or on one this replica does not know yet)."""
        kind = update.kind.value
        if unit is None:
            updates.labels(kind, "unauthorised").inc()
            return problem(401, UNAUTHORISED_ZH, headers={"WWW-Authenticate": "Bearer"})
        owner = owner_of(task_id)
        if (refused := refusal(task_id, unit, owner)) is not None:
            updates.labels(kind, "forbidden").inc()
            log.warning("update refused: another unit's task", extra={"task_id": task_id, "unit": unit, "owner": owner})
            return problem(403, refused, errors=[{"field": "task_id", "message": refused}])
        if field := missing_required_field(update.kind, update.reason, update.satisfaction):
            updates.labels(kind, "rejected").inc()
            zh = FIELD_NEEDED_ZH[field]
            return problem(
                422,
                f"{kind} 需要填写 {field}（{zh}）。",
                errors=[{"field": field, "message": f"{kind} needs a {field}：{zh}"}],
            )
        message = TaskUpdated(
            update_id=new_id(),
            task_id=task_id,
            unit_code=unit,
            kind=update.kind,
            occurred_at=update.occurred_at or datetime.now(UTC),
            note=update.note,
            reason=update.reason,
            satisfaction=update.satisfaction,
        )
        failure = await publish("tasks.updates", task_id, message.to_bytes())
        if failure:
            updates.labels(kind, "unavailable").inc()
            return failure
        updates.labels(kind, "accepted").inc()
        return JSONResponse(UpdateAccepted(update_id=message.update_id, task_id=task_id).model_dump(), status_code=202)

    return router
