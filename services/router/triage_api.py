"""The triage queue's HTTP API on the router's web server (FastAPI, beside /metrics, /healthz and /readyz).

Dispatchers authenticate with `Authorization: Bearer <key>` (`GRIDHUB_ROUTER_DISPATCHER_KEYS`):

* `GET /triage`: the open items, oldest first, with matter guess, confidence, reason and age;
  `GET /triage/{event_id}`: one item with its history.
* `POST /triage/{event_id}/claim`, `.../release`, `.../dispatch` (`{"primary", "co_operating", "matter_code",
  "note"}`): checked against this replica's view of the queue, sent to `router.commands`, and answered once the
  command comes back through the log (200 with the item, 404 or 409 problem+json when the queue's state refused
  it), or 202 if that takes longer than `GRIDHUB_ROUTER_COMMAND_WAIT_S`. A dispatch makes the queue's owner hand
  the event to its flow, which publishes the tasks with the dispatcher and note and closes the command centre's
  task. Errors are RFC 9457 problem+json with Chinese details.
"""

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gridhub.kernel.http import ProblemJSONResponse
from gridhub.kernel.keys import bearer_token, holder_of_key
from gridhub.kernel.problems import MESSAGES_ZH
from schemas import TRIAGE_KEY, ClaimTriagedEvent, DispatchTriagedEvent, ReleaseTriagedEvent
from schemas.dutylist import DutyList
from services.router import triage
from services.router.settings import RouterSettings
from services.router.triage import Refusal
from services.router.triage_stage import TriageView

TITLES_ZH = {401: "未认证：缺少或错误的调度员密钥", 404: "未找到", 409: "状态冲突", 422: "请求内容校验未通过"}
TITLES_ZH |= {400: "请求无效", 503: "服务暂不可用，请稍后重试"}
NO_KEY_ZH = "缺少或错误的调度员密钥（Authorization: Bearer ...）。"


class DispatchRequest(BaseModel):
    """A dispatcher's routing of a queued event."""

    model_config = ConfigDict(extra="forbid")

    primary: str = Field(min_length=1, max_length=40)
    co_operating: tuple[str, ...] = Field((), max_length=20)
    matter_code: str | None = Field(None, max_length=20)
    note: str | None = Field(None, max_length=500)


class ReleaseRequest(BaseModel):
    """Why a dispatcher gives an event back to the queue."""

    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(None, max_length=500)


def problem_body(status: int, detail: str, errors: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """An RFC 9457 problem with a Chinese title."""
    body: dict[str, Any] = {"type": "about:blank", "title": TITLES_ZH.get(status, "请求失败"), "status": status}
    body["detail"] = detail
    if errors:
        body["errors"] = errors
    return body


def refuse(status: int, detail: str, errors: list[dict[str, str]] | None = None) -> Response:
    """A problem+json answer (401 also names the scheme)."""
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return ProblemJSONResponse(problem_body(status, detail, errors), status_code=status, headers=headers)


def answer(status: int, body: dict[str, Any]) -> Response:
    """JSON with Chinese kept as UTF-8; a refusal from the queue becomes a problem."""
    if status >= 400:
        return refuse(status, str(body.get("detail", "")))
    return Response(json.dumps(body, ensure_ascii=False).encode(), status_code=status, media_type="application/json")


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    """Field-by-field Chinese messages of a validation error."""
    return [
        {
            "field": ".".join(str(p) for p in e["loc"]) or "(body)",
            "message": f"{MESSAGES_ZH.get(e['type'], '取值无效')}（{e['msg']}）",
        }
        for e in exc.errors()
    ]


def triage_router(
    settings: RouterSettings,
    lists: Callable[[], DutyList],
    view: TriageView,
    producer: Callable[[], AIOKafkaProducer | None],
) -> APIRouter:
    """The /triage routes of a router replica."""
    router = APIRouter(tags=["triage"])
    common = settings.common
    topic = common.topic("router.commands")

    def dispatcher_of(request: Request) -> str | None:
        header = request.headers.get("Authorization", "")
        return holder_of_key(settings.dispatcher_keys, bearer_token(header), common.mode == "dev")

    async def body_of(request: Request) -> dict[str, Any] | Response:
        raw = await request.body()
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return refuse(400, f"请求体不是有效的 UTF-8 JSON：{exc}")
        if not isinstance(data, dict):
            return refuse(422, "请求体应为 JSON 对象。", [{"field": "(body)", "message": "应为 JSON 对象"}])
        return data

    async def send(command: triage.TriageCommand) -> Response:
        out = producer()
        if out is None or not view.ready():
            return refuse(503, "分拨队列正在启动，请稍后重试。")
        waiter = view.expect(command.message_id)
        try:
            await asyncio.wait_for(out.send_and_wait(topic, command.to_bytes(), TRIAGE_KEY.encode()), 30)
            status, body = await asyncio.wait_for(asyncio.shield(waiter), settings.command_wait_s)
        except TimeoutError:
            pending = {"event_id": command.event_id, "command_id": command.message_id, "status": "pending"}
            return answer(202, pending)
        finally:
            view.forget(command.message_id)
        return answer(status, body)

    async def run_command(request: Request, event_id: str, kind: str) -> Response:
        dispatcher = dispatcher_of(request)
        if dispatcher is None:
            return refuse(401, NO_KEY_ZH)
        data = await body_of(request)
        if isinstance(data, Response):
            return data
        current = view.items.get(event_id)
        if current is None or current.state is triage.TriageState.DISPATCHED:
            return refuse(404, triage.NOT_QUEUED_ZH.format(event_id=event_id))
        now = datetime.now(UTC)
        command: triage.TriageCommand
        try:
            if kind == "claim":
                command = ClaimTriagedEvent(event_id=event_id, dispatcher=dispatcher, requested_at=now)
            elif kind == "release":
                note = ReleaseRequest.model_validate(data).note
                command = ReleaseTriagedEvent(event_id=event_id, dispatcher=dispatcher, note=note, requested_at=now)
            else:
                choice = DispatchRequest.model_validate(data)
                problems = triage.dispatch_problems(lists(), choice.matter_code, choice.primary, choice.co_operating)
                if problems:
                    return refuse(422, "派单的单位或事项不在权责清单中，见 errors。", problems)
                command = DispatchTriagedEvent(
                    event_id=event_id, dispatcher=dispatcher, requested_at=now, **choice.model_dump()
                )
        except ValidationError as exc:
            return refuse(422, "请求中有字段不符合要求，见 errors。", field_errors(exc))
        precheck = triage.apply(current, command)
        if isinstance(precheck, Refusal):
            return refuse(precheck.status, precheck.detail)
        return await send(command)

    @router.get("/triage")
    async def list_items(request: Request) -> Response:
        if dispatcher_of(request) is None:
            return refuse(401, NO_KEY_ZH)
        listed = triage.listing(list(view.items.values()), datetime.now(UTC))
        return answer(200, {"count": len(listed), "items": listed})

    @router.get("/triage/{event_id}")
    async def one_item(request: Request, event_id: str) -> Response:
        if dispatcher_of(request) is None:
            return refuse(401, NO_KEY_ZH)
        item = view.items.get(event_id)
        if item is None:
            return refuse(404, triage.NOT_QUEUED_ZH.format(event_id=event_id))
        return answer(200, item.model_dump(mode="json"))

    @router.post("/triage/{event_id}/claim")
    async def claim(request: Request, event_id: str) -> Response:
        return await run_command(request, event_id, "claim")

    @router.post("/triage/{event_id}/release")
    async def release(request: Request, event_id: str) -> Response:
        return await run_command(request, event_id, "release")

    @router.post("/triage/{event_id}/dispatch")
    async def dispatch(request: Request, event_id: str) -> Response:
        return await run_command(request, event_id, "dispatch")

    return router
