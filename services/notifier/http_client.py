"""A lean HTTP/1.1 client for deliveries: asyncio protocols parsed by httptools, keep-alive pools per origin.

Why not aiohttp's client: a delivery is one small POST and one small answer, and aiohttp spent about half of the
notifier's CPU per delivery on its request/response machinery (measured: a plain aiohttp client reached
1,240-1,490 POSTs/s against the bench's receiver). Here a request is one `transport.write` of bytes built by
`http_wire`, and the answer is read by llhttp (httptools) in C.

* Outbound safety (`outbound.py`'s policy): the host is resolved, every address checked, and the connection made
  to exactly those addresses (resolve then connect; never resolved again in between); the URL's host stays the
  Host header and, for https, the TLS SNI and the name the certificate is verified against.
* No redirects: a 3xx is returned as an answer like any other (the caller counts it as a failed attempt).
* Time limits: `connect_timeout_s` for the connection (TLS handshake included), `timeout_s` for the whole attempt.
* Answers: Content-Length, chunked or read-to-close bodies; 1xx interim answers skipped; the body kept up to
  `max_answer_bytes` (the rest read and dropped, or the connection closed past `max_drain_bytes`).
* Keep-alive: after a complete answer that allows it, the connection goes back to its origin's idle list (at most
  `max_idle_per_origin`, none older than `idle_timeout_s`). A reused connection the server had closed while idle
  fails before any answer byte: the request is sent once more on a fresh connection (deliveries are idempotent by
  webhook-id, so a second copy is harmless, and a request that got any answer byte is never re-sent).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, cast

import httptools

from services.notifier.http_wire import (
    Answer,
    ConnectFailed,
    ConnectionDropped,
    ConnectTimeout,
    MalformedAnswer,
    Origin,
    ReadTimeout,
    is_ip_literal,
    parse_target,
    request_bytes,
)
from services.notifier.outbound import OutboundPolicy, OutboundRefused

DNS_TTL_S = 60.0


class Resolver(Protocol):
    """Resolves a host name (aiohttp's AbstractResolver has this shape: tests hand in a fake one)."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = ...
    ) -> Sequence[Mapping[str, Any]]:
        """Addresses of host, each a mapping with at least "host" (the address as text)."""
        ...


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: one request at a time, its answer parsed as the bytes arrive."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_answer_bytes: int, max_drain_bytes: int) -> None:
        self.loop = loop
        self.max_answer_bytes = max_answer_bytes
        self.max_drain_bytes = max_drain_bytes
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Answer] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timeout_text = ""
        self.closed = False
        self.keep_alive = False
        self._received = False  # some byte of the current answer arrived
        self._reset()

    def _reset(self) -> None:
        self._status = 0
        self._body: list[bytes] = []
        self._kept = 0
        self._seen = 0
        self._retry_after: str | None = None
        self._location: str | None = None
        self._framed = False  # Content-Length or chunked: the body's end is known without EOF
        self._headers_done = False

    # --- asyncio.Protocol -----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        self._stop_timer()
        if self._headers_done and not self._framed and self._status >= 200:
            self._complete(keep_alive=False)  # a body delimited by the end of the connection
            return
        why = f"connection closed before a whole answer{f': {exc}' if exc else ''}"
        waiter.set_exception(ConnectionDropped(why, answered=self._received))

    def data_received(self, data: bytes) -> None:
        if self.waiter is None or self.waiter.done():
            self.close()  # bytes nobody asked for: this connection cannot be trusted with another request
            return
        self._received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(MalformedAnswer("the server switched protocols (101): not a webhook answer"))
        except httptools.HttpParserError as exc:
            self._fail(MalformedAnswer(f"not an HTTP/1.1 answer: {exc}"))

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost completes or fails the answer

    # --- httptools callbacks ---------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._reset()

    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered == b"content-length" or lowered == b"transfer-encoding":
            self._framed = True
        elif lowered == b"retry-after":
            self._retry_after = value.decode("latin-1").strip()
        elif lowered == b"location":
            self._location = value.decode("latin-1").strip()

    def on_headers_complete(self) -> None:
        self._status = self.parser.get_status_code()
        self._headers_done = True

    def on_body(self, chunk: bytes) -> None:
        self._seen += len(chunk)
        room = self.max_answer_bytes - self._kept
        if room > 0:
            part = chunk[:room]
            self._body.append(part)
            self._kept += len(part)
        if self._seen > self.max_drain_bytes:
            # Enough of an answer: stop reading it, and never reuse the connection.
            self._complete(keep_alive=False)
            self.close()

    def on_message_complete(self) -> None:
        if 100 <= self._status < 200:
            return  # an interim answer (100 Continue, 103 Early Hints): the real one follows
        self._complete(keep_alive=self.parser.should_keep_alive())

    # --- requests ---------------------------------------------------------------------------------------

    def send(self, data: bytes, deadline: float, timeout_text: str) -> asyncio.Future[Answer]:
        """Write one request; the future gets its answer, or ReadTimeout at `deadline` (loop time)."""
        assert self.transport is not None
        self.waiter = self.loop.create_future()
        # A timer on the future, not asyncio.timeout around the await: no task cancellation per attempt.
        self._timeout_text = timeout_text
        self._timer = self.loop.call_at(deadline, self._expire)
        if self.closed:  # closed by the peer before this request (connection_lost will not come again)
            self._fail(ConnectionDropped("connection closed before the request was sent", answered=False))
            return self.waiter
        self.keep_alive = False
        self._received = False
        self._reset()
        self.transport.write(data)
        return self.waiter

    def usable(self) -> bool:
        """Idle and open: may carry another request."""
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        """Close the connection (an answer in progress fails)."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _expire(self) -> None:
        self._fail(ReadTimeout(self._timeout_text))

    def _complete(self, *, keep_alive: bool) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        self._stop_timer()
        body = b"".join(self._body)
        self.keep_alive = keep_alive
        waiter.set_result(Answer(self._status, body, self._retry_after, self._location))

    def _fail(self, exc: Exception) -> None:
        self._stop_timer()
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class HttpClient:
    """POSTs to webhooks over pooled keep-alive connections, within the outbound policy (None: no checks)."""

    def __init__(
        self,
        *,
        policy: OutboundPolicy | None,
        timeout_s: float,
        connect_timeout_s: float | None = None,
        max_idle_per_origin: int = 64,
        idle_timeout_s: float = 15.0,
        max_answer_bytes: int = 64 * 1024,
        max_drain_bytes: int = 4 * 1024 * 1024,
        resolver: Resolver | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.policy = policy
        self.timeout_s = timeout_s
        self.connect_timeout_s = min(connect_timeout_s or timeout_s, timeout_s)
        self.max_idle_per_origin = max_idle_per_origin
        self.idle_timeout_s = idle_timeout_s
        self.max_answer_bytes = max_answer_bytes
        self.max_drain_bytes = max_drain_bytes
        self.resolver = resolver
        self._ssl = ssl_context
        self._idle: dict[Origin, list[tuple[float, _Connection]]] = {}
        self._dns: dict[tuple[str, int], tuple[float, list[str]]] = {}
        self._closed = False

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        """POST body to url and return the answer (any status: redirects are not followed).

        Raises HttpFailure (no usable answer: ReadTimeout past `timeout_s`, ConnectFailed, ...), OutboundRefused
        (the policy refuses the target: nothing was sent)."""
        target = parse_target(url)
        data = request_bytes(target, headers, body)
        origin = target.origin
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        conn = self._take_idle(origin)
        if conn is not None:
            try:
                return await self._exchange(origin, conn, data, deadline)
            except ConnectionDropped as exc:
                if exc.answered:
                    raise
                # Closed by the server while idle, before any answer: once more on a fresh connection.
        return await self._exchange(origin, await self._connect(origin, deadline), data, deadline)

    async def close(self) -> None:
        """Close every idle connection (attempts in flight keep theirs until they end)."""
        self._closed = True
        for conns in self._idle.values():
            for _, conn in conns:
                conn.close()
        self._idle.clear()

    def idle_connections(self) -> int:
        """Open idle connections (all origins)."""
        return sum(1 for conns in self._idle.values() for _, conn in conns if conn.usable())

    # --- internals --------------------------------------------------------------------------------------

    async def _exchange(self, origin: Origin, conn: _Connection, data: bytes, deadline: float) -> Answer:
        try:
            answer = await conn.send(data, deadline, self._timeout_text(origin))
        except BaseException:
            conn.close()  # a failed, timed-out or cancelled exchange leaves the connection in an unknown state
            raise
        if conn.keep_alive and conn.usable() and not self._closed:
            self._put_idle(origin, conn)
        else:
            conn.close()
        return answer

    def _take_idle(self, origin: Origin) -> _Connection | None:
        conns = self._idle.get(origin)
        if not conns:
            return None
        oldest_ok = time.monotonic() - self.idle_timeout_s
        while conns:
            since, conn = conns.pop()  # the most recently used: the least likely to have been closed by the server
            if since >= oldest_ok and conn.usable():
                return conn
            conn.close()
        return None

    def _put_idle(self, origin: Origin, conn: _Connection) -> None:
        conns = self._idle.setdefault(origin, [])
        now = time.monotonic()
        # Expired ones are at the front (the list is in order of release): drop them while here.
        while conns and (now - conns[0][0] > self.idle_timeout_s or not conns[0][1].usable()):
            conns.pop(0)[1].close()
        if len(conns) >= self.max_idle_per_origin:
            conn.close()
            return
        conns.append((now, conn))

    def _timeout_text(self, origin: Origin) -> str:
        return f"no answer from {origin.host}:{origin.port} within {self.timeout_s:g} s"

    async def _connect(self, origin: Origin, deadline: float) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(deadline):  # a slow DNS answer counts against the attempt's limit too
                addresses = await self._addresses(origin)
        except TimeoutError:
            raise ReadTimeout(self._timeout_text(origin)) from None
        failure: Exception | None = None
        for address in addresses:
            limit = min(self.connect_timeout_s, deadline - loop.time())
            if limit <= 0:
                raise ReadTimeout(self._timeout_text(origin))
            try:
                async with asyncio.timeout(limit):
                    _, conn = await loop.create_connection(
                        lambda: _Connection(loop, self.max_answer_bytes, self.max_drain_bytes),
                        address,
                        origin.port,
                        ssl=self._ssl_context() if origin.tls else None,
                        server_hostname=origin.host if origin.tls else None,
                    )
                return conn
            except TimeoutError:
                failure = ConnectTimeout(f"{origin.host}:{origin.port} ({address}): no connection within {limit:.3g} s")
            except OSError as exc:  # refused, unreachable, TLS (ssl.SSLError is an OSError)
                failure = ConnectFailed(f"{origin.host}:{origin.port} ({address}): {exc}")
        assert failure is not None
        raise failure

    async def _addresses(self, origin: Origin) -> list[str]:
        """The addresses to connect to, every one checked against the policy (one refused address refuses all)."""
        host, port = origin.host, origin.port
        if is_ip_literal(host):
            addresses = [host]
        else:
            cached = self._dns.get((host, port))
            if cached is not None and cached[0] > time.monotonic():
                addresses = cached[1]
            else:
                addresses = await self._resolve(host, port)
                self._dns[(host, port)] = (time.monotonic() + DNS_TTL_S, addresses)
        policy = self.policy
        if policy is not None and not policy.host_allowed(host, port):
            for address in addresses:
                if (why := policy.refusal(address, port)) is not None:
                    raise OutboundRefused(f"{host}:{port}: {why}")
        return addresses

    async def _resolve(self, host: str, port: int) -> list[str]:
        try:
            if self.resolver is not None:
                found = [str(a["host"]) for a in await self.resolver.resolve(host, port, family=socket.AF_UNSPEC)]
            else:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
                found = [str(info[4][0]) for info in infos]
        except OSError as exc:
            raise ConnectFailed(f"无法解析主机名 {host}：{exc}") from exc
        unique = list(dict.fromkeys(found))
        if not unique:
            raise ConnectFailed(f"无法解析主机名 {host}：no address")
        return unique

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            # Certificates and host names verified (the default context); made once, on the first https target.
            self._ssl = ssl.create_default_context()
        return self._ssl
