"""POST <channel>/batch: up to N reports of one JSON channel in one request, answered item by item."""
# No "from __future__ import annotations": FastAPI must see the Header() annotations of the closures at runtime.

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import Counter
from pydantic import BaseModel, Field

from gridhub.kernel.http import TITLES_ZH, problem
from schemas import Channel
from services.adapters.channels import SOURCE_ID_RULE_ZH, TOO_DEEP_ZH, JsonChannel, too_deep
from services.adapters.headers import ApiKeyHeader, SignatureHeader, TimestampHeader
from services.adapters.settings import AdaptersSettings
from services.adapters.submission import Submit, Submitted

SourceCheck = Callable[[Channel, Request, str | None, str | None, str | None], Awaitable[Response | None]]
ItemStatus = Literal["accepted", "duplicate", "rejected", "failed"]


class ItemProblem(BaseModel):
    """Why one item was not taken: RFC 9457 problem details, in Chinese."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[dict[str, str]] | None = None


class BatchItem(BaseModel):
    """The outcome of one item, at its position in the request."""

    index: int = Field(description="Position of the item in the request, from 0.")
    status: ItemStatus = Field(
        description="accepted: new, on the bus (202 alone); duplicate: already known, same event id (200 alone); "
        "rejected: fix the item before sending it again; failed: the bus was unavailable, send the item again."
    )
    source_id: str | None = Field(None, description="The item's own id, when it had a valid one.")
    event_id: str | None = Field(None, description="The event id the citizen is told (accepted and duplicate).")
    problem: ItemProblem | None = Field(None, description="Why the item was rejected or failed.")


class BatchResult(BaseModel):
    """200 answer: one result per item, in request order, and the counts of each status."""

    source: str
    accepted: int
    duplicate: int
    rejected: int
    failed: int
    items: list[BatchItem]


def item_problem(status: int, detail: str, field: str | None = None, message: str = "") -> dict[str, Any]:
    """The problem details of one item, shaped like a whole-request problem+json body."""
    body: dict[str, Any] = {"type": "about:blank", "title": TITLES_ZH.get(status, "请求失败"), "status": status}
    body["detail"] = detail
    if field is not None:
        body["errors"] = [{"field": field, "message": message}]
    return body


def parse_batch(body: bytes, max_items: int, max_bytes: int) -> list[dict[str, Any]] | Response:
    """The request's items (JSON objects), or the problem+json that refuses the whole request."""
    if len(body) > max_bytes:
        return problem(413, f"请求体超过 {max_bytes} 字节，请分批发送。")
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        return problem(400, f"请求体不是有效的 UTF-8 JSON：{exc}")
    not_array = [{"field": "(body)", "message": "应为 JSON 数组，每个元素是一条报告"}]
    if not isinstance(data, list):
        return problem(422, "请求体应为 JSON 数组。", errors=not_array)
    if not data:
        return problem(422, "批量请求中没有报告。", errors=[{"field": "(body)", "message": "至少 1 条"}])
    if len(data) > max_items:
        return problem(
            422,
            f"一次最多 {max_items} 条，本次 {len(data)} 条，请分批发送。",
            errors=[{"field": "(body)", "message": f"最多 {max_items} 条"}],
        )
    # A structural error is the sender's bug, not one item's content: the whole request is refused.
    objects: list[dict[str, Any]] = []
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            return problem(
                422, f"第 {index} 条不是 JSON 对象。", errors=[{"field": f"[{index}]", "message": "应为 JSON 对象"}]
            )
        objects.append(item)
    return objects


def check_item(spec: JsonChannel, item: dict[str, Any], max_item_bytes: int | None) -> str | dict[str, Any]:
    """The item's own id, or the problem that rejects it (max_item_bytes None: no item can be too large)."""
    source_id = spec.source_id_in(item)
    if source_id is None:
        return item_problem(422, spec.missing_id_zh, spec.id_field, SOURCE_ID_RULE_ZH)
    if too_deep(item):
        return item_problem(400, f"这一条的 {TOO_DEEP_ZH}。", "(item)", TOO_DEEP_ZH)
    if max_item_bytes is not None and len(json.dumps(item, ensure_ascii=False).encode()) > max_item_bytes:
        return item_problem(413, f"这一条超过 {max_item_bytes} 字节（与单条接口的上限相同）。")
    return source_id


def summarise(source: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    """The 200 body: the items in order and how many have each status."""
    counts = {status: 0 for status in ("accepted", "duplicate", "rejected", "failed")}
    for result in results:
        counts[result["status"]] += 1
    return {"source": source, **counts, "items": results}


def batch_router(
    specs: Sequence[JsonChannel],
    settings: AdaptersSettings,
    authenticate_source: SourceCheck,
    submit: Submit,
    reports: Counter,
) -> APIRouter:
    """One POST <path>/batch route per JSON channel, authenticated like the single route."""
    router = APIRouter()
    max_items, max_bytes, max_item_bytes = settings.batch_max_items, settings.batch_max_bytes, settings.max_body_bytes

    def endpoint(spec: JsonChannel) -> Callable[..., Awaitable[Response]]:
        async def receive_batch(
            request: Request,
            x_api_key: ApiKeyHeader = None,
            x_timestamp: TimestampHeader = None,
            x_signature: SignatureHeader = None,
        ) -> Response:
            channel = spec.channel
            refused = await authenticate_source(channel, request, x_api_key, x_timestamp, x_signature)
            if refused is not None:
                return refused
            body = await request.body()
            items = parse_batch(body, max_items, max_bytes)
            if isinstance(items, Response):
                reports.labels(channel.value, "rejected").inc()
                return items
            # Only a body larger than the single route's limit can hold an item over it.
            limit = max_item_bytes if len(body) > max_item_bytes else None
            checked = [check_item(spec, item, limit) for item in items]
            results: list[dict[str, Any]] = []
            for index, outcome in enumerate(checked):
                if isinstance(outcome, dict):
                    reports.labels(channel.value, "rejected").inc()
                    results.append({"index": index, "status": "rejected", "problem": outcome})
                else:
                    results.append({"index": index, "status": "pending", "source_id": outcome})
            pending = [r for r in results if r["status"] == "pending"]
            # Each submit sends before any awaits its ack, so the producer batches them; then every ack is awaited.
            submitted = await asyncio.gather(*(submit(channel, r["source_id"], items[r["index"]]) for r in pending))
            for result, answer in zip(pending, submitted, strict=True):
                if isinstance(answer, Submitted):
                    result["status"] = "duplicate" if answer.duplicate else "accepted"
                    result["event_id"] = answer.event_id
                else:
                    result["status"] = "failed"
                    result["problem"] = item_problem(503, "消息总线暂不可用，这一条未被接收，请稍后重发。")
            return JSONResponse(summarise(channel.value, results))

        receive_batch.__doc__ = (
            f"Up to {max_items} items, each the same JSON object as POST {spec.path}. Answers 200 with one result "
            "per item (accepted, duplicate, rejected, failed); items are independent, and sending an item again is "
            "safe (a known one is answered as duplicate with its event id)."
        )
        return receive_batch

    for spec in specs:
        router.add_api_route(
            f"{spec.path}/batch",
            endpoint(spec),
            methods=["POST"],
            status_code=200,
            response_model=BatchResult,
            tags=[spec.tag],
            summary=f"Receive up to {max_items} {spec.tag} reports in one request (批量)",
            operation_id=f"receive_{spec.channel.name.lower()}_batch",
            openapi_extra={
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "array",
                                "minItems": 1,
                                "maxItems": max_items,
                                "description": f"Each item is what POST {spec.path} takes, with its own "
                                f"{spec.id_field}; an item without a valid one is rejected on its own.",
                                "items": {"type": "object", "additionalProperties": True},
                            }
                        }
                    },
                }
            },
            responses={401: {"description": "Missing or wrong X-Api-Key"}},
        )
    return router
