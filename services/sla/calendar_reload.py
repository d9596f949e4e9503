"""Loading a new statutory calendar at runtime and recounting the open tasks' clocks on it (issue 5).

Reload. `CalendarReloader` (a component of the SLA service) polls the files of `GRIDHUB_SLA_CALENDAR_FILES`
every `GRIDHUB_SLA_CALENDAR_POLL_S` (their size and mtime, then a digest of their bytes), and `POST
/calendar/reload` (operator key, `GRIDHUB_SLA_ADMIN_KEYS`) reloads at once. A file that fails to load (missing,
malformed, two files for one year) keeps the calendar in use, logs a warning and counts a `failed` reload.

Recompute. A new calendar replaces the handler's (updates and tasks processed from then on count on it; an
update to a task of a partition not yet recounted, or to a paused task, recounts it first: paused tasks have no
clock running and are not read), then every partition this worker owns is recounted: its open tasks, 2,000
at a time with the event loop free in between (the batch loop and the alert timer keep running), each with
`clocks.recompute`. For the tasks whose clocks moved, a `TaskStatusChanged` is produced to tasks.status
and acked first, then the new state is written with the same store commit a resume uses (timers replanned),
only where the stored state is still the one recounted (a batch committed since was computed on the new
calendar and wins). Tasks with a batch in flight wait for its commit and are recounted then.

Restarts. Each partition file records the calendar (a digest of the files) its open tasks were last recounted
on (`meta.calendar`), written once the whole partition is done. A partition assigned with another digest is
recounted again: tasks published but not written are published again (harmless on the compacted topic) and
written; tasks written are unchanged and not published again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from gridhub.kernel.http import ProblemJSONResponse
from gridhub.kernel.keys import bearer_token, key_is_one_of
from services.sla.calendar import WorkingCalendar
from services.sla.clocks import TaskClockState, recompute
from services.sla.store import PartitionStore, TaskEntry, facts_from_json, state_from_blob

if TYPE_CHECKING:
    from services.sla.worker import SlaHandler

log = logging.getLogger(__name__)
CHUNK = 2000  # open tasks read (and published) at a time
STEP = 100  # tasks recounted between yields to the event loop (~0.1 ms each)
WRITE_STEP = 25  # tasks written in one transaction between yields (~0.7 ms each: state, timers replanned)
DEFERRED_WAIT_S = 30.0  # longest a recount waits for in-flight batches of its tasks to commit

Publish = Callable[[Sequence[TaskClockState]], Awaitable[None]]


def calendar_digest(paths: Sequence[Path]) -> str:
    """A digest of the calendar files' names and bytes (OSError when one cannot be read)."""
    h = hashlib.sha256()
    for path in paths:
        h.update(str(path).encode() + b"\0")
        h.update(Path(path).read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:32]


def files_stamp(paths: Sequence[Path]) -> tuple[tuple[str, int, int], ...]:
    """Size and mtime of each file (-1 when missing): cheap change detection before reading them."""
    stamp = []
    for path in paths:
        try:
            st = Path(path).stat()
            stamp.append((str(path), st.st_mtime_ns, st.st_size))
        except OSError:
            stamp.append((str(path), -1, -1))
    return tuple(stamp)


@dataclass
class Recount:
    """What recounting one or more partitions did."""

    recomputed: int = 0
    changed: int = 0
    written: int = 0
    complete: bool = True


async def recompute_store(
    store: PartitionStore,
    calendar: WorkingCalendar,
    publish: Publish,
    *,
    uncommitted: Callable[[str], bool] = lambda _task_id: False,
    chunk: int = CHUNK,
    deferred_wait_s: float = DEFERRED_WAIT_S,
) -> Recount:
    """Recount a partition's open tasks on `calendar`: publish (acked) then write the ones that moved.

    `uncommitted(task_id)`: whether a batch not yet committed changed the task (it is recounted after its
    commit). Not complete when the store was closed meanwhile or a task stayed in flight too long."""
    result = Recount()
    deferred: list[str] = []

    async def handle(rows: list[tuple[str, bytes, bytes]]) -> None:
        moved: dict[str, tuple[bytes, TaskEntry]] = {}
        for index, (task_id, blob, facts) in enumerate(rows):
            if index % STEP == STEP - 1:
                await asyncio.sleep(0)  # keep every stretch without a yield short
            if uncommitted(task_id):
                deferred.append(task_id)
                continue
            old = state_from_blob(blob)
            state = recompute(old, calendar)
            result.recomputed += 1
            if state is not old:
                moved[task_id] = (blob, TaskEntry(state, facts_from_json(facts)))
        if not moved:
            return
        result.changed += len(moved)
        await publish([entry.state for _blob, entry in moved.values()])
        if store.closed:
            result.complete = False
            return
        # Published and acked: now the state (a crash in between publishes it again after the restart).
        keep = list(moved.items())
        for start in range(0, len(keep), WRITE_STEP):
            if store.closed:
                result.complete = False
                return
            part = {task_id: v for task_id, v in keep[start : start + WRITE_STEP] if not uncommitted(task_id)}
            result.written += len(store.replace_unchanged(part))
            await asyncio.sleep(0)

    after = ""
    while not store.closed:
        rows = store.open_rows(after, chunk)
        if not rows:
            break
        after = rows[-1][0]
        await handle(rows)
        await asyncio.sleep(0)  # the batch loop, the alert timer and the web server run between chunks
    deadline = time.monotonic() + deferred_wait_s
    while deferred and not store.closed:
        ready = [t for t in deferred if not uncommitted(t)]
        deferred = [t for t in deferred if uncommitted(t)]
        for start in range(0, len(ready), chunk):
            if store.closed:
                break
            await handle(store.rows(ready[start : start + chunk]))
            await asyncio.sleep(0)
        if deferred:
            if time.monotonic() > deadline:
                log.warning("tasks still in flight were not recounted", extra={"tasks": len(deferred)})
                result.complete = False
                break
            await asyncio.sleep(0.1)
    if store.closed:
        result.complete = False
    return result


@dataclass
class ReloadResult:
    """The answer of a reload."""

    outcome: str  # loaded, unchanged, failed
    calendar: WorkingCalendar
    recount: Recount = field(default_factory=Recount)
    error: str | None = None

    def body(self) -> dict[str, Any]:
        """The JSON answer of POST /calendar/reload."""
        return {
            "outcome": self.outcome,
            "years": sorted(self.calendar.covered_years()),
            "sources": {str(y): s for y, s in self.calendar.sources().items()},
            "fallback_years": sorted(self.calendar.fallback_years_used()),
            "recomputed": self.recount.recomputed,
            "changed": self.recount.changed,
            "complete": self.recount.complete,
        }


class CalendarReloader:
    """Background component: polls the calendar files and recounts partitions not on the current calendar."""

    def __init__(
        self,
        handler: SlaHandler,
        paths: Sequence[Path],
        publish: Publish,
        *,
        poll_s: float,
        on_calendar: Sequence[Callable[[WorkingCalendar], None]] = (),
    ) -> None:
        self.handler = handler
        self.paths = tuple(paths)
        self.publish = publish
        self.poll_s = poll_s
        self.on_calendar = tuple(on_calendar)
        self.stamp = files_stamp(self.paths)
        self.lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.in_flight: asyncio.Future[ReloadResult] | None = None  # the last POST's reload (kept referenced)

    async def start(self) -> None:
        """Start polling in the background."""
        self._task = asyncio.create_task(self._run(), name="sla-calendar-reload")

    async def stop(self) -> None:
        """Stop polling (a recount in flight is cancelled: the partitions' digests make the next start finish it)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        next_poll = time.monotonic() + self.poll_s
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_poll - time.monotonic())):
                    await self.handler.recount_wanted.wait()
            self.handler.recount_wanted.clear()  # partitions left stale are tried again at the next poll
            try:
                if time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + self.poll_s
                    if files_stamp(self.paths) != self.stamp:
                        await self.reload()
                if self.handler.stale_partitions:
                    async with self.lock:
                        await self.recount_stale()
                self.handler.publish_fallback_years()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("calendar reload or recount failed; trying again at the next poll")

    async def reload(self) -> ReloadResult:
        """Load the files again; on a new calendar, swap it in and recount every owned partition."""
        async with self.lock:
            handler = self.handler
            metrics = handler.metrics
            self.stamp = files_stamp(self.paths)
            try:
                digest = calendar_digest(self.paths)
                if digest == handler.calendar_digest:
                    metrics.calendar_reloads.labels("unchanged").inc()
                    return ReloadResult("unchanged", handler.calendar)
                calendar = WorkingCalendar.with_files(self.paths)
            except (OSError, ValueError) as exc:
                metrics.calendar_reloads.labels("failed").inc()
                log.warning(
                    "calendar files failed to load; keeping the calendar in use",
                    extra={"files": [str(p) for p in self.paths], "error": str(exc)},
                )
                return ReloadResult("failed", handler.calendar, error=str(exc))
            handler.use_calendar(calendar, digest)
            for callback in self.on_calendar:
                callback(calendar)
            metrics.calendar_reloads.labels("loaded").inc()
            log.info(
                "new calendar loaded; recounting open tasks",
                extra={"years": sorted(calendar.sources()), "partitions": sorted(handler.stale_partitions)},
            )
            recount = await self.recount_stale()
            handler.publish_fallback_years()
            return ReloadResult("loaded", calendar, recount)

    async def recount_stale(self) -> Recount:
        """Recount every owned partition not yet on the current calendar; mark each one done."""
        handler = self.handler
        total = Recount()
        for p in sorted(handler.stale_partitions):
            store = handler.stores.get(p)
            if store is None or store.closed:
                handler.stale_partitions.discard(p)
                continue
            digest = handler.calendar_digest
            started = time.monotonic()
            done = await recompute_store(
                store, handler.calendar, self.publish, uncommitted=functools.partial(handler.uncommitted, p)
            )
            handler.metrics.recomputed.inc(done.recomputed)
            handler.metrics.recomputed_changed.inc(done.changed)
            total.recomputed += done.recomputed
            total.changed += done.changed
            total.written += done.written
            if done.complete and digest == handler.calendar_digest and not store.closed:
                store.set_meta(calendar=digest)
                handler.stale_partitions.discard(p)
            else:
                total.complete = False
            log.info(
                "partition recounted on the calendar",
                extra={
                    "partition": p,
                    "recomputed": done.recomputed,
                    "changed": done.changed,
                    "seconds": round(time.monotonic() - started, 3),
                },
            )
        return total


def calendar_router(reloader: CalendarReloader, admin_keys: Sequence[str]) -> APIRouter:
    """`POST /calendar/reload`: load the calendar files now and recount the open tasks (operator key)."""
    router = APIRouter(tags=["calendar"])
    keys = frozenset(admin_keys)

    def problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> Response:
        body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
        return ProblemJSONResponse(body, status_code=status, headers=headers)

    @router.post("/calendar/reload")
    async def reload_calendar(request: Request) -> Response:
        header = request.headers.get("Authorization", "")
        if not key_is_one_of(keys, bearer_token(header)):
            return problem(
                401,
                "未授权",
                "缺少或错误的运维密钥（Authorization: Bearer ...，GRIDHUB_SLA_ADMIN_KEYS）。",
                {"WWW-Authenticate": "Bearer"},
            )
        # A client that gives up does not cancel the recount (it goes on; the next reload answers "unchanged").
        running = reloader.in_flight = asyncio.ensure_future(reloader.reload())
        result = await asyncio.shield(running)
        if result.outcome == "failed":
            return problem(
                422,
                "日历文件加载失败，继续使用原日历",
                f"节假日文件无法加载：{result.error}",
            )
        return JSONResponse(result.body())

    return router
