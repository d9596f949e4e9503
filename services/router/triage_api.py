"""The triage queue's agent and its HTTP API on the router's web server (Faust web).

Every message on `router.commands` is keyed `triage`, so the whole queue is one partition with one owner among
the router replicas: its agent `triage-queue` applies the commands in order to the table `triage-queue`
(event id → `TriageItem`, all written from that one partition, so all held by the owner), which makes the
state machine (`triage.py`) race-free across dispatchers and replicas.

HTTP (dispatchers authenticate with `Authorization: Bearer <key>`, `GRIDHUB_ROUTER_DISPATCHER_KEYS`):

* `GET /triage`: the open items, oldest first, with matter guess, confidence, reason and age;
  `GET /triage/{event_id}`: one item with its history.
* `POST /triage/{event_id}/claim`, `.../release`, `.../dispatch` (`{"primary", "co_operating", "matter_code",
  "note"}`): checked against the table, sent as a command, answered once the agent has applied it (200 with
  the item, 404 or 409 problem+json when its state refuses it), or 202 if that takes longer than
  `GRIDHUB_ROUTER_COMMAND_WAIT_S`. A dispatch hands the event to the flows (`flows.ManualDispatch`), which
  publish the tasks with the dispatcher and note in their decision and close the command centre's task.

A request reaching a replica that does not own the queue is forwarded to the one that does (body included;
Faust's own table_route forwards no body). Errors are RFC 9457 problem+json with Chinese details.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import faust
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from yarl import URL

from gridhub.kernel.metrics import ServiceMetrics
from gridhub.kernel.problems import MESSAGES_ZH, describe_validation_error
from gridhub.kernel.streams import DeadLetters, bytes_topic
from schemas import (
    TRIAGE_KEY,
    ClaimTriagedEvent,
    DispatchTriagedEvent,
    QueueForTriage,
    ReleaseTriagedEvent,
    TaskRole,
)
from schemas.catalogue import PARTITIONS
from schemas.command import TRIAGE_COMMANDS
from schemas.dutylist import DutyList
from services.router import triage
from services.router.flows import ManualDispatch
from services.router.flows_wiring import Flows
from services.router.settings import RouterSettings
from services.router.tasks import task_id_for
from services.router.triage import Refusal, TriageItem

log = logging.getLogger(__name__)
FORWARDED = "X-GridHub-Forwarded"
TITLES_ZH = {401: "未认证：缺少或错误的调度员密钥", 404: "未找到", 409: "状态冲突", 422: "请求内容校验未通过"}
TITLES_ZH |= {400: "请求无效", 503: "服务暂不可用，请稍后重试"}
Result = tuple[int, dict[str, Any]]


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


def install_triage(
    app: faust.App,
    settings: RouterSettings,
    duty: DutyList,
    dead_letters: DeadLetters,
    flows: Flows,
    registry: CollectorRegistry,
) -> None:
    """Add the triage-queue agent and the /triage pages to the router app."""
    common = settings.common
    counted = ServiceMetrics("router", registry).counter(
        "triage_commands", "Triage queue commands applied, by kind and outcome.", ("command", "outcome")
    )
    commands = bytes_topic(app, common, "router.commands")
    queue_table = app.Table("triage-queue", default=None, key_type=bytes, partitions=PARTITIONS)
    waiters: dict[str, asyncio.Future[Result]] = {}

    def item_of(event_id: str) -> TriageItem | None:
        raw = queue_table.get(event_id.encode())
        return TriageItem.model_validate(raw) if raw is not None else None

    def answer(command_id: str, result: Result) -> None:
        waiter = waiters.pop(command_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(result)

    def done(item: TriageItem, command: triage.TriageCommand) -> dict[str, Any]:
        body = item.model_dump(mode="json")
        if isinstance(command, DispatchTriagedEvent):
            round_no = item.round + 1
            roles = [(command.primary, TaskRole.PRIMARY)] + [(c, TaskRole.CO_OPERATING) for c in command.co_operating]
            body["tasks"] = [
                {"task_id": task_id_for(item.event_id, unit, role, round_no), "unit_code": unit, "role": role.value}
                for unit, role in roles
            ]
        return body

    @app.agent(commands, name="triage-queue")
    async def triage_queue(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            try:
                command = TRIAGE_COMMANDS.validate_json(event.message.value)
            except ValidationError as exc:
                await dead_letters.event(event, "malformed-command", describe_validation_error(exc))
                continue
            key = command.event_id.encode()
            current = item_of(command.event_id)
            if isinstance(command, QueueForTriage):
                if (queued := triage.queue(current, command)) is not None:
                    queue_table[key] = queued.model_dump(mode="json")
                counted.labels(command.kind, "applied" if queued else "replay").inc()
                now = datetime.now(UTC)
                items = [TriageItem.model_validate(v) for v in queue_table.values() if v is not None]
                for event_id in triage.expired(items, now):
                    del queue_table[event_id.encode()]
                continue
            result = triage.apply(current, command)
            if isinstance(result, Refusal):
                counted.labels(command.kind, "refused").inc()
                answer(command.message_id, (result.status, problem_body(result.status, result.detail)))
                log.info("triage refused", extra={"event_id": command.event_id, "detail": result.detail})
                continue
            queue_table[key] = result.model_dump(mode="json")
            if isinstance(command, DispatchTriagedEvent) and current is not None:
                await flows.send(command.event_id, ManualDispatch(round=current.round + 1, command=command))
            counted.labels(command.kind, "applied").inc()
            answer(command.message_id, (200, done(result, command)))
            log.info("triage", extra={"event_id": command.event_id, "command": command.kind, "by": command.dispatcher})

    # --- HTTP ---------------------------------------------------------------------------------------

    def respond(view: View, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
        content_type = "application/problem+json" if status >= 400 else "application/json"
        data = json.dumps(body, ensure_ascii=False).encode()
        return view.bytes(data, content_type=content_type, status=status, headers=headers)

    def refuse(view: View, status: int, detail: str, errors: list[dict[str, str]] | None = None) -> Response:
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return respond(view, status, problem_body(status, detail, errors), headers)

    async def on_owner(view: View, request: Request, handle: Callable[[], Awaitable[Response]]) -> Response:
        """Run the handler on the replica that owns the queue; forward the request there if that is another."""
        if request.headers.get(FORWARDED):
            return await handle()
        try:
            owner = app.router.key_store(queue_table.name, TRIAGE_KEY.encode())
        except KeyError:
            return refuse(view, 503, "分拨队列正在分配到路由实例，请稍后重试。")
        here = URL(str(app.conf.canonical_url))
        if (owner.host, owner.port) == (here.host, here.port):
            return await handle()
        target = URL(str(request.url)).with_host(owner.host or "").with_port(owner.port)
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
        body = await view.read_request_content(request)
        log.debug("triage request forwarded", extra={"owner": str(owner), "path": str(request.url.path)})
        async with app.http_client.request(
            request.method, target, headers=headers | {FORWARDED: "1"}, data=body
        ) as answer_:
            return view.bytes(await answer_.read(), content_type=answer_.content_type, status=answer_.status)

    def dispatcher_of(request: Request) -> str | None:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else None
        return triage.dispatcher_for_key(settings.dispatcher_keys, token, common.mode == "dev")

    async def body_of(view: View, request: Request) -> dict[str, Any] | Response:
        raw = await view.read_request_content(request)
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return refuse(view, 400, f"请求体不是有效的 UTF-8 JSON：{exc}")
        if not isinstance(data, dict):
            return refuse(view, 422, "请求体应为 JSON 对象。", [{"field": "(body)", "message": "应为 JSON 对象"}])
        return data

    def field_errors(exc: ValidationError) -> list[dict[str, str]]:
        return [
            {
                "field": ".".join(str(p) for p in e["loc"]) or "(body)",
                "message": f"{MESSAGES_ZH.get(e['type'], '取值无效')}（{e['msg']}）",
            }
            for e in exc.errors()
        ]

    async def command_answer(view: View, command: triage.TriageCommand) -> Response:
        waiter: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        waiters[command.message_id] = waiter
        try:
            await commands.send(key=TRIAGE_KEY.encode(), value=command.to_bytes())
            status, body = await asyncio.wait_for(waiter, settings.command_wait_s)
        except TimeoutError:
            pending = {"event_id": command.event_id, "command_id": command.message_id, "status": "pending"}
            return respond(view, 202, pending)
        finally:
            waiters.pop(command.message_id, None)
        return respond(view, status, body)

    async def run_command(view: View, request: Request, event_id: str, kind: str) -> Response:
        dispatcher = dispatcher_of(request)
        if dispatcher is None:
            return refuse(view, 401, "缺少或错误的调度员密钥（Authorization: Bearer ...）。")
        data = await body_of(view, request)
        if isinstance(data, Response):
            return data
        current = item_of(event_id)
        if current is None or current.state is triage.TriageState.DISPATCHED:
            return refuse(view, 404, triage.NOT_QUEUED_ZH.format(event_id=event_id))
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
                problems = triage.dispatch_problems(duty, choice.matter_code, choice.primary, choice.co_operating)
                if problems:
                    return refuse(view, 422, "派单的单位或事项不在权责清单中，见 errors。", problems)
                command = DispatchTriagedEvent(
                    event_id=event_id, dispatcher=dispatcher, requested_at=now, **choice.model_dump()
                )
        except ValidationError as exc:
            return refuse(view, 422, "请求中有字段不符合要求，见 errors。", field_errors(exc))
        precheck = triage.apply(current, command)
        if isinstance(precheck, Refusal):
            return refuse(view, precheck.status, precheck.detail)
        return await command_answer(view, command)

    @app.page("/triage")
    class TriageList(View):
        async def get(self, request: Request) -> Response:
            async def handle() -> Response:
                if dispatcher_of(request) is None:
                    return refuse(self, 401, "缺少或错误的调度员密钥（Authorization: Bearer ...）。")
                items = [TriageItem.model_validate(v) for v in queue_table.values() if v is not None]
                listed = triage.listing(items, datetime.now(UTC))
                return respond(self, 200, {"count": len(listed), "items": listed})

            return await on_owner(self, request, handle)

    @app.page("/triage/{event_id}")
    class TriageEntry(View):
        async def get(self, request: Request, event_id: str) -> Response:
            async def handle() -> Response:
                if dispatcher_of(request) is None:
                    return refuse(self, 401, "缺少或错误的调度员密钥（Authorization: Bearer ...）。")
                item = item_of(event_id)
                if item is None:
                    return refuse(self, 404, triage.NOT_QUEUED_ZH.format(event_id=event_id))
                return respond(self, 200, item.model_dump(mode="json"))

            return await on_owner(self, request, handle)

    def command_page(kind: str) -> None:
        @app.page(f"/triage/{{event_id}}/{kind}", name=f"triage-{kind}")
        class TriageCommandPage(View):
            async def post(self, request: Request, event_id: str) -> Response:
                return await on_owner(self, request, lambda: run_command(self, request, event_id, kind))

    for kind in ("claim", "release", "dispatch"):
        command_page(kind)
