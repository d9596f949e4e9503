"""Intake on the batch loop, without a broker: dedupe state, routing, and what one raw record becomes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry

from gridhub.kernel.batchout import KafkaDeadLetters
from gridhub.kernel.settings import CommonSettings
from schemas import (
    Channel,
    EventNormalised,
    EventSupplemented,
    ReportDeadLettered,
    ReportIndexed,
    ReportReceived,
    SelfResolvedRecorded,
    SourceRef,
    new_id,
)
from schemas.index import IndexOutcome
from services.intake.dedupe import DedupeIndex, Route, index_entry, index_record, index_record_bytes, json_time, route
from services.intake.worker import IntakeHandler, IntakeMetrics

PREFIX = "u."
SUPPLEMENTED = "01JD6Z8V1Q3C4X5Y6Z7A8B9C0D"
AT = datetime(2026, 11, 20, 1, 30, tzinfo=UTC)
ORDER = {"appeal_type": "投诉", "content": "小区停水两天了", "call_time": "2026-11-20T09:30:00+08:00"}
GRID = {
    "worker_id": "WGY-0317",
    "grid_code": "PA-CG-01-001",
    "reported_at": "2026-11-20T08:40:00+08:00",
    "description": "井盖松动，已现场固定。",
    "self_resolved": True,
    "resolved_at": "2026-11-20T09:05:00+08:00",
}


def envelope(channel: Channel, source_id: str, payload: dict[str, Any]) -> ReportReceived:
    """An adapter's envelope."""
    return ReportReceived(
        source=channel,
        source_id=source_id,
        proposed_event_id=new_id(),
        received_at=AT,
        adapter_version="test",
        payload=payload,
    )


def record(
    raw: ReportReceived | bytes, partition: int = 2, offset: int = 0, topic: str = "raw.12345"
) -> ConsumerRecord:
    """The raw record carrying a report."""
    value = raw if isinstance(raw, bytes) else raw.to_bytes()
    key = None if isinstance(raw, bytes) else raw.dedupe_key.encode()
    return ConsumerRecord(PREFIX + topic, partition, offset, 1_763_602_200_000, 0, key, value, None, 1, 1, ())


def handler() -> tuple[IntakeHandler, CollectorRegistry]:
    registry = CollectorRegistry()
    common = CommonSettings(topic_prefix=PREFIX)
    return IntakeHandler(common, IntakeMetrics(registry), KafkaDeadLetters(common, "intake", registry)), registry


def counted(registry: CollectorRegistry, outcome: str, channel: str = "12345") -> float:
    value = registry.get_sample_value("gridhub_intake_events_total", {"channel": channel, "outcome": outcome})
    return value or 0.0


def test_tentative_entries_are_seen_at_once_and_forgotten_on_rollback() -> None:
    index = DedupeIndex()
    index.load(0, [("12345:A", "E1")])
    index.add(0, "12345:B", "E2")
    index.seal()
    index.add(0, "12345:C", "E3")
    assert [index.get(0, k) for k in ("12345:A", "12345:B", "12345:C")] == ["E1", "E2", "E3"]
    index.rollback()  # B (sealed, not committed) and C (open) go; A was restored, so stays
    assert [index.get(0, k) for k in ("12345:A", "12345:B", "12345:C")] == ["E1", None, None]


def test_committed_entries_survive_a_later_rollback() -> None:
    index = DedupeIndex()
    index.add(1, "110:X", "E1")
    index.seal()
    index.add(1, "110:Y", "E2")
    index.seal()
    index.commit_oldest()
    index.rollback()
    assert (index.get(1, "110:X"), index.get(1, "110:Y"), len(index)) == ("E1", None, 1)


def test_loading_keeps_the_first_entry_per_key_and_honours_tombstones() -> None:
    index = DedupeIndex()
    index.load(3, [("12345:A", "E1"), ("12345:A", "E9"), ("12345:B", "E2"), ("12345:B", None)])
    assert (index.get(3, "12345:A"), index.get(3, "12345:B"), index.get(4, "12345:A")) == ("E1", None, None)
    assert index.partitions == {3}
    index.drop(3)
    assert index.partitions == frozenset() and len(index) == 0


def test_index_records_are_read_by_key_and_event_id_only() -> None:
    value = json.dumps({"event_id": "01KAFZ0M3DY89XFXAKDNGGSZDK", "source": "12345"}).encode()
    assert index_entry(b"12345:A", value) == ("12345:A", "01KAFZ0M3DY89XFXAKDNGGSZDK")
    assert index_entry(b"12345:A", None) == ("12345:A", None)
    assert index_entry(None, value) is None
    assert index_entry(b"12345:A", b"not json") is None
    assert index_entry(b"12345:A", b"[1]") is None


def test_each_outcome_goes_to_its_topic_and_index_kind() -> None:
    raw = envelope(Channel.GRID_APP, "WG-1", {"report_no": "WG-1", **GRID})
    handled, _ = handler()
    outs = handled.process(record(raw, topic="raw.gridapp"))
    assert outs[0].value is not None
    resolved = SelfResolvedRecorded.model_validate_json(outs[0].value)
    assert route(resolved).topic == "events.self-resolved" and route(resolved).kind is IndexOutcome.SELF_RESOLVED
    supplement = EventSupplemented(
        event_id=resolved.event.event_id,
        supplement_id=new_id(),
        source=SourceRef(source=Channel.WECHAT, source_id="m1", raw_message_id=new_id()),
        text="补充：积水更深了",
        received_at=AT,
    )
    where = route(supplement)
    assert (where.topic, where.key, where.event_id, where.kind) == (
        "events.supplements",
        resolved.event.event_id,
        resolved.event.event_id,
        IndexOutcome.SUPPLEMENT,
    )


def test_an_accepted_report_yields_its_event_then_its_index_entry() -> None:
    raw = envelope(Channel.HOTLINE_12345, "GD-1", {"order_no": "GD-1", **ORDER})
    handled, registry = handler()
    event_out, index_out = handled.process(record(raw, partition=4))
    assert event_out.value is not None and index_out.value is not None
    event = EventNormalised.model_validate_json(event_out.value)
    assert (event_out.topic, event_out.key, event_out.after_acks) == (
        "u.events.normalised",
        raw.proposed_event_id.encode(),
        False,
    )
    assert event.event_id == raw.proposed_event_id
    indexed = ReportIndexed.model_validate_json(index_out.value)
    # After the event is acked, to the raw record's partition number, keyed like the raw topic.
    assert (index_out.topic, index_out.key, index_out.partition, index_out.after_acks) == (
        "u.reports.index",
        b"12345:GD-1",
        4,
        True,
    )
    assert (indexed.dedupe_key, indexed.event_id, indexed.outcome) == ("12345:GD-1", event.event_id, IndexOutcome.EVENT)
    handled.sealed()
    assert counted(registry, "normalised") == 1


def test_a_duplicate_inside_one_batch_is_caught_and_a_rolled_back_one_is_not() -> None:
    raw = envelope(Channel.HOTLINE_12345, "GD-2", {"order_no": "GD-2", **ORDER})
    again = envelope(Channel.HOTLINE_12345, "GD-2", {"order_no": "GD-2", **ORDER})  # a retry: new envelope
    handled, registry = handler()
    assert len(handled.process(record(raw, offset=0))) == 2
    assert handled.process(record(again, offset=1)) == ()
    handled.sealed()
    assert (counted(registry, "normalised"), counted(registry, "duplicate")) == (1, 1)
    handled.rolled_back()  # the batch is read again: the report is new again
    assert len(handled.process(record(raw, offset=0))) == 2


def test_invalid_reports_are_dead_lettered_with_their_cause() -> None:
    bad = envelope(Channel.HOTLINE_12345, "GD-3", {"order_no": "GD-3", **ORDER, "appeal_type": "抱怨"})
    handled, registry = handler()
    (out,) = handled.process(record(bad))
    assert out.value is not None
    letter = ReportDeadLettered.model_validate_json(out.value)
    assert (out.topic, letter.reason, letter.causation_id) == ("u.events.deadletter", "invalid-payload", bad.message_id)
    assert "appeal_type" in letter.detail
    (broken,) = handled.process(record(b"\xff not json"))
    assert broken.value is not None
    assert ReportDeadLettered.model_validate_json(broken.value).reason == "malformed-envelope"
    handled.sealed()
    assert counted(registry, "dead-lettered") == 2
    assert registry.get_sample_value("gridhub_intake_dead_letters_total", {"reason": "invalid-payload"}) == 1


def test_a_bare_payload_is_received_at_its_record_time() -> None:
    handled, _ = handler()
    event_out, _ = handled.process(record(json.dumps({"order_no": "KN-1", **ORDER}).encode()))
    assert event_out.value is not None
    event = EventNormalised.model_validate_json(event_out.value)
    assert event.received_at == datetime.fromtimestamp(1_763_602_200, UTC)


def test_the_worker_dedupe_key_is_the_envelopes() -> None:
    handled, _ = handler()
    for channel in Channel:
        raw = envelope(channel, "ID-1", {})
        handled.index.add(0, raw.dedupe_key, raw.proposed_event_id)
        # Seen as a duplicate: the worker computed the same key the envelope defines.
        assert handled.process(record(raw, partition=0, topic=f"raw.{channel.value}")) == ()


def test_revoking_drops_only_partitions_no_raw_topic_still_needs() -> None:
    handled, _ = handler()
    raw_12345, raw_110 = TopicPartition("u.raw.12345", 0), TopicPartition("u.raw.110", 0)
    handled._assigned |= {raw_12345, raw_110, TopicPartition("u.raw.110", 1)}
    handled.index.load(0, [("12345:A", "E1")])
    handled.index.load(1, [("110:B", "E2")])
    handled.revoked(frozenset({raw_12345, TopicPartition("u.raw.110", 1)}))
    assert handled.index.partitions == {0}
    handled.revoked(frozenset({raw_110}))
    assert handled.index.partitions == frozenset()


@pytest.mark.parametrize(
    ("source_id", "now"),
    [
        ("12345-2026-000001", datetime(2026, 11, 22, 9, 30, 0, 123456, tzinfo=UTC)),
        # No microseconds: pydantic drops them too.
        ("A/B:C.d_e-f", datetime(2026, 11, 22, 9, 30, tzinfo=UTC)),
        ("tab\there", datetime(2026, 11, 22, 9, 30, tzinfo=UTC)),
        ("工单-甲", datetime(2026, 11, 22, 9, 30, tzinfo=UTC)),
        # What the worker makes: milliseconds.
        ("ms", datetime(2026, 11, 22, 9, 30, 1, 123000, tzinfo=UTC)),
        ('引号"与\\反斜杠\n换行', datetime(2027, 2, 1, 1, 2, 3, 4, tzinfo=timezone(timedelta(hours=8)))),
    ],
)
def test_index_record_bytes_equal_the_models_own(source_id: str, now: datetime) -> None:
    raw = ReportReceived(
        source=Channel.HOTLINE_12345,
        source_id=source_id,
        proposed_event_id=new_id(),
        received_at=now,
        adapter_version="test",
        payload={"order_no": source_id},
    )
    for outcome in (
        Route("events.normalised", raw.proposed_event_id, raw.proposed_event_id, IndexOutcome.EVENT, "normalised"),
        Route(
            "events.supplements",
            "01JD6Z8V1Q3C4X5Y6Z7A8B9C0D",
            "01JD6Z8V1Q3C4X5Y6Z7A8B9C0D",
            IndexOutcome.SUPPLEMENT,
            "s",
        ),
    ):
        model = index_record(raw, outcome, now)
        assert index_record_bytes(raw, outcome, json_time(now), model.message_id) == model.to_bytes()
