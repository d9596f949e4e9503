"""Intake's dedupe state: which event each accepted report became, per partition of the raw topics; pure.

The state of partition p is reports.index partition p (co-partitioned with the raw topics: same key, same count).
Entries added while a batch is processed are tentative until the batch commits, so a duplicate inside one batch is
caught, and a batch that is rolled back forgets its entries (they are read again with it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from gridhub.kernel.journal import Journal
from schemas import EventNormalised, EventSupplemented, ReportIndexed, ReportReceived, SelfResolvedRecorded
from schemas.index import IndexOutcome


class DedupeIndex:
    """dedupe key (source:source_id) -> event id, per partition, with uncommitted entries journaled per batch."""

    def __init__(self) -> None:
        self._entries: dict[int, dict[str, str]] = {}
        self._journal = Journal()

    @property
    def partitions(self) -> frozenset[int]:
        """Partitions whose state is loaded."""
        return frozenset(self._entries)

    def load(self, partition: int, entries: Iterable[tuple[str, str | None]]) -> None:
        """Replace a partition's state with index records in log order (None: a tombstone deletes the key)."""
        state: dict[str, str] = {}
        for key, event_id in entries:
            if event_id is None:
                state.pop(key, None)
            else:
                # The first record per key wins (ReportIndexed); a replay may have written the same one again.
                state.setdefault(key, event_id)
        self._entries[partition] = state

    def drop(self, partition: int) -> None:
        """Forget a partition this worker no longer owns."""
        self._entries.pop(partition, None)

    def get(self, partition: int, key: str) -> str | None:
        """The event id a report with this key already became, or None."""
        state = self._entries.get(partition)
        return state.get(key) if state is not None else None

    def add(self, partition: int, key: str, event_id: str) -> None:
        """Remember an accepted report, tentatively until its batch commits."""
        self._journal.set(self._entries.setdefault(partition, {}), key, event_id)

    def seal(self) -> None:
        """The current batch is complete."""
        self._journal.seal()

    def commit_oldest(self) -> None:
        """The oldest sealed batch is committed: its entries are final."""
        self._journal.commit_oldest()

    def rollback(self) -> None:
        """Forget every entry of batches not committed."""
        self._journal.rollback()

    def __len__(self) -> int:
        return sum(len(state) for state in self._entries.values())


def index_entry(key: bytes | None, value: bytes | None) -> tuple[str, str | None] | None:
    """(dedupe key, event id) of a reports.index record, (key, None) for a tombstone, None when unreadable.

    Restoring reads every record ever indexed, so it reads only the one field it needs: json.loads costs a
    third of validating a ReportIndexed.
    """
    if key is None:
        return None
    dedupe_key = key.decode("utf-8", "replace")
    if value is None:
        return dedupe_key, None
    try:
        event_id = json.loads(value).get("event_id")
    except (ValueError, AttributeError):
        return None
    return (dedupe_key, event_id) if isinstance(event_id, str) and event_id else None


@dataclass(frozen=True, slots=True)
class Route:
    """Where an outcome goes and what the index records for it."""

    topic: str
    key: str
    event_id: str
    kind: IndexOutcome
    label: str  # gridhub_intake_events_total{outcome}


def route(outcome: EventNormalised | SelfResolvedRecorded | EventSupplemented) -> Route:
    """The topic, key, index entry and metric label of what a report became."""
    if isinstance(outcome, EventNormalised):
        return Route("events.normalised", outcome.event_id, outcome.event_id, IndexOutcome.EVENT, "normalised")
    if isinstance(outcome, SelfResolvedRecorded):
        event_id = outcome.event.event_id
        return Route("events.self-resolved", event_id, event_id, IndexOutcome.SELF_RESOLVED, "self-resolved")
    # A supplement is keyed, and indexed, by the event it adds to.
    return Route("events.supplements", outcome.event_id, outcome.event_id, IndexOutcome.SUPPLEMENT, "supplemented")


def index_record(raw: ReportReceived, where: Route, now: datetime) -> ReportIndexed:
    """The reports.index record of an accepted report."""
    return ReportIndexed(
        causation_id=raw.message_id,
        source=raw.source,
        source_id=raw.source_id,
        event_id=where.event_id,
        outcome=where.kind,
        indexed_at=now,
    )


def _json_string(text: str) -> str:
    # Ids are nearly always plain printable ASCII without quotes or backslashes: quoting them is then enough,
    # and json.dumps (a third of this function's cost) is kept for the rest.
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return json.dumps(text, ensure_ascii=False)


def index_record_bytes(raw: ReportReceived, where: Route, indexed_at: str, message_id: str) -> bytes:
    """The reports.index record of an accepted report as wire bytes, identical to `index_record(...).to_bytes()`.

    Written out by hand because building and serialising the model costs ~11 µs, a tenth of intake's whole
    budget per report; tests hold the bytes equal to the model's own for awkward ids and times. `indexed_at`
    is the time as `json_time` writes it.
    """
    return index_bytes(
        message_id, raw.message_id, raw.source.value, raw.source_id, where.event_id, where.kind.value, indexed_at
    )


def index_bytes(
    message_id: str, causation_id: str, source: str, source_id: str, event_id: str, outcome: str, indexed_at: str
) -> bytes:
    """`index_record_bytes` from the values themselves (a channel's and an outcome's value, ULIDs, a json_time)."""
    return (
        f'{{"schema_version":{ReportIndexed.SCHEMA_VERSION},"message_id":"{message_id}",'
        f'"causation_id":{_json_string(causation_id)},"source":"{source}",'
        f'"source_id":{_json_string(source_id)},"event_id":"{event_id}",'
        f'"outcome":"{outcome}","indexed_at":"{indexed_at}"}}'
    ).encode()


def json_time(now: datetime) -> str:
    """A time as pydantic writes it in JSON: UTC as Z, any other offset kept."""
    return now.isoformat().replace("+00:00", "Z")
