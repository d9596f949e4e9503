"""Traffic simulator: posts 12345 work orders to the adapters at a steady rate."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx

from gridhub.demo.samples import CALLER_NAMES, SAMPLE_ORDERS

CHINA = timezone(timedelta(hours=8))


def work_order(seq: int, rng: random.Random, prefix: str = "SIM") -> dict[str, Any]:
    """One realistic work order with a unique order number."""
    sample = dict(rng.choice(SAMPLE_ORDERS))
    return {
        "order_no": f"{prefix}{datetime.now(UTC):%Y%m%d}{seq:06d}{rng.randrange(1000):03d}",
        "caller_name": rng.choice(CALLER_NAMES),
        "caller_phone": f"139{rng.randrange(10**8):08d}",
        "call_time": datetime.now(CHINA).isoformat(timespec="seconds"),
        "urgency": sample.pop("urgency", "一般"),
        **sample,
    }


async def simulate(base_url: str, api_key: str, rate: float, count: int | None, seed: int = 12345) -> int:
    """Post work orders at `rate` per second until `count` are sent (forever when None)."""
    rng = random.Random(seed)
    sent = 0
    interval = 1.0 / rate
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        next_at = time.monotonic()
        for seq in itertools.count(1):
            if count is not None and sent >= count:
                break
            order = work_order(seq, rng)
            try:
                response = await client.post("/v1/12345/work-orders", json=order, headers={"X-Api-Key": api_key})
                print(f"{order['order_no']} -> {response.status_code} {response.text}", flush=True)
            except httpx.HTTPError as exc:
                print(f"{order['order_no']} -> {exc!r}", flush=True)
            sent += 1
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    return sent
