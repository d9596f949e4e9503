"""GET /reports/summary: the weekly bulletin's figures for the dashboard, the same as `gridhub report weekly`.

`report_router(view)` is mounted on the SLA worker's HTTP app beside /metrics, /healthz and /readyz:

    GET /reports/summary?period=2026-W47&by=unit|township|matter&roles=primary|all

`period` is an ISO week (the running week when absent), `by` the grouping (unit when absent), `roles` whether
co-operating and summoned tasks count as their units' own (primary only when absent). The answer is the
bulletin's JSON (`Summary.as_dict()`, Chinese unescaped); a bad parameter is a 422 problem+json with the field
and a Chinese message, a view still reading its topics a 503 problem with Retry-After.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from gridhub.kernel.http import problem
from schemas.task import TaskRole
from services.sla.reports import (
    ALL_ROLES,
    PRIMARY_ONLY,
    GroupBy,
    Period,
    Summary,
    check_period,
    parse_week,
    week_containing,
)

ROLE_CHOICES = {"primary": PRIMARY_ONLY, "all": ALL_ROLES}
RETRY_AFTER_S = 5


class ReportSource(Protocol):
    """What the router needs of a view: readiness and a week's summary (ReportView is one)."""

    def ready(self) -> bool:
        """Whether the view has caught up with its topics."""
        ...

    async def summary(
        self, period: Period, by: GroupBy, *, roles: frozenset[TaskRole] = PRIMARY_ONLY, now: datetime | None = None
    ) -> Summary:
        """The bulletin of a week."""
        ...


class ChineseJSONResponse(JSONResponse):
    """JSON with Chinese kept as UTF-8 (ensure_ascii=False)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def report_router(view: ReportSource, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> APIRouter:
    """The /reports routes over a view (mount with `batch_service(..., routers=[report_router(view)])`)."""
    router = APIRouter(tags=["reports"])

    @router.get(
        "/reports/summary", summary="周通报数据：按单位、乡镇或事项的回复率、按期办结率、满意度、办理时长、在办与超期"
    )
    async def reports_summary(
        request: Request,
        period: str | None = Query(None, description="ISO 周，如 2026-W47；缺省为本周"),
        by: str = Query(GroupBy.UNIT.value, description="分组：unit（单位）、township（乡镇）、matter（事项）"),
        roles: str = Query("primary", description="primary（仅主办）或 all（含配合、报到工单）"),
    ) -> Response:
        now = clock()
        errors: list[dict[str, str]] = []
        week: Period | None = None
        if period is None:
            week = week_containing(now)
        else:
            try:
                week = parse_week(period)
                check_period(week, now)
            except ValueError as exc:
                errors.append({"field": "period", "message": str(exc)})
        try:
            group = GroupBy(by)
        except ValueError:
            errors.append(
                {"field": "by", "message": f"分组 {by!r} 无效，应为 unit（单位）、township（乡镇）或 matter（事项）"}
            )
        if roles not in ROLE_CHOICES:
            errors.append(
                {"field": "roles", "message": f"roles {roles!r} 无效，应为 primary（仅主办）或 all（含配合、报到）"}
            )
        if errors:
            return problem(422, "；".join(e["message"] for e in errors), errors=errors, instance=request.url.path)
        assert week is not None
        if not view.ready():
            return problem(
                503,
                "统计数据仍在从 tasks.dispatched、tasks.status 加载，请稍后重试。",
                headers={"Retry-After": str(RETRY_AFTER_S)},
                instance=request.url.path,
            )
        result = await view.summary(week, group, roles=ROLE_CHOICES[roles], now=now)
        return ChineseJSONResponse(result.as_dict())

    return router
