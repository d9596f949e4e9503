"""The delivery client (`HttpClient`): answers framed every way, keep-alive, 1xx, a server closing an idle connection,
time limits, capped answers, TLS with the URL's host, and the request bytes (no network beyond loopback)."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.notifier.delivery import post_attempt
from services.notifier.http_client import HttpClient
from services.notifier.http_wire import (
    ConnectFailed,
    ConnectionDropped,
    InvalidTarget,
    ReadTimeout,
    parse_target,
    request_bytes,
)
from services.notifier.outbound import OutboundPolicy
from tests.unit.test_notifier_outbound import FakeResolver

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
CLOSE = b"<close>"  # close the connection without answering
HANG = b"<hang>"  # never answer


def answer(status: int, body: bytes = b"", *headers: str) -> bytes:
    extra = "".join(f"{h}\r\n" for h in headers).encode()
    return b"HTTP/1.1 %d X\r\n%sContent-Length: %d\r\n\r\n%s" % (status, extra, len(body), body)


@dataclass
class Script:
    """A loopback HTTP/1.1 server answering each request with the next scripted bytes (or closing, or hanging)."""

    answers: list[bytes]
    requests: list[tuple[int, bytes]] = field(default_factory=list)  # (connection number, request bytes)
    connections: int = 0
    close_after: set[int] = field(default_factory=set)  # request numbers after whose answer the server closes
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = self.connections
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                request = head + await reader.readexactly(length)
                self.requests.append((number, request))
                reply = self.answers.pop(0)
                if reply == CLOSE:
                    return
                if reply == HANG:
                    await reader.read()  # until the client gives up and closes
                    return
                writer.write(reply)
                await writer.drain()
                if len(self.requests) in self.close_after:
                    return
        finally:
            writer.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


Serve = Callable[..., Awaitable[Script]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[asyncio.Server] = []

    async def start(answers: list[bytes], close_after: set[int] | None = None) -> Script:
        script = Script(list(answers), close_after=close_after or set())
        server = await asyncio.start_server(script.handle, "127.0.0.1", 0)
        script.port = server.sockets[0].getsockname()[1]
        servers.append(server)
        return script

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def plain(timeout_s: float = 5.0, **options: int) -> HttpClient:
    return HttpClient(policy=None, timeout_s=timeout_s, **options)  # type: ignore[arg-type]


HEADERS = {"webhook-id": "task_T1", "content-type": "application/json"}


async def test_keep_alive_carries_content_length_and_chunked_answers_on_one_connection(serve: Serve) -> None:
    chunked = b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    script = await serve([OK, chunked, answer(204)])
    http = plain()
    answers = [await http.post(script.url, b'{"n":%d}' % n, HEADERS) for n in range(3)]
    assert [(a.status, a.body) for a in answers] == [(200, b"ok"), (202, b"abcde"), (204, b"")]
    assert [number for number, _ in script.requests] == [0, 0, 0]  # one connection for all three
    first = script.requests[0][1]
    assert first.startswith(b"POST /hook HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % script.port)
    assert b"\r\nwebhook-id: task_T1\r\n" in first and first.endswith(b'Content-Length: 7\r\n\r\n{"n":0}')
    assert http.idle_connections() == 1
    await http.close()
    assert http.idle_connections() == 0


async def test_connection_close_and_read_to_close_answers_are_not_reused(serve: Serve) -> None:
    close = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    until_close = b"HTTP/1.0 200 OK\r\n\r\nthe body ends with the connection"
    script = await serve([close, until_close, OK], close_after={1, 2})
    http = plain()
    first = await http.post(script.url, b"{}", HEADERS)
    second = await http.post(script.url, b"{}", HEADERS)
    third = await http.post(script.url, b"{}", HEADERS)
    assert (first.body, second.body, third.body) == (b"ok", b"the body ends with the connection", b"ok")
    assert [number for number, _ in script.requests] == [0, 1, 2]
    await http.close()


async def test_interim_1xx_answers_are_skipped(serve: Serve) -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" + answer(201, b"made")
    script = await serve([interim, OK])
    http = plain()
    got = await http.post(script.url, b"{}", HEADERS)
    assert (got.status, got.body) == (201, b"made")
    assert (await http.post(script.url, b"{}", HEADERS)).status == 200
    assert [number for number, _ in script.requests] == [0, 0]
    await http.close()


async def test_a_kept_connection_the_server_dropped_is_retried_once_on_a_fresh_one(serve: Serve) -> None:
    # Request 2 finds the kept connection closed by the server before any answer byte: sent again, on connection 1.
    script = await serve([OK, CLOSE, OK])
    http = plain()
    assert (await http.post(script.url, b"1", HEADERS)).status == 200
    assert (await http.post(script.url, b"2", HEADERS)).status == 200
    assert [(number, request[-1:]) for number, request in script.requests] == [(0, b"1"), (0, b"2"), (1, b"2")]
    await http.close()


async def test_a_connection_closed_by_the_server_while_idle_is_not_used(serve: Serve) -> None:
    script = await serve([OK, OK], close_after={1})
    http = plain()
    assert (await http.post(script.url, b"1", HEADERS)).status == 200
    await asyncio.sleep(0.05)  # the server's close arrives while the connection is idle
    assert (await http.post(script.url, b"2", HEADERS)).status == 200
    assert [number for number, _ in script.requests] == [0, 1]
    await http.close()


async def test_a_fresh_connection_dropped_or_a_half_answer_is_not_sent_again(serve: Serve) -> None:
    script = await serve([CLOSE])
    with pytest.raises(ConnectionDropped) as dropped:
        await plain().post(script.url, b"{}", HEADERS)
    assert dropped.value.answered is False and len(script.requests) == 1
    half = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"
    script = await serve([OK, half], close_after={2})
    http = plain()
    await http.post(script.url, b"{}", HEADERS)
    with pytest.raises(ConnectionDropped) as cut:
        await http.post(script.url, b"{}", HEADERS)
    assert cut.value.answered is True and len(script.requests) == 2  # some answer came: never re-sent


async def test_time_limits_and_refused_connections_are_failures(serve: Serve) -> None:
    script = await serve([HANG])
    http = plain(timeout_s=0.3)
    with pytest.raises(ReadTimeout, match=r"0\.3 s"):
        await http.post(script.url, b"{}", HEADERS)
    assert http.idle_connections() == 0  # a timed-out connection is closed, never reused
    with pytest.raises(ConnectFailed, match=r"127\.0\.0\.1"):
        await http.post(f"http://127.0.0.1:{closed_port()}/hook", b"{}", HEADERS)


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_redirects_retry_after_and_capped_answers(serve: Serve) -> None:
    big = b"x" * 100_000
    script = await serve(
        [
            answer(302, b"", "Location: /elsewhere"),
            answer(429, b"slow down", "Retry-After: 7"),
            answer(500, big),
            OK,
            answer(500, big),
        ]
    )
    http = HttpClient(policy=None, timeout_s=5, max_answer_bytes=1000, max_drain_bytes=50_000)
    moved = await http.post(script.url, b"{}", HEADERS)
    assert (moved.status, moved.location) == (302, "/elsewhere")  # answered as is, not followed
    slow = await http.post(script.url, b"{}", HEADERS)
    assert (slow.status, slow.retry_after, slow.body) == (429, "7", b"slow down")
    # Past max_answer_bytes the body is cut; past max_drain_bytes the connection is given up after the answer.
    capped = await http.post(script.url, b"{}", HEADERS)
    assert (capped.status, len(capped.body)) == (500, 1000)
    assert (await http.post(script.url, b"{}", HEADERS)).status == 200
    assert [number for number, _ in script.requests] == [0, 0, 0, 1]
    roomy = HttpClient(policy=None, timeout_s=5, max_answer_bytes=1000)
    drained = await roomy.post(script.url, b"{}", HEADERS)
    assert len(drained.body) == 1000 and roomy.idle_connections() == 1  # read to its end: the connection is kept
    await http.close()
    await roomy.close()


async def test_post_attempt_turns_answers_and_failures_into_attempt_results(serve: Serve) -> None:
    script = await serve([answer(503, "稍后再试".encode(), "Retry-After: 20"), OK])
    http = plain()
    busy, _, _ = await post_attempt(http, script.url, b"{}", HEADERS)
    assert (busy.status, busy.error, busy.retry_after_s) == (503, "稍后再试", 20.0)
    good, elapsed, _ = await post_attempt(http, script.url, b"{}", HEADERS)
    assert (good.status, good.error, good.delivered) == (200, None, True) and elapsed > 0
    failed, _, _ = await post_attempt(http, f"http://127.0.0.1:{closed_port()}/h", b"{}", HEADERS)
    assert failed.status is None and (failed.error or "").startswith("ConnectFailed")
    await http.close()


def test_request_bytes_and_targets() -> None:
    target = parse_target("https://Hooks.Example.cn/a b/收件?x=1&y=中")
    assert (target.origin.scheme, target.origin.host, target.origin.port) == ("https", "hooks.example.cn", 443)
    assert target.head.startswith(
        b"POST /a%20b/%E6%94%B6%E4%BB%B6?x=1&y=%E4%B8%AD HTTP/1.1\r\nHost: hooks.example.cn\r\n"
    )
    assert parse_target("http://[::1]:8080/").head.startswith(b"POST / HTTP/1.1\r\nHost: [::1]:8080\r\n")
    assert b"Authorization: Basic dTpw\r\n" in parse_target("http://u:p@example.cn/h").head
    sent = request_bytes(parse_target("http://example.cn/h"), {"webhook-id": "task_1"}, b"{}")
    assert sent.endswith(b"webhook-id: task_1\r\nContent-Length: 2\r\n\r\n{}")
    with pytest.raises(InvalidTarget):
        request_bytes(parse_target("http://example.cn/h"), {"webhook-id": "x\r\nInjected: 1"}, b"{}")
    for bad in ("ftp://example.cn/h", "http:///nohost", "http://example.cn:99999/"):
        with pytest.raises(InvalidTarget):
            parse_target(bad)


def test_the_client_on_uvloop() -> None:
    # The services run on uvloop, whose transports are not asyncio.Transport subclasses.
    async def main() -> tuple[int, list[int]]:
        script = Script([OK, OK])
        server = await asyncio.start_server(script.handle, "127.0.0.1", 0)
        script.port = server.sockets[0].getsockname()[1]
        http = plain()
        try:
            statuses = [(await http.post(script.url, b"{}", HEADERS)).status for _ in range(2)]
        finally:
            await http.close()
            server.close()
            await server.wait_closed()
        return statuses[0], [number for number, _ in script.requests]

    assert uvloop.run(main()) == (200, [0, 0])


# --- TLS -------------------------------------------------------------------------------------------------------


def _certificate(tmp: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


async def test_https_checks_the_certificate_against_the_urls_host(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path, "hooks.example.cn")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    names: list[str | None] = []
    server_ctx.sni_callback = lambda _sock, name, _ctx: names.append(name)
    script = Script([OK, OK])
    server = await asyncio.start_server(script.handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    trusting = ssl.create_default_context(cafile=str(cert))
    loopback = OutboundPolicy.of(["127.0.0.1/32"])
    try:
        http = HttpClient(policy=loopback, timeout_s=5, resolver=FakeResolver([["127.0.0.1"]]), ssl_context=trusting)
        got = await http.post(f"https://hooks.example.cn:{port}/hook", b"{}", HEADERS)
        assert got.status == 200 and names == ["hooks.example.cn"]  # SNI: the URL's host, not the address
        assert script.requests[0][1].startswith(b"POST /hook HTTP/1.1\r\nHost: hooks.example.cn:%d\r\n" % port)
        # Another name on the same address: the certificate does not match it.
        with pytest.raises(ConnectFailed, match=r"certificate|hostname"):
            await http.post(f"https://other.example.cn:{port}/hook", b"{}", HEADERS)
        await http.close()
        # The system's trust store does not know this self-signed certificate.
        default = HttpClient(policy=loopback, timeout_s=5, resolver=FakeResolver([["127.0.0.1"]]))
        with pytest.raises(ConnectFailed, match="certificate"):
            await default.post(f"https://hooks.example.cn:{port}/hook", b"{}", HEADERS)
        await default.close()
    finally:
        server.close()
        await server.wait_closed()
    assert len(script.requests) == 1
