"""Notifier outbound safety: private targets refused, allowlist, resolve-then-connect, no redirects (no internet);
the delivery client (`HttpClient`) enforcing them."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from gridhub.broker import free_port
from schemas import EndpointChannel
from services.notifier.channels import accepted
from services.notifier.delivery import post_attempt
from services.notifier.http_client import HttpClient
from services.notifier.outbound import (
    OutboundPolicy,
    OutboundRefused,
    allow_entry,
    check_url,
    url_refusal,
)
from services.notifier.settings import NotifierSettings

HOST = "hooks.example.cn"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GRIDHUB_MODE", "GRIDHUB_NOTIFIER_WEBHOOKS", "GRIDHUB_NOTIFIER_DEFAULT_WEBHOOK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("GRIDHUB_NOTIFIER_OUTBOUND_ALLOWLIST", raising=False)


@pytest.mark.parametrize(
    ("ip", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.8.8", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.10", "private"),
        ("169.254.169.254", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.251", "multicast"),
        ("100.64.0.1", "not global"),  # carrier-grade NAT
        ("255.255.255.255", "private"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "link-local"),
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("2002:a00:1::", "private"),  # 6to4 of 10.0.0.1
    ],
)
def test_refuses_non_public_addresses(ip: str, kind: str) -> None:
    why = OutboundPolicy().refusal(ip, 443)
    assert why is not None and kind in why and "GRIDHUB_NOTIFIER_OUTBOUND_ALLOWLIST" in why


@pytest.mark.parametrize("ip", ["114.114.114.114", "8.8.8.8", "240e:1::1", "2001:4860:4860::8888", "::ffff:8.8.8.8"])
def test_allows_public_addresses(ip: str) -> None:
    assert OutboundPolicy().refusal(ip, 443) is None


def test_allowlist_by_cidr_and_host_port() -> None:
    policy = OutboundPolicy.of(["127.0.0.0/8", "10.9.0.0/16", "192.168.1.5:8443", "Receiver.Local:9000"])
    assert policy.refusal("127.0.0.1", 80) is None
    assert policy.refusal("::ffff:127.0.0.1", 80) is None  # mapped: judged as its IPv4 address
    assert policy.refusal("10.9.3.4", 80) is None
    assert policy.refusal("10.8.3.4", 80) is not None
    assert policy.refusal("192.168.1.5", 8443) is None
    assert policy.refusal("192.168.1.5", 80) is not None  # only the named port
    assert policy.host_allowed("receiver.local", 9000) and not policy.host_allowed("receiver.local", 80)
    assert allow_entry("[::1]:8080") == ("::1", 8080)
    with pytest.raises(ValueError, match="neither a CIDR nor host:port"):
        allow_entry("receiver.local")


def test_settings_webhooks_are_trusted() -> None:
    settings = NotifierSettings(
        webhooks={"PA-CG-01": "http://receiver:9000/hook"}, default_webhook="http://127.0.0.1:8089/hook"
    )
    policy = OutboundPolicy.from_settings(settings)
    assert policy.host_allowed("receiver", 9000)
    assert policy.refusal("127.0.0.1", 8089) is None
    assert policy.refusal("127.0.0.1", 8090) is not None


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("gopher://hooks.example.cn/", "http:// 或 https://"),
        ("http:///path", "缺少主机名"),
        ("https://u:p@hooks.example.cn/", "用户名或密码"),
        ("https://hooks.example.cn/#x", "片段"),
        ("http://[::ffff:127.0.0.1]/", "回环"),
        ("http://169.254.169.254/latest/meta-data/", "链路本地"),
    ],
)
def test_url_refusal(url: str, why: str) -> None:
    refused = url_refusal(url, OutboundPolicy())
    assert refused is not None and why in refused


def test_url_refusal_passes_names_and_public_literals() -> None:
    assert url_refusal("https://hooks.example.cn/gridhub", OutboundPolicy()) is None
    assert url_refusal("https://114.114.114.114/x", OutboundPolicy()) is None


@dataclass
class FakeResolver(AbstractResolver):
    """Answers each lookup with the next list of addresses (the last one repeats), counting the lookups."""

    answers: list[list[str]]
    calls: list[str] = field(default_factory=list)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.calls.append(host)
        if not self.answers:
            raise OSError("no such host")
        ips = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return [
            {
                "hostname": host,
                "host": ip,
                "port": port,
                "family": socket.AF_INET6 if ":" in ip else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for ip in ips
        ]

    async def close(self) -> None:
        return None


async def test_check_url_resolves_and_checks_every_address() -> None:
    policy = OutboundPolicy()
    assert await check_url(f"https://{HOST}/x", policy, FakeResolver([["114.114.114.114"]])) is None
    mixed = await check_url(f"https://{HOST}/x", policy, FakeResolver([["114.114.114.114", "10.0.0.7"]]))
    assert mixed is not None and "10.0.0.7" in mixed and HOST in mixed
    assert "无法解析" in (await check_url(f"https://{HOST}/x", policy, FakeResolver([])) or "")
    trusted = OutboundPolicy.of([f"{HOST}:443"])
    assert await check_url(f"https://{HOST}/x", trusted, FakeResolver([["10.0.0.7"]])) is None


@dataclass
class Receiver:
    """A local receiver on 127.0.0.1: what it got, with the Host header."""

    port: int
    hits: list[tuple[str, str]] = field(default_factory=list)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    port = free_port()
    got = Receiver(port)

    async def hook(request: web.Request) -> web.Response:
        got.hits.append((request.path, request.headers["Host"]))
        return web.json_response({"ok": True})

    async def moved(request: web.Request) -> web.Response:
        got.hits.append((request.path, request.headers["Host"]))
        raise web.HTTPFound("/hook")

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_post("/moved", moved)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield got
    finally:
        await runner.cleanup()


LOOPBACK_ONLY = OutboundPolicy.of(["127.0.0.1/32"])  # stands in for "a public address" here: no internet in tests


def client(policy: OutboundPolicy, resolver: FakeResolver | None = None) -> HttpClient:
    return HttpClient(policy=policy, timeout_s=5, resolver=resolver)


async def test_connects_to_the_checked_address_with_the_urls_host(receiver: Receiver) -> None:
    # The first answer is checked and used; the second (private) one would only come from a new lookup.
    resolver = FakeResolver([["127.0.0.1"], ["10.0.0.7"]])
    http = client(LOOPBACK_ONLY, resolver)
    url = f"http://{HOST}:{receiver.port}/hook"
    for _ in range(2):  # the second time on the kept-alive connection, or a new one to the same checked address
        assert (await http.post(url, b"{}", {})).status == 200
    await http.close()
    assert receiver.hits == [("/hook", f"{HOST}:{receiver.port}")] * 2
    assert resolver.calls == [HOST]  # resolved once: no second lookup between check and connect


async def test_a_resolver_switching_to_private_cannot_redirect_the_connection(receiver: Receiver) -> None:
    # Registration saw an allowed address; by delivery time DNS answers a private one: refused, nothing sent.
    resolver = FakeResolver([["127.0.0.1"], ["10.0.0.7"]])
    url = f"http://{HOST}:{receiver.port}/hook"
    assert await check_url(url, LOOPBACK_ONLY, resolver) is None
    http = client(LOOPBACK_ONLY, resolver)
    with pytest.raises(OutboundRefused) as caught:
        await http.post(url, b"{}", {})
    assert "10.0.0.7" in str(caught.value)
    assert receiver.hits == []
    result, _, _ = await post_attempt(http, url, b"{}", {})  # as the engine sees it: a failed attempt, no status
    error = result.error or ""
    assert result.status is None and error.startswith("OutboundRefused") and "10.0.0.7" in error


async def test_one_private_answer_refuses_the_host(receiver: Receiver) -> None:
    resolver = FakeResolver([["127.0.0.1", "192.168.0.9"]])
    with pytest.raises(OutboundRefused, match=r"192\.168\.0\.9"):
        await client(LOOPBACK_ONLY, resolver).post(f"http://{HOST}:{receiver.port}/hook", b"{}", {})
    assert receiver.hits == []


async def test_literal_private_address_refused_unless_allowlisted(receiver: Receiver) -> None:
    url = f"http://127.0.0.1:{receiver.port}/hook"
    http = client(OutboundPolicy.from_settings(NotifierSettings()))
    with pytest.raises(OutboundRefused, match="回环地址"):
        await http.post(url, b"{}", {})
    with pytest.raises(OutboundRefused, match="回环地址"):
        await http.post(f"http://[::ffff:127.0.0.1]:{receiver.port}/hook", b"{}", {})
    assert receiver.hits == []
    allowed = client(OutboundPolicy.from_settings(NotifierSettings(outbound_allowlist=("127.0.0.0/8",))))
    assert (await allowed.post(url, b"{}", {})).status == 200
    # The operator's own webhook is trusted.
    configured = client(OutboundPolicy.from_settings(NotifierSettings(default_webhook=url)))
    assert (await configured.post(url, b"{}", {})).status == 200
    assert len(receiver.hits) == 2
    for each in (http, allowed, configured):
        await each.close()


async def test_redirects_are_not_followed(receiver: Receiver) -> None:
    settings = NotifierSettings(outbound_allowlist=(f"127.0.0.1:{receiver.port}",))
    url = f"http://127.0.0.1:{receiver.port}/moved"
    http = client(OutboundPolicy.from_settings(settings))
    answer = await http.post(url, b"{}", {})
    verdict = accepted(EndpointChannel.WEBHOOK, answer.status, answer.body, answer.location)
    assert answer.status == 302
    assert verdict.ok is False and "不跟随跳转" in (verdict.error or "") and "/hook" in (verdict.error or "")
    assert [path for path, _ in receiver.hits] == ["/moved"]  # the /hook it points to was never asked
    await http.close()
