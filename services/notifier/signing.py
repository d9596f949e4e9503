"""Standard Webhooks signatures: v1 HMAC-SHA256 over "id.timestamp.body"."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
from collections.abc import Callable

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


def signer(secret: str) -> Callable[[str, int, bytes], str]:
    """sign() with the key of a whsec_ secret set up once: each call copies the keyed HMAC state."""
    keyed = hmac.new(secret_bytes(secret), digestmod=hashlib.sha256)

    def signature(webhook_id: str, timestamp: int, body: bytes) -> str:
        mac = keyed.copy()
        mac.update(f"{webhook_id}.{timestamp}.".encode())
        mac.update(body)
        return "v1," + base64.b64encode(mac.digest()).decode("ascii")

    return signature


@functools.lru_cache(maxsize=1024)
def _signers(secrets: tuple[str, ...]) -> tuple[Callable[[str, int, bytes], str], ...]:
    # Keyed HMAC states made once per secret set (rotations are rare): an attempt copies them instead of keying.
    return tuple(signer(secret) for secret in secrets)


def signed_headers(secrets: tuple[str, ...], webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Standard Webhooks headers; during a rotation both secrets sign (space-separated signatures)."""
    signers = _signers(secrets)
    signature = (
        signers[0](webhook_id, timestamp, body)
        if len(signers) == 1
        else " ".join(sign(webhook_id, timestamp, body) for sign in signers)
    )
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
        "content-type": "application/json; charset=utf-8",
    }
