"""POST /v1/tasks/{task_id}/summons: a township centre summons county departments onto its task (吹哨报到).

乡镇吹哨、部门报到: the township centre holding a task names the departments it needs; each gets a task of its
own for the same event (role `summoned`) from the router. Authenticated like a unit's update (bearer key);
only a township centre may summon, only onto a task it holds (refused with 403 when the task owners give it
to another unit; a task this replica does not know yet is accepted, and the router checks the holder again),
and only departments of the duty list (422). Published as `SummonDepartments` on `tasks.summons`.
"""
# No "from __future__ import annotations": FastAPI must see the Depends(unit_of) of a closure at runtime.

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ConfigDict, Field

from gridhub.kernel.http import problem
from gridhub.kernel.metrics import ServiceMetrics
from schemas import SummonDepartments
from schemas.base import UlidStr
from schemas.dutylist import DutyList

log = logging.getLogger(__name__)
Publish = Callable[[str, str, bytes], Awaitable[Response | None]]


class SummonsRequest(BaseModel):
    """The departments a township centre summons, and what it needs from them."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"departments": ["PA-ZJJ", "PA-ZHZF"], "note": "小区违建涉及规划和执法，请到场"}]
        },
    )

    departments: list[str] = Field(min_length=1, max_length=20, description="Unit codes of county departments.")
    note: str | None = Field(None, max_length=500, description="What the township needs from them.")


class SummonsAccepted(BaseModel):
    """202 answer: the summons is on the bus; the router creates the departments' tasks."""

    command_id: str
    task_id: str
    departments: list[str]
    status: str = "accepted"


def summons_router(
    duty: DutyList,
    unit_of: Callable[..., str | None],
    owner_of: Callable[[str], str | None],
    publish: Publish,
    registry: CollectorRegistry,
) -> APIRouter:
    """The summons route: a township centre, its own task, departments of the list; published to tasks.summons."""
    router = APIRouter()
    counted = ServiceMetrics("adapters", registry).counter("summons", "Summons received, by outcome.", ("outcome",))
    units = {u.code: u for u in duty.units}

    @router.post(
        "/v1/tasks/{task_id}/summons",
        status_code=202,
        response_model=SummonsAccepted,
        tags=["units"],
        summary="A township centre summons county departments onto its task (乡镇吹哨、部门报到)",
        description="Each named county department gets its own task for the same event (role summoned). Only a "
        "township centre, only on a task it holds (403 otherwise; a task this replica does not know yet is "
        "accepted and checked by the router), only departments of the duty list (422).",
        responses={
            401: {"description": "Missing or wrong bearer key"},
            403: {"description": "Not a township centre, or the task is another unit's"},
            422: {"description": "Unknown departments, or units that are not county departments"},
        },
    )
    async def summon(
        task_id: UlidStr, summons: SummonsRequest, unit: Annotated[str | None, Depends(unit_of)]
    ) -> Response:
        """Publish a township centre's summons of departments onto its own task."""
        if unit is None:
            counted.labels("unauthorised").inc()
            return problem(
                401, "缺少或错误的单位密钥（Authorization: Bearer ...）。", headers={"WWW-Authenticate": "Bearer"}
            )
        summoner = units.get(unit)
        if summoner is None or summoner.kind != "township-centre":
            counted.labels("forbidden").inc()
            return problem(403, f"只有乡镇综治中心可以吹哨召集部门，单位 {unit} 不是乡镇综治中心。")
        owner = owner_of(task_id)
        if owner is not None and owner != unit:
            counted.labels("forbidden").inc()
            detail = f"任务 {task_id} 不属于单位 {unit}，不能就此吹哨。"
            return problem(403, detail, errors=[{"field": "task_id", "message": detail}])
        errors = [
            {"field": f"departments.{i}", "message": f"{code} 不是权责清单中的县直部门"}
            for i, code in enumerate(summons.departments)
            if code not in units or units[code].kind != "county-department"
        ]
        if errors:
            counted.labels("rejected").inc()
            return problem(422, "被召集的单位须是权责清单中的县直部门，见 errors。", errors=errors)
        departments = list(dict.fromkeys(summons.departments))
        message = SummonDepartments(
            task_id=task_id,
            unit_code=unit,
            departments=tuple(departments),
            note=summons.note,
            requested_at=datetime.now(UTC),
        )
        failure = await publish("tasks.summons", task_id, message.to_bytes())
        if failure:
            counted.labels("unavailable").inc()
            return failure
        counted.labels("accepted").inc()
        log.info("summons", extra={"task_id": task_id, "unit": unit, "departments": departments})
        body = SummonsAccepted(command_id=message.message_id, task_id=task_id, departments=departments)
        return JSONResponse(body.model_dump(), status_code=202)

    return router
