"""Where the notifier may connect: no loopback, link-local, private, multicast or reserved targets unless allowlisted.

A unit registers its own URL, so the hub must not become a way into the county's internal network (SSRF). Three
rules, all enforced by the delivery engine's HTTP client (`http_client.HttpClient`, given `OutboundPolicy`):

* every address a host resolves to must be public (`is_global`, not multicast), IPv4 inside IPv6 (IPv4-mapped
  ``::ffff:a.b.c.d``, 6to4, NAT64 ``64:ff9b::/96``) judged by its IPv4 address, unless the allowlist
  (`GRIDHUB_NOTIFIER_OUTBOUND_ALLOWLIST`: CIDRs or host:port) names it; one bad address refuses the host;
* resolve then connect: the client checks the very addresses it resolved and connects to those (the URL's host
  stays the Host header and the TLS SNI), so a DNS answer cannot change between check and connect;
* no redirects: the client never follows one; a 3xx is a failed attempt (`channels.accepted`).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aiohttp
from aiohttp.abc import AbstractResolver
from yarl import URL

if TYPE_CHECKING:
    from services.notifier.settings import NotifierSettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
SCHEMES = ("http", "https")


class OutboundRefused(OSError):
    """A target the outbound policy refuses (before connecting: the attempt fails, nothing is sent)."""

    def __init__(self, reason: str) -> None:
        super().__init__(errno.EACCES, reason)


def allow_entry(text: str) -> IPNetwork | tuple[str, int]:
    """One allowlist entry: a CIDR (or a bare address) or host:port ([v6]:port); ValueError when neither."""
    text = text.strip()
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        pass
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"outbound allowlist entry {text!r} is neither a CIDR nor host:port")
    return host.strip("[]").lower().rstrip("."), int(port)


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _kind_zh(address: IPAddress) -> str | None:
    """Why an address is not a public target (Chinese, with the English term), or None when it is public."""
    checks = (
        (address.is_unspecified, "未指定地址（unspecified）"),
        (address.is_loopback, "回环地址（loopback）"),
        (address.is_link_local, "链路本地地址（link-local）"),
        (address.is_multicast, "组播地址（multicast）"),
        (address.is_private, "内网地址（private）"),
        (address.is_reserved, "保留地址（reserved）"),
        (not address.is_global, "非公网地址（not global）"),
    )
    return next((why for bad, why in checks if bad), None)


@dataclass(frozen=True)
class OutboundPolicy:
    """The allowlist: networks whose addresses are allowed, and host:port pairs allowed whatever they resolve to."""

    networks: tuple[IPNetwork, ...] = ()
    hostports: frozenset[tuple[str, int]] = field(default_factory=frozenset)

    @classmethod
    def of(cls, entries: Sequence[str], trusted_urls: Sequence[str] = ()) -> OutboundPolicy:
        """A policy from allowlist entries and operator-configured URLs (their host:port is trusted)."""
        networks: list[IPNetwork] = []
        hostports: set[tuple[str, int]] = set()
        for entry in entries:
            parsed = allow_entry(entry)
            if isinstance(parsed, tuple):
                hostports.add(parsed)
            else:
                networks.append(parsed)
        for url in trusted_urls:
            target = URL(url)
            if target.host and target.port:
                hostports.add((target.host.lower().rstrip("."), target.port))
        return cls(tuple(networks), frozenset(hostports))

    @classmethod
    def from_settings(cls, settings: NotifierSettings) -> OutboundPolicy:
        """The notifier's policy: its allowlist, and the hosts of GRIDHUB_NOTIFIER_WEBHOOKS / DEFAULT_WEBHOOK."""
        trusted = [*settings.webhooks.values(), *([settings.default_webhook] if settings.default_webhook else [])]
        return cls.of(settings.outbound_allowlist, trusted)

    def host_allowed(self, host: str, port: int) -> bool:
        """Whether host:port is allowlisted by name (then its addresses are not checked)."""
        return (host.lower().rstrip("."), port) in self.hostports

    def refusal(self, ip: str, port: int) -> str | None:
        """Why the notifier may not connect to ip:port (Chinese), or None when it may."""
        try:
            address = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return f"地址 {ip} 无法识别"
        inner = _embedded_ipv4(address)
        candidates = [address] if inner is None else [address, inner]
        if any(self.host_allowed(str(c), port) for c in candidates) or any(
            candidate in network for candidate in candidates for network in self.networks
        ):
            return None
        # An IPv4 address inside IPv6 (mapped, 6to4, NAT64) is what the packets reach: judge that one.
        why = _kind_zh(inner if inner is not None else address)
        if why is None:
            return None
        return f"地址 {ip} 是{why}，不允许作为推送目标（可由 GRIDHUB_NOTIFIER_OUTBOUND_ALLOWLIST 放行）"


def url_refusal(url: str, policy: OutboundPolicy) -> str | None:
    """Why a URL cannot be an endpoint without resolving it (scheme, host, a literal address), or None."""
    try:
        target = URL(url)
    except ValueError:
        return "URL 格式无效"
    if target.scheme not in SCHEMES:
        return "URL 须以 http:// 或 https:// 开头"
    if not target.host or target.port is None:
        return "URL 缺少主机名"
    if target.user is not None or target.password is not None:
        return "URL 不得包含用户名或密码"
    if target.fragment:
        return "URL 不得包含 # 片段"
    try:
        ipaddress.ip_address(target.host.split("%", 1)[0])
    except ValueError:
        return None  # a name: judged by what it resolves to
    return policy.refusal(target.host, target.port)


async def check_url(url: str, policy: OutboundPolicy, resolver: AbstractResolver | None = None) -> str | None:
    """Why a URL cannot be an endpoint now (syntax, or any address it resolves to), or None (registration check)."""
    if (why := url_refusal(url, policy)) is not None:
        return why
    target = URL(url)
    host, port = target.host, target.port
    assert host is not None and port is not None  # url_refusal checked both
    if policy.host_allowed(host, port):
        return None
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        return None  # a literal address, checked above
    except ValueError:
        pass
    own = resolver is None
    active = resolver if resolver is not None else aiohttp.ThreadedResolver()
    try:
        answers = await active.resolve(host, port, family=socket.AF_UNSPEC)
    except OSError as exc:
        return f"无法解析主机名 {host}：{exc}"
    finally:
        if own:
            await active.close()
    for answer in answers:
        if (why := policy.refusal(answer["host"], port)) is not None:
            return f"{host} 解析为{why.removeprefix('地址 ')}"
    return None
