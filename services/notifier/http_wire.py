"""HTTP/1.1 on the wire for deliveries (pure): where a URL points, the request bytes, and the failures.

Kept apart from the connection code so the bytes a delivery sends can be checked without a socket: one POST with
`Host` (the URL's own host, also the TLS SNI, whatever address the connection reaches), `Content-Length` and the
caller's headers, never `Transfer-Encoding`. Header values are refused when they carry CR or LF (no header
injection through a URL or a secret).
"""

from __future__ import annotations

import base64
import functools
import ipaddress
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}
# Reserved and unreserved characters stay as they are (and "%": the URL may be encoded already); anything else
# (spaces, non-ASCII) is percent-encoded, as a browser or aiohttp would.
_PATH_SAFE = "/?#[]@!$&'()*+,;=:%-._~"
USER_AGENT = "GridHub-Notifier/1"


class HttpFailure(OSError):
    """No usable HTTP answer (retryable: the attempt failed, the schedule tries again)."""


class InvalidTarget(HttpFailure):
    """A URL that cannot be requested (scheme, host); nothing was sent."""


class ConnectFailed(HttpFailure):
    """No connection to any address of the host (refused, unreachable, TLS handshake or certificate)."""


class ConnectTimeout(HttpFailure):
    """The connection was not made within the connect time limit."""


class ReadTimeout(HttpFailure):
    """The answer did not come within the attempt's time limit."""


class ConnectionDropped(HttpFailure):
    """The connection closed before a whole answer; `answered`: some of the answer had arrived."""

    def __init__(self, reason: str, *, answered: bool) -> None:
        super().__init__(reason)
        self.answered = answered


class MalformedAnswer(HttpFailure):
    """The peer's bytes are not an HTTP/1.x answer."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a connection goes: scheme, host (lower case, IDNA, no brackets) and port."""

    scheme: str
    host: str
    port: int

    @property
    def tls(self) -> bool:
        """Whether the connection is HTTPS."""
        return self.scheme == "https"


@dataclass(frozen=True, slots=True)
class Target:
    """One URL, parsed once: its origin and the fixed start of every request to it."""

    origin: Origin
    # "POST <path> HTTP/1.1\r\nHost: ...\r\nUser-Agent: ...\r\n" plus Authorization when the URL has user info.
    head: bytes


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer: status, the start of its body (at most the client's cap) and the headers deliveries read."""

    status: int
    body: bytes
    retry_after: str | None = None
    location: str | None = None


def is_ip_literal(host: str) -> bool:
    """Whether host is an IP address rather than a name."""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _header_safe(text: str, what: str) -> str:
    if "\r" in text or "\n" in text:
        raise InvalidTarget(f"{what} contains a line break")
    return text


@functools.lru_cache(maxsize=4096)
def parse_target(url: str) -> Target:
    """The origin and request head of a URL (cached: endpoints are few, attempts many); InvalidTarget if unusable."""
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError as exc:
        raise InvalidTarget(f"URL 无效：{exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidTarget(f"URL 须以 http:// 或 https:// 开头：{url[:100]}")
    if not host:
        raise InvalidTarget("URL 缺少主机名")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise InvalidTarget(f"主机名无效：{exc}") from exc
    host = host.rstrip(".") if not is_ip_literal(host) else host
    port = port or DEFAULT_PORTS[scheme]
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == DEFAULT_PORTS[scheme] else f"{shown}:{port}"
    path = quote(parts.path or "/", safe=_PATH_SAFE)
    if parts.query:
        path += "?" + quote(parts.query, safe=_PATH_SAFE)
    lines = [f"POST {path} HTTP/1.1", f"Host: {host_header}", f"User-Agent: {USER_AGENT}"]
    if parts.username is not None:
        # user:password@ in an operator's URL: sent as Basic credentials, as aiohttp did (registration refuses it).
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        lines.append("Authorization: Basic " + base64.b64encode(pair).decode("ascii"))
    head = "".join(f"{_header_safe(line, 'URL')}\r\n" for line in lines)
    return Target(Origin(scheme, host.lower(), port), head.encode("ascii"))


def request_bytes(target: Target, headers: dict[str, str], body: bytes) -> bytes:
    """The whole POST: head, the caller's headers, Content-Length, a blank line and the body."""
    extra = "".join(
        f"{_header_safe(name, 'header name')}: {_header_safe(value, 'header value')}\r\n"
        for name, value in headers.items()
    )
    try:
        encoded = extra.encode("ascii")
    except UnicodeEncodeError as exc:
        raise InvalidTarget(f"header not ASCII: {exc}") from exc
    return b"".join((target.head, encoded, b"Content-Length: %d\r\n\r\n" % len(body), body))
