"""The adapters' report index (source:source_id -> event id), task owners, and coalescing of submissions; pure.

Intake is the dedupe authority and records every report it accepts on the compacted `reports.index`; the
adapters follow that topic (index_follower.py) into this index and answer a repeat from it, publishing nothing.
The same file holds which unit each task on `tasks.dispatched` went to, so a unit's update on another unit's
task is refused at once (the SLA service still checks every update). No Kafka, no clock: callers hand in
`now` and the records.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")

# Authoritative entries live in SQLite, not a dict: measured, a dict costs ~19 MB of RSS per 100k keys
# (~190 MB per million, and the compacted topic only grows), SQLite ~67 MB of disk per million keys with
# its page cache (the LRU) capped at `cache_mib`. A lookup costs ~13 µs, nothing beside an HTTP request.
SCHEMA = "CREATE TABLE IF NOT EXISTS reports (key TEXT PRIMARY KEY, event_id TEXT NOT NULL) WITHOUT ROWID"
OWNERS_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS task_owners (task_id TEXT PRIMARY KEY, unit_code TEXT NOT NULL) WITHOUT ROWID"
)


@dataclass
class Applied:
    """What one batch of index records changed."""

    new_keys: int = 0
    # (dedupe key, the id this replica answered, the id intake kept): a cross-replica race it lost.
    superseded: list[tuple[str, str, str]] = field(default_factory=list)


class ReportIndex:
    """Known reports: intake's records (SQLite, bounded memory) and this replica's own acceptances.

    An own acceptance is provisional: held in memory for `provisional_ttl_s` so a retry to this replica is
    answered at once, and dropped when intake's record for the key arrives (which wins if it differs) or when
    it expires: a report intake dead-lettered is never indexed, and a corrected resend must get through.
    """

    def __init__(
        self, path: Path | str, *, provisional_ttl_s: float, max_provisional: int = 100_000, cache_mib: int = 8
    ) -> None:
        self.path = path
        self.provisional_ttl_s = provisional_ttl_s
        self.max_provisional = max_provisional
        self._db = sqlite3.connect(str(path), isolation_level=None)
        # Scratch state, rebuilt from the topic on every start: no fsync, the rollback journal in memory.
        for pragma in ("journal_mode=MEMORY", "synchronous=OFF", "temp_store=MEMORY"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute(f"PRAGMA cache_size={-1024 * int(cache_mib)}")  # negative: KiB, not pages
        self._db.execute(SCHEMA)
        self.size: int = self._db.execute("SELECT count(*) FROM reports").fetchone()[0]
        # key -> (event id, expires at); insertion order is expiry order (one TTL for all).
        self._provisional: OrderedDict[str, tuple[str, float]] = OrderedDict()
        # A sibling table on the same connection: one scratch file, one bounded page cache for both.
        self.owners = TaskOwners(self._db)

    def lookup(self, key: str, now: float) -> str | None:
        """The event id a report with this dedupe key already has, or None."""
        row = self._db.execute("SELECT event_id FROM reports WHERE key = ?", (key,)).fetchone()
        if row is not None:
            return str(row[0])
        entry = self._provisional.get(key)
        if entry is None:
            return None
        if entry[1] <= now:
            del self._provisional[key]
            return None
        return entry[0]

    def remember(self, key: str, event_id: str, now: float) -> None:
        """Record this replica's own acceptance until intake's record arrives or it expires."""
        self._provisional[key] = (event_id, now + self.provisional_ttl_s)
        self._provisional.move_to_end(key)
        while self._provisional:
            oldest, (_, expires) = next(iter(self._provisional.items()))
            if expires > now and len(self._provisional) <= self.max_provisional:
                break
            del self._provisional[oldest]

    @property
    def provisional(self) -> int:
        """How many own acceptances are held in memory."""
        return len(self._provisional)

    def apply(self, records: Iterable[tuple[str, str | None]]) -> Applied:
        """Apply index records in topic order: (key, event id), or (key, None) for a tombstone; the first one wins.

        First wins as in intake (ReportIndexed): a replay may index a key again, and its first id is the one told.
        """
        applied = Applied()
        cursor = self._db.cursor()
        cursor.execute("BEGIN")
        try:
            for key, event_id in records:
                mine = self._provisional.pop(key, None)
                if event_id is None:
                    self.size -= cursor.execute("DELETE FROM reports WHERE key = ?", (key,)).rowcount
                    continue
                if cursor.execute("INSERT OR IGNORE INTO reports VALUES (?, ?)", (key, event_id)).rowcount:
                    applied.new_keys += 1
                    if mine is not None and mine[0] != event_id:
                        applied.superseded.append((key, mine[0], event_id))
            cursor.execute("COMMIT")
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        self.size += applied.new_keys
        return applied

    def close(self) -> None:
        """Close the database (the caller removes a scratch file)."""
        self._db.close()


class TaskOwners:
    """Which unit holds each dispatched task (task id -> unit code), in a table beside the report index's.

    Each task has exactly one unit: co-operating units get copies with their own task ids, and a task id is
    derived from (event, unit, role), so a replayed dispatch names the same unit again (the first one wins).
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._db.execute(OWNERS_SCHEMA)
        self.size: int = self._db.execute("SELECT count(*) FROM task_owners").fetchone()[0]

    def owner(self, task_id: str) -> str | None:
        """The unit the task was dispatched to, or None when this replica has not seen the task (yet)."""
        row = self._db.execute("SELECT unit_code FROM task_owners WHERE task_id = ?", (task_id,)).fetchone()
        return None if row is None else str(row[0])

    def apply(self, records: Iterable[tuple[str, str]]) -> int:
        """Record (task id, unit code) pairs in topic order; return how many tasks were new."""
        new = 0
        cursor = self._db.cursor()
        cursor.execute("BEGIN")
        try:
            for task_id, unit_code in records:
                new += cursor.execute("INSERT OR IGNORE INTO task_owners VALUES (?, ?)", (task_id, unit_code)).rowcount
            cursor.execute("COMMIT")
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        self.size += new
        return new


class InFlight(Generic[T]):
    """Concurrent submissions of one key share the first one's publish and its outcome."""

    def __init__(self) -> None:
        self._pending: dict[str, asyncio.Task[T]] = {}

    def __len__(self) -> int:
        return len(self._pending)

    async def run(self, key: str, work: Callable[[], Coroutine[Any, Any, T]]) -> tuple[T, bool]:
        """Run `work` unless the same key is already running; return its outcome and whether this call joined."""
        task = self._pending.get(key)
        joined = task is not None
        if task is None:
            # A task of its own, so a caller that goes away does not cancel the publish the others wait for.
            task = asyncio.create_task(work())
            self._pending[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))
        return await asyncio.shield(task), joined

    def _forget(self, key: str, done: asyncio.Task[T]) -> None:
        if self._pending.get(key) is done:
            del self._pending[key]
        if not done.cancelled():
            done.exception()  # retrieved here, so a failure nobody awaited is not logged as "never retrieved"
