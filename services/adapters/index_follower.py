"""Follows topics into the adapters' local state: every partition, from the start, no group.

`reports.index` (compacted) feeds the ReportIndex; `tasks.dispatched` feeds its TaskOwners. One follower per
topic (the kernel's TopicFollower) with the function that applies a batch of its records; each is `ready` once
caught up. Serving before then is safe: intake still dedupes and the SLA service still checks owners.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ConfigDict, ValidationError

from gridhub.kernel.follower import ApplyRecords, Records, TopicFollower
from gridhub.kernel.kafka import decode
from gridhub.kernel.metrics import ServiceMetrics
from gridhub.kernel.settings import CommonSettings
from schemas.base import UlidStr
from schemas.index import ReportIndexed
from services.adapters.report_index import Applied, ReportIndex, TaskOwners
from services.adapters.settings import AdaptersSettings

INDEX_TOPIC = "reports.index"
DISPATCHED_TOPIC = "tasks.dispatched"
log = logging.getLogger(__name__)


def open_report_index(settings: AdaptersSettings, directory: Path | None) -> ReportIndex:
    """A ReportIndex in a new file under directory, unlinked at once (its disk is freed even after a SIGKILL).

    Without a directory (no follower: nothing but own acceptances to hold) it lives in memory.
    """
    ttl, cache_mib = settings.index_provisional_ttl_s, settings.index_cache_mib
    if directory is None:
        return ReportIndex(":memory:", provisional_ttl_s=ttl, cache_mib=cache_mib)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"report-index-{os.getpid()}-{uuid.uuid4().hex[:8]}.sqlite"
    index = ReportIndex(path, provisional_ttl_s=ttl, cache_mib=cache_mib)
    # The journal is in memory (journal_mode=MEMORY), so SQLite never needs the name again.
    path.unlink()
    return index


class IndexMetrics:
    """The followers' gauges and counters (gridhub_adapters_index_*, gridhub_adapters_task_owners_*)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        m = ServiceMetrics("adapters", registry)
        self.keys = m.gauge("index", "keys", "Reports in the local index (intake's records).")
        self.provisional = m.gauge("index_provisional", "keys", "This replica's acceptances not yet indexed by intake.")
        self.lag = m.gauge("index_lag", "records", "Index records on the broker not yet read (last fetch).")
        self.records = m.counter("index_records", "Index records read, by outcome.", ("outcome",))
        self.superseded = m.counter(
            "index_superseded", "Own acceptances intake indexed under another replica's event id (a race lost)."
        )
        self.owners = m.gauge("task_owners", "tasks", "Dispatched tasks whose unit the local index knows.")
        self.owners_lag = m.gauge("task_owners_lag", "records", "tasks.dispatched records not yet read (last fetch).")
        self.owner_records = m.counter("task_owner_records", "tasks.dispatched records read, by outcome.", ("outcome",))


class TaskOwner(BaseModel):
    """The two fields of a TaskDispatched the owner index needs; the rest of the record is not parsed into models."""

    model_config = ConfigDict(extra="ignore")

    task_id: UlidStr
    unit_code: str


def report_index_applier(index: ReportIndex, metrics: IndexMetrics) -> ApplyRecords:
    """The apply function of reports.index records (ReportIndexed, or a tombstone) into the ReportIndex."""

    def apply(records: Records) -> None:
        changes: list[tuple[str, str | None]] = []
        for record in records:
            if record.value is None:
                if record.key is not None:
                    changes.append((record.key.decode(errors="replace"), None))
                continue
            try:
                indexed = decode(ReportIndexed, record.value)
            except ValidationError as exc:
                metrics.records.labels("invalid").inc()
                log.warning("invalid index record skipped", extra={"offset": record.offset, "error": str(exc)[:300]})
                continue
            changes.append((indexed.dedupe_key, indexed.event_id))
        applied: Applied = index.apply(changes)
        metrics.records.labels("applied").inc(len(changes))
        metrics.keys.set(index.size)
        metrics.provisional.set(index.provisional)
        for key, mine, kept in applied.superseded:
            metrics.superseded.inc()
            log.info("another replica's acceptance won", extra={"dedupe_key": key, "answered": mine, "kept": kept})

    return apply


def task_owner_applier(owners: TaskOwners, metrics: IndexMetrics) -> ApplyRecords:
    """The apply function of tasks.dispatched records (task id -> unit code) into the TaskOwners."""

    def apply(records: Records) -> None:
        pairs: list[tuple[str, str]] = []
        for record in records:
            if record.value is None:
                continue  # a delete-cleanup topic: no tombstones are produced
            try:
                task = TaskOwner.model_validate_json(record.value)
            except ValidationError as exc:
                metrics.owner_records.labels("invalid").inc()
                log.warning("invalid task record skipped", extra={"offset": record.offset, "error": str(exc)[:300]})
                continue
            pairs.append((task.task_id, task.unit_code))
        owners.apply(pairs)
        metrics.owner_records.labels("applied").inc(len(pairs))
        metrics.owners.set(owners.size)

    return apply


def report_index_follower(
    common: CommonSettings, index: ReportIndex, metrics: IndexMetrics, *, ready_timeout_s: float
) -> TopicFollower:
    """The follower of reports.index into the ReportIndex."""
    apply = report_index_applier(index, metrics)
    return TopicFollower(
        common, INDEX_TOPIC, apply, metrics.lag, ready_timeout_s=ready_timeout_s, size=lambda: index.size
    )


def task_owner_follower(
    common: CommonSettings, owners: TaskOwners, metrics: IndexMetrics, *, ready_timeout_s: float
) -> TopicFollower:
    """The follower of tasks.dispatched into the TaskOwners."""
    apply = task_owner_applier(owners, metrics)
    return TopicFollower(
        common, DISPATCHED_TOPIC, apply, metrics.owners_lag, ready_timeout_s=ready_timeout_s, size=lambda: owners.size
    )
