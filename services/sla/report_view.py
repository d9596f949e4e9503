"""The reports' read model: tasks.dispatched and tasks.status, group-less, into a bounded SQLite table.

`ReportStore` (no Kafka, no clock) keeps one row per task: the routing facts of its `TaskDispatched` (unit, role,
matter, township, triage flag, received time) and the part of its latest `TaskStatusChanged` the bulletin needs
(status, resolve deadline, resolved, replied, rating, changed). Nothing else: no text, no place, no reporter. The
two topics are read independently, so a status may come before its task; its row waits, half filled, and is
never reported until the task arrives. Of two statuses the later `changed_at` wins (tasks.status is compacted, a
replay may bring an older one after a newer). Rows live in SQLite, not in dicts, so the memory stays bounded
with 10^6 tasks (the page cache is capped at `cache_mib`); rows of finished tasks received before the retention
horizon of tasks.dispatched, and status rows whose task never came, are pruned. A summary lists only the tasks
received, resolved or due in its week; the rest of the backlog comes counted per group by SQL (`Backlog`).

`ReportView` is the component the SLA worker runs beside its batch loop: two `TopicFollower`s (every partition,
from the start, no consumer group) fill the store; `ready()` once both have caught up; `summary()` gives the
same `Summary` as `gridhub report weekly`, cached for a few seconds (a dashboard polls), computed in a worker
thread on its own read connection (WAL) so the event loop the SLA timers run on is never held by it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry
from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from gridhub.kernel.follower import Records, TopicFollower
from gridhub.kernel.metrics import ServiceMetrics
from gridhub.kernel.settings import CommonSettings
from schemas import topic_spec
from schemas.dutylist import DutyList, load_duty_list
from schemas.task import ClockKind, TaskRole
from services.sla.calendar import WorkingCalendar
from services.sla.reports import (
    PRIMARY_ONLY,
    Backlog,
    GroupBy,
    Period,
    Summary,
    TaskFacts,
    summarise,
    week_containing,
)

log = logging.getLogger(__name__)

DISPATCHED_TOPIC = "tasks.dispatched"
STATUS_TOPIC = "tasks.status"
# Finished tasks received longer ago than tasks.dispatched keeps records (plus a week) are dropped: a replay
# could not bring them back either. Open tasks are kept whatever their age: they are the backlog.
KEEP_FOR = timedelta(milliseconds=topic_spec(DISPATCHED_TOPIC).retention_ms) + timedelta(days=7)
PRUNE_EVERY_S = 3600.0
# How often the per-unit gauges (open, overdue, on-time rate of the week so far) are recounted for /metrics: a
# whole week's bulletin each time, so not at every scrape.
UNIT_GAUGES_EVERY_S = 60.0
SCRATCH_PREFIX = "report-view-"

SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    unit_code TEXT, unit_name TEXT, role TEXT, matter_code TEXT, matter_name TEXT, township TEXT,
    triage INTEGER, received_us INTEGER,
    status TEXT, resolve_due_us INTEGER, resolved_us INTEGER, replied_us INTEGER, satisfaction INTEGER,
    changed_us INTEGER, resolve_paused_us INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tasks_received ON tasks (received_us);
CREATE INDEX IF NOT EXISTS tasks_resolved ON tasks (resolved_us);
CREATE INDEX IF NOT EXISTS tasks_due ON tasks (resolve_due_us);
CREATE INDEX IF NOT EXISTS tasks_open ON tasks (received_us) WHERE resolved_us IS NULL;
"""

_UPSERT_TASK = """
INSERT INTO tasks (task_id, unit_code, unit_name, role, matter_code, matter_name, township, triage, received_us)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (task_id) DO UPDATE SET
    unit_code = excluded.unit_code, unit_name = excluded.unit_name, role = excluded.role,
    matter_code = excluded.matter_code, matter_name = excluded.matter_name, township = excluded.township,
    triage = excluded.triage, received_us = excluded.received_us
"""

_UPSERT_STATUS = """
INSERT INTO tasks (task_id, status, resolve_due_us, resolved_us, replied_us, satisfaction, changed_us,
    resolve_paused_us)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (task_id) DO UPDATE SET
    status = excluded.status, resolve_due_us = excluded.resolve_due_us, resolved_us = excluded.resolved_us,
    replied_us = excluded.replied_us, satisfaction = excluded.satisfaction, changed_us = excluded.changed_us,
    resolve_paused_us = excluded.resolve_paused_us
WHERE tasks.changed_us IS NULL OR excluded.changed_us >= tasks.changed_us
"""

_COLUMNS = (
    "task_id, unit_code, unit_name, role, matter_code, matter_name, township, triage, received_us, "
    "status, resolve_due_us, resolved_us, replied_us, satisfaction, changed_us, resolve_paused_us"
)
# The tasks in a cohort of the week as of the cut-off: received, resolved or due in it (listed one by one; a
# week's worth). :end and :due_end are min(end of week, as_of).
_IN_COHORT = f"""
SELECT {_COLUMNS} FROM tasks WHERE unit_code IS NOT NULL AND received_us >= :start AND received_us < :end
UNION SELECT {_COLUMNS} FROM tasks WHERE unit_code IS NOT NULL AND resolved_us >= :start AND resolved_us < :as_of
UNION SELECT {_COLUMNS} FROM tasks
    WHERE unit_code IS NOT NULL AND resolve_due_us > :start AND resolve_due_us <= :due_end
"""
# The other tasks open at the cut-off (the backlog, up to 10^6), counted per group, as reports._counts counts them:
# open = received before as_of, not resolved before it, not returned before it; overdue = open, its resolve
# clock not paused at as_of, due no later than as_of. NULLs are spelled out: NOT (NULL ...) would drop the row.
_BACKLOG = """
SELECT unit_code, unit_name, role, matter_code, matter_name, township, triage, count(*),
    sum(CASE WHEN resolve_due_us IS NOT NULL AND resolve_due_us <= :as_of
        AND NOT (resolve_paused_us IS NOT NULL AND resolve_paused_us < :as_of) THEN 1 ELSE 0 END)
FROM tasks
WHERE unit_code IS NOT NULL AND received_us < :as_of
    AND (resolved_us IS NULL OR resolved_us >= :as_of)
    AND NOT (coalesce(status, '') = 'returned' AND (changed_us IS NULL OR changed_us < :as_of))
    AND NOT (received_us >= :start AND received_us < :end)
    AND NOT (resolve_due_us IS NOT NULL AND resolve_due_us > :start AND resolve_due_us <= :due_end)
GROUP BY unit_code, unit_name, role, matter_code, matter_name, township, triage
"""


def _us(moment: datetime | None) -> int | None:
    """Microseconds since the epoch (UTC) of an aware datetime."""
    if moment is None:
        return None
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _at(us: int | None) -> datetime | None:
    return None if us is None else datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


class _Decision(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    matter_name: str | None = None
    township: str | None = None
    triage: bool = False


class DispatchedFacts(BaseModel):
    """The fields of a TaskDispatched the reports keep (everything else, the reporter above all, is skipped)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    task_id: str
    unit_code: str
    unit_name: str
    role: TaskRole
    matter_code: str | None = None
    received_at: AwareDatetime
    decision: _Decision


class _ClockDue(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    kind: str  # a str, not ClockKind: a clock kind added later must not make the record unreadable
    due_at: AwareDatetime
    paused_since: AwareDatetime | None = None


class StatusFacts(BaseModel):
    """The fields of a TaskStatusChanged the reports keep."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    task_id: str
    status: str
    clocks: tuple[_ClockDue, ...] = ()
    resolved_at: AwareDatetime | None = None
    replied_at: AwareDatetime | None = None
    satisfaction: int | None = None
    changed_at: AwareDatetime

    @property
    def resolve_clock(self) -> _ClockDue | None:
        """The resolve clock."""
        return next((c for c in self.clocks if c.kind == ClockKind.RESOLVE.value), None)


class ReportStore:
    """One row per task (routing facts + latest status) in SQLite: a scratch file or memory; pure of Kafka.

    Written on one connection (the event loop's: the followers apply records there). A file store is in WAL
    mode, so `reader()` connections, one per summary in a worker thread, read a consistent snapshot while the
    writer goes on; a memory store is read on its own connection.
    """

    def __init__(self, path: Path | str = ":memory:", *, cache_mib: int = 8) -> None:
        self.path = str(path)
        self.cache_mib = cache_mib
        self.in_memory = self.path == ":memory:"
        self._db = sqlite3.connect(self.path, isolation_level=None)
        # Scratch state, rebuilt from the topics on every start: no fsync.
        journal = "MEMORY" if self.in_memory else "WAL"
        for pragma in (f"journal_mode={journal}", "synchronous=OFF", "temp_store=MEMORY"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute(f"PRAGMA cache_size={-1024 * int(cache_mib)}")  # negative: KiB, not pages
        self._db.executescript(SCHEMA)

    @classmethod
    def scratch(cls, directory: Path | None, *, cache_mib: int = 8) -> ReportStore:
        """A store in a new file under directory (removed by close(); files of dead processes are removed
        here), in memory without a directory."""
        if directory is None:
            return cls(":memory:", cache_mib=cache_mib)
        directory.mkdir(parents=True, exist_ok=True)
        _remove_stale(directory)
        return cls(directory / f"{SCRATCH_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}.sqlite", cache_mib=cache_mib)

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM tasks WHERE unit_code IS NOT NULL").fetchone()[0])

    def close(self) -> None:
        """Close the database and remove its files."""
        self._db.close()
        if not self.in_memory:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    Path(self.path + suffix).unlink()

    @contextlib.contextmanager
    def reader(self) -> Iterator[sqlite3.Connection]:
        """A connection for one read transaction: its own (any thread) for a file store, the writer's in memory."""
        if self.in_memory:
            yield self._db
            return
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA query_only=1")
            db.execute(f"PRAGMA cache_size={-1024 * int(self.cache_mib)}")
            yield db
        finally:
            db.close()

    def add_tasks(self, tasks: Iterable[DispatchedFacts]) -> int:
        """Upsert dispatched tasks' routing facts; how many."""
        rows = [
            (
                t.task_id,
                t.unit_code,
                t.unit_name,
                t.role.value,
                t.matter_code,
                t.decision.matter_name,
                t.decision.township,
                int(t.decision.triage),
                _us(t.received_at),
            )
            for t in tasks
        ]
        self._write(_UPSERT_TASK, rows)
        return len(rows)

    def add_statuses(self, statuses: Iterable[StatusFacts]) -> int:
        """Upsert tasks' latest statuses (an older changed_at than the row's is ignored); how many were given."""
        rows = []
        for s in statuses:
            clock = s.resolve_clock
            due, paused = (None, None) if clock is None else (clock.due_at, clock.paused_since)
            rows.append(
                (
                    s.task_id,
                    s.status,
                    _us(due),
                    _us(s.resolved_at),
                    _us(s.replied_at),
                    s.satisfaction,
                    _us(s.changed_at),
                    _us(paused),
                )
            )
        self._write(_UPSERT_STATUS, rows)
        return len(rows)

    def forget_status(self, task_id: str) -> None:
        """A tombstone on tasks.status: the task's status is gone."""
        self._write(
            "UPDATE tasks SET status = NULL, resolve_due_us = NULL, resolved_us = NULL, replied_us = NULL, "
            "satisfaction = NULL, changed_us = NULL, resolve_paused_us = NULL WHERE task_id = ?",
            [(task_id,)],
        )

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Apply many records in one write transaction (all or none of them)."""
        # A commit per record (its WAL frames written each time, even with synchronous=OFF) was most of the
        # view's cost, ~100 µs of ~170 µs per task (a dispatched and a status record); a follower's chunk of up to
        # 1000 records is committed once. Readers (WAL snapshots) see a chunk at once instead of record by record.
        if self._db.in_transaction:
            yield
            return
        with self._transaction():
            yield

    def _write(self, sql: str, rows: Sequence[tuple[object, ...]]) -> None:
        if not rows:
            return
        if self._db.in_transaction:  # inside batch(): it commits
            self._db.executemany(sql, rows)
            return
        with self._transaction():
            self._db.executemany(sql, rows)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def apply_value(self, topic: str, key: bytes | None, value: bytes | None) -> bool:
        """Apply one record of tasks.dispatched or tasks.status (unprefixed name); False when it was unreadable."""
        try:
            if topic == DISPATCHED_TOPIC:
                if value is not None:
                    self.add_tasks([DispatchedFacts.model_validate_json(value)])
            elif topic == STATUS_TOPIC:
                if value is not None:
                    self.add_statuses([StatusFacts.model_validate_json(value)])
                elif key is not None:
                    self.forget_status(key.decode(errors="replace"))
        except ValidationError as exc:
            log.warning("report view skipped an unreadable record", extra={"topic": topic, "error": str(exc)[:300]})
            return False
        return True

    def read(self, period: Period, as_of: datetime) -> tuple[list[TaskFacts], list[Backlog]]:
        """In one snapshot: the tasks in a cohort of the week as of the cut-off, and the rest of the backlog counted
        per group; what `summarise` needs (any thread for a file store)."""
        with self.reader() as db:
            db.execute("BEGIN")
            try:
                return list(self._facts(db, period, as_of)), list(self._backlog(db, period, as_of))
            finally:
                db.execute("COMMIT")

    @staticmethod
    def _params(period: Period, as_of: datetime) -> dict[str, int | None]:
        cut = min(period.end, as_of)
        return {"start": _us(period.start), "end": _us(cut), "as_of": _us(as_of), "due_end": _us(cut)}

    def _backlog(self, db: sqlite3.Connection, period: Period, as_of: datetime) -> Iterator[Backlog]:
        for row in db.execute(_BACKLOG, self._params(period, as_of)):
            yield Backlog(
                unit_code=row[0],
                unit_name=row[1] or row[0],
                role=TaskRole(row[2]),
                matter_code=row[3],
                matter_name=row[4],
                township=row[5],
                triage=bool(row[6]),
                open=int(row[7]),
                overdue=int(row[8]),
            )

    def _facts(self, db: sqlite3.Connection, period: Period, as_of: datetime) -> Iterator[TaskFacts]:
        for row in db.execute(_IN_COHORT, self._params(period, as_of)):
            received = _at(row[8])
            if received is None:
                continue
            yield TaskFacts(
                task_id=row[0],
                unit_code=row[1],
                unit_name=row[2] or row[1],
                role=TaskRole(row[3]),
                matter_code=row[4],
                matter_name=row[5],
                township=row[6],
                triage=bool(row[7]),
                received_at=received,
                status=row[9],
                resolve_due=_at(row[10]),
                resolved_at=_at(row[11]),
                replied_at=_at(row[12]),
                satisfaction=row[13],
                changed_at=_at(row[14]),
                resolve_paused_since=_at(row[15]),
            )

    def prune(self, before: datetime) -> int:
        """Drop finished tasks received before `before` and status rows without a task changed before it."""
        cutoff = _us(before)
        with self._transaction():
            cursor = self._db.execute(
                "DELETE FROM tasks WHERE (unit_code IS NOT NULL AND received_us < ? "
                "AND (resolved_us IS NOT NULL OR status = 'returned')) "
                "OR (unit_code IS NULL AND changed_us < ?)",
                (cutoff, cutoff),
            )
        return int(cursor.rowcount)


def _remove_stale(directory: Path) -> None:
    """Remove scratch files a killed process left (its pid is in the name and no longer runs)."""
    for path in directory.glob(f"{SCRATCH_PREFIX}*.sqlite*"):
        pid = path.name.removeprefix(SCRATCH_PREFIX).split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        except PermissionError:
            continue  # another user's live process


def township_names(duty: DutyList) -> dict[str, str]:
    """Township code -> its name (城关镇, 河西乡), from the township centres of a duty list."""
    names: dict[str, str] = {}
    for unit in duty.units:
        if unit.kind != "township-centre" or unit.township is None:
            continue
        short = next((a for a in unit.aliases if a.endswith(("镇", "乡", "街道"))), None)
        names[unit.township] = short or unit.name.removesuffix("综治中心")
    return names


def summary_of(
    store: ReportStore,
    period: Period,
    now: datetime,
    calendar: WorkingCalendar,
    *,
    by: GroupBy,
    roles: frozenset[TaskRole] = PRIMARY_ONLY,
    duty: DutyList | None = None,
) -> Summary:
    """The bulletin of a week from a store: the one function behind the CLI and the HTTP endpoint."""
    duty = duty or load_duty_list()
    facts, backlog = store.read(period, min(now, period.end))
    return summarise(
        facts,
        period,
        now,
        calendar,
        by=by,
        roles=roles,
        township_names=township_names(duty),
        matter_names={m.code: m.name for m in duty.matters},
        county_name=duty.county.name,
        backlog=backlog,
    )


class ReportView:
    """The SLA worker's component: follows tasks.dispatched and tasks.status into a ReportStore; start/stop/ready."""

    def __init__(
        self,
        common: CommonSettings,
        registry: CollectorRegistry,
        calendar: WorkingCalendar,
        *,
        directory: Path | None = None,
        duty: DutyList | None = None,
        ready_timeout_s: float = 120.0,
        cache_s: float = 15.0,
        cache_mib: int = 8,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.common = common
        self.calendar = calendar
        self.duty = duty or load_duty_list()
        self.store = ReportStore.scratch(directory, cache_mib=cache_mib)
        self.ready_timeout_s = ready_timeout_s
        self.cache_s = cache_s
        self.clock = clock
        m = ServiceMetrics("sla", registry)
        self._lag = m.gauge(
            "report_view_lag", "records", "Records on the broker the report view has not read, by topic.", ("topic",)
        )
        self._tasks = m.gauge("report_view", "tasks", "Tasks in the report view (routing facts known).")
        self._records = m.counter("report_view_records", "Records read into the report view.", ("topic", "outcome"))
        # Labelled by unit code: a bounded set, the duty list's unit directory.
        self._unit_open = m.gauge("unit_open", "tasks", "Primary tasks open now, by unit (report view).", ("unit",))
        self._unit_overdue = m.gauge(
            "unit_overdue", "tasks", "Primary tasks open and past their resolve deadline now, by unit.", ("unit",)
        )
        self._unit_on_time = m.gauge(
            "unit_on_time",
            "ratio",
            "On-time closure rate of the current week so far (按期办结率), by unit; absent while none fell due.",
            ("unit",),
        )
        self.unit_gauges_every_s = UNIT_GAUGES_EVERY_S
        self._gauge_task: asyncio.Task[None] | None = None
        self._followers: list[TopicFollower] = []
        self._prune_task: asyncio.Task[None] | None = None
        self._cache: dict[tuple[str, GroupBy, frozenset[TaskRole]], tuple[float, Summary]] = {}
        self._computing = asyncio.Lock()

    def _applier(self, topic: str) -> Callable[[Records], None]:
        def apply(records: Records) -> None:
            good = 0
            with self.store.batch():
                for record in records:
                    good += self.store.apply_value(topic, record.key, record.value)
            self._records.labels(topic, "applied").inc(good)
            if good < len(records):
                self._records.labels(topic, "unreadable").inc(len(records) - good)

        return apply

    async def start(self) -> None:
        """Start both followers (returns at once; `ready()` tells when they have caught up)."""
        for topic in (DISPATCHED_TOPIC, STATUS_TOPIC):
            follower = TopicFollower(
                self.common,
                topic,
                self._applier(topic),
                self._lag.labels(topic),
                ready_timeout_s=self.ready_timeout_s,
                size=self._size,
            )
            await follower.start()
            self._followers.append(follower)
        self._prune_task = asyncio.create_task(self._prune_loop(), name="report-view-prune")
        self._gauge_task = asyncio.create_task(self._unit_gauge_loop(), name="report-view-unit-gauges")

    async def stop(self) -> None:
        """Stop the followers and close the store."""
        for task in (self._prune_task, self._gauge_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for follower in reversed(self._followers):
            await follower.stop()
        self._followers.clear()
        self.store.close()

    def ready(self) -> bool:
        """Both topics read up to where they stood at start (or the followers' ready timeout passed)."""
        return bool(self._followers) and all(f.ready for f in self._followers)

    def _size(self) -> int:
        size = len(self.store)
        self._tasks.set(size)
        return size

    async def _prune_loop(self) -> None:
        while True:
            if self.ready():
                pruned = self.store.prune(self.clock() - KEEP_FOR)
                if pruned:
                    log.info("report view pruned old tasks", extra={"pruned": pruned})
                self._size()
                await asyncio.sleep(PRUNE_EVERY_S)
            else:
                await asyncio.sleep(5.0)

    async def refresh_unit_gauges(self) -> None:
        """Set the per-unit open, overdue and on-time gauges from the current week's bulletin by unit."""
        now = self.clock()
        summary = await self.summary(week_containing(now), GroupBy.UNIT, now=now)
        rows = {row.key: row for row in summary.rows}
        for unit in self.duty.units:
            row = rows.get(unit.code)
            self._unit_open.labels(unit.code).set(row.open if row else 0)
            self._unit_overdue.labels(unit.code).set(row.overdue if row else 0)
            rate = row.on_time_rate if row else None
            if rate is None:
                with contextlib.suppress(KeyError):
                    self._unit_on_time.remove(unit.code)
            else:
                self._unit_on_time.labels(unit.code).set(float(rate))

    async def _unit_gauge_loop(self) -> None:
        while True:
            if not self.ready():
                await asyncio.sleep(1.0)  # the first count as soon as the view has caught up
                continue
            try:
                await self.refresh_unit_gauges()
            except Exception:  # a failed count must not stop the next ones; the log says why
                log.exception("per-unit gauges not refreshed")
            await asyncio.sleep(self.unit_gauges_every_s)

    async def summary(
        self, period: Period, by: GroupBy, *, roles: frozenset[TaskRole] = PRIMARY_ONLY, now: datetime | None = None
    ) -> Summary:
        """The bulletin of a week as the view has it now; the same request within `cache_s` gets the same answer.

        One summary is computed at a time, in a worker thread for a file store (reading its own snapshot while the
        followers write), so a large week never stalls the event loop the worker's timers run on.
        """
        key = (period.label, by, roles)
        async with self._computing:
            cached = self._cache.get(key)
            if cached is not None and time.monotonic() - cached[0] < self.cache_s:
                return cached[1]
            moment = now or self.clock()
            if self.store.in_memory:
                result = summary_of(self.store, period, moment, self.calendar, by=by, roles=roles, duty=self.duty)
            else:
                result = await asyncio.to_thread(
                    summary_of, self.store, period, moment, self.calendar, by=by, roles=roles, duty=self.duty
                )
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[key] = (time.monotonic(), result)
            return result
