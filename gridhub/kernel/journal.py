"""Undo records of in-memory state changes, grouped by batch, so that a batch loop's rollback also rolls back state.

A handler of the kernel's batch loop changes its tables while processing a batch, long before that batch commits.
When the loop rolls back (a passing fault), every uncommitted batch is read again: the state must be as it was
before them. Changes go through `set`/`delete`, which note the old value; `seal` closes a batch, `commit_oldest`
forgets the oldest sealed batch's notes, `rollback` restores every noted value, newest first.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, MutableMapping
from typing import Any

_MISSING: Any = object()


class Journal:
    """Per-batch undo notes over any number of dicts."""

    def __init__(self) -> None:
        # (table, key, old value), or (None, undo action, None) for a change made in place
        self._open: list[tuple[MutableMapping[Any, Any] | None, Any, Any]] = []
        self._sealed: deque[list[tuple[MutableMapping[Any, Any] | None, Any, Any]]] = deque()

    def set(self, table: MutableMapping[Any, Any], key: Any, value: Any) -> None:
        """table[key] = value, undone on a rollback."""
        self._open.append((table, key, table.get(key, _MISSING)))
        table[key] = value

    def delete(self, table: MutableMapping[Any, Any], key: Any) -> None:
        """Remove key from table (if there), undone on a rollback."""
        if key in table:
            self._open.append((table, key, table.pop(key)))

    def undo(self, action: Callable[[], None]) -> None:
        """Note how to undo a change made in place (an append to a structure of one's own)."""
        self._open.append((None, action, None))

    def seal(self) -> None:
        """The current batch is complete: its notes wait for its commit."""
        self._sealed.append(self._open)
        self._open = []

    def commit_oldest(self) -> None:
        """The oldest sealed batch committed: its changes are final."""
        if self._sealed:
            self._sealed.popleft()

    def rollback(self) -> None:
        """Undo every change of every batch not committed, newest first."""
        batches = [*self._sealed, self._open]
        self._sealed.clear()
        self._open = []
        for notes in reversed(batches):
            for table, key, old in reversed(notes):
                if table is None:
                    key()
                elif old is _MISSING:
                    table.pop(key, None)
                else:
                    table[key] = old

    @property
    def pending_batches(self) -> int:
        """Sealed batches not yet committed."""
        return len(self._sealed)
