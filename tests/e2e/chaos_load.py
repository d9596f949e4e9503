"""The chaos test's helpers: a steady mixed load over the adapters' HTTP API, and reading every topic back.

The load generator treats a request that failed (connection refused or reset while the adapters were down, a
timeout, a 5xx while the broker could not be reached) as not accepted and retries it with the same source id
until a time limit: the adapters' idempotency then answers a report they already hold with its event id. Only a
2xx answer carrying an event id counts as accepted.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition

from gridhub.demo.simulator import work_order
from gridhub.kernel.settings import CommonSettings
from schemas.catalogue import PARTITIONS

CHINA = timezone(timedelta(hours=8))

# What an accepted report must end as: an event (then tasks or a case link), a dead letter, a self-resolved record.
EVENT, DEAD, SELF = "event", "dead-letter", "self-resolved"

API_KEYS = {
    "12345": "dev-12345-key",
    "110": "dev-110-key",
    "petition": "dev-petition-key",
    "gridapp": "dev-gridapp-key",
}

INCIDENTS = (
    ("燃气泄漏", "报警人称楼下饭店闻到很浓的煤气味，人员已疏散。", "城关镇", "紧急"),
    ("噪声扰民", "报警人称隔壁工地夜间施工，噪音很大，影响休息。", "城关镇", "一般"),
    ("道路塌陷", "报警人称路面出现一米见方的坑，车辆绕行，需要设置警示。", "河西乡", "紧急"),
    ("占道经营", "报警人称市场门口摊贩占道，早高峰堵车严重。", "城关镇", "一般"),
)
PETITIONS = (
    (
        "反映邻居盖房占用我家宅基地半米，两家多次发生纠纷，村里调解没有结果。",
        "河西乡",
        "PA-HX-02-001",
        "河西乡王庄村村委会",
    ),
    ("反映小区物业长期不维修电梯，老人上下楼困难，多次反映无果。", "城关镇", "PA-CG-01-001", None),
    ("反映企业拖欠农民工工资三个月，多次讨要未果。", "城关镇", None, None),
)
GRID_REPORTS = (
    ("设施故障", "幸福小区3号楼下水道堵塞反流，需要疏通主管道。", "PA-CG-01-001"),
    ("安全隐患", "王庄村村口变压器围栏损坏，有孩子在附近玩耍，存在触电隐患。", "PA-HX-02-001"),
    ("环境卫生", "东街菜市场后面垃圾堆积多日无人清运，气味很大。", "PA-CG-01-001"),
)


@dataclass(frozen=True)
class Report:
    """One report to submit: its route, key, body, its dedupe key (`source:source_id`) and its expected fate."""

    kind: str
    channel: str
    path: str
    body: dict[str, Any]
    expect: str

    @property
    def key(self) -> str:
        """The dedupe key intake and the dead letters use."""
        id_field = {"12345": "order_no", "110": "incident_no", "petition": "case_no", "gridapp": "report_no"}
        return f"{self.channel}:{self.body[id_field[self.channel]]}"


@dataclass
class Accepted:
    """A report the adapters accepted: the event id of its first 2xx answer, and how it got there."""

    report: Report
    event_id: str
    status: int
    attempts: int
    accepted_at: float


@dataclass
class LoadStats:
    """What the load generator did."""

    submitted: int = 0
    accepted: dict[str, Accepted] = field(default_factory=dict)
    failed_attempts: Counter[str] = field(default_factory=Counter)
    retried_then_accepted: int = 0
    abandoned: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    repeats_sent: int = 0
    repeat_same_id: int = 0
    repeat_other_id: list[tuple[str, str, str]] = field(default_factory=list)  # key, first event id, repeat's id
    repeat_statuses: Counter[int] = field(default_factory=Counter)


class ChaosLoad:
    """A steady open-loop load of mixed reports (five kinds, invalid ones, repeats) against the adapters."""

    def __init__(self, adapters_url: str, rate: float, seed: int = 20261123, retry_for_s: float = 45.0) -> None:
        self.url = adapters_url
        self.rate = rate
        self.rng = random.Random(seed)
        self.tag = uuid.uuid4().hex[:6].upper()
        self.seq = 0
        self.retry_for_s = retry_for_s
        self.stats = LoadStats()
        self.in_flight: set[asyncio.Task[None]] = set()

    def _next_id(self, prefix: str) -> str:
        self.seq += 1
        return f"{prefix}{self.tag}{self.seq:06d}"

    def new_report(self) -> Report:
        """A fresh report: 12345 orders most, then 110, petitions, grid reports, self-resolved ones, invalid ones."""
        rng = self.rng
        # A quarter happen now, the rest at a random minute of the past year: the samples repeat a few situations
        # at a few places, and within the router's merging window (6 h) nearly all of them would become case links.
        when = datetime.now(CHINA)
        if rng.random() >= 0.25:
            when -= timedelta(minutes=rng.randrange(365 * 24 * 60))
        now = when.isoformat(timespec="seconds")
        roll = rng.random()
        if roll < 0.45:
            order = work_order(self.seq, rng, prefix="CH") | {"call_time": now}
            order["order_no"] = self._next_id("CH")
            return Report("12345", "12345", "/v1/12345/work-orders", order, EVENT)
        if roll < 0.55:
            kind, summary, district, urgency = rng.choice(INCIDENTS)
            body = {
                "incident_no": self._next_id("110-"),
                "call_time": now,
                "incident_type": kind,
                "summary": summary,
                "district": district,
                "urgency": urgency,
            }
            return Report("110", "110", "/v1/110/incidents", body, EVENT)
        if roll < 0.63:
            demands, district, grid, complained = rng.choice(PETITIONS)
            body = {
                "case_no": self._next_id("XF-"),
                "form": "网上信访",
                "registered_at": now,
                "petitioner": {"name": "李秀英", "phone": "13903711234", "address": "河西乡王庄村三组"},
                "demands": demands,
                "district": district,
                **({"grid_code": grid} if grid else {}),
                **({"complained_unit": complained} if complained else {}),
            }
            return Report("petition", "petition", "/v1/petitions", body, EVENT)
        category, description, grid = rng.choice(GRID_REPORTS)
        grid_body = {
            "report_no": self._next_id("WG-"),
            "worker_id": f"WGY-{rng.randrange(10000):04d}",
            "grid_code": grid,
            "reported_at": now,
            "category": category,
            "description": description,
            "photos": ["https://oss.pingan.example/wg/0317/a1.jpg"],
        }
        if roll < 0.75:
            return Report("gridapp", "gridapp", "/v1/gridapp/reports", grid_body, EVENT)
        if roll < 0.85:
            done = grid_body | {"self_resolved": True, "resolved_at": now, "resolution": "已现场处置"}
            return Report("self-resolved", "gridapp", "/v1/gridapp/reports", done, SELF)
        # Passes the adapters' envelope check (a JSON object with a valid id), fails intake's validation.
        order = work_order(self.seq, rng, prefix="CHX") | {"appeal_type": "抱怨", "call_time": "2026-11-20 09:30"}
        order["order_no"] = self._next_id("CHX")
        return Report("invalid", "12345", "/v1/12345/work-orders", order, DEAD)

    async def _post(self, session: aiohttp.ClientSession, report: Report) -> tuple[int, dict[str, Any]]:
        async with session.post(
            f"{self.url}{report.path}", json=report.body, headers={"X-Api-Key": API_KEYS[report.channel]}
        ) as response:
            raw = await response.read()
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                body = {}
            return response.status, body if isinstance(body, dict) else {}

    async def submit(self, session: aiohttp.ClientSession, report: Report, repeat_of: Accepted | None) -> None:
        """POST until a 2xx with an event id (accepted), a 4xx (rejected) or the retry time limit (abandoned)."""
        deadline = time.monotonic() + self.retry_for_s
        attempts = 0
        stats = self.stats
        while True:
            attempts += 1
            try:
                status, body = await self._post(session, report)
            except (aiohttp.ClientError, TimeoutError) as exc:
                status, body = 0, {"error": type(exc).__name__}
            event_id = body.get("event_id")
            if 200 <= status < 300 and isinstance(event_id, str):
                if repeat_of is not None:
                    stats.repeat_statuses[status] += 1
                    if event_id == repeat_of.event_id:
                        stats.repeat_same_id += 1
                    else:
                        stats.repeat_other_id.append((report.key, repeat_of.event_id, event_id))
                    return
                if attempts > 1:
                    stats.retried_then_accepted += 1
                stats.accepted[report.key] = Accepted(report, event_id, status, attempts, time.time())
                return
            if 400 <= status < 500:
                stats.rejected.append(f"{report.key}: {status} {body}")
                return
            stats.failed_attempts[str(body.get("error", status))] += 1
            if time.monotonic() > deadline:
                stats.abandoned.append(report.key)
                return
            await asyncio.sleep(0.3)

    async def run(self, session: aiohttp.ClientSession, stop: asyncio.Event, repeat_share: float = 0.08) -> None:
        """Submit reports at `rate` per second until `stop` is set (open loop: a slow answer delays no other)."""
        started = time.monotonic()
        n = 0
        while not stop.is_set():
            delay = started + n / self.rate - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                    break
                except TimeoutError:
                    pass
            n += 1
            repeat_of: Accepted | None = None
            if self.stats.accepted and self.rng.random() < repeat_share:
                repeat_of = self.rng.choice(list(self.stats.accepted.values()))
                report = repeat_of.report
                self.stats.repeats_sent += 1
            else:
                report = self.new_report()
                self.stats.submitted += 1
            task = asyncio.create_task(self.submit(session, report, repeat_of))
            self.in_flight.add(task)
            task.add_done_callback(self.in_flight.discard)

    async def settle(self, timeout_s: float) -> None:
        """Wait (time-limited) for the requests still in flight, retries included."""
        if self.in_flight:
            await asyncio.wait_for(asyncio.gather(*self.in_flight), timeout_s)


class TopicTail:
    """Every record of some topics of one prefix, read group-less from the start and kept up to date."""

    def __init__(self, common: CommonSettings, topics: Iterable[str]) -> None:
        self.common = common
        self.names = {common.topic(t): t for t in topics}
        self.records: dict[str, list[tuple[bytes | None, bytes]]] = defaultdict(list)
        self.consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        """Assign every partition of every topic, from the beginning."""
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.common.kafka_bootstrap, group_id=None, enable_auto_commit=False
        )
        await asyncio.wait_for(self.consumer.start(), 30)
        self.consumer.assign([TopicPartition(name, p) for name in self.names for p in range(PARTITIONS)])
        await asyncio.wait_for(self.consumer.seek_to_beginning(), 30)

    async def stop(self) -> None:
        """Close the consumer."""
        if self.consumer is not None:
            await asyncio.wait_for(self.consumer.stop(), 30)

    async def catch_up(self, timeout_s: float = 30.0) -> None:
        """Read until every partition's position reached the end offset seen at the call."""
        assert self.consumer is not None
        consumer = self.consumer
        partitions = list(consumer.assignment())
        ends = await asyncio.wait_for(consumer.end_offsets(partitions), 30)
        async with asyncio.timeout(timeout_s):
            while True:
                batches = await consumer.getmany(timeout_ms=200, max_records=5000)
                for tp, records in batches.items():
                    self.records[self.names[tp.topic]].extend((r.key, r.value) for r in records if r.value is not None)
                if not batches and all(await asyncio.gather(*(self._at_end(tp, ends[tp]) for tp in partitions))):
                    return

    async def _at_end(self, tp: TopicPartition, end: int) -> bool:
        assert self.consumer is not None
        return await self.consumer.position(tp) >= end

    def values(self, topic: str) -> list[dict[str, Any]]:
        """The topic's records parsed as JSON objects."""
        return [json.loads(value) for _, value in self.records[topic]]
