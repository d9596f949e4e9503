"""Open311 GeoReport v2 for the 12345 channel: services from the duty list, file a request, follow its status."""
# No "from __future__ import annotations": FastAPI reads the Annotated parameters of these closures at runtime.

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from gridhub.kernel.http import PROBLEM_JSON, TITLES_ZH, ProblemJSONResponse
from schemas import Channel, new_id
from schemas.dutylist import DutyList, Matter
from services.adapters.headers import SignatureHeader, TimestampHeader
from services.adapters.open311_request import (
    IDEMPOTENCY_KEY,
    STATUS_LIST,
    InvalidRequest,
    check_request,
    error,
    form_fields,
    parse_time,
    request_schema,
    service_request_id,
    work_order,
)
from services.adapters.photos_api import SourceCheck
from services.adapters.request_status import Stage
from services.adapters.request_view import RequestSnapshot, RequestView
from services.adapters.submission import Submit

PREFIX = "/open311/v2"
FORM = "application/x-www-form-urlencoded"
CST = timezone(timedelta(hours=8), "CST")
DEFAULT_WINDOW = timedelta(days=90)  # GeoReport: without dates, the last 90 days
MAX_RESULTS = 1000
MAX_IDS = 200
GROUP_ZH = {"township": "乡镇（街道）属地办理", "county": "县直部门办理", "command-centre": "县综治中心办理"}
NOTICE_ZH = {
    "hours": "受理后派单至责任单位，{amount} 小时内办结",
    "working-days": "受理后派单至责任单位，{amount} 个工作日内办结",
}
STATUS_EN = {
    400: "the body is not UTF-8 form data or JSON",
    401: "api_key is missing or invalid",
    404: "not found",
    413: "the body is too large",
    415: "the body must be application/x-www-form-urlencoded or application/json",
    422: "a field is missing or invalid",
    503: "temporarily unavailable, retry after Retry-After seconds",
}


class Open311Service(BaseModel):
    """One service (a matter of the duty list)."""

    service_code: str
    service_name: str
    description: str
    metadata: bool = False
    type: Literal["realtime"] = "realtime"
    keywords: str
    group: str


class Open311ServiceDefinition(BaseModel):
    """A service's extra attributes: none, every matter takes the standard fields."""

    service_code: str
    attributes: list[dict[str, Any]] = []


class Open311Created(BaseModel):
    """The answer to a new request: its id (the 12345 order number) and what happens next."""

    service_request_id: str
    service_notice: str | None
    account_id: str | None = None


class Open311Request(BaseModel):
    """A request's status; no personal data. detailed_status is the 12345 stage (受理…回访)."""

    service_request_id: str
    status: Literal["open", "closed"]
    status_notes: str
    service_name: str | None
    service_code: str | None
    description: str | None
    agency_responsible: str | None
    service_notice: str | None
    requested_datetime: datetime
    updated_datetime: datetime
    expected_datetime: datetime | None
    address: str | None
    address_id: None = None
    zipcode: None = None
    lat: float | None
    long: float | None
    media_url: None = Field(None, description="Not kept yet: the 12345 work order has no attachment field.")
    detailed_status: str = Field(description="受理/派单/签收/办理/回复/办结/回访")
    detailed_status_code: Stage
    event_id: str = Field(description="The hub's event id (what the hotline tells the citizen).")


def _problem_doc(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def open311_problem(
    status: int, detail: str, errors: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None
) -> ProblemJSONResponse:
    """RFC 9457 problem+json whose `errors` items also carry GeoReport's `code` and `description`."""
    body: dict[str, Any] = {"type": "about:blank", "title": TITLES_ZH.get(status, "请求失败"), "status": status}
    body["detail"] = detail
    body["errors"] = errors or [error("(request)", detail, STATUS_EN.get(status, "request failed"), status)]
    return ProblemJSONResponse(body, status_code=status, headers=headers)


def services_of(duty: DutyList) -> list[Open311Service]:
    """Every matter of the duty list as an Open311 service."""
    return [
        Open311Service(
            service_code=m.code,
            service_name=m.name,
            description=m.description,
            keywords=",".join(sorted(m.keywords, key=lambda w: (-m.keywords[w], w))),
            group=GROUP_ZH[m.tier.value],
        )
        for m in duty.matters
    ]


def service_notice(duty: DutyList, matter: Matter | None) -> str | None:
    """What the citizen can expect: the matter's time limit to 办结."""
    if matter is None:
        return None
    term = duty.deadline_classes[matter.deadline_class]["resolve"]
    return NOTICE_ZH[term.unit.value].format(amount=term.amount)


def _shown(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(CST).isoformat()


def request_out(snapshot: RequestSnapshot, duty: DutyList) -> dict[str, Any]:
    """A request as GeoReport shows it (no personal data: the view holds none)."""
    life = snapshot.life
    matter = duty.matter(snapshot.matter_code) if snapshot.matter_code else None
    return {
        "service_request_id": snapshot.service_request_id,
        "status": life.open311_status,
        "status_notes": life.notes,
        "service_name": matter.name if matter else None,
        "service_code": snapshot.matter_code,
        "description": snapshot.description,
        "agency_responsible": life.agency,
        "service_notice": service_notice(duty, matter),
        "requested_datetime": _shown(snapshot.requested_at),
        "updated_datetime": _shown(life.updated_at),
        "expected_datetime": _shown(life.expected_at),
        "address": snapshot.address,
        "address_id": None,
        "zipcode": None,
        "lat": snapshot.lat,
        "long": snapshot.lon,
        "media_url": None,
        "detailed_status": life.stage_zh,
        "detailed_status_code": life.stage.value,
        "event_id": snapshot.event_id,
    }


def open311_router(
    duty: DutyList,
    view: RequestView,
    authenticate_source: SourceCheck,
    submit: Submit,
    max_body_bytes: int,
    now: Callable[[], datetime] = lambda: datetime.now(CST),
) -> APIRouter:
    """The GeoReport v2 routes under /open311/v2 (JSON only)."""
    router = APIRouter(prefix=PREFIX, tags=["open311"])
    codes = frozenset(m.code for m in duty.matters)
    catalogue = [s.model_dump() for s in services_of(duty)]

    @router.get(
        "/services.json", response_model=list[Open311Service], summary="The services (matters of the duty list)"
    )
    async def services() -> Response:
        """Every matter of the county's duty list, as GeoReport services; public."""
        return JSONResponse(catalogue)

    @router.get(
        "/services/{service_code}.json",
        response_model=Open311ServiceDefinition,
        summary="One service's definition (no extra attributes)",
        responses={404: _problem_doc("No such service_code"), 422: _problem_doc("Not used")},
    )
    async def service_definition(service_code: Annotated[str, Path(description="A service_code.")]) -> Response:
        """The service definition: every service takes the standard fields only; public."""
        if service_code not in codes:
            return open311_problem(404, f"没有服务代码 {service_code}。")
        return JSONResponse(Open311ServiceDefinition(service_code=service_code).model_dump())

    @router.post(
        "/requests.json",
        status_code=202,
        response_model=list[Open311Created],
        summary="File a service request (form-encoded as GeoReport says, or JSON)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    media: {"schema": request_schema(sorted(codes))}
                    for media in ("application/x-www-form-urlencoded", "application/json")
                },
            }
        },
        responses={
            200: {
                "description": "A repeat of a request already filed (same Idempotency-Key)",
                "model": list[Open311Created],
            },
            400: _problem_doc("Body is not UTF-8 JSON or form data"),
            401: _problem_doc("Missing or wrong api_key"),
            413: _problem_doc("Body too large"),
            415: _problem_doc("Neither form-encoded nor JSON"),
            422: _problem_doc("A field is missing or wrong (each in `errors`, with GeoReport code and description)"),
            503: _problem_doc("Message bus unavailable; retry after the Retry-After header"),
        },
    )
    async def create(
        request: Request,
        x_api_key: Annotated[str | None, Header(description="The 12345 API key, instead of api_key.")] = None,
        idempotency_key: Annotated[
            str | None,
            Header(
                description="Client token: the same key (with the same device_id and account_id) gives the same "
                "service_request_id, and a retried POST is not filed twice.",
                json_schema_extra={"pattern": IDEMPOTENCY_KEY.pattern},
            ),
        ] = None,
        x_timestamp: TimestampHeader = None,
        x_signature: SignatureHeader = None,
    ) -> Response:
        """Check the request, publish it as a 12345 work order on the shared submit path, answer its id."""
        fields = await _fields(request, max_body_bytes)
        if isinstance(fields, Response):
            return fields
        body_key = fields.get("api_key")
        key = x_api_key or (body_key if isinstance(body_key, str) else None)  # the header wins when both are sent
        refused = await authenticate_source(Channel.HOTLINE_12345, request, key, x_timestamp, x_signature)
        if refused is not None:
            return open311_problem(
                401,
                "缺少或错误的 api_key（或 X-Api-Key），或签名无效。",
                [error("api_key", "缺少或错误的 api_key", "api_key is missing or invalid", 401)],
                headers={"WWW-Authenticate": "ApiKey"},
            )
        if idempotency_key is not None and not IDEMPOTENCY_KEY.fullmatch(idempotency_key):
            return open311_problem(
                422,
                "Idempotency-Key 应为 1-255 个可见 ASCII 字符。",
                [error("Idempotency-Key", "应为 1-255 个可见 ASCII 字符", "Idempotency-Key is not valid")],
            )
        try:
            checked = check_request(fields, codes, from_form=_is_form(request))
        except InvalidRequest as exc:
            return open311_problem(422, "服务请求中有字段不符合要求，见 errors。", exc.errors)
        order_no = service_request_id(new_id(), idempotency_key, checked.device_id, checked.account_id)
        outcome = await submit(Channel.HOTLINE_12345, order_no, work_order(checked, order_no, now()))
        if isinstance(outcome, Response):  # the bus is unavailable: the shared path's problem, in this API's shape
            retry = {"Retry-After": outcome.headers["retry-after"]} if "retry-after" in outcome.headers else None
            return open311_problem(outcome.status_code, _detail_of(outcome), headers=retry)
        answer = Open311Created(
            service_request_id=order_no, service_notice=service_notice(duty, duty.matter(checked.service_code))
        )
        return JSONResponse([answer.model_dump()], status_code=200 if outcome.duplicate else 202)

    @router.get(
        "/requests.json",
        response_model=list[Open311Request],
        summary="Requests filed through Open311, newest first (at most 1,000)",
        responses={422: _problem_doc("A query parameter is wrong")},
    )
    async def requests(
        service_request_id: Annotated[
            str | None, Query(description="Comma-separated ids; when given, the other parameters are ignored.")
        ] = None,
        service_code: Annotated[str | None, Query(description="Comma-separated service codes.")] = None,
        status: Annotated[
            str | None, Query(description="open, closed, or both.", json_schema_extra={"pattern": STATUS_LIST.pattern})
        ] = None,
        start_date: Annotated[
            str | None,
            Query(description="Requested on or after (RFC 3339).", json_schema_extra={"format": "date-time"}),
        ] = None,
        end_date: Annotated[
            str | None,
            Query(description="Requested on or before (RFC 3339).", json_schema_extra={"format": "date-time"}),
        ] = None,
    ) -> Response:
        """Open311 requests by id, or by date range (default: the last 90 days), status and service; public."""
        errors = []
        if status is not None and not STATUS_LIST.fullmatch(status):
            errors.append(error("status", "应为 open、closed 或 open,closed", "status must be open and/or closed"))
        times: dict[str, datetime | None] = {}
        for name, text in (("start_date", start_date), ("end_date", end_date)):
            times[name] = None if text is None else parse_time(text)
            if text is not None and times[name] is None:
                errors.append(
                    error(name, "时间格式错误，应为 RFC 3339（如 2026-11-20T09:30:00+08:00）", f"{name} is not valid")
                )
        if errors:
            return open311_problem(422, "查询参数不符合要求，见 errors。", errors)
        if service_request_id is not None:  # GeoReport: ids override every other parameter (still checked above)
            ids = list(dict.fromkeys(i.strip() for i in service_request_id.split(",") if i.strip()))[:MAX_IDS]
            found = [s for s in map(view.get, ids) if s is not None]
            return JSONResponse([request_out(s, duty) for s in found])
        start, end = times["start_date"], times["end_date"]
        if start is None and end is None:
            start = now() - DEFAULT_WINDOW
        found = view.search(
            statuses=set(status.split(",")) if status else set(),
            matter_codes={c.strip() for c in service_code.split(",")} if service_code else set(),
            start=start,
            end=end,
            limit=MAX_RESULTS,
        )
        return JSONResponse([request_out(s, duty) for s in found])

    @router.get(
        "/requests/{service_request_id}.json",
        response_model=list[Open311Request],
        summary="One request's status (受理→派单→签收→办理→回复→办结→回访)",
        responses={
            404: _problem_doc("No such request"),
            422: _problem_doc("Not used"),
            503: _problem_doc("The status view is still loading; retry after the Retry-After header"),
        },
    )
    async def one_request(
        service_request_id: Annotated[str, Path(description="The id POST requests.json answered.")],
    ) -> Response:
        """One request, as a one-element array (GeoReport's shape); public, without personal data."""
        snapshot = view.get(service_request_id)
        if snapshot is not None:
            return JSONResponse([request_out(snapshot, duty)])
        if view.catching_up:
            return open311_problem(503, "状态视图正在加载，请稍后重试。", headers={"Retry-After": "5"})
        return open311_problem(404, f"没有服务请求 {service_request_id}（编号错误，或尚未受理）。")

    return router


def _detail_of(response: Response) -> str:
    try:
        return str(json.loads(bytes(response.body))["detail"])
    except (ValueError, KeyError, TypeError):
        return "服务暂不可用，请稍后重试。"


def _is_form(request: Request) -> bool:
    return request.headers.get("content-type", "").split(";")[0].strip().lower() == FORM


async def _fields(request: Request, max_body_bytes: int) -> dict[str, Any] | Response:
    """The POST body as fields, from form-encoded or JSON; a problem when it is neither, too large or broken."""
    body = await request.body()
    if len(body) > max_body_bytes:
        return open311_problem(413, f"请求体超过 {max_body_bytes} 字节。")
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == FORM:
        try:
            return form_fields(body)
        except ValueError as exc:
            return open311_problem(400, str(exc))
    if media == "application/json":
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            return open311_problem(400, f"请求体不是有效的 UTF-8 JSON：{exc}")
        if not isinstance(data, dict):
            return open311_problem(
                422, "请求体应为 JSON 对象。", [error("(body)", "应为 JSON 对象", "body must be an object")]
            )
        return data
    return open311_problem(415, "请求体应为 application/x-www-form-urlencoded（GeoReport）或 application/json。")
