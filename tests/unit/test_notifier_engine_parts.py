"""The engine's smaller parts: the outbox's batched store, the wake-up flag, delivery records in rounds, signing with
keys set up once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from gridhub.kernel.batchout import partition_for
from services.notifier.outbox import Outbox
from services.notifier.results import ResultsProducer
from services.notifier.settings import DEV_SIGNING_SECRET
from services.notifier.signing import secret_bytes, sign, signed_headers, signer
from services.notifier.wake import Wake
from tests.unit.test_notifier_engine import FakeBatch, FakeProducer, job

OTHER_SECRET = "whsec_b3RoZXItZ3JpZGh1Yi1zaWduaW5nLXNlY3JldC0zMmJ5dGVzIQ=="


def test_store_adds_each_new_job_once_in_order_with_its_seq(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "p3.sqlite", 3)
    first = box.store([job(1), job(2)], {"t.tasks.dispatched": 2})
    again = job(2)  # stored already
    twice = [job(3), job(3), job(4)]  # the same delivery twice in one batch: the first copy is the one stored
    second = box.store([again, *twice], {"t.tasks.dispatched": 5})
    assert [j.delivery_id for j in first] == ["d1.E1", "d2.E1"]
    assert [j.delivery_id for j in second] == ["d3.E1", "d4.E1"]
    assert second[0] is twice[0] and all(j is not twice[1] for j in second)
    seqs = [j.seq for j in (*first, *second)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4 and {j.partition for j in second} == {3}
    assert box.offsets() == {"t.tasks.dispatched": 5}
    assert [j.delivery_id for j in box.pending()] == ["d1.E1", "d2.E1", "d3.E1", "d4.E1"]
    assert box.store([], {"t.tasks.dispatched": 6}) == [] and box.offsets() == {"t.tasks.dispatched": 6}
    box.close()


async def test_wake_returns_at_set_or_after_its_time_limit() -> None:
    wake = Wake()
    started = time.monotonic()
    await wake.wait(0.05)
    assert 0.04 <= time.monotonic() - started < 1.0
    wake.set()
    started = time.monotonic()
    await wake.wait(5)  # set before the wait: at once
    assert time.monotonic() - started < 0.5 and wake.is_set()
    wake.clear()
    asyncio.get_running_loop().call_later(0.02, wake.set)
    started = time.monotonic()
    await wake.wait(5)
    assert time.monotonic() - started < 1.0


class Producer(FakeProducer):
    """Fails a round that holds a record `fail_on`."""

    def __init__(self, fail_on: bytes) -> None:
        super().__init__()
        self.fail_on = fail_on

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> Any:
        if any(value == self.fail_on for _, value in batch.records):
            raise RuntimeError("broker gone")
        return await super().send_batch(batch, topic, partition=partition)


async def test_results_go_out_in_order_across_rounds_and_a_failed_round_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    producer = Producer(fail_on=b"bad")
    results = ResultsProducer(lambda: producer)
    for n in range(3):
        results.add("t.deliveries.results", b"%d" % n, b"T1")
    results.hand_over()
    results.add("t.deliveries.results", b"bad", b"T1")
    results.hand_over()
    results.add("t.events.deadletter", b"3", b"T1")
    results.add("t.deliveries.results", b"4", b"T1")
    await results.drain(5)
    assert [value for _, value, _ in producer.sent] == [b"0", b"1", b"2", b"3", b"4"]
    assert {key for _, _, key in producer.sent} == {b"T1"}
    assert "could not produce delivery records" in caplog.text
    nowhere = ResultsProducer(lambda: None)  # no producer yet (not connected): records are dropped, nothing waits
    nowhere.add("t.deliveries.results", b"x", b"T1")
    await nowhere.drain(1)


class PartitionedProducer(FakeProducer):
    """Six partitions for every topic but `t.other` (four); remembers where each record went."""

    def __init__(self) -> None:
        super().__init__()
        self.where: dict[bytes, int] = {}

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(4 if topic == "t.other" else 6))

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> Any:
        self.where.update((value, partition) for _, value in batch.records)
        return await super().send_batch(batch, topic, partition=partition)


async def test_records_go_to_the_partition_their_key_was_read_from_when_co_partitioned() -> None:
    producer = PartitionedProducer()
    results = ResultsProducer(lambda: producer, co_partitioned_with="t.tasks.dispatched")
    key = b"01JD6Z8V1Q3C4X5Y6Z7A8B9C0D"
    hashed = partition_for(key, list(range(6)))
    read_from = (hashed + 1) % 6  # not where hashing puts it: shows the hint is taken, not recomputed
    results.add("t.deliveries.results", b"hinted", key, read_from)
    results.add("t.deliveries.results", b"hashed", key)
    results.add("t.other", b"other", key, read_from)  # four partitions, not six: the hint cannot hold, so hashed
    await results.drain(5)
    assert producer.where == {
        b"hinted": read_from,
        b"hashed": hashed,
        b"other": partition_for(key, list(range(4))),
    }


def test_signing_with_keys_set_up_once_matches_standard_webhooks() -> None:
    body = '{"task_id":"T1","title":"小区下水道反流"}'.encode()
    fast = signer(DEV_SIGNING_SECRET)("task_T1", 1_763_000_000, body)
    assert fast == sign(secret_bytes(DEV_SIGNING_SECRET), "task_T1", 1_763_000_000, body)
    now = int(time.time())
    rotating = signed_headers((DEV_SIGNING_SECRET, OTHER_SECRET), "task_T1", now, body)
    assert len(rotating["webhook-signature"].split(" ")) == 2
    for secret in (DEV_SIGNING_SECRET, OTHER_SECRET):
        Webhook(secret).verify(body, rotating)  # either secret verifies during a rotation
