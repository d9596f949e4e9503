"""The adapters' HTTP API: 12345 work orders in, unit task updates in; each published raw to Kafka."""

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol

from aiokafka.errors import KafkaError
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from gridhub import __version__
from gridhub.kernel.health import Contact, Health, probe_every
from gridhub.kernel.http import install_problem_handlers, install_problem_openapi, ops_router, problem
from gridhub.kernel.kafka import make_producer
from gridhub.kernel.keys import bearer_token, holder_of_key
from gridhub.kernel.metrics import ServiceMetrics
from gridhub.kernel.runtime import serve_http
from schemas import Channel, ReportReceived, new_id
from schemas.catalogue import RAW_TOPICS
from schemas.dutylist import load_duty_list
from services.adapters.attachments import PhotoStore
from services.adapters.auth import source_key_ok, source_signature_ok
from services.adapters.batch_api import batch_router
from services.adapters.channels import (
    ADAPTER_VERSION,
    JSON_CHANNELS,
    SOURCE_ID,
    SOURCE_ID_RULE_ZH,
    TOO_DEEP_ZH,
    JsonChannel,
    too_deep,
)
from services.adapters.headers import ApiKeyHeader, SignatureHeader, TimestampHeader
from services.adapters.index_follower import (
    IndexMetrics,
    open_report_index,
    report_index_follower,
    task_owner_follower,
)
from services.adapters.open311 import open311_router
from services.adapters.photos_api import photo_router
from services.adapters.raw_tail import RawTail
from services.adapters.report_index import InFlight, ReportIndex
from services.adapters.request_feed import RequestFeed
from services.adapters.request_view import RequestView
from services.adapters.settings import AdaptersSettings
from services.adapters.submission import Submitted
from services.adapters.summons_api import summons_router
from services.adapters.updates_api import updates_router
from services.adapters.wechat.router import wechat_router

SERVICE = "adapters"
log = logging.getLogger(__name__)


class Publisher(Protocol):
    """What the API needs from Kafka: send one record and wait for the broker's ack."""

    async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> Any: ...


class Component(Protocol):
    """A background part of the adapters started with the app (after the producer) and stopped before it."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Accepted(BaseModel):
    """202 answer: the report is on the bus; its event id is what the citizen is told."""

    event_id: str
    source: str
    source_id: str
    status: str = "accepted"


class AdapterMetrics:
    """Reports and updates counted by channel/kind and outcome."""

    def __init__(self, registry: CollectorRegistry) -> None:
        m = ServiceMetrics(SERVICE, registry)
        self.reports = m.counter("reports", "Reports received, by channel and outcome.", ("channel", "outcome"))
        self.updates = m.counter("updates", "Task updates received, by kind and outcome.", ("kind", "outcome"))
        self.publish = m.histogram("publish", "Time to get the broker's ack for one record.")


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_api(
    settings: AdaptersSettings,
    registry: CollectorRegistry,
    publisher_factory: Callable[[], Awaitable[Publisher]] | None = None,
    follow_index: bool | None = None,
    contact: Contact | None = None,
) -> FastAPI:
    """The adapters FastAPI app; the producer and (with a real one, by default) the index follower start with it."""
    common = settings.common
    metrics = AdapterMetrics(registry)
    health = Health(SERVICE)
    state: dict[str, Any] = {}
    following = publisher_factory is None if follow_index is None else follow_index
    index_metrics = IndexMetrics(registry) if following else None
    # Identical reports submitted concurrently to this process share one publish and one event id.
    in_flight: InFlight[Submitted | Response] = InFlight()
    requests_view = RequestView()  # Open311 status, fed by a RequestFeed when following the bus

    # Ready means the broker answers now, not that the producer started once: an ack or a metadata probe marks it.
    contact = contact or Contact()

    async def default_publisher() -> Publisher:
        producer = make_producer(common)
        await producer.start()
        contact.seen()
        state["stop"] = producer.stop
        state["probe"] = producer.client.fetch_all_metadata
        return producer  # type: ignore[no-any-return]

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Started in order and stopped in reverse, whatever fails: producer, report index, then `components`
        # (the followers of reports.index and tasks.dispatched, the Open311 feed).
        async with AsyncExitStack() as stack:
            state["publisher"] = await (publisher_factory or default_publisher)()
            if "stop" in state:
                stack.push_async_callback(state["stop"])
            if "probe" in state:
                every_s = min(10.0, contact.window_s / 3)
                probing = asyncio.create_task(
                    probe_every(state["probe"], contact, every_s=every_s), name="adapters-broker-probe"
                )
                stack.push_async_callback(_cancelled, probing)
            index = open_report_index(settings, common.data_dir / SERVICE if following else None)
            stack.callback(index.close)
            state["index"] = index
            app.state.report_index = index  # tests feed its task owners directly
            components: list[Component] = []
            if index_metrics is not None:
                timeout_s = settings.index_ready_timeout_s
                state["follower"] = report_index_follower(common, index, index_metrics, ready_timeout_s=timeout_s)
                state["owners"] = task_owner_follower(common, index.owners, index_metrics, ready_timeout_s=timeout_s)
                state["raw_tail"] = RawTail(common, index, timeout_s=timeout_s)
                components += [
                    state["follower"],
                    state["owners"],
                    RequestFeed(common, requests_view),
                    state["raw_tail"],
                ]
            # Another channel's background consumer is appended here.
            for component in components:
                await component.start()
                stack.push_async_callback(component.stop)
            yield

    health.add("kafka-producer", lambda: "publisher" in state and (contact.recent() or "probe" not in state))
    if following:
        health.add("report-index", lambda: state["follower"].ready)
        health.add("task-owners", lambda: state["owners"].ready)
        health.add("recent-acceptances", lambda: state["raw_tail"].ready())
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

    def unavailable() -> Response:
        return problem(503, "消息总线暂不可用，报告未被接收，请稍后重试。", headers={"Retry-After": "5"})

    async def publish(topic: str, key: str, value: bytes) -> Response | None:
        started = time.perf_counter()
        try:
            await state["publisher"].send_and_wait(common.topic(topic), value=value, key=key.encode())
        except KafkaError as exc:
            log.error("publish failed", extra={"topic": topic, "error": repr(exc)})
            return unavailable()
        contact.seen()
        metrics.publish.observe(time.perf_counter() - started)
        return None

    async def json_object(request: Request) -> dict[str, Any] | Response:
        body = await request.body()
        if len(body) > settings.max_body_bytes:
            return problem(413, f"请求体超过 {settings.max_body_bytes} 字节。")
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            return problem(400, f"请求体不是有效的 UTF-8 JSON：{exc}")
        if not isinstance(data, dict):
            return problem(422, "请求体应为 JSON 对象。", errors=[{"field": "(body)", "message": "应为 JSON 对象"}])
        if too_deep(data):
            return problem(400, f"请求体的 {TOO_DEEP_ZH}。", errors=[{"field": "(body)", "message": TOO_DEEP_ZH}])
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
        index: ReportIndex = state["index"]
        if following and not (state["follower"].ready and state["raw_tail"].ready()):
            # Until the replica knows what was accepted before it started, a repeat could get a second event id:
            # the source retries shortly (a load balancer sends nothing here before /readyz answers 200 anyway).
            metrics.reports.labels(channel.value, "unavailable").inc()
            return problem(503, "本服务实例正在载入已受理的报告，请稍后重试。", headers={"Retry-After": "1"})
        key = f"{channel.value}:{source_id}"  # ReportReceived.dedupe_key, the raw topics' and the index's key
        known = index.lookup(key, time.monotonic())
        if known is not None:
            metrics.reports.labels(channel.value, "duplicate").inc()
            return Submitted(known, duplicate=True)

        async def publish_new() -> Submitted | Response:
            raw = ReportReceived(
                source=channel,
                source_id=source_id,
                proposed_event_id=new_id(),
                received_at=datetime.now(UTC),
                adapter_version=ADAPTER_VERSION,
                content_type=content_type,
                payload=payload,
            )
            failure = await publish(RAW_TOPICS[channel], key, raw.to_bytes())
            if failure:
                return failure
            # Before the answer: a retry to this replica is known at once, not after intake's round trip.
            index.remember(key, raw.proposed_event_id, time.monotonic())
            return Submitted(raw.proposed_event_id)

        outcome, joined = await in_flight.run(key, publish_new)
        if isinstance(outcome, Response):
            metrics.reports.labels(channel.value, "unavailable").inc()
            return unavailable() if joined else outcome
        metrics.reports.labels(channel.value, "duplicate" if joined else "accepted").inc()
        return Submitted(outcome.event_id, duplicate=joined)

    async def accept(spec: JsonChannel, data: dict[str, Any]) -> Response:
        channel = spec.channel
        source_id = spec.source_id_in(data)
        if source_id is None:
            metrics.reports.labels(channel.value, "rejected").inc()
            return problem(422, spec.missing_id_zh, errors=[{"field": spec.id_field, "message": SOURCE_ID_RULE_ZH}])
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
            x_api_key: ApiKeyHeader = None,
            x_timestamp: TimestampHeader = None,
            x_signature: SignatureHeader = None,
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
            responses={
                200: {"model": Accepted, "description": "Already received: its event id, status duplicate"},
                401: {"description": "Missing or wrong X-Api-Key"},
                422: {"description": spec.invalid},
            },
        )

    app.include_router(batch_router(JSON_CHANNELS, settings, authenticate_source, submit, metrics.reports))

    def unit_of(authorization: Annotated[str | None, Header()] = None) -> str | None:
        return holder_of_key(settings.unit_keys, bearer_token(authorization), common.mode == "dev")

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
    app.include_router(wechat_router(settings, submit, registry))
    app.include_router(
        open311_router(
            load_duty_list(settings.duty_list), requests_view, authenticate_source, submit, settings.max_body_bytes
        )
    )
    app.state.open311_view = requests_view  # what Open311 status answers from (tests feed it directly)

    app.include_router(
        updates_router(unit_of, lambda task_id: state["index"].owners.owner(task_id), publish, metrics.updates)
    )
    app.include_router(
        summons_router(
            load_duty_list(settings.duty_list), unit_of, lambda t: state["index"].owners.owner(t), publish, registry
        )
    )

    return app


def main() -> None:
    """Entry point of `gridhub serve adapters`."""
    settings = AdaptersSettings()
    serve_http(create_api(settings, CollectorRegistry()), SERVICE, settings.common, settings.host, settings.port)
