"""The triage queue on the batch loop: the owner's fold that acts on dispatches, and every replica's view.

`router.commands` is keyed `triage`, so the whole queue is one partition in log order. Two folds of it with the
same pure `triage_book.step`:

* `TriageOwner`, part of the batch loop: the member of the router's group holding that partition applies every
  command (its items change under the loop's journal, so a rolled-back batch rolls them back) and hands a
  dispatcher's dispatch to the event's flow as a `ManualDispatch` on `router.flows`. A malformed command is
  dead-lettered. On assignment it reads the partition back from the start (the queue is small).
* `TriageView`, in every replica: a group-less follower of the topic whose items answer `GET /triage`, and which
  answers a `POST` once the command it sent comes back through the log (see `triage_api.py`). Any replica
  answers: no forwarding to an owner.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from gridhub.kernel.batchloop import read_to_end
from gridhub.kernel.batchout import Outgoing
from gridhub.kernel.errors import PermanentError
from gridhub.kernel.follower import Records, TopicFollower
from gridhub.kernel.journal import Journal
from gridhub.kernel.metrics import ServiceMetrics
from gridhub.kernel.problems import describe_validation_error
from gridhub.kernel.settings import CommonSettings
from schemas import QueueForTriage, TriageCause
from schemas.command import TRIAGE_COMMANDS
from services.router.flow_state import FLOW_INPUT
from services.router.triage import TriageCommand, TriageItem, TriageState
from services.router.triage_book import Step, step

log = logging.getLogger(__name__)
WAITING = (TriageState.QUEUED, TriageState.CLAIMED)
Answer = tuple[int, dict[str, Any]]
Counter = Callable[[str, str], None]


def _command(value: bytes) -> QueueForTriage | TriageCommand:
    return TRIAGE_COMMANDS.validate_json(value)


class TriageOwner:
    """The batch loop's part for router.commands: the queue's items, and manual dispatches handed to flows."""

    def __init__(self, common: CommonSettings, journal: Journal, count: Counter) -> None:
        self.common = common
        self.journal = journal
        self.count = count
        self.topic = common.topic("router.commands")
        self.flows_topic = common.topic("router.flows")
        self.items: dict[int, dict[str, TriageItem]] = {}

    async def restore(self, partitions: set[int]) -> None:
        """Fold the newly assigned partitions of router.commands from the start."""
        wanted = sorted(partitions - self.items.keys())
        folded: dict[int, dict[str, TriageItem]] = {p: {} for p in wanted}

        def fold(record: Any) -> None:
            try:
                command = _command(record.value)
            except ValidationError:
                return
            _apply(folded[record.partition], step(folded[record.partition], command))

        await read_to_end(self.common, [TopicPartition(self.topic, p) for p in wanted], fold)
        self.items.update(folded)

    def revoked(self, partitions: set[int]) -> None:
        """Drop the queue of partitions given away."""
        for p in partitions:
            self.items.pop(p, None)

    def command(self, record: Any) -> Sequence[Outgoing]:
        """Apply one command; a dispatch goes on to the event's flow."""
        try:
            command = _command(record.value)
        except ValidationError as exc:
            raise PermanentError("malformed-command", describe_validation_error(exc)) from exc
        items = self.items[record.partition]
        result = step(items, command)
        for event_id, item in result.changes.items():
            if item is None:
                self.journal.delete(items, event_id)
            else:
                self.journal.set(items, event_id, item)
        self.count(command.kind, result.outcome)
        if result.manual is None:
            return ()
        log.info("triage dispatch", extra={"event_id": command.event_id, "by": result.manual.command.dispatcher})
        return (Outgoing(self.flows_topic, FLOW_INPUT.dump_json(result.manual), command.event_id.encode()),)


def _apply(items: dict[str, TriageItem], result: Step) -> None:
    for event_id, item in result.changes.items():
        if item is None:
            items.pop(event_id, None)
        else:
            items[event_id] = item


class TriageView:
    """This replica's copy of the queue, following router.commands; answers the commands its API sent."""

    def __init__(self, common: CommonSettings, registry: CollectorRegistry, ready_timeout_s: float = 60.0) -> None:
        m = ServiceMetrics("router", registry)
        lag = m.gauge(
            "triage_view_lag", "records", "router.commands records not yet read by this replica's queue view."
        )
        self._backlog = m.gauge(
            "triage_backlog",
            "events",
            "Events in the triage queue not dispatched yet, by state and cause.",
            ("state", "cause"),
        )
        self._oldest = m.gauge(
            "triage_oldest_queued",
            "timestamp_seconds",
            "When the longest-waiting undispatched event was queued (0: none).",
        )
        self.items: dict[str, TriageItem] = {}
        self._waiters: dict[str, asyncio.Future[Answer]] = {}
        self.follower = TopicFollower(
            common, "router.commands", self._apply, lag, ready_timeout_s=ready_timeout_s, size=lambda: len(self.items)
        )
        self._count_backlog()

    async def start(self) -> None:
        """Start following the topic."""
        await self.follower.start()

    async def stop(self) -> None:
        """Stop following."""
        await self.follower.stop()

    def ready(self) -> bool:
        """True once the view has read what the topic held at start."""
        return self.follower.ready

    def expect(self, command_id: str) -> asyncio.Future[Answer]:
        """A future answered when the command with this id is read back from the log."""
        waiter: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiters[command_id] = waiter
        return waiter

    def forget(self, command_id: str) -> None:
        """Stop waiting for a command."""
        self._waiters.pop(command_id, None)

    def _apply(self, records: Records) -> None:
        for record in records:
            if record.value is None:
                continue
            try:
                command = _command(record.value)
            except ValidationError:
                continue  # the owner dead-letters it
            result = step(self.items, command)
            _apply(self.items, result)
            waiter = self._waiters.pop(command.message_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result((result.status, result.body))
        self._count_backlog()

    def _count_backlog(self) -> None:
        # Every (state, cause) pair is set, zeros included, so a drained queue reads 0 rather than a stale count.
        counts = {(state, cause): 0 for state in WAITING for cause in TriageCause}
        oldest: datetime | None = None
        for item in self.items.values():
            if item.state in WAITING:
                counts[(item.state, item.cause)] += 1
                oldest = item.queued_at if oldest is None else min(oldest, item.queued_at)
        for (state, cause), n in counts.items():
            self._backlog.labels(state.value, cause.value).set(n)
        self._oldest.set(oldest.timestamp() if oldest is not None else 0)
