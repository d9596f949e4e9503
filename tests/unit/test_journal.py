"""The kernel's journal: state changes of uncommitted batches roll back with them."""

from __future__ import annotations

from gridhub.kernel.journal import Journal


def test_rollback_restores_every_uncommitted_batch_newest_first() -> None:
    journal = Journal()
    table = {"a": 1}
    journal.set(table, "a", 2)
    journal.set(table, "b", 3)
    journal.seal()  # batch 1
    journal.set(table, "a", 4)
    journal.delete(table, "b")
    journal.seal()  # batch 2
    journal.set(table, "c", 5)  # batch 3, still open
    assert table == {"a": 4, "c": 5}
    journal.commit_oldest()  # batch 1 is final
    journal.rollback()
    assert table == {"a": 2, "b": 3}
    assert journal.pending_batches == 0


def test_committed_batches_are_not_undone_and_missing_keys_are_removed() -> None:
    journal = Journal()
    first: dict[str, int] = {}
    second = {"x": 1}
    journal.set(first, "k", 1)
    journal.seal()
    journal.commit_oldest()
    journal.set(first, "k", 2)
    journal.set(second, "y", 2)
    journal.delete(second, "missing")  # nothing to note
    journal.rollback()
    assert first == {"k": 1}
    assert second == {"x": 1}
    journal.commit_oldest()  # nothing sealed: no error
