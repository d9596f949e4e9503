"""The adapters' HTTP API: 12345 work orders in, unit task updates in; each published raw to Kafka."""

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol

from aiokafka.errors import KafkaError
from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ConfigDict, Field, field_validator

from gridhub import __version__
from gridhub.kernel.health import Health
from gridhub.kernel.http import install_problem_handlers, install_problem_openapi, ops_router, problem
from gridhub.kernel.kafka import make_producer
from gridhub.kernel.metrics import ServiceMetrics
from schemas import Channel, ReportReceived, TaskUpdated, UpdateKind, new_id
from schemas.base import AwareDatetime, UlidStr
from schemas.catalogue import RAW_TOPICS
from schemas.update import REQUIRED_FIELDS, missing_required_field
from services.adapters.attachments import PhotoStore
from services.adapters.auth import source_key_ok, source_signature_ok, unit_for_key
from services.adapters.channels import ADAPTER_VERSION, JSON_CHANNELS, SOURCE_ID, SOURCE_ID_RULE_ZH, JsonChannel
from services.adapters.photos_api import photo_router
from services.adapters.settings import AdaptersSettings
from services.adapters.submission import Submitted

SERVICE = "adapters"
log = logging.getLogger(__name__)
FIELD_NEEDED_ZH = {"reason": "退回或暂停须说明原因", "satisfaction": "回访评价须给出 1-5 分满意度"}


class Publisher(Protocol):
    """What the API needs from Kafka: send one record and wait for the broker's ack."""

    async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> Any: ...


class Accepted(BaseModel):
    """202 answer: the report is on the bus; its event id is what the citizen is told."""

    event_id: str
    source: str
    source_id: str
    status: str = "accepted"


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
    reason: str | None = Field(None, min_length=1, max_length=500, description="Required for returned and paused.")
    satisfaction: int | None = Field(None, ge=1, le=5, description="Citizen's rating 1-5, for feedback.")


class UpdateAccepted(BaseModel):
    """202 answer for a task update."""

    update_id: str
    task_id: str
    status: str = "accepted"


class AdapterMetrics:
    """Reports and updates counted by channel/kind and outcome."""

    def __init__(self, registry: CollectorRegistry) -> None:
        m = ServiceMetrics(SERVICE, registry)
        self.reports = m.counter("reports", "Reports received, by channel and outcome.", ("channel", "outcome"))
        self.updates = m.counter("updates", "Task updates received, by kind and outcome.", ("kind", "outcome"))
        self.publish = m.histogram("publish", "Time to get the broker's ack for one record.")


def create_api(
    settings: AdaptersSettings,
    registry: CollectorRegistry,
    publisher_factory: Callable[[], Awaitable[Publisher]] | None = None,
) -> FastAPI:
    """The adapters FastAPI app; the Kafka producer starts with the app."""
    common = settings.common
    metrics = AdapterMetrics(registry)
    health = Health(SERVICE)
    state: dict[str, Any] = {}

    async def default_publisher() -> Publisher:
        producer = make_producer(common)
        await producer.start()
        state["stop"] = producer.stop
        return producer  # type: ignore[no-any-return]

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state["publisher"] = await (publisher_factory or default_publisher)()
        try:
            yield
        finally:
            if "stop" in state:
                await state["stop"]()

    health.add("kafka-producer", lambda: "publisher" in state)
    app = FastAPI(
        title="GridHub adapters",
        version=__version__,
        description="Inbound channels of the county command centre (12345 hotline, 110 hand-overs; more follow) "
        "and units' updates on their tasks. Errors are RFC 9457 problem+json.",
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    install_problem_openapi(app)
    app.include_router(ops_router(registry, health))

    async def publish(topic: str, key: str, value: bytes) -> Response | None:
        started = time.perf_counter()
        try:
            await state["publisher"].send_and_wait(common.topic(topic), value=value, key=key.encode())
        except KafkaError as exc:
            log.error("publish failed", extra={"topic": topic, "error": repr(exc)})
            return problem(503, "消息总线暂不可用，报告未被接收，请稍后重试。", headers={"Retry-After": "5"})
        metrics.publish.observe(time.perf_counter() - started)
        return None

    async def json_object(request: Request) -> dict[str, Any] | Response:
        body = await request.body()
        if len(body) > settings.max_body_bytes:
            return problem(413, f"请求体超过 {settings.max_body_bytes} 字节。")
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return problem(400, f"请求体不是有效的 UTF-8 JSON：{exc}")
        if not isinstance(data, dict):
            return problem(422, "请求体应为 JSON 对象。", errors=[{"field": "(body)", "message": "应为 JSON 对象"}])
        return data

    async def authenticate_source(
        channel: Channel, request: Request, api_key: str | None, timestamp: str | None, signature: str | None
    ) -> Response | None:
        signed = signature is not None and source_signature_ok(
            settings.source_hmac_secrets, channel.value, timestamp, signature, await request.body(), time.time()
        )
        if signed or source_key_ok(settings.source_keys, channel.value, api_key):
            return None
        metrics.reports.labels(channel.value, "unauthorised").inc()
        return problem(
            401,
            "缺少或错误的 X-Api-Key，或签名（X-Timestamp、X-Signature）无效或已过期。",
            headers={"WWW-Authenticate": "ApiKey"},
        )

    async def submit(
        channel: Channel, source_id: str, payload: dict[str, Any], *, content_type: str = "application/json"
    ) -> Submitted | Response:
        raw = ReportReceived(
            source=channel,
            source_id=source_id,
            proposed_event_id=new_id(),
            received_at=datetime.now(UTC),
            adapter_version=ADAPTER_VERSION,
            content_type=content_type,
            payload=payload,
        )
        failure = await publish(RAW_TOPICS[channel], raw.dedupe_key, raw.to_bytes())
        if failure:
            metrics.reports.labels(channel.value, "unavailable").inc()
            return failure
        metrics.reports.labels(channel.value, "accepted").inc()
        return Submitted(raw.proposed_event_id)

    async def accept(spec: JsonChannel, data: dict[str, Any]) -> Response:
        channel = spec.channel
        source_id = data.get(spec.id_field)
        if not isinstance(source_id, str) or not SOURCE_ID.fullmatch(source_id):
            metrics.reports.labels(channel.value, "rejected").inc()
            return problem(
                422,
                f"缺少或无效的{spec.id_label_zh} {spec.id_field}。",
                errors=[{"field": spec.id_field, "message": SOURCE_ID_RULE_ZH}],
            )
        outcome = await submit(channel, source_id, data)
        if isinstance(outcome, Response):
            return outcome
        body = Accepted(
            event_id=outcome.event_id,
            source=channel.value,
            source_id=source_id,
            status="duplicate" if outcome.duplicate else "accepted",
        )
        return JSONResponse(body.model_dump(), status_code=200 if outcome.duplicate else 202)

    def json_channel_endpoint(spec: JsonChannel) -> Callable[..., Awaitable[Response]]:
        async def receive(
            request: Request,
            x_api_key: Annotated[str | None, Header(description="The channel's API key.")] = None,
            x_timestamp: Annotated[str | None, Header(description="Unix seconds, with X-Signature.")] = None,
            x_signature: Annotated[
                str | None,
                Header(description='Instead of a key: "sha256=" + hex HMAC-SHA256 of "X-Timestamp." + body.'),
            ] = None,
        ) -> Response:
            refused = await authenticate_source(spec.channel, request, x_api_key, x_timestamp, x_signature)
            if refused is not None:
                return refused
            data = await json_object(request)
            if isinstance(data, Response):
                metrics.reports.labels(spec.channel.value, "rejected").inc()
                return data
            return await accept(spec, data)

        receive.__doc__ = spec.description
        return receive

    for spec in JSON_CHANNELS:
        app.add_api_route(
            spec.path,
            json_channel_endpoint(spec),
            methods=["POST"],
            status_code=202,
            response_model=Accepted,
            tags=[spec.tag],
            summary=spec.summary,
            operation_id=f"receive_{spec.channel.name.lower()}",
            openapi_extra={
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": [spec.id_field],
                                "properties": {spec.id_field: {"type": "string", "pattern": SOURCE_ID.pattern}},
                                "additionalProperties": True,
                            }
                        }
                    },
                }
            },
            responses={401: {"description": "Missing or wrong X-Api-Key"}, 422: {"description": spec.invalid}},
        )

    def unit_of(authorization: Annotated[str | None, Header()] = None) -> str | None:
        token = authorization[7:] if authorization and authorization.lower().startswith("bearer ") else None
        return unit_for_key(settings.unit_keys, token, common.mode == "dev")

    app.include_router(
        photo_router(
            PhotoStore(common.data_dir / "attachments", settings.max_photo_bytes),
            settings.max_photos,
            settings.public_base_url or f"http://{settings.host}:{settings.port}",
            authenticate_source,
            accept,
            unit_of,
        )
    )

    @app.post(
        "/v1/tasks/{task_id}/updates",
        status_code=202,
        response_model=UpdateAccepted,
        tags=["units"],
        summary="A unit reports progress on its task (签收/联系/办结/回复/退回/暂停/恢复/回访)",
        responses={401: {"description": "Missing or wrong bearer key"}},
    )
    async def receive_update(
        task_id: UlidStr, update: UpdateRequest, unit: Annotated[str | None, Depends(unit_of)]
    ) -> Response:
        """Publish a unit's update; the SLA service refuses updates from a unit that does not hold the task."""
        if unit is None:
            metrics.updates.labels(update.kind.value, "unauthorised").inc()
            return problem(
                401, "缺少或错误的单位密钥（Authorization: Bearer ...）。", headers={"WWW-Authenticate": "Bearer"}
            )
        if field := missing_required_field(update.kind, update.reason, update.satisfaction):
            metrics.updates.labels(update.kind.value, "rejected").inc()
            zh = FIELD_NEEDED_ZH[field]
            return problem(
                422,
                f"{update.kind.value} 需要填写 {field}（{zh}）。",
                errors=[{"field": field, "message": f"{update.kind.value} needs a {field}：{zh}"}],
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
            metrics.updates.labels(update.kind.value, "unavailable").inc()
            return failure
        metrics.updates.labels(update.kind.value, "accepted").inc()
        return JSONResponse(UpdateAccepted(update_id=message.update_id, task_id=task_id).model_dump(), status_code=202)

    return app


def main() -> None:
    """Entry point of `gridhub serve adapters`."""
    import uvicorn

    from gridhub.kernel.logging import configure_logging

    settings = AdaptersSettings()
    configure_logging(SERVICE, settings.common.log_level, settings.common.log_json)
    app = create_api(settings, CollectorRegistry())
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False)
