"""A minimal, fast webhook receiver for the benches: records when each event's first webhook arrived.

Run: python bench/receiver.py --port 8200 [--verify whsec_...]
  POST /webhook   the notifier's delivery (TaskDispatched JSON); answers 200 at once (with --verify, after checking
                  the Standard Webhooks signature of every delivery with the `standardwebhooks` package; a bad one
                  answers 400)
  GET  /stats     {"deliveries": n, "events": distinct event ids, "primary": primary-role deliveries, "bad_signatures",
                   "verified": signatures checked, "verify": "every delivery" | "off"}
  GET  /arrivals  {event_id: time.time() of its first webhook}  (?by=webhook-id: keyed by webhook-id instead)

Plain asyncio protocols with httptools' request parser on uvloop (HTTP/1.1 keep-alive, Content-Length or chunked
bodies): the receiver stands for every unit at once, so it must not be what limits the notifier's figures (an
aiohttp server with JSON parsed twice cost ~250 µs of CPU per delivery on the 2-core machine; this one about a
third of that, most of it the signature check).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httptools
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

try:
    import orjson

    loads: Callable[[bytes], Any] = orjson.loads
except ImportError:  # the standard library will do, slower
    loads = json.loads

REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed"}


class Receiver:
    """What the receiver has seen; all in memory."""

    def __init__(self, secret: str | None) -> None:
        self.first: dict[str, float] = {}
        self.by_webhook: dict[str, float] = {}
        self.counts = {"deliveries": 0, "primary": 0, "bad": 0, "bad_signatures": 0, "verified": 0}
        self.verifier = Webhook(secret) if secret else None

    def webhook(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """One delivery: verify its signature (with a secret), note its first arrival."""
        arrived = time.time()
        counts = self.counts
        if self.verifier is not None:
            try:
                self.verifier.verify(body, headers, json_parse=False)
            except WebhookVerificationError:
                counts["bad_signatures"] += 1
                return 400, b"bad signature"
            counts["verified"] += 1
        counts["deliveries"] += 1
        self.by_webhook.setdefault(headers.get("webhook-id", ""), arrived)
        try:
            task = loads(body)
            event_id = str(task["event_id"])
        except (ValueError, KeyError, TypeError):
            counts["bad"] += 1
            return 200, b""
        self.first.setdefault(event_id, arrived)
        if task.get("role") == "primary":
            counts["primary"] += 1
        return 200, b""

    def route(self, method: bytes, url: bytes, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, bool]:
        """(status, body, is JSON) of one request."""
        parts = urlsplit(url.decode("latin-1"))
        if parts.path == "/webhook":
            if method != b"POST":
                return 405, b"", False
            status, answer = self.webhook(body, headers)
            return status, answer, False
        if method != b"GET":
            return 405 if parts.path in ("/stats", "/arrivals") else 404, b"", False
        if parts.path == "/stats":
            verify = "every delivery" if self.verifier is not None else "off"
            return 200, json.dumps({**self.counts, "events": len(self.first), "verify": verify}).encode(), True
        if parts.path == "/arrivals":
            by = parse_qs(parts.query).get("by", [""])[0]
            return 200, json.dumps(self.by_webhook if by == "webhook-id" else self.first).encode(), True
        return 404, b"", False


class _Connection(asyncio.Protocol):
    """One client connection: requests parsed as they arrive, answered in order."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.parser = httptools.HttpRequestParser(self)
        self.transport: Any = None
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            self.transport.close()

    def on_message_begin(self) -> None:
        self._url, self._headers, self._body = b"", {}, []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method()
        status, body, is_json = self.receiver.route(method, self._url, b"".join(self._body), self._headers)
        keep_alive = self.parser.should_keep_alive()
        kind = b"application/json" if is_json else b"text/plain; charset=utf-8"
        head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n" % (
            status,
            REASONS.get(status, b"Other"),
            kind,
            len(body),
            b"" if keep_alive else b"Connection: close\r\n",
        )
        self.transport.write(head + body)
        if not keep_alive:
            self.transport.close()


async def serve(host: str, port: int, secret: str | None) -> None:
    """Serve until SIGTERM or SIGINT."""
    receiver = Receiver(secret)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(receiver), host, port, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        server.close()


def main() -> None:
    """Parse --host/--port/--verify and serve until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8200)
    parser.add_argument("--verify", default=None, help="whsec_ secret: verify every delivery's signature.")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:  # asyncio's own loop will do, slower
        asyncio.run(serve(args.host, args.port, args.verify))
        return
    uvloop.run(serve(args.host, args.port, args.verify))


if __name__ == "__main__":
    main()
