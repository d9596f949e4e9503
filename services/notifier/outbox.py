"""The notifier's durable outbox: one SQLite file per input partition (WAL), delivery jobs, attempts, offsets.

A job is one message (a task or an alert) for one endpoint; its id is `<webhook id>.<endpoint id>`, so storing the
same input twice (a batch read again after a rollback or a restart) stores one job. Pending jobs carry their next
attempt time under a partial index (`state = 'pending'`), so the due ones are found without a scan. The file also
holds the next input offsets of its partition, written in the same transaction as the jobs they produced: the file
is always the outbox after exactly those offsets, and a restart seeks the consumer to them.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridhub.kernel.walfile import close_wal, open_wal

PENDING = "pending"
FINAL_STATES = frozenset({"delivered", "exhausted", "gone", "disabled", "no-endpoint"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id TEXT NOT NULL UNIQUE,
    webhook_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    unit_code TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    url TEXT NOT NULL,
    channel TEXT NOT NULL,
    body BLOB NOT NULL,
    urgency_ms INTEGER NOT NULL,
    causation_id TEXT,
    source TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at_ms INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    last_status INTEGER,
    last_error TEXT,
    replay_base INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs(next_at_ms) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS jobs_task ON jobs(task_id);
CREATE INDEX IF NOT EXISTS jobs_endpoint ON jobs(endpoint_id, updated_ms);
CREATE TABLE IF NOT EXISTS attempts (
    delivery_id TEXT NOT NULL,
    n INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    status INTEGER,
    latency_ms REAL,
    excerpt TEXT,
    outcome TEXT NOT NULL,
    PRIMARY KEY (delivery_id, n)
);
CREATE TABLE IF NOT EXISTS offsets (topic TEXT PRIMARY KEY, next INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_JOB_COLUMNS = (
    "seq, delivery_id, webhook_id, kind, subject_id, task_id, unit_code, endpoint_id, url, channel, body, "
    "urgency_ms, causation_id, source, state, attempts, next_at_ms, created_ms, updated_ms, last_status, last_error, "
    "replay_base"
)


@dataclass
class Job:
    """One delivery of one message to one endpoint (a row of `jobs`)."""

    delivery_id: str
    webhook_id: str
    kind: str  # task | alert
    subject_id: str
    task_id: str
    unit_code: str
    endpoint_id: str
    url: str
    channel: str
    body: bytes
    urgency_ms: int  # the SLA instant this message serves (task's resolve due, alert's due): sooner goes first
    causation_id: str | None
    source: str  # topic:partition:offset it was read from
    state: str = PENDING
    attempts: int = 0
    next_at_ms: int = 0
    created_ms: int = 0
    updated_ms: int = 0
    last_status: int | None = None
    last_error: str | None = None
    seq: int = 0
    partition: int = 0
    replay_base: int = 0  # attempts made before the last replay: the retry schedule restarts after a replay

    @property
    def order_key(self) -> tuple[str, str]:
        """Deliveries with the same key (task and endpoint) go out in seq order."""
        return (self.task_id, self.endpoint_id)


@dataclass(frozen=True)
class Attempt:
    """One HTTP attempt of a job, as recorded."""

    delivery_id: str
    n: int
    at_ms: int
    status: int | None
    latency_ms: float | None
    excerpt: str | None
    outcome: str


@dataclass(frozen=True)
class JobUpdate:
    """A job's state after an attempt (or a replay)."""

    delivery_id: str
    state: str
    attempts: int
    next_at_ms: int
    last_status: int | None
    last_error: str | None
    updated_ms: int


def _job(row: Sequence[Any], partition: int) -> Job:
    (seq, delivery_id, webhook_id, kind, subject_id, task_id, unit_code, endpoint_id, url, channel, body) = row[:11]
    (urgency_ms, causation_id, source, state, attempts, next_at_ms, created_ms, updated_ms) = row[11:19]
    last_status, last_error, replay_base = row[19:22]
    return Job(
        delivery_id,
        webhook_id,
        kind,
        subject_id,
        task_id,
        unit_code,
        endpoint_id,
        url,
        channel,
        bytes(body),
        urgency_ms,
        causation_id,
        source,
        state,
        attempts,
        next_at_ms,
        created_ms,
        updated_ms,
        last_status,
        last_error,
        seq,
        partition,
        replay_base,
    )


class Outbox:
    """The outbox file of one input partition."""

    def __init__(self, path: Path, partition: int) -> None:
        self.path = path
        self.partition = partition
        # WAL + synchronous=NORMAL: a committed transaction survives the process being killed (not a power cut);
        # checkpoints run on the kernel's checkpointer thread, not in our commits.
        self.db = open_wal(path)
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the file."""
        close_wal(self.db, self.path)

    # --- inputs ----------------------------------------------------------------------------------

    def store(self, jobs: Iterable[Job], offsets: Mapping[str, int]) -> list[Job]:
        """Store new jobs with the next input offsets, in one transaction; return the jobs new to the file (with
        their seq). A job already stored (same delivery id) is left as it is."""
        batch = list(jobs)
        added: list[Job] = []
        with self._tx():
            # One executemany for the batch (a statement per job cost ~40 µs each), then the rows it added: seq is
            # AUTOINCREMENT and this transaction the only writer, so they are exactly those past the old maximum.
            before = int(self.db.execute("SELECT coalesce(max(seq), 0) FROM jobs").fetchone()[0])
            self.db.executemany(
                f"INSERT OR IGNORE INTO jobs ({_JOB_COLUMNS}) VALUES (NULL{',?' * 21})",
                [
                    (
                        job.delivery_id,
                        job.webhook_id,
                        job.kind,
                        job.subject_id,
                        job.task_id,
                        job.unit_code,
                        job.endpoint_id,
                        job.url,
                        job.channel,
                        job.body,
                        job.urgency_ms,
                        job.causation_id,
                        job.source,
                        job.state,
                        job.attempts,
                        job.next_at_ms,
                        job.created_ms,
                        job.updated_ms,
                        job.last_status,
                        job.last_error,
                        job.replay_base,
                    )
                    for job in batch
                ],
            )
            new = dict(self.db.execute("SELECT delivery_id, seq FROM jobs WHERE seq > ?", (before,)).fetchall())
            for job in batch:
                seq = new.pop(job.delivery_id, None)  # popped: a second copy in the same batch was not the one stored
                if seq is not None:
                    job.seq = int(seq)
                    job.partition = self.partition
                    added.append(job)
            self.db.executemany(
                "INSERT INTO offsets(topic, next) VALUES (?, ?) ON CONFLICT(topic) DO UPDATE SET next = excluded.next",
                list(offsets.items()),
            )
        return added

    def replay(self, delivery_id: str, at_ms: int) -> Job | None:
        """Make a finished job pending again, due at at_ms, its retry schedule started afresh; None if unknown."""
        with self._tx():
            self.db.execute(
                "UPDATE jobs SET state='pending', next_at_ms=?, updated_ms=?, replay_base=attempts WHERE delivery_id=?",
                (at_ms, at_ms, delivery_id),
            )
        return self.get(delivery_id)

    def offsets(self) -> dict[str, int]:
        """The next input offsets the file's jobs were built from (empty for a new file)."""
        return {topic: int(n) for topic, n in self.db.execute("SELECT topic, next FROM offsets")}

    def meta(self, key: str) -> str | None:
        """A bookkeeping value."""
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, **values: str) -> None:
        """Set bookkeeping values."""
        with self._tx():
            self.db.executemany(
                "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                list(values.items()),
            )

    # --- attempts --------------------------------------------------------------------------------

    def record(self, updates: Sequence[JobUpdate], attempts: Sequence[Attempt]) -> None:
        """Write attempts and the jobs' new states in one transaction."""
        with self._tx():
            self.db.executemany(
                "INSERT OR REPLACE INTO attempts(delivery_id, n, at_ms, status, latency_ms, excerpt, outcome) "
                "VALUES (?,?,?,?,?,?,?)",
                [(a.delivery_id, a.n, a.at_ms, a.status, a.latency_ms, a.excerpt, a.outcome) for a in attempts],
            )
            self.db.executemany(
                "UPDATE jobs SET state=?, attempts=?, next_at_ms=?, last_status=?, last_error=?, updated_ms=? "
                "WHERE delivery_id=?",
                [
                    (u.state, u.attempts, u.next_at_ms, u.last_status, u.last_error, u.updated_ms, u.delivery_id)
                    for u in updates
                ],
            )

    # --- reads -----------------------------------------------------------------------------------

    def pending(self) -> list[Job]:
        """Every pending job, by seq (loaded into the scheduler on assignment)."""
        rows = self.db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE state = 'pending' ORDER BY seq")
        return [_job(row, self.partition) for row in rows]

    def due(self, now_ms: int, limit: int = 1000) -> list[Job]:
        """Pending jobs due by now (the next-attempt index)."""
        rows = self.db.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE state = 'pending' AND next_at_ms <= ? ORDER BY next_at_ms LIMIT ?",
            (now_ms, limit),
        )
        return [_job(row, self.partition) for row in rows]

    def get(self, delivery_id: str) -> Job | None:
        """One job by id."""
        row = self.db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE delivery_id = ?", (delivery_id,)).fetchone()
        return None if row is None else _job(row, self.partition)

    def by_task(self, task_id: str, limit: int = 500) -> list[Job]:
        """The jobs of one task (its own and its alerts'), oldest first."""
        rows = self.db.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE task_id = ? ORDER BY seq LIMIT ?", (task_id, limit)
        )
        return [_job(row, self.partition) for row in rows]

    def by_endpoint(self, endpoint_id: str, since_ms: int, *, failed_only: bool = False, limit: int = 500) -> list[Job]:
        """The jobs of one endpoint changed since a time (failed ones only: exhausted, gone, disabled)."""
        where = "endpoint_id = ? AND updated_ms >= ?"
        if failed_only:
            where += " AND state IN ('exhausted', 'gone', 'disabled')"
        rows = self.db.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE {where} ORDER BY seq LIMIT ?", (endpoint_id, since_ms, limit)
        )
        return [_job(row, self.partition) for row in rows]

    def attempts_of(self, delivery_id: str) -> list[Attempt]:
        """Every recorded attempt of a job, in order."""
        rows = self.db.execute(
            "SELECT delivery_id, n, at_ms, status, latency_ms, excerpt, outcome FROM attempts "
            "WHERE delivery_id = ? ORDER BY n",
            (delivery_id,),
        )
        return [Attempt(*row) for row in rows]

    def endpoint_health(self) -> dict[str, tuple[int, int | None]]:
        """Per endpoint with recorded attempts: (its last delivered attempt or 0, its first failed attempt after that
        or None); what a restarted engine needs to go on counting how long an endpoint has failed."""
        found: dict[str, tuple[int, int | None]] = {}
        query = (
            "WITH a AS (SELECT j.endpoint_id AS e, a.at_ms AS at, a.outcome = 'delivered' AS ok "
            "FROM attempts a JOIN jobs j USING (delivery_id)), "
            "o AS (SELECT e, max(at) AS last_ok FROM a WHERE ok GROUP BY e) "
            "SELECT a.e, coalesce(o.last_ok, 0), min(CASE WHEN NOT a.ok AND a.at > coalesce(o.last_ok, 0) "
            "THEN a.at END) FROM a LEFT JOIN o ON o.e = a.e GROUP BY a.e"
        )
        for endpoint, last_ok, first_failure in self.db.execute(query):
            found[endpoint] = (int(last_ok), None if first_failure is None else int(first_failure))
        return found

    def prune(self, before_ms: int) -> int:
        """Remove finished jobs last changed before a time, with their attempts; returns how many jobs went."""
        with self._tx():
            self.db.execute(
                "DELETE FROM attempts WHERE delivery_id IN "
                "(SELECT delivery_id FROM jobs WHERE state != 'pending' AND updated_ms < ?)",
                (before_ms,),
            )
            gone = self.db.execute("DELETE FROM jobs WHERE state != 'pending' AND updated_ms < ?", (before_ms,))
        return int(gone.rowcount)

    def depth(self) -> int:
        """Pending jobs."""
        return int(self.db.execute("SELECT count(*) FROM jobs WHERE state = 'pending'").fetchone()[0])

    def oldest_due_ms(self) -> int | None:
        """The earliest next-attempt time of a pending job."""
        row = self.db.execute("SELECT min(next_at_ms) FROM jobs WHERE state = 'pending'").fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def _tx(self) -> _Transaction:
        return _Transaction(self.db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")


def now_ms() -> int:
    """Wall-clock milliseconds."""
    return int(time.time() * 1000)
