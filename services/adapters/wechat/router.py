"""The WeChat callback routes: handshake, then messages in and passive replies out (the I/O around the pure parts)."""
# No "from __future__ import annotations": FastAPI reads the Annotated query parameters at runtime.

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CollectorRegistry

from gridhub.kernel.http import PROBLEM_JSON, problem
from gridhub.kernel.metrics import ServiceMetrics
from schemas import Channel
from services.adapters.settings import AdaptersSettings
from services.adapters.submission import Submit
from services.adapters.wechat.conversation import (
    MSG_ID,
    REPORTABLE,
    ExpiringLru,
    Inbound,
    Session,
    courtesy_reply,
    follow_up_of,
    next_session,
    read_message,
    report_payload,
    report_reply,
)
from services.adapters.wechat.crypto import AppIdMismatch, DecryptError, MessageCrypto
from services.adapters.wechat.protocol import (
    MAX_XML_BYTES,
    ProtocolError,
    encrypted_reply,
    is_fresh,
    parse_xml,
    signature_ok,
    text_field,
    text_reply,
)
from services.adapters.wechat.protocol import signature as wechat_signature

log = logging.getLogger(__name__)
PATH = "/v1/wechat/callback"
# WeChat retries a callback unanswered for 5 s, three times: a minute covers every retry.
REPLY_TTL_S = 60.0
REPLY_CAPACITY = 4096
XML_MEDIA = "application/xml"
UNAUTHORISED = "签名无效、缺失或时间戳已过期（请核对公众号服务器配置中的令牌 Token）。"
NOT_CONFIGURED = "本县未配置微信公众号渠道。"
NOT_CONFIGURED_RESPONSE: dict[int | str, dict[str, Any]] = {
    404: {"description": "This county has no official account configured (no WeChat channel)"}
}

_TEXT = {"type": "string"}
XML_BODY = {
    "requestBody": {
        "required": True,
        "description": "A message or event as WeChat posts it; in safe mode only ToUserName and Encrypt.",
        "content": {
            XML_MEDIA: {
                "schema": {
                    "type": "object",
                    "xml": {"name": "xml"},
                    "required": ["ToUserName"],
                    "properties": {
                        "ToUserName": {**_TEXT, "description": "The official account's original id (gh_...)."},
                        "FromUserName": {**_TEXT, "description": "The citizen's openid (personal data)."},
                        "CreateTime": {"type": "string", "pattern": "^[0-9]{1,12}$"},
                        "MsgType": {**_TEXT, "description": "text, image, location, event (others are answered)."},
                        "MsgId": {"type": "string", "pattern": MSG_ID.pattern},
                        "Content": _TEXT,
                        "PicUrl": _TEXT,
                        "MediaId": _TEXT,
                        "Location_X": {**_TEXT, "description": "Latitude."},
                        "Location_Y": {**_TEXT, "description": "Longitude."},
                        "Scale": _TEXT,
                        "Label": _TEXT,
                        "Event": _TEXT,
                        "Encrypt": {**_TEXT, "description": "Safe mode: the encrypted message, base64."},
                    },
                    "additionalProperties": True,
                }
            }
        },
    }
}
PROBLEM_CONTENT = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
REPLY_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": 'A passive reply (encrypted in safe mode), or "success" when there is nothing to say.',
        "content": {XML_MEDIA: {"schema": _TEXT}, "text/plain": {"schema": _TEXT}},
    },
    400: {"description": "Not a WeChat message (malformed XML, missing fields, undecryptable)"},
    401: {"description": "Bad or missing signature, or a stale timestamp"},
    403: {"description": "Plaintext mode refused, or a message for another AppID", "content": PROBLEM_CONTENT},
    **NOT_CONFIGURED_RESPONSE,
}


class WeChatMetrics:
    """WeChat callbacks counted by message kind and outcome (both bounded sets)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = ServiceMetrics("adapters", registry).counter(
            "wechat_messages", "WeChat callbacks, by message kind and outcome.", ("kind", "outcome")
        )


def wechat_router(
    settings: AdaptersSettings,
    submit: Submit,
    registry: CollectorRegistry,
    clock: Callable[[], float] = time.time,
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> APIRouter:
    """GET and POST /v1/wechat/callback: the official account's server URL (404 problems without an account)."""
    router = APIRouter()
    metrics = WeChatMetrics(registry).messages
    # Without an account the routes stay mounted (the OpenAPI document does not depend on settings) and answer 404.
    account = settings.wechat
    token = account.token if account else ""
    crypto = MessageCrypto(account.encoding_aes_key, account.app_id) if account else None
    window_s = settings.wechat_follow_up_window_s
    # Per replica: a follow-up reaching another replica becomes its own report (see README).
    sessions: ExpiringLru[Session] = ExpiringLru(window_s, settings.wechat_sessions)
    replies: ExpiringLru[str] = ExpiringLru(REPLY_TTL_S, REPLY_CAPACITY)
    in_flight: dict[str, asyncio.Future[str | Response]] = {}

    @router.get(
        PATH,
        tags=["wechat"],
        summary="WeChat server URL check (服务器配置验证): echo echostr when the signature is right",
        response_class=PlainTextResponse,
        operation_id="wechat_handshake",
        responses={
            200: {"description": "echostr, as text/plain", "content": {"text/plain": {"schema": _TEXT}}},
            401: {"description": "Bad or missing signature"},
            **NOT_CONFIGURED_RESPONSE,
        },
    )
    async def handshake(
        signature: Annotated[str | None, Query(description="SHA-1 of sorted token, timestamp, nonce.")] = None,
        timestamp: Annotated[str | None, Query(description="Unix seconds.")] = None,
        nonce: Annotated[str | None, Query(description="Random string.")] = None,
        echostr: Annotated[str | None, Query(description="Echoed back when the signature is right.")] = None,
    ) -> Response:
        """Answer WeChat's check of the server URL and token."""
        if account is None:
            metrics.labels("handshake", "unconfigured").inc()
            return problem(404, NOT_CONFIGURED)
        if echostr is None or not signature_ok(token, signature, timestamp, nonce):
            metrics.labels("handshake", "unauthorised").inc()
            return problem(401, UNAUTHORISED)
        metrics.labels("handshake", "accepted").inc()
        return PlainTextResponse(echostr, headers={"X-Content-Type-Options": "nosniff"})

    async def publish_report(key: str, inbound: Inbound, xml: str, now: float) -> str | Response:
        session = sessions.get(inbound.openid, now)
        added_to = follow_up_of(inbound.kind, session)
        payload = report_payload(inbound.fields, xml, added_to)
        outcome = await submit(Channel.WECHAT, inbound.source_id, payload, content_type=XML_MEDIA)
        if isinstance(outcome, Response):
            metrics.labels(inbound.kind.value, "unavailable").inc()
            return outcome
        sessions.put(inbound.openid, next_session(inbound.kind, outcome.event_id, session, added_to), now)
        reply = report_reply(inbound.kind, outcome.event_id, added_to, window_s)
        replies.put(key, reply, now)
        outcome_label = "duplicate" if outcome.duplicate else ("supplement" if added_to else "report")
        metrics.labels(inbound.kind.value, outcome_label).inc()
        log.info(
            "wechat report",
            extra={"source_id": inbound.source_id, "event_id": outcome.event_id, "follow_up_of": added_to},
        )
        return reply

    async def file_report(inbound: Inbound, xml: str, now: float) -> str | Response:
        """Publish once per message: a retry gets the cached reply, or waits for the attempt still running."""
        key = f"{inbound.openid}|{inbound.source_id}"
        cached = replies.get(key, now)
        if cached is not None:
            metrics.labels(inbound.kind.value, "retry").inc()
            return cached
        running = in_flight.get(key)
        if running is not None:
            metrics.labels(inbound.kind.value, "retry").inc()
            return await asyncio.shield(running)
        running = asyncio.get_running_loop().create_future()
        in_flight[key] = running
        try:
            result = await publish_report(key, inbound, xml, now)
            running.set_result(result)
            return result
        finally:
            in_flight.pop(key, None)
            if not running.done():
                running.cancel()

    def message_of(body: bytes, query: dict[str, str | None]) -> tuple[dict[str, Any], str, bool]:
        """The authenticated message's fields, its XML text, and whether it came (and goes back) encrypted."""
        encrypt_type = query["encrypt_type"]
        timestamp, nonce = query["timestamp"], query["nonce"]
        if encrypt_type not in (None, "", "raw", "aes"):
            raise ProtocolError(400, f"不支持的 encrypt_type：{encrypt_type}", "encrypt_type")
        if encrypt_type == "aes":
            assert crypto is not None  # receive() answers 404 before this without an account
            outer = parse_xml(body)
            encrypted = text_field(outer, "Encrypt")
            if not encrypted:
                raise ProtocolError(400, "安全模式消息缺少 Encrypt。", "Encrypt")
            if not signature_ok(token, query["msg_signature"], timestamp, nonce, encrypted):
                raise ProtocolError(401, UNAUTHORISED, "msg_signature")
            try:
                xml = crypto.decrypt(encrypted)
            except DecryptError as exc:
                raise ProtocolError(400, f"无法解密：{exc}", "Encrypt") from None
            except AppIdMismatch as exc:
                raise ProtocolError(403, str(exc), "Encrypt") from None
            return parse_xml(xml.encode()), xml, True
        if not signature_ok(token, query["signature"], timestamp, nonce):
            raise ProtocolError(401, UNAUTHORISED, "signature")
        if account is None or not account.allow_plaintext:
            raise ProtocolError(403, "本公众号只接受安全模式（encrypt_type=aes）消息。", "encrypt_type")
        return parse_xml(body), body.decode("utf-8"), False

    def answer(inbound: Inbound, content: str | None, encrypted: bool, now: float) -> Response:
        if content is None:
            return PlainTextResponse("success")
        reply = text_reply(inbound.openid, inbound.account, content, int(now))
        if encrypted:
            stamp, nonce = str(int(now)), str(int.from_bytes(random_bytes(4), "big"))
            assert crypto is not None  # the message came encrypted, so there is an account
            ciphertext = crypto.encrypt(reply, random_bytes(16))
            reply = encrypted_reply(ciphertext, wechat_signature(token, stamp, nonce, ciphertext), stamp, nonce)
        return Response(reply, media_type=XML_MEDIA)

    @router.post(
        PATH,
        tags=["wechat"],
        summary="Receive a citizen's WeChat message (公众号消息): reports, follow-ups, events",
        operation_id="receive_wechat",
        response_class=Response,
        openapi_extra=XML_BODY,
        responses=REPLY_RESPONSES,
    )
    async def receive(
        request: Request,
        signature: Annotated[str | None, Query(description="Plaintext mode: SHA-1 of token, timestamp, nonce.")] = None,
        timestamp: Annotated[str | None, Query(description="Unix seconds; must be fresh.")] = None,
        nonce: Annotated[str | None, Query(description="Random string.")] = None,
        openid: Annotated[str | None, Query(description="The citizen's openid (not used; in the body).")] = None,
        encrypt_type: Annotated[str | None, Query(description='"aes" in safe mode.')] = None,
        msg_signature: Annotated[str | None, Query(description="Safe mode: SHA-1 over the Encrypt too.")] = None,
    ) -> Response:
        """Acknowledge a citizen's report with its event number; photos and places add to their open report."""
        if account is None:
            metrics.labels("unknown", "unconfigured").inc()
            return problem(404, NOT_CONFIGURED)
        now = clock()
        try:
            if not is_fresh(timestamp, now, settings.wechat_freshness_s):
                raise ProtocolError(401, UNAUTHORISED, "timestamp")
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_XML_BYTES:
                raise ProtocolError(413, f"XML 超过 {MAX_XML_BYTES} 字节。")
            query = {
                "signature": signature,
                "timestamp": timestamp,
                "nonce": nonce,
                "encrypt_type": encrypt_type,
                "msg_signature": msg_signature,
            }
            fields, xml, encrypted = message_of(await request.body(), query)
            inbound = read_message(fields)
        except ProtocolError as exc:
            metrics.labels("unknown", "unauthorised" if exc.status in (401, 403) else "rejected").inc()
            return problem(exc.status, exc.detail, errors=[{"field": exc.field, "message": exc.detail}])
        if inbound.kind not in REPORTABLE or inbound.blank:
            metrics.labels(inbound.kind.value, "courtesy").inc()
            return answer(inbound, courtesy_reply(inbound), encrypted, now)
        outcome = await file_report(inbound, xml, now)
        if isinstance(outcome, Response):
            return outcome  # the bus is down: 503, so WeChat retries (never "success")
        return answer(inbound, outcome, encrypted, now)

    return router
