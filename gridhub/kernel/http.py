"""FastAPI helpers shared by HTTP services: RFC 9457 problem responses and the ops endpoints."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException as StarletteHTTPException

from gridhub.kernel.health import Health
from gridhub.kernel.metrics import CONTENT_TYPE_LATEST, render
from gridhub.kernel.problems import MESSAGES_ZH

PROBLEM_JSON = "application/problem+json"

TITLES_ZH = {
    400: "请求无效",
    401: "未认证：缺少或错误的密钥",
    403: "无权操作",
    404: "未找到",
    405: "不支持的请求方法",
    413: "请求体过大",
    415: "不支持的内容类型",
    422: "请求内容校验未通过",
    503: "服务暂不可用，请稍后重试",
}


class ProblemJSONResponse(JSONResponse):
    """JSON response with the problem+json media type; Chinese kept as UTF-8."""

    media_type = PROBLEM_JSON

    def render(self, content: Any) -> bytes:
        import json

        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def problem(
    status: int,
    detail: str,
    *,
    errors: list[dict[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
    instance: str | None = None,
) -> ProblemJSONResponse:
    """An RFC 9457 problem response with a Chinese title."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": TITLES_ZH.get(status, "请求失败"),
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    return ProblemJSONResponse(body, status_code=status, headers=headers)


def install_problem_handlers(app: FastAPI) -> None:
    """Turn validation and HTTP errors into problem+json with field-level Chinese messages."""

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errors = []
        for error in exc.errors():
            loc = [str(p) for p in error.get("loc", ()) if p not in ("body",)]
            zh = MESSAGES_ZH.get(str(error.get("type")), "取值无效")
            errors.append({"field": ".".join(loc) or "(body)", "message": f"{zh}（{error.get('msg')}）"})
        return problem(422, "请求中有字段不符合要求，见 errors。", errors=errors, instance=request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        return problem(exc.status_code, str(exc.detail), headers=exc.headers, instance=request.url.path)


def ops_router(registry: CollectorRegistry, health: Health) -> APIRouter:
    """/metrics, /healthz and /readyz."""
    router = APIRouter(tags=["operations"])

    @router.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(render(registry), media_type=CONTENT_TYPE_LATEST)

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": health.service}

    @router.get("/readyz")
    async def readyz() -> Response:
        ready, checks = health.readiness()
        return JSONResponse(
            {"ready": ready, "checks": checks, "service": health.service}, status_code=200 if ready else 503
        )

    return router
