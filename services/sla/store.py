"""The SLA's disk-backed state: one SQLite file per input partition, with a due-time index of alert timers.

Why SQLite (the standard library's, WAL mode) rather than RocksDB (`rocksdict`, which Faust's RocksDB tables
use): one transaction covers the task rows, their timers, the fired marks and the input offsets, so the file is
always exactly "the state after offset N" (RocksDB's WriteBatch would do that too); the due index is an ordinary
B-tree index on `timers(due_ms)`, so the timer asks "what is due by now" in O(log n + k) and never scans the
tasks; the file opens with the `sqlite3` shell for an operator; and nothing is added to the image. WAL with
`synchronous=NORMAL` survives a killed process (kill -9) without an fsync per commit; a power cut may lose the
last commits, which the inputs and `sla.alerts` read back on the next start (see the worker).

Tables (per partition p of tasks.dispatched / tasks.updates / sla.alerts):

* `tasks(task_id, state, facts, open)`: the clock state (services.sla.clocks.TaskClockState as deflated JSON), what an
  alert says about the task (alerts.TaskFacts as JSON), and whether any clock still runs.
* `pending(task_id, updates)`: updates that arrived before their task, held until it comes.
* `timers(task_id, clock, fired_rank, fired_reminder, due_ms, span_ms, deadline_ms)`: per clock, the last
  alert position fired, the due instant of the next one (NULL: nothing planned: paused, met, or done), and
  the clock's deadline and running span (so firing needs no clock state), indexed by due_ms (partial index:
  only planned timers are in it).
* `offsets(topic, next)`: the next input offset of each topic, written in the same transaction as the state.
* `meta(key, value)`: `alerts_next` (the sla.alerts offset up to which every alert is marked), `complete`
  (the file was fully built), `open_tasks`, `suppress_before_ms`, `calendar` (digest of the calendar files the
  open tasks were last recounted on: services.sla.calendar_reload).

This module does no Kafka I/O and reads no clock: callers pass `now`.
"""

from __future__ import annotations

import contextlib
import json
import os
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gridhub.kernel.walfile import close_wal, open_wal
from schemas import ClockKind, TaskUpdated
from services.sla.alerts import (
    NOTHING_FIRED,
    AlertPolicy,
    ClockTimes,
    Level,
    PlannedAlert,
    Position,
    Rung,
    TaskFacts,
    clock_times,
    next_alert,
    next_two,
)
from services.sla.clocks import TaskClockState

SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    state BLOB NOT NULL,
    facts BLOB NOT NULL,
    open INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending (task_id TEXT PRIMARY KEY, updates BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS timers (
    task_id TEXT NOT NULL,
    clock TEXT NOT NULL,
    fired_rank INTEGER NOT NULL,
    fired_reminder INTEGER NOT NULL,
    due_ms INTEGER,
    span_ms INTEGER NOT NULL,
    deadline_ms INTEGER NOT NULL,
    PRIMARY KEY (task_id, clock)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS timers_due ON timers (due_ms) WHERE due_ms IS NOT NULL;
CREATE TABLE IF NOT EXISTS offsets (topic TEXT PRIMARY KEY, next INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime."""
    return int(moment.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    """Aware UTC datetime of epoch milliseconds."""
    return datetime.fromtimestamp(ms / 1000, UTC)


def facts_to_json(facts: TaskFacts) -> bytes:
    """TaskFacts as compact JSON."""
    return json.dumps(
        [
            facts.task_id,
            facts.unit_code,
            facts.unit_name,
            facts.title,
            [[r.level.value, r.unit_code, r.unit_name] for r in facts.chain],
            facts.causation_id,
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()


_LEVELS = {level.value: level for level in Level}
_CLOCKS = {kind.value: kind for kind in ClockKind}


def facts_from_json(raw: bytes | str) -> TaskFacts:
    """TaskFacts from facts_to_json's bytes."""
    task_id, unit_code, unit_name, title, chain, causation = json.loads(raw)
    rungs = tuple(Rung(_LEVELS[a], b, c) for a, b, c in chain)
    return TaskFacts(task_id, unit_code, unit_name, title, rungs, causation)


def state_to_blob(state: TaskClockState) -> bytes:
    """A clock state as stored: its JSON, deflated (the explanations are long Chinese text: ~1.6 kB → ~0.6 kB)."""
    return zlib.compress(state.__pydantic_serializer__.to_json(state), 1)


def state_from_blob(blob: bytes) -> TaskClockState:
    """A clock state back from state_to_blob's bytes."""
    return TaskClockState.model_validate_json(zlib.decompress(blob))


@dataclass
class TaskEntry:
    """A task's row: its clock state and what its alerts say."""

    state: TaskClockState
    facts: TaskFacts


@dataclass
class PartitionChanges:
    """What one batch changed in one partition: written in one transaction when the batch commits."""

    tasks: dict[str, TaskEntry] = field(default_factory=dict)
    new: set[str] = field(default_factory=set)  # tasks not in the file before this batch (nothing to read back)
    pending: dict[str, list[dict[str, Any]] | None] = field(default_factory=dict)
    offsets: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DueTimer:
    """A planned timer whose instant has come."""

    task_id: str
    clock: ClockKind
    fired: Position
    due_ms: int
    span_ms: int
    deadline_ms: int

    def times(self) -> ClockTimes:
        """The running clock it belongs to."""
        return ClockTimes(self.clock, from_ms(self.deadline_ms), timedelta(milliseconds=self.span_ms), True)


@dataclass(frozen=True, slots=True)
class Fired:
    """A timer advanced: through `position` (raised or passed over), next instant `due_ms` (None: no more).

    `seen` is the timer as it was read (fired position, due instant): when a commit changed it since, the
    timer is advanced through `position` and planned again from the task's committed state instead."""

    task_id: str
    clock: ClockKind
    position: Position
    due_ms: int | None
    seen: tuple[Position, int | None] | None = None


class PartitionStore:
    """One partition's SQLite file. Not thread-safe: used from the event loop's thread only."""

    def __init__(self, path: Path, partition: int, policy: AlertPolicy) -> None:
        self.path = Path(path)
        self.partition = partition
        self.policy = policy
        self.existed = self.path.exists()
        self.db = open_wal(self.path)  # checkpointed on the kernel's thread, not in our commits
        self.db.execute("PRAGMA cache_size=-16384")  # 16 MiB of page cache per partition
        self.db.execute("PRAGMA temp_store=MEMORY")
        self.db.executescript(SCHEMA)
        self.open_tasks = int(self.meta("open_tasks") or 0)
        self.closed = False

    # --- reading -------------------------------------------------------------------------------------

    @property
    def complete(self) -> bool:
        """Whether the file was fully built (a crash during a rebuild leaves it incomplete)."""
        return self.meta("complete") == "1"

    def meta(self, key: str) -> str | None:
        """One meta value."""
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def offsets(self) -> dict[str, int]:
        """Next input offset per topic, as of the last committed batch."""
        return {str(t): int(n) for t, n in self.db.execute("SELECT topic, next FROM offsets")}

    def alerts_next(self) -> int | None:
        """Offset of sla.alerts (this partition) up to which every alert is marked fired; None: from the start."""
        value = self.meta("alerts_next")
        return None if value is None else int(value)

    def task(self, task_id: str) -> TaskEntry | None:
        """A task's row."""
        row = self.db.execute("SELECT state, facts FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
        if row is None:
            return None
        return TaskEntry(state_from_blob(row[0]), facts_from_json(row[1]))

    def has_task(self, task_id: str) -> bool:
        """Whether the task is known."""
        return self.db.execute("SELECT 1 FROM tasks WHERE task_id = ?", (task_id,)).fetchone() is not None

    def facts(self, task_id: str) -> TaskFacts | None:
        """What a task's alerts say (cheaper than task(): no clock state parsed)."""
        row = self.db.execute("SELECT facts FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
        return None if row is None else facts_from_json(row[0])

    def facts_many(self, task_ids: Sequence[str]) -> dict[str, TaskFacts]:
        """What the alerts of many tasks say, in one query per 500 ids."""
        found: dict[str, TaskFacts] = {}
        unique = list(dict.fromkeys(task_ids))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            query = f"SELECT task_id, facts FROM tasks WHERE task_id IN ({','.join('?' * len(chunk))})"
            for task_id, raw in self.db.execute(query, chunk):
                found[task_id] = facts_from_json(raw)
        return found

    def pending(self, task_id: str) -> list[dict[str, Any]]:
        """Updates held for a task not seen yet."""
        row = self.db.execute("SELECT updates FROM pending WHERE task_id = ?", (task_id,)).fetchone()
        return [] if row is None else list(json.loads(row[0]))

    def due(self, now_ms: int, limit: int) -> list[DueTimer]:
        """Timers due by now, earliest first, from the due index."""
        rows = self.db.execute(
            "SELECT task_id, clock, fired_rank, fired_reminder, due_ms, span_ms, deadline_ms FROM timers "
            "WHERE due_ms IS NOT NULL AND due_ms <= ? ORDER BY due_ms LIMIT ?",
            (now_ms, limit),
        ).fetchall()
        clocks = _CLOCKS
        return [DueTimer(t, clocks[c], (fr, fn), d, s, dl) for t, c, fr, fn, d, s, dl in rows]

    def next_due_ms(self) -> int | None:
        """The earliest planned timer."""
        row = self.db.execute("SELECT MIN(due_ms) FROM timers WHERE due_ms IS NOT NULL").fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def timer(self, task_id: str, clock: ClockKind) -> tuple[Position, int | None] | None:
        """A clock's fired position and next due instant."""
        row = self.db.execute(
            "SELECT fired_rank, fired_reminder, due_ms FROM timers WHERE task_id = ? AND clock = ?",
            (task_id, clock.value),
        ).fetchone()
        return None if row is None else ((int(row[0]), int(row[1])), row[2])

    def planned_count(self) -> int:
        """Timers with a next alert planned."""
        return int(self.db.execute("SELECT COUNT(*) FROM timers WHERE due_ms IS NOT NULL").fetchone()[0])

    def size_bytes(self) -> int:
        """Bytes on disk: the database file and its write-ahead log."""
        total = 0
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(f"{self.path}{suffix}").st_size
        return total

    # --- writing -------------------------------------------------------------------------------------

    def commit(self, changes: PartitionChanges, extra_meta: Mapping[str, str] | None = None) -> None:
        """Write one batch's changes, its timers (planned after each clock's fired mark) and its offsets, atomically."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            if changes.tasks:
                self._write_tasks(changes.tasks, changes.new)
            for task_id, held in changes.pending.items():
                if held:
                    db.execute(
                        "INSERT OR REPLACE INTO pending (task_id, updates) VALUES (?, ?)",
                        (task_id, json.dumps(held, ensure_ascii=False).encode()),
                    )
                else:
                    db.execute("DELETE FROM pending WHERE task_id = ?", (task_id,))
            if changes.offsets:
                db.executemany(
                    "INSERT OR REPLACE INTO offsets (topic, next) VALUES (?, ?)", list(changes.offsets.items())
                )
            for key, value in (extra_meta or {}).items():
                db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            self.open_tasks = int(self.meta("open_tasks") or 0)
            raise

    def _write_tasks(self, tasks: Mapping[str, TaskEntry], new: set[str]) -> None:
        db = self.db
        rows = []
        timers: list[tuple[Any, ...]] = []
        delta = 0
        for task_id, entry in tasks.items():
            times = clock_times(entry.state)
            is_open = any(t.running for t in times)
            fired: dict[ClockKind, Position] = {}
            if task_id in new:
                delta += is_open
            else:
                old = db.execute("SELECT open FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
                delta += int(is_open) - (int(old[0]) if old is not None else 0)
                fired = {
                    ClockKind(c): (int(r), int(n))
                    for c, r, n in db.execute(
                        "SELECT clock, fired_rank, fired_reminder FROM timers WHERE task_id = ?", (task_id,)
                    )
                }
            rows.append((task_id, state_to_blob(entry.state), facts_to_json(entry.facts), int(is_open)))
            for clock in times:
                after = fired.get(clock.kind, NOTHING_FIRED)
                planned = next_alert(clock, entry.facts.chain, self.policy, after)
                timers.append(
                    (
                        task_id,
                        clock.kind.value,
                        after[0],
                        after[1],
                        None if planned is None else to_ms(planned.due_at),
                        int(clock.span.total_seconds() * 1000),
                        to_ms(clock.due_at),
                    )
                )
        db.executemany("INSERT OR REPLACE INTO tasks (task_id, state, facts, open) VALUES (?, ?, ?, ?)", rows)
        db.executemany(
            "INSERT OR REPLACE INTO timers (task_id, clock, fired_rank, fired_reminder, due_ms, span_ms, "
            "deadline_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
            timers,
        )
        if delta:
            self.open_tasks += delta
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('open_tasks', ?)", (str(self.open_tasks),))

    def mark_fired(self, fired: Sequence[Fired], alerts_next: int | None = None) -> None:
        """Advance timers past alerts raised (acked) or passed over, and where sla.alerts is read from next."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            # The usual case in one statement: every timer as it was read. Only when some changed meanwhile (a
            # commit replanned them) is each one tried on its own, the changed ones planned from their new state.
            guarded = [f for f in fired if f.seen is not None]
            before = db.total_changes
            db.executemany(
                "UPDATE timers SET fired_rank = ?, fired_reminder = ?, due_ms = ? WHERE task_id = ? "
                "AND clock = ? AND fired_rank = ? AND fired_reminder = ? AND due_ms IS ?",
                [(*f.position, f.due_ms, f.task_id, f.clock.value, *f.seen[0], f.seen[1]) for f in guarded if f.seen],
            )
            rest = [f for f in fired if f.seen is None] if db.total_changes - before == len(guarded) else list(fired)
            for f in rest:
                self._advance(f.task_id, f.clock, f.position)
            if alerts_next is not None:
                db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('alerts_next', ?)", (str(alerts_next),))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _advance(self, task_id: str, clock: ClockKind, position: Position) -> None:
        """Move a timer through `position` (if not there yet) and plan its next alert from the committed state."""
        known = self.timer(task_id, clock)
        entry = self.task(task_id)
        if known is None or entry is None or known[0] >= position:
            return
        times = next((t for t in clock_times(entry.state) if t.kind is clock), None)
        planned = None if times is None else next_alert(times, entry.facts.chain, self.policy, position)
        self.db.execute(
            "UPDATE timers SET fired_rank = ?, fired_reminder = ?, due_ms = ? WHERE task_id = ? AND clock = ?",
            (*position, None if planned is None else to_ms(planned.due_at), task_id, clock.value),
        )

    def reconcile(self, seen: Iterable[tuple[str, ClockKind, Position]], alerts_next: int) -> int:
        """Alerts found on sla.alerts (raised, perhaps not marked before a crash): mark each clock fired through
        the furthest position seen, replan it, and record how far the topic was read. Returns clocks advanced."""
        furthest: dict[tuple[str, ClockKind], Position] = {}
        for task_id, clock, position in seen:
            key = (task_id, clock)
            furthest[key] = max(position, furthest.get(key, NOTHING_FIRED))
        advanced = 0
        for (task_id, clock), position in furthest.items():
            known = self.timer(task_id, clock)
            advanced += known is not None and known[0] < position
        self.mark_fired([Fired(t, c, p, None) for (t, c), p in furthest.items()], alerts_next)
        return advanced

    def open_rows(self, after: str, limit: int) -> list[tuple[str, bytes, bytes]]:
        """Open tasks (a clock still running) after task id `after`, in id order: id, stored state, stored facts
        (undecoded: state_from_blob, facts_from_json)."""
        rows = self.db.execute(
            "SELECT task_id, state, facts FROM tasks WHERE open = 1 AND task_id > ? ORDER BY task_id LIMIT ?",
            (after, limit),
        ).fetchall()
        return [(str(t), bytes(s), bytes(f)) for t, s, f in rows]

    def rows(self, task_ids: Sequence[str]) -> list[tuple[str, bytes, bytes]]:
        """Some tasks' rows as open_rows() gives them (unknown ids are left out)."""
        found = []
        for task_id in task_ids:
            row = self.db.execute("SELECT state, facts FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
            if row is not None:
                found.append((task_id, bytes(row[0]), bytes(row[1])))
        return found

    def replace_unchanged(self, entries: Mapping[str, tuple[bytes, TaskEntry]]) -> list[str]:
        """Write each task's new entry only if its stored state is still the given one (a batch committed since
        wins: it was computed on the new calendar); timers are replanned as for any commit. Returns the ids
        written. One transaction."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            kept: dict[str, TaskEntry] = {}
            for task_id, (seen, entry) in entries.items():
                row = db.execute("SELECT state FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
                if row is not None and bytes(row[0]) == seen:
                    kept[task_id] = entry
            if kept:
                self._write_tasks(kept, set())
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            self.open_tasks = int(self.meta("open_tasks") or 0)
            raise
        return list(kept)

    def set_meta(self, **values: str) -> None:
        """Set meta values in one transaction."""
        self.db.execute("BEGIN IMMEDIATE")
        self.db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(values.items()))
        self.db.execute("COMMIT")

    def close(self) -> None:
        """Close the file (checkpointing the log)."""
        if not self.closed:
            self.closed = True
            close_wal(self.db, self.path)


def planned_after(
    timer: DueTimer, facts: TaskFacts, policy: AlertPolicy
) -> tuple[PlannedAlert | None, PlannedAlert | None]:
    """The alert a due timer stands for and the one after it (None when the plan has no more)."""
    return next_two(timer.times(), facts.chain, policy, timer.fired)


def held_updates(raw: Sequence[Mapping[str, Any]]) -> list[TaskUpdated]:
    """Held updates back as messages."""
    return [TaskUpdated.model_validate(u) for u in raw]
