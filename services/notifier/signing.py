"""Standard Webhooks signatures: v1 HMAC-SHA256 over "id.timestamp.body"."""

from __future__ import annotations

import base64
import hashlib
import hmac

SECRET_PREFIX = "whsec_"


def secret_bytes(secret: str) -> bytes:
    """Decode a whsec_<base64> secret into its key bytes."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("signing secret must look like whsec_<base64>")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except ValueError as exc:
        raise ValueError("signing secret is not valid base64 after whsec_") from exc
    if len(key) < 24:
        raise ValueError("signing secret must be at least 24 bytes")
    return key


def sign(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header value for one delivery."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def headers(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """All Standard Webhooks headers for one delivery."""
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, webhook_id, timestamp, body),
        "content-type": "application/json; charset=utf-8",
    }
