"""API-key and HMAC checks for sources and units; constant-time comparisons, pure."""

from __future__ import annotations

import hashlib
import hmac

# A signed request older or newer than this is refused, so a captured one cannot be replayed later.
SIGNATURE_WINDOW_S = 300


def body_signature(secret: str, timestamp: str, body: bytes) -> str:
    """X-Signature value for a body: sha256=<hex HMAC-SHA256 of "timestamp." + body>."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def source_signature_ok(
    secrets: dict[str, str],
    channel: str,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: float,
    window_s: float = SIGNATURE_WINDOW_S,
) -> bool:
    """True when the body carries the channel's HMAC signature, made within window_s of now."""
    secret = secrets.get(channel)
    if not (secret and timestamp and signature and timestamp.isdigit()):
        return False
    if abs(now - int(timestamp)) > window_s:
        return False
    return hmac.compare_digest(body_signature(secret, timestamp, body).encode(), signature.encode())


def source_key_ok(keys: dict[str, str], channel: str, presented: str | None) -> bool:
    """True when the presented key is the channel's key."""
    expected = keys.get(channel)
    return bool(expected and presented and hmac.compare_digest(expected.encode(), presented.encode()))
