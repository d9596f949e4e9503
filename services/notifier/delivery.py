"""One attempt through the engine's lean client (`post_attempt`); and `deliver`, one signed payload to one URL with
retries over an aiohttp session (handed in), for callers outside the engine."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from services.notifier.http_wire import Answer
from services.notifier.retry import AttemptResult, next_delay, parse_retry_after
from services.notifier.signing import headers

# Enough of a refusal to see why; a webhook's answer is not ours to store whole.
ERROR_EXCERPT_CHARS = 500


@dataclass(frozen=True)
class DeliveryReport:
    """What happened to one delivery after all its attempts."""

    delivered: bool
    attempts: int
    last: AttemptResult
    latency_ms: float | None
    statuses: tuple[int | None, ...] = ()


def new_session(concurrency: int, timeout_s: float) -> aiohttp.ClientSession:
    """A pooled HTTP session for deliveries (call inside the running event loop)."""
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency, ttl_dns_cache=60)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s))


async def attempt(
    session: aiohttp.ClientSession, url: str, body: bytes, hdrs: dict[str, str]
) -> tuple[AttemptResult, float]:
    """POST once; never raises for HTTP or network failures."""
    result, elapsed, _ = await attempt_with_answer(session, url, body, hdrs)
    return result, elapsed


async def attempt_with_answer(
    session: aiohttp.ClientSession, url: str, body: bytes, hdrs: dict[str, str]
) -> tuple[AttemptResult, float, bytes]:
    """POST once and keep the answer's body (robots say in it whether they took the message)."""
    started = time.perf_counter()
    try:
        # No redirects: a webhook that redirects could be steered to an internal address.
        async with session.post(url, data=body, headers=hdrs, allow_redirects=False) as response:
            # Read the (small) answer so the connection goes back to the pool.
            answer = await response.read()
            status = response.status
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        failure = f"{type(exc).__name__}: {exc}"[:ERROR_EXCERPT_CHARS]
        return AttemptResult(status=None, error=failure), time.perf_counter() - started, b""
    elapsed = time.perf_counter() - started
    error = None if 200 <= status < 300 else answer.decode("utf-8", "replace")[:ERROR_EXCERPT_CHARS]
    return AttemptResult(status, error, retry_after), elapsed, answer


async def deliver(
    session: aiohttp.ClientSession,
    url: str,
    key: bytes,
    webhook_id: str,
    body: bytes,
    schedule: tuple[float, ...],
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> DeliveryReport:
    """Attempt, then retry on the schedule; each attempt is signed afresh with the same webhook-id."""
    statuses: list[int | None] = []
    while True:
        result, elapsed = await attempt(session, url, body, headers(key, webhook_id, int(clock()), body))
        statuses.append(result.status)
        if result.delivered:
            return DeliveryReport(True, len(statuses), result, elapsed * 1000, tuple(statuses))
        delay = next_delay(schedule, len(statuses) - 1, result)
        if delay is None:
            return DeliveryReport(False, len(statuses), result, None, tuple(statuses))
        await sleep(delay)


class Poster(Protocol):
    """What the engine sends attempts through (`http_client.HttpClient`)."""

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        """POST once; the answer, whatever its status (raises OSError or TimeoutError without one)."""
        ...

    async def close(self) -> None:
        """Close idle connections."""
        ...


async def post_attempt(
    client: Poster, url: str, body: bytes, hdrs: dict[str, str]
) -> tuple[AttemptResult, float, bytes]:
    """POST once through the lean client; keep the (capped) answer body; never raises for HTTP or network failures."""
    started = time.perf_counter()
    try:
        answer = await client.post(url, body, hdrs)
    except (OSError, TimeoutError) as exc:  # HttpFailure, OutboundRefused: no answer, retried on the schedule
        failure = f"{type(exc).__name__}: {exc}"[:ERROR_EXCERPT_CHARS]
        return AttemptResult(status=None, error=failure), time.perf_counter() - started, b""
    elapsed = time.perf_counter() - started
    status = answer.status
    # 4 bytes per character at most in UTF-8: enough bytes for the excerpt, without decoding a long answer whole.
    head = answer.body[: ERROR_EXCERPT_CHARS * 4]
    error = None if 200 <= status < 300 else head.decode("utf-8", "replace")[:ERROR_EXCERPT_CHARS]
    return AttemptResult(status, error, parse_retry_after(answer.retry_after)), elapsed, answer.body
