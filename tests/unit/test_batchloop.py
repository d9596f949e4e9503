"""The batch loop's pure parts: offsets, rewinding, backoff, partitioning, dead letters; and the fast ids."""

from __future__ import annotations

import base64
import os
import random
import re
import time
import types

import pytest
from aiokafka import TopicPartition
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry
from ulid import ULID

from gridhub.kernel.batchloop import Flight, backoff_s, flight_of, rewind_points
from gridhub.kernel.batchout import KafkaDeadLetters, Outgoing, OutputWriter, murmur2, partition_for
from gridhub.kernel.settings import CommonSettings
from schemas import ReportDeadLettered, base, new_id

A, B = TopicPartition("t.raw.12345", 0), TopicPartition("t.raw.12345", 1)


def record(tp: TopicPartition, offset: int, value: bytes | None = b"{}", key: bytes | None = b"k") -> ConsumerRecord:
    """A consumed record as aiokafka hands it over."""
    return ConsumerRecord(tp.topic, tp.partition, offset, 1_700_000_000_000, 0, key, value, None, 1, 2, ())


def test_a_flight_commits_the_next_offset_and_rewinds_to_the_first() -> None:
    flight = flight_of({A: [record(A, 5), record(A, 6), record(A, 7)], B: [record(B, 0)], TopicPartition("x", 0): []})
    assert flight.commit == {A: 8, B: 1}
    assert flight.first == {A: 5, B: 0}
    assert (flight.sending, flight.later, flight.submitted) == (None, [], False)


def test_rewinding_goes_back_to_the_oldest_uncommitted_offset_per_partition() -> None:
    older = Flight(first={A: 5}, commit={A: 8})
    newer = Flight(first={A: 8, B: 3}, commit={A: 9, B: 4})
    assert rewind_points([older, newer]) == {A: 5, B: 3}
    assert rewind_points([]) == {}


@pytest.mark.parametrize(("attempt", "pause"), [(1, 0.5), (2, 1.0), (3, 2.0), (6, 16.0), (7, 30.0), (50, 30.0)])
def test_backoff_doubles_up_to_a_cap(attempt: int, pause: float) -> None:
    assert backoff_s(attempt) == pause


def test_murmur2_is_kafkas() -> None:
    rng = random.Random(7)
    for _ in range(5000):
        data = os.urandom(rng.randrange(0, 70))
        assert murmur2(data) == aiokafka_murmur2(data)


def test_partition_for_matches_the_default_partitioner_and_spreads_unkeyed_records() -> None:
    partitions = list(range(6))
    for key in (b"12345:GD-2026-1120-00421", b"01KAB7ZG0X8R5T0E3KQ0V5Y6ZC", b""):
        assert partition_for(key, partitions) == (aiokafka_murmur2(key) & 0x7FFFFFFF) % 6
    assert {partition_for(None, partitions, n) for n in range(6)} == set(partitions)


class _Batch(list[tuple[bytes | None, bytes | None]]):
    def append(self, *, key: bytes | None, value: bytes | None, timestamp: None) -> object:  # type: ignore[override]
        super().append((key, value))
        return object()


class _Producer:
    def create_batch(self) -> _Batch:
        return _Batch()


def test_the_writer_puts_each_output_where_the_default_partitioner_would() -> None:
    writer = OutputWriter(_Producer())  # type: ignore[arg-type]
    writer._partitions = {"t.events.normalised": list(range(6)), "t.reports.index": list(range(6))}
    keys = [new_id().encode() for _ in range(200)]
    for key in keys:
        writer.add(Outgoing("t.events.normalised", b"v" + key, key))
    writer.add(Outgoing("t.reports.index", b"i", b"12345:A", partition=4))
    for _ in range(6):
        writer.add(Outgoing("t.events.normalised", b"unkeyed", None))
    batches = writer._open
    for key in keys:
        assert (key, b"v" + key) in batches[("t.events.normalised", partition_for(key, list(range(6))))]
    assert batches[("t.reports.index", 4)] == [(b"12345:A", b"i")]
    unkeyed = [p for (topic, p), batch in batches.items() if (None, b"unkeyed") in batch]
    assert sorted(unkeyed) == list(range(6))  # round robin over the partitions


def test_outgoing_defaults_to_the_partitioner_and_no_wait() -> None:
    out = Outgoing("t.events.normalised", b"{}", b"id")
    assert (out.partition, out.after_acks) == (None, False)


def test_a_dead_letter_keeps_the_original_bytes_and_position_and_is_counted() -> None:
    registry = CollectorRegistry()
    dead = KafkaDeadLetters(CommonSettings(topic_prefix="t."), "intake", registry)
    out = dead.of(record(A, 42, b"\xff not json", b"12345:X"), "malformed-envelope", "坏了", causation_id="c1")
    assert (out.topic, out.key, out.after_acks) == ("t.events.deadletter", b"12345:X", False)
    assert out.value is not None
    letter = ReportDeadLettered.model_validate_json(out.value)
    assert (letter.stage, letter.reason, letter.detail, letter.causation_id) == (
        "intake",
        "malformed-envelope",
        "坏了",
        "c1",
    )
    assert (letter.original_topic, letter.original_partition, letter.original_offset) == ("t.raw.12345", 0, 42)
    assert base64.b64decode(letter.original_value) == b"\xff not json"
    count = registry.get_sample_value("gridhub_intake_dead_letters_total", {"reason": "malformed-envelope"})
    assert count == 1


def test_a_tombstone_is_dead_lettered_with_empty_bytes() -> None:
    dead = KafkaDeadLetters(CommonSettings(topic_prefix="t."), "router", CollectorRegistry())
    out = dead.of(record(A, 1, None), "malformed-envelope", "tombstone")
    assert out.value is not None
    assert ReportDeadLettered.model_validate_json(out.value).original_value == ""


def test_new_ids_are_valid_sortable_unique_ulids_of_now() -> None:
    ids = [new_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert all(re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{26}", i) for i in ids)
    parsed = ULID.from_str(ids[-1])
    assert str(parsed) == ids[-1]
    assert abs(parsed.milliseconds - time.time() * 1000) < 60_000


def test_new_ids_stay_unique_across_milliseconds() -> None:
    ids = []
    for _ in range(50):
        ids += [new_id(), new_id()]
        time.sleep(0.0012)
    assert len(set(ids)) == len(ids) and ids == sorted(ids)


def test_ids_of_one_millisecond_count_up_by_one_across_every_cached_carry(monkeypatch: pytest.MonkeyPatch) -> None:
    # new_id keeps the first 22 characters while only the randomness's low 20 bits change: the ids must still be
    # exactly ms + randomness, randomness + 1 each time, through a carry into the cached part and a new millisecond.
    clock = {"ms": 1_763_602_200_000}
    monkeypatch.setattr(base, "time", types.SimpleNamespace(time_ns=lambda: clock["ms"] * 1_000_000))
    for name in ("_prefix", "_head", "_high", "_randomness"):  # restored with the clock afterwards
        monkeypatch.setattr(base, name, getattr(base, name))
    monkeypatch.setattr(base, "_last_ms", -1)
    new_id()  # the fake millisecond's prefix
    top = (1 << 80) - 1
    for start in ((5 << 20) - 3, (1 << 20) - 1, top - 3, 0):
        monkeypatch.setattr(base, "_randomness", start)
        ids = [ULID.from_str(new_id()) for _ in range(6)]
        assert all(u.milliseconds == clock["ms"] for u in ids)
        randomness = [int.from_bytes(u.bytes, "big") & top for u in ids]
        counted = min(6, top - start)  # past the top, a new random start (as before the cache)
        assert randomness[:counted] == [start + 1 + n for n in range(counted)]
    clock["ms"] += 1
    later = ULID.from_str(new_id())
    assert later.milliseconds == clock["ms"] and str(later) > str(ids[-1])


def test_a_forked_child_does_not_count_on_from_its_parents_last_id() -> None:
    read, write = os.pipe()
    new_id()
    pid = os.fork()
    if pid == 0:  # the child: one id, then out without running pytest's teardown
        os.write(write, new_id().encode())
        os._exit(0)
    mine = new_id()
    os.waitpid(pid, 0)
    theirs = os.read(read, 26).decode()
    os.close(read)
    os.close(write)
    assert theirs != mine and len(theirs) == 26


def test_to_bytes_is_model_dump_json_encoded() -> None:
    letter = ReportDeadLettered(
        stage="intake",
        reason="invalid-payload",
        detail="appeal_type: 取值不在允许范围内",
        original_topic="t.raw.12345",
        original_value=base64.b64encode("诉求".encode()).decode(),
        dead_lettered_at="2026-11-20T09:30:00+08:00",
    )
    assert letter.to_bytes() == letter.model_dump_json().encode()
