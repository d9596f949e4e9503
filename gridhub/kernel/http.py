"""FastAPI helpers shared by HTTP services: RFC 9457 problem responses and the ops endpoints."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

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


PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details; `errors` lists each field with a message in Chinese.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}

# Errors any /v1 route can answer with, always as problem+json.
PROBLEM_STATUSES = {
    "400": "Body is not UTF-8 JSON",
    "401": "Missing or wrong key",
    "404": "No such resource",
    "413": "Body too large",
    "415": "Unsupported media type (photos: JPEG, PNG or WebP only)",
    "422": "Validation failed (field by field in `errors`)",
    "503": "Message bus unavailable; retry after the Retry-After header",
}


def install_problem_openapi(app: FastAPI, prefix: str = "/v1/") -> None:
    """Document every error answer of the API routes as application/problem+json, as it is sent."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["Problem"] = PROBLEM_SCHEMA
        problem_content = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for path, operations in schema.get("paths", {}).items():
            if not path.startswith(prefix):
                continue
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                for status, description in PROBLEM_STATUSES.items():
                    known = responses.get(status, {})
                    responses[status] = {
                        "description": known.get("description", description),
                        "content": problem_content,
                    }
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


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
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names only the first route on the path; a path served by several (GET and POST) has more.
            headers["Allow"] = ", ".join(allowed_methods(app, request)) or headers.get("Allow", "")
        return problem(exc.status_code, str(exc.detail), headers=headers, instance=request.url.path)


def allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """Every method some route of the app serves on the request's path (routes asked, included routers too)."""
    return [
        method
        for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in app.router.routes)
    ]


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
