"""/v1/endpoints: units register and manage where their tasks and alerts go (mounted by the notifier's worker).

A unit authenticates with its bearer key (`GRIDHUB_NOTIFIER_UNIT_KEYS`; in dev mode with none set, `dev-<unit
code>`, as on the adapters) and sees and changes only its own endpoints (another unit's id answers 404). Every
change is an `EndpointSaved` on the compacted `notifier.endpoints` (a tombstone for a delete), answered only after
the broker's ack, and applied to this replica's registry at once; the other replicas read it from the topic.
A webhook's signing secret is made here and shown once (on registration and on rotation); after a rotation the
old secret keeps signing too for the overlap (24 h unless asked otherwise), so receivers can switch at leisure.
The delivery engine calls `EndpointWriter.disable` on a 410 or after prolonged failure.
"""
# No "from __future__ import annotations": FastAPI must see the Depends(unit_of) of a closure at runtime.

import base64
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Protocol

from aiohttp.abc import AbstractResolver
from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, Header
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from gridhub.kernel.http import problem
from gridhub.kernel.keys import bearer_token, holder_of_key
from gridhub.kernel.settings import CommonSettings
from schemas import EndpointChannel, EndpointSaved, NotificationType, new_id
from schemas.base import AwareDatetime
from services.notifier.endpoint_follower import TOPIC
from services.notifier.endpoints import Endpoint, EndpointRegistry, url_display
from services.notifier.outbound import OutboundPolicy, check_url
from services.notifier.sealing import Sealer
from services.notifier.settings import NotifierSettings
from services.notifier.signing import SECRET_PREFIX

log = logging.getLogger(__name__)
UNAUTHORISED_ZH = "缺少或错误的单位密钥（Authorization: Bearer ...）。"
NOT_FOUND_ZH = "本单位没有端点 {endpoint_id}。"
UNAVAILABLE_ZH = "消息总线暂不可用，端点未保存，请稍后重试。"
TOO_MANY_ZH = "每个单位最多登记 {limit} 个端点。"
ROTATE_WEBHOOK_ONLY_ZH = (
    "只有 webhook 端点有本系统生成的签名密钥；钉钉机器人的加签密钥请用 PATCH 更新 dingtalk_secret。"
)
DISABLED_BY_UNIT_ZH = "单位停用"
MAX_ENDPOINTS_PER_UNIT = 20
NOTIFIER = "notifier"

# (key, value) onto notifier.endpoints; value None is a tombstone. Raises (KafkaError) when the broker does not ack.
Publish = Callable[[str, bytes | None], Awaitable[None]]


class Producer(Protocol):
    """What publishing needs of an AIOKafkaProducer."""

    async def send_and_wait(self, topic: str, value: bytes | None, key: bytes) -> Any: ...


def producer_publish(producer: Producer, common: CommonSettings) -> Publish:
    """Publish onto the (prefixed) notifier.endpoints through a started producer."""
    topic = common.topic(TOPIC)

    async def publish(key: str, value: bytes | None) -> None:
        await producer.send_and_wait(topic, value=value, key=key.encode())

    return publish


def new_webhook_secret() -> str:
    """A fresh Standard Webhooks secret: whsec_ + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def unit_auth(settings: NotifierSettings) -> Callable[..., str | None]:
    """The FastAPI dependency naming the unit of the request's bearer key (None: unauthenticated)."""
    dev = settings.common.mode == "dev"

    def unit_of(authorization: Annotated[str | None, Header()] = None) -> str | None:
        return holder_of_key(settings.unit_keys, bearer_token(authorization), dev)

    return unit_of


Url = Annotated[str, Field(min_length=8, max_length=2048, examples=["https://hooks.example.cn/gridhub"])]
Types = Annotated[
    list[NotificationType],
    Field(min_length=1, description="What the endpoint receives: task.new, task.co-operating, alert.*, task.update."),
]
DingTalkSecret = Annotated[
    str,
    Field(min_length=8, max_length=256, description="DingTalk robot's 加签 secret (SEC...), only for dingtalk."),
]


class EndpointCreate(BaseModel):
    """A new endpoint."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"url": "https://hooks.example.cn/gridhub", "channel": "webhook"},
                {
                    "url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…",
                    "channel": "wecom",
                    "notification_types": ["task.new", "alert.overdue", "alert.escalation"],
                },
            ]
        },
    )

    url: Url
    channel: EndpointChannel = EndpointChannel.WEBHOOK
    notification_types: Types = Field(default_factory=lambda: list(NotificationType))
    enabled: bool = True
    dingtalk_secret: DingTalkSecret | None = None


class EndpointPatch(BaseModel):
    """Changes to an endpoint; fields left out stay as they are."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"enabled": False}]})

    url: Url | None = None
    notification_types: Types | None = None
    enabled: bool | None = None
    disabled_reason: str | None = Field(None, max_length=500, description="Why, when disabling.")
    dingtalk_secret: DingTalkSecret | None = None


class RotateRequest(BaseModel):
    """A rotation: how long the old secret keeps signing."""

    model_config = ConfigDict(extra="forbid")

    overlap_hours: float | None = Field(
        None, ge=0, le=720, description="Default 24 (GRIDHUB_NOTIFIER_ROTATION_OVERLAP_H)."
    )


class EndpointView(BaseModel):
    """An endpoint as its unit sees it (the URL without its query; no secrets)."""

    endpoint_id: str
    unit_code: str
    channel: EndpointChannel
    url: str = Field(description="Scheme, host, port and path; the query (a robot's key) is not shown.")
    notification_types: list[NotificationType]
    enabled: bool
    disabled_reason: str | None
    signed: bool = Field(description="Whether deliveries are signed (a webhook secret, or DingTalk 加签).")
    previous_secret_until: AwareDatetime | None = Field(description="Until when the old secret also signs.")
    created_at: AwareDatetime
    updated_at: AwareDatetime


class EndpointCreated(EndpointView):
    """A registered endpoint with its signing secret, shown this once."""

    secret: str | None = Field(description="whsec_... for a webhook (keep it: it is not shown again); else None.")


class SecretRotated(BaseModel):
    """The new secret (shown once) and the end of the old one's overlap."""

    endpoint_id: str
    secret: str
    previous_secret_until: AwareDatetime


def view(endpoint: Endpoint) -> EndpointView:
    """The public view of an endpoint."""
    return EndpointView(
        endpoint_id=endpoint.endpoint_id,
        unit_code=endpoint.unit_code,
        channel=endpoint.channel,
        url=endpoint.url_display,
        notification_types=sorted(endpoint.notification_types),
        enabled=endpoint.enabled,
        disabled_reason=endpoint.disabled_reason,
        signed=endpoint.secret is not None,
        previous_secret_until=endpoint.previous_secret_until,
        created_at=endpoint.created_at,
        updated_at=endpoint.updated_at,
    )


class EndpointWriter:
    """Saves endpoints: seals them into EndpointSaved, publishes (awaiting the ack), applies to the local registry."""

    def __init__(
        self,
        registry: EndpointRegistry,
        publish: Publish,
        policy: OutboundPolicy,
        *,
        overlap_h: float = 24.0,
        resolver: AbstractResolver | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.registry = registry
        self.sealer: Sealer = registry.sealer
        self.publish = publish
        self.policy = policy
        self.overlap_h = overlap_h
        self.resolver = resolver
        self.clock = clock

    def record(self, endpoint: Endpoint, updated_by: str) -> EndpointSaved:
        """The record of an endpoint, its URL and secrets sealed."""

        def sealed(text: str | None) -> str | None:
            return None if text is None else self.sealer.seal(text)

        return EndpointSaved(
            endpoint_id=endpoint.endpoint_id,
            unit_code=endpoint.unit_code,
            channel=endpoint.channel,
            url_sealed=self.sealer.seal(endpoint.url),
            url_display=endpoint.url_display,
            notification_types=tuple(sorted(endpoint.notification_types)),
            enabled=endpoint.enabled,
            disabled_reason=None if endpoint.enabled else endpoint.disabled_reason,
            secret_sealed=sealed(endpoint.secret),
            previous_secret_sealed=sealed(endpoint.previous_secret),
            previous_secret_until=endpoint.previous_secret_until if endpoint.previous_secret else None,
            created_at=endpoint.created_at,
            updated_at=endpoint.updated_at,
            updated_by=updated_by,
        )

    async def url_refusal(self, url: str) -> str | None:
        """Why a URL may not be registered (outbound rules, resolved now), or None."""
        return await check_url(url, self.policy, self.resolver)

    async def save(self, endpoint: Endpoint, updated_by: str) -> Endpoint:
        """Publish an endpoint and, once acked, apply it here; raises KafkaError when the broker does not ack."""
        record = self.record(endpoint, updated_by)
        await self.publish(endpoint.endpoint_id, record.to_bytes())
        self.registry.put(endpoint)
        return endpoint

    async def delete(self, endpoint: Endpoint) -> None:
        """Publish the endpoint's tombstone and, once acked, forget it here."""
        await self.publish(endpoint.endpoint_id, None)
        self.registry.remove(endpoint.endpoint_id)

    async def disable(self, endpoint_id: str, reason: str) -> bool:
        """Disable an endpoint (the delivery engine: a 410, or failing too long); whether it changed anything.

        Endpoints from the settings cannot be disabled this way (they are the operator's); an unknown or already
        disabled endpoint is left alone. Raises KafkaError when the broker does not ack (the caller retries).
        """
        endpoint = self.registry.get(endpoint_id)
        if endpoint is None or endpoint.from_settings or not endpoint.enabled:
            return False
        changed = replace(endpoint, enabled=False, disabled_reason=reason[:500], updated_at=self.clock())
        await self.save(changed, NOTIFIER)
        log.warning(
            "endpoint disabled", extra={"endpoint_id": endpoint_id, "unit": endpoint.unit_code, "reason": reason}
        )
        return True

    def rotated(self, endpoint: Endpoint, overlap_h: float | None) -> tuple[Endpoint, str]:
        """The endpoint with a new secret, the old one signing until the overlap ends; and the new secret."""
        now = self.clock()
        secret = new_webhook_secret()
        until = now + timedelta(hours=self.overlap_h if overlap_h is None else overlap_h)
        return (
            replace(
                endpoint, secret=secret, previous_secret=endpoint.secret, previous_secret_until=until, updated_at=now
            ),
            secret,
        )


def unavailable() -> Response:
    """503 while the broker does not ack."""
    return problem(503, UNAVAILABLE_ZH, headers={"Retry-After": "5"})


def endpoints_router(writer: EndpointWriter, unit_of: Callable[..., str | None]) -> APIRouter:
    """The /v1/endpoints routes (tags: endpoints); problem+json errors in Chinese."""
    router = APIRouter(tags=["endpoints"])
    registry = writer.registry
    Unit = Annotated[str | None, Depends(unit_of)]
    auth_responses: dict[int | str, dict[str, Any]] = {
        401: {"description": "Missing or wrong bearer key"},
        503: {"description": "Message bus unavailable; nothing saved"},
    }

    def own(unit: str, endpoint_id: str) -> Endpoint | None:
        endpoint = registry.get(endpoint_id)
        return endpoint if endpoint is not None and endpoint.unit_code == unit else None

    def unauthorised() -> Response:
        return problem(401, UNAUTHORISED_ZH, headers={"WWW-Authenticate": "Bearer"})

    def not_found(endpoint_id: str) -> Response:
        return problem(404, NOT_FOUND_ZH.format(endpoint_id=endpoint_id))

    def refused(field: str, why: str) -> Response:
        return problem(422, f"{field} 不可用：{why}", errors=[{"field": field, "message": why}])

    async def saved(endpoint: Endpoint, unit: str, status: int, extra: dict[str, Any] | None = None) -> Response:
        try:
            await writer.save(endpoint, unit)
        except KafkaError as exc:
            log.error("endpoint not saved", extra={"endpoint_id": endpoint.endpoint_id, "error": repr(exc)})
            return unavailable()
        body = view(endpoint).model_dump(mode="json") | (extra or {})
        return JSONResponse(body, status_code=status)

    def secret_problem(channel: EndpointChannel, dingtalk_secret: str | None) -> Response | None:
        if dingtalk_secret is not None and channel is not EndpointChannel.DINGTALK:
            return refused("dingtalk_secret", "只有钉钉（dingtalk）端点可以填写加签密钥")
        return None

    @router.post(
        "/v1/endpoints",
        status_code=201,
        response_model=EndpointCreated,
        summary="Register an endpoint (登记接收地址): webhook, WeCom or DingTalk robot",
        responses={**auth_responses, 422: {"description": "URL refused (private address, scheme) or invalid fields"}},
    )
    async def register(request: EndpointCreate, unit: Unit) -> Response:
        """Register an endpoint for the caller's unit; a webhook's signing secret is returned this once."""
        if unit is None:
            return unauthorised()
        if (bad := secret_problem(request.channel, request.dingtalk_secret)) is not None:
            return bad
        if len(registry.of_unit(unit)) >= MAX_ENDPOINTS_PER_UNIT:
            return problem(422, TOO_MANY_ZH.format(limit=MAX_ENDPOINTS_PER_UNIT))
        if (why := await writer.url_refusal(request.url)) is not None:
            return refused("url", why)
        now = writer.clock()
        secret = new_webhook_secret() if request.channel is EndpointChannel.WEBHOOK else request.dingtalk_secret
        endpoint = Endpoint(
            endpoint_id=new_id(),
            unit_code=unit,
            channel=request.channel,
            url=request.url,
            url_display=url_display(request.url),
            notification_types=frozenset(request.notification_types),
            enabled=request.enabled,
            disabled_reason=None if request.enabled else DISABLED_BY_UNIT_ZH,
            secret=secret,
            created_at=now,
            updated_at=now,
        )
        shown = secret if request.channel is EndpointChannel.WEBHOOK else None
        return await saved(endpoint, unit, 201, {"secret": shown})

    @router.get(
        "/v1/endpoints",
        response_model=list[EndpointView],
        summary="List the unit's endpoints",
        responses=auth_responses,
    )
    async def list_endpoints(unit: Unit) -> Response:
        """The caller's unit's endpoints (no secrets; URLs without query)."""
        if unit is None:
            return unauthorised()
        return JSONResponse([view(e).model_dump(mode="json") for e in registry.of_unit(unit)])

    @router.get(
        "/v1/endpoints/{endpoint_id}",
        response_model=EndpointView,
        summary="One of the unit's endpoints",
        responses={**auth_responses, 404: {"description": "No such endpoint of this unit"}},
    )
    async def get_endpoint(endpoint_id: str, unit: Unit) -> Response:
        """One endpoint of the caller's unit."""
        if unit is None:
            return unauthorised()
        if (endpoint := own(unit, endpoint_id)) is None:
            return not_found(endpoint_id)
        return JSONResponse(view(endpoint).model_dump(mode="json"))

    @router.patch(
        "/v1/endpoints/{endpoint_id}",
        response_model=EndpointView,
        summary="Change an endpoint: URL, filter, enable or disable, DingTalk secret",
        responses={**auth_responses, 404: {"description": "No such endpoint of this unit"}},
    )
    async def change(endpoint_id: str, request: EndpointPatch, unit: Unit) -> Response:
        """Change the fields given; enabling clears the disabled reason."""
        if unit is None:
            return unauthorised()
        if (endpoint := own(unit, endpoint_id)) is None:
            return not_found(endpoint_id)
        if (bad := secret_problem(endpoint.channel, request.dingtalk_secret)) is not None:
            return bad
        changes: dict[str, Any] = {"updated_at": writer.clock()}
        if request.url is not None:
            if (why := await writer.url_refusal(request.url)) is not None:
                return refused("url", why)
            changes |= {"url": request.url, "url_display": url_display(request.url)}
        if request.notification_types is not None:
            changes["notification_types"] = frozenset(request.notification_types)
        if request.enabled is True:
            changes |= {"enabled": True, "disabled_reason": None}
        elif request.enabled is False:
            changes |= {"enabled": False, "disabled_reason": request.disabled_reason or DISABLED_BY_UNIT_ZH}
        if request.dingtalk_secret is not None:
            changes["secret"] = request.dingtalk_secret
        return await saved(replace(endpoint, **changes), unit, 200)

    @router.delete(
        "/v1/endpoints/{endpoint_id}",
        status_code=204,
        summary="Delete an endpoint",
        responses={**auth_responses, 404: {"description": "No such endpoint of this unit"}},
    )
    async def delete(endpoint_id: str, unit: Unit) -> Response:
        """Delete an endpoint (a tombstone on notifier.endpoints)."""
        if unit is None:
            return unauthorised()
        if (endpoint := own(unit, endpoint_id)) is None:
            return not_found(endpoint_id)
        try:
            await writer.delete(endpoint)
        except KafkaError as exc:
            log.error("endpoint not deleted", extra={"endpoint_id": endpoint_id, "error": repr(exc)})
            return unavailable()
        return Response(status_code=204)

    @router.post(
        "/v1/endpoints/{endpoint_id}/rotate-secret",
        response_model=SecretRotated,
        summary="Rotate a webhook's signing secret; the old one signs too for the overlap",
        responses={**auth_responses, 404: {"description": "No such endpoint of this unit"}},
    )
    async def rotate(endpoint_id: str, unit: Unit, request: RotateRequest | None = None) -> Response:
        """A new secret, shown once; both sign until `previous_secret_until` (default 24 h)."""
        if unit is None:
            return unauthorised()
        if (endpoint := own(unit, endpoint_id)) is None:
            return not_found(endpoint_id)
        if endpoint.channel is not EndpointChannel.WEBHOOK:
            return problem(422, ROTATE_WEBHOOK_ONLY_ZH)
        changed, secret = writer.rotated(endpoint, request.overlap_hours if request else None)
        try:
            await writer.save(changed, unit)
        except KafkaError as exc:
            log.error("secret not rotated", extra={"endpoint_id": endpoint_id, "error": repr(exc)})
            return unavailable()
        assert changed.previous_secret_until is not None
        answer = SecretRotated(
            endpoint_id=endpoint_id, secret=secret, previous_secret_until=changed.previous_secret_until
        )
        return JSONResponse(answer.model_dump(mode="json"))

    return router


def endpoints_api(
    settings: NotifierSettings,
    registry: EndpointRegistry,
    publish: Publish,
    *,
    resolver: AbstractResolver | None = None,
) -> tuple[EndpointWriter, APIRouter]:
    """The writer (keep it: `disable`) and the router to mount, wired from the settings."""
    writer = EndpointWriter(
        registry,
        publish,
        OutboundPolicy.from_settings(settings),
        overlap_h=settings.rotation_overlap_h,
        resolver=resolver,
    )
    return writer, endpoints_router(writer, unit_auth(settings))
