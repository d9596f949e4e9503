"""`gridhub import`: read a file, publish its reports to the channel's raw topic, with a progress bar."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from rich.progress import track

from gridhub.kernel.kafka import make_producer
from gridhub.kernel.settings import CommonSettings
from schemas import Channel, ReportReceived
from schemas.catalogue import RAW_TOPICS
from services.adapters.batch_import import ImportSummary, plan_import, read_rows, write_rejects


async def publish_all(common: CommonSettings, channel: Channel, reports: list[ReportReceived]) -> None:
    """Send every report keyed source:source_id and wait for the broker's acks."""
    producer = make_producer(common)
    await producer.start()
    try:
        topic = common.topic(RAW_TOPICS[channel])
        pending = [
            await producer.send(topic, report.to_bytes(), key=report.dedupe_key.encode())
            for report in track(reports, description=f"importing {channel.value}", transient=True)
        ]
        await asyncio.gather(*pending)  # raises if any send failed, so a partial import is never silent
    finally:
        await producer.stop()


def run_import(channel: Channel, file: Path, rejects_path: Path, common: CommonSettings | None = None) -> ImportSummary:
    """Import a file: check rows, publish the good ones, write the rejected ones with their reasons."""
    summary = ImportSummary()
    reports = list(plan_import(channel, read_rows(file), datetime.now(UTC), summary))
    if reports:
        asyncio.run(publish_all(common or CommonSettings(), channel, reports))
    write_rejects(rejects_path, summary.rejected)
    return summary
