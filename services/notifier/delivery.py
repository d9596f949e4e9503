"""Deliver one signed payload to one URL with retries; the HTTP client is handed in."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from services.notifier.retry import AttemptResult, next_delay, parse_retry_after
from services.notifier.signing import headers


@dataclass(frozen=True)
class DeliveryReport:
    """What happened to one delivery after all its attempts."""

    delivered: bool
    attempts: int
    last: AttemptResult
    latency_ms: float | None


async def attempt(
    client: httpx.AsyncClient, url: str, body: bytes, hdrs: dict[str, str]
) -> tuple[AttemptResult, float]:
    """POST once; never raises for HTTP or network failures."""
    started = time.perf_counter()
    try:
        response = await client.post(url, content=body, headers=hdrs)
    except httpx.HTTPError as exc:
        return AttemptResult(status=None, error=f"{type(exc).__name__}: {exc}"[:500]), time.perf_counter() - started
    elapsed = time.perf_counter() - started
    error = None if 200 <= response.status_code < 300 else response.text[:500]
    return AttemptResult(response.status_code, error, parse_retry_after(response.headers.get("retry-after"))), elapsed


async def deliver(
    client: httpx.AsyncClient,
    url: str,
    key: bytes,
    webhook_id: str,
    body: bytes,
    schedule: tuple[float, ...],
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> DeliveryReport:
    """Attempt, then retry on the schedule; each attempt is signed afresh with the same webhook-id."""
    attempts = 0
    while True:
        attempts += 1
        result, elapsed = await attempt(client, url, body, headers(key, webhook_id, int(clock()), body))
        if result.delivered:
            return DeliveryReport(True, attempts, result, elapsed * 1000)
        delay = next_delay(schedule, attempts - 1, result)
        if delay is None:
            return DeliveryReport(False, attempts, result, None)
        await sleep(delay)
