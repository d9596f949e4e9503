"""`gridhub import` publishes a file's good rows to the channel's raw topic on a real broker."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from gridhub.importer import run_import
from gridhub.kernel.kafka import create_topics
from gridhub.kernel.settings import CommonSettings
from schemas import Channel, ReportReceived
from tests.conftest import Broker

pytestmark = pytest.mark.broker


async def read_all(common: CommonSettings, topic: str, expected: int) -> list[ReportReceived]:
    consumer = AIOKafkaConsumer(
        common.topic(topic), bootstrap_servers=common.kafka_bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: list[ReportReceived] = []
    try:
        async with asyncio.timeout(30):
            while len(found) < expected:
                batches = await consumer.getmany(timeout_ms=200)
                found += [ReportReceived.model_validate_json(r.value) for rs in batches.values() for r in rs]
    finally:
        await consumer.stop()
    return found


def test_import_publishes_accepted_rows_and_writes_rejects(broker: Broker, tmp_path: Path) -> None:
    common = CommonSettings(
        kafka_bootstrap=broker.bootstrap, kafka_idempotence=broker.idempotence, topic_prefix=f"i{uuid.uuid4().hex[:8]}."
    )
    asyncio.run(create_topics(common))
    rows = [
        {
            "order_no": f"IMP-{n}",
            "appeal_type": "咨询",
            "content": f"咨询第{n}号",
            "call_time": "2026-11-20T09:30:00+08:00",
        }
        for n in range(50)
    ]
    file = tmp_path / "backfill.jsonl"
    file.write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in [*rows, rows[0], {"content": "无编号"}]), encoding="utf-8"
    )
    rejects = tmp_path / "backfill.rejected.jsonl"

    summary = run_import(Channel.HOTLINE_12345, file, rejects, common)

    assert summary.as_dict() == {"accepted": 50, "duplicate": 1, "rejected": 1}
    published = asyncio.run(read_all(common, "raw.12345", 50))
    assert sorted(r.source_id for r in published) == sorted(r["order_no"] for r in rows)
    assert json.loads(rejects.read_text("utf-8"))["line"] == 52
