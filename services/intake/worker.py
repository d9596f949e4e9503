"""Intake's Kafka wiring: raw topics in, events.normalised and events.deadletter out."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import faust
from prometheus_client import CollectorRegistry

from gridhub.kernel.errors import PermanentError
from gridhub.kernel.faust_app import make_faust_app
from gridhub.kernel.metrics import ServiceMetrics
from gridhub.kernel.service import prepare, run_worker
from gridhub.kernel.streams import DeadLetters, bytes_topic
from schemas import Channel
from schemas.catalogue import RAW_TOPICS
from services.intake.channels import normalise, self_resolved
from services.intake.envelope import read_report
from services.intake.settings import IntakeSettings

SERVICE = "intake"
log = logging.getLogger(__name__)


class IntakeMetrics:
    """Intake's counters and latency histogram."""

    def __init__(self, registry: CollectorRegistry) -> None:
        m = ServiceMetrics(SERVICE, registry)
        self.events = m.counter("events", "Raw reports processed, by channel and outcome.", ("channel", "outcome"))
        self.processing = m.histogram("processing", "Time to normalise one report.")


def create_app(settings: IntakeSettings, registry: CollectorRegistry) -> faust.App:
    """The intake Faust app: normalise, dedupe on source + source id, dead-letter the invalid."""
    common = settings.common
    app = make_faust_app(SERVICE, common, web_port=settings.port, web_host=settings.host)
    metrics = IntakeMetrics(registry)
    prepare(app, SERVICE, registry)

    raw_topics = bytes_topic(app, common, *(RAW_TOPICS[c] for c in Channel))
    channel_of_topic = {common.topic(RAW_TOPICS[c]): c for c in Channel}
    events_out = bytes_topic(app, common, "events.normalised")
    resolved_out = bytes_topic(app, common, "events.self-resolved")
    dead_letters = DeadLetters(app, common, SERVICE, registry)
    # source:source_id -> event id. Raw topics are keyed by that, so each partition dedupes its own keys.
    seen = app.Table("seen-reports", default=None, key_type=bytes)

    @app.agent(raw_topics, name="normalise-reports")
    async def normalise_reports(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            started = time.perf_counter()
            topic_channel = channel_of_topic.get(event.message.topic)
            try:
                produced_at = datetime.fromtimestamp(event.message.timestamp, UTC)
                raw = read_report(topic_channel, event.value, produced_at)
            except PermanentError as exc:
                await dead_letters.event(event, exc.reason, exc.detail)
                metrics.events.labels(topic_channel.value if topic_channel else "unknown", "dead-lettered").inc()
                continue
            channel = raw.source.value
            known = seen.get(raw.dedupe_key.encode())
            if known is not None:
                metrics.events.labels(channel, "duplicate").inc()
                log.info("duplicate report", extra={"dedupe_key": raw.dedupe_key, "event_id": known})
                continue
            try:
                record = self_resolved(raw, raw.proposed_event_id)
                if record is not None:
                    await resolved_out.send(key=record.event.event_id.encode(), value=record.to_bytes())
                    seen[raw.dedupe_key.encode()] = record.event.event_id
                    metrics.events.labels(channel, "self-resolved").inc()
                    continue
                normalised = normalise(raw, raw.proposed_event_id)
            except PermanentError as exc:
                await dead_letters.event(event, exc.reason, exc.detail, causation_id=raw.message_id)
                metrics.events.labels(channel, "dead-lettered").inc()
                continue
            # Send before remembering: a crash in between replays the report (a duplicate the
            # deterministic task ids absorb) instead of marking it seen and losing it.
            await events_out.send(key=normalised.event_id.encode(), value=normalised.to_bytes())
            seen[raw.dedupe_key.encode()] = normalised.event_id
            metrics.events.labels(channel, "normalised").inc()
            metrics.processing.observe(time.perf_counter() - started)

    return app


def main() -> None:
    """Entry point of `gridhub serve intake`."""
    settings = IntakeSettings()
    registry = CollectorRegistry()
    run_worker(create_app(settings, registry), settings.common, SERVICE)
