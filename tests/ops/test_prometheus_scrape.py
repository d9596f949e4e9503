"""A real Prometheus scrapes a running hub under a known load: the throughput it computes is the rate sent."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Hub
from tests.ops.conftest import running_prometheus

pytestmark = pytest.mark.broker

RATE_PER_S = 20.0
SEND_S = 15.0
WINDOW_S = 10  # the rate() window of the throughput queries
TOLERANCE = 0.2  # of the rate sent
BATCH_SERVICES = ("intake", "router", "sla", "notifier")


def work_order(order_no: str, n: int) -> dict[str, Any]:
    """A valid 12345 work order, each on its own day so none merges into another's case."""
    call_time = datetime(2026, 6, 1, 9, 30, tzinfo=UTC) - timedelta(days=n)
    return {
        "order_no": order_no,
        "caller_name": "李女士",
        "caller_phone": "13912345678",
        "appeal_type": "投诉",
        "content": "小区门口路灯坏了一个多星期，晚上很黑，请尽快修理。",
        "address": "城关镇东街社区幸福小区",
        "district": "城关镇",
        "grid_code": "PA-CG-01-001",
        "urgency": "一般",
        "call_time": call_time.isoformat(),
    }


async def send_at_rate(base_url: str, rate: float, seconds: float) -> tuple[float, float, list[int]]:
    """POST work orders on a fixed schedule (rate per second for `seconds`); return start, end and every status."""
    count = round(rate * seconds)
    tag = uuid.uuid4().hex[:8].upper()
    # Idle connections dropped before uvicorn's keep-alive (5 s) closes them under a request on a loaded machine.
    limits = httpx.Limits(keepalive_expiry=1.0)
    async with httpx.AsyncClient(base_url=base_url, timeout=10, limits=limits) as client:

        async def post(n: int) -> int:
            body, headers = work_order(f"OPS{tag}{n:05d}", n), {"X-Api-Key": "dev-12345-key"}
            try:
                answer = await client.post("/v1/12345/work-orders", json=body, headers=headers)
            except httpx.TransportError:
                # Once more: the adapters answer a report they already accepted with 200 (duplicate), not twice.
                answer = await client.post("/v1/12345/work-orders", json=body, headers=headers)
            return answer.status_code

        started = time.time()
        clock = time.monotonic()
        posts = []
        for n in range(count):
            # Scheduled from the start, not after the previous answer: a slow ack does not slow the rate.
            await asyncio.sleep(max(0.0, clock + n / rate - time.monotonic()))
            posts.append(asyncio.create_task(post(n)))
        statuses = await asyncio.wait_for(asyncio.gather(*posts), 30)
        return started, time.time(), list(statuses)


async def test_prometheus_measures_the_rate_sent(ops_hub: Hub, tmp_path: Path) -> None:
    """Prometheus scrapes every service each second; its rate of reports in (adapters) and of reports normalised
    (intake) is the rate sent, every target is up, and the consumer lag of each batch service is there."""
    with running_prometheus(ops_hub.ports, tmp_path / "prometheus") as prom:
        every_job = set(ops_hub.ports)
        await asyncio.to_thread(
            prom.wait_for,
            "up == 1",
            lambda r: {s["metric"]["job"] for s in r} == every_job,
            20,
            "every service scraped and up",
        )
        # Ready means assigned: every batch service holds partitions of its group, and answers /readyz 200.
        assigned = await asyncio.to_thread(
            prom.wait_for,
            'sum by (job) ({__name__=~"gridhub_[a-z]+_assigned_partitions"}) > 0',
            lambda r: {s["metric"]["job"] for s in r} == set(BATCH_SERVICES),
            20,
            "every batch service assigned partitions",
        )
        assert assigned
        async with httpx.AsyncClient(timeout=5, limits=httpx.Limits(keepalive_expiry=1.0)) as client:
            for name in every_job:
                answer = await client.get(f"{ops_hub.url(name)}/readyz")
                assert answer.status_code == 200 and answer.json()["ready"] is True, (name, answer.text)
        # Two scrapes before the load, so rate() has a baseline at its start.
        await asyncio.sleep(2.5)

        started, ended, statuses = await send_at_rate(ops_hub.url("adapters"), RATE_PER_S, SEND_S)
        assert set(statuses) <= {200, 202} and statuses.count(202) > 0.9 * len(statuses), sorted(statuses)
        sent_rate = len(statuses) / (ended - started)

        accepted = f'sum(rate(gridhub_adapters_reports_total{{channel="12345",outcome="accepted"}}[{WINDOW_S}s]))'
        normalised = f'sum(rate(gridhub_intake_events_total{{channel="12345"}}[{WINDOW_S}s]))'
        # Every report counted by intake (its counter is flushed per batch), then two more scrapes.
        await asyncio.to_thread(
            prom.wait_for,
            'sum(gridhub_intake_events_total{channel="12345"})',
            lambda r: bool(r) and float(r[0]["value"][1]) >= len(statuses),
            20,
            "intake counted every report",
        )
        await asyncio.sleep(2.5)

        # Windows inside the sending period: [end - WINDOW_S, end - 1] is past the start-up of the load.
        at = ended - 1.0
        assert at - WINDOW_S > started, "the load is shorter than the rate window"
        measured_in = await asyncio.to_thread(prom.value, accepted, at)
        # Intake follows within a batch or two: its window is shifted by a second.
        measured_normalised = await asyncio.to_thread(prom.value, normalised, at + 1.0)
        print(
            f"sent {len(statuses)} reports at {sent_rate:.2f}/s; Prometheus: adapters {measured_in}/s, "
            f"intake {measured_normalised}/s"
        )
        assert measured_in is not None and abs(measured_in - sent_rate) <= TOLERANCE * sent_rate, measured_in
        assert measured_normalised is not None
        assert abs(measured_normalised - sent_rate) <= TOLERANCE * sent_rate, measured_normalised
        total = await asyncio.to_thread(
            prom.value, 'sum(gridhub_adapters_reports_total{channel="12345",outcome="accepted"})'
        )
        assert total == len(statuses)

        # Every target still up, and each batch service reports its consumer lag per group and topic.
        up = await asyncio.to_thread(prom.query, "up")
        assert {s["metric"]["job"]: s["value"][1] for s in up} == dict.fromkeys(every_job, "1")
        lag = await asyncio.to_thread(prom.query, '{__name__=~"gridhub_[a-z]+_consumer_lag_messages"}')
        jobs_with_lag = {s["metric"]["job"] for s in lag}
        assert jobs_with_lag == set(BATCH_SERVICES), lag
        assert all(s["metric"]["group"] and s["metric"]["topic"] for s in lag)
        assert "raw.12345" in {s["metric"]["topic"] for s in lag if s["metric"]["job"] == "intake"}
        # Once the load is read, intake's lag falls back to nothing (measured every 5 s).
        await asyncio.to_thread(
            prom.wait_for,
            "sum(gridhub_intake_consumer_lag_messages)",
            lambda r: bool(r) and float(r[0]["value"][1]) == 0,
            20,
            "intake's lag back to 0",
        )
        processing = await asyncio.to_thread(
            prom.query, '{__name__=~"gridhub_[a-z]+_batch_processing_seconds_count"} > 0'
        )
        assert {s["metric"]["job"] for s in processing} == set(BATCH_SERVICES), processing
