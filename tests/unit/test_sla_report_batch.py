"""The report view's store applies a follower's chunk in one transaction, with the same result as record by record."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.sla.report_view import ReportStore, summary_of
from services.sla.reports import GroupBy
from tests.unit.report_data import dispatched, status, ulid_of
from tests.unit.test_sla_reports import AFTER, CAL, W47, at, task, week_tasks


def records() -> list[tuple[str, bytes | None, bytes | None]]:
    """The week's statuses, then its tasks, then a stale status of a2: (topic, key, value) in follower order."""
    out: list[tuple[str, bytes | None, bytes | None]] = []
    for t in week_tasks():
        record = status(t)
        if record is not None:
            out.append(("tasks.status", record.task_id.encode(), record.to_bytes()))
    out += [("tasks.dispatched", None, dispatched(t).to_bytes()) for t in week_tasks()]
    older = status(task("a2", ("PA-CG", "城关镇综治中心"), at(16, 10), due=at(19, 0), changed=at(16, 11)))
    assert older is not None
    out.append(("tasks.status", None, older.to_bytes()))
    return out


def test_a_batch_gives_the_same_bulletin_as_one_record_at_a_time() -> None:
    one_by_one, batched = ReportStore(), ReportStore()
    for topic, key, value in records():
        one_by_one.apply_value(topic, key, value)
    with batched.batch():
        for topic, key, value in records():
            batched.apply_value(topic, key, value)
    assert len(batched) == len(one_by_one) == len(week_tasks())
    for by in GroupBy:
        assert summary_of(batched, W47, AFTER, CAL, by=by) == summary_of(one_by_one, W47, AFTER, CAL, by=by)


def test_tombstones_keep_their_order_within_a_batch() -> None:
    t = task("b1", ("PA-CG", "城关镇综治中心"), at(16, 10), due=at(19, 0), changed=at(16, 11))
    record = status(t)
    assert record is not None
    key = ulid_of("b1").encode()
    store = ReportStore()
    with store.batch():
        store.apply_value("tasks.dispatched", None, dispatched(t).to_bytes())
        store.apply_value("tasks.status", key, record.to_bytes())
        store.apply_value("tasks.status", key, None)  # the status is gone ...
        assert store.apply_value("tasks.status", key, b"not json") is False  # ... an unreadable one is skipped
    with store.reader() as db:
        assert db.execute("SELECT status FROM tasks").fetchall() == [(None,)]
    with store.batch():
        store.apply_value("tasks.status", key, None)
        store.apply_value("tasks.status", key, record.to_bytes())  # ... and back
    with store.reader() as db:
        assert db.execute("SELECT status FROM tasks").fetchall() == [(record.status.value,)]


def test_a_batch_is_one_transaction(tmp_path: Path) -> None:
    store = ReportStore.scratch(tmp_path)
    try:
        with store.batch():
            for topic, key, value in records():
                store.apply_value(topic, key, value)
            with store.reader() as db:  # another connection's snapshot: nothing committed yet
                assert db.execute("SELECT count(*) FROM tasks").fetchone() == (0,)
        assert len(store) == len(week_tasks())
        with pytest.raises(RuntimeError), store.batch():
            store.apply_value("tasks.dispatched", None, dispatched(task("c1", ("PA-CG", "x"), at(16, 9))).to_bytes())
            raise RuntimeError("the follower failed mid-chunk")
        assert len(store) == len(week_tasks()), "the failed chunk is rolled back (it is read again)"
    finally:
        store.close()
