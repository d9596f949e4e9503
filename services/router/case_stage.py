"""The router's first routing on the batch loop: events re-keyed by township, then decided, merged and dispatched.

* `events.normalised` (keyed by event id) → `router.cases`, keyed by the event's township (`-` when none is
  known): reports of one incident from several channels have different event ids, so different partitions;
  keyed by township they meet in one partition, owned by one worker. With merging off, the event is routed
  straight away instead.
* `router.cases` → `decide`; a report that joins an open case (`merging.find_case`) gets a `CaseLinked` on
  `cases.links` and no tasks; any other gets its tasks on `tasks.dispatched`, its first routing (`Routed`, the
  event's own bytes inside) on `router.flows`, and a triage decision also a `QueueForTriage` on `router.commands`.
  The open cases of partition p (township → recent reports) live in memory and on the compacted
  `router.open-cases` (one record per report, partition p, after the outputs are acked); a restore reads them
  back and drops what is older than the merge window's retention. A replayed event finds itself there and
  repeats its outcome: the same tasks (ids derive from the event) or the same link.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition
from pydantic import BaseModel, ConfigDict, ValidationError

from gridhub.kernel.batchloop import read_to_end
from gridhub.kernel.batchout import Outgoing
from gridhub.kernel.errors import PermanentError
from gridhub.kernel.journal import Journal
from gridhub.kernel.problems import describe_validation_error
from gridhub.kernel.settings import CommonSettings
from schemas import TRIAGE_KEY, EventNormalised, Location, TaskDispatched
from schemas.dutylist import DutyList
from services.router.decide import Decision, decide, locate
from services.router.flows import queue_command
from services.router.merging import (
    Candidate,
    MergePolicy,
    case_linked,
    exclusion_reason,
    is_mergeable,
    link_record,
    prune,
    report_features,
)
from services.router.open_cases import OpenCases
from services.router.signature import TextRules
from services.router.tasks import build_tasks

log = logging.getLogger(__name__)
NO_TERRITORY = b"-"


class EventPlace(BaseModel):
    """The fields of an EventNormalised that placing reads (the rest is skipped by the parser)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    location: Location
    title: str
    description: str


class RouteCounts:
    """Counts of one batch, added to the Prometheus counters once per batch (one locked update per label set)."""

    def __init__(self) -> None:
        self.decisions: dict[tuple[str, str, str], int] = {}
        self.tasks: dict[str, int] = {}
        self.unit_tasks: dict[tuple[str, str], int] = {}
        self.cases: dict[str, int] = {}
        self.seconds: list[float] = []

    def decided(self, matter: str, tier: str, triage: str, outcome: str, seconds: float) -> None:
        """Count one decision and its case outcome."""
        key = (matter, tier, triage)
        self.decisions[key] = self.decisions.get(key, 0) + 1
        self.cases[outcome] = self.cases.get(outcome, 0) + 1
        self.seconds.append(seconds)

    def dispatched(self, tasks: Sequence[TaskDispatched]) -> None:
        """Count tasks by role, and by unit and role."""
        for task in tasks:
            role = task.role.value
            self.tasks[role] = self.tasks.get(role, 0) + 1
            key = (task.unit_code, role)
            self.unit_tasks[key] = self.unit_tasks.get(key, 0) + 1


def routed_bytes(event_bytes: bytes, decision: Decision, tasks: Sequence[TaskDispatched]) -> bytes:
    """The `Routed` flow input of a first routing, around the event's bytes as they came (no re-serialising)."""
    cls = decision.classification
    confidence = cls.confidence if cls else decision.routing.confidence
    code = decision.routing.matter_code
    refs = ",".join(
        f'{{"task_id":"{t.task_id}","unit_code":{json.dumps(t.unit_code, ensure_ascii=False)},'
        f'"role":"{t.role.value}","round":0,"open":true}}'
        for t in tasks
    )
    tail = (
        f',"matter_code":{"null" if code is None else json.dumps(code, ensure_ascii=False)},'
        f'"confidence":{confidence!r},"triage":{"true" if decision.routing.triage else "false"},"tasks":[{refs}]}}'
    )
    return b'{"kind":"routed","event":' + event_bytes + tail.encode()


class CaseStage:
    """Territory re-keying, decisions, case merging and first dispatch for the partitions this worker owns."""

    def __init__(
        self,
        common: CommonSettings,
        lists: Callable[[], DutyList],
        policy: MergePolicy,
        rules: TextRules,
        journal: Journal,
        *,
        merge_enabled: bool,
    ) -> None:
        self.common = common
        self.lists = lists
        self.policy = policy
        self.rules = rules
        self.journal = journal
        self.merge_enabled = merge_enabled
        self.counts = RouteCounts()
        self.cases_topic = common.topic("router.cases")
        self.open_cases_topic = common.topic("router.open-cases")
        self.tasks_topic = common.topic("tasks.dispatched")
        self.links_topic = common.topic("cases.links")
        self.flows_topic = common.topic("router.flows")
        self.commands_topic = common.topic("router.commands")
        # partition -> township key -> recent reports of open cases (in arrival order, indexed by place)
        self.open_cases: dict[int, dict[bytes, OpenCases]] = {}

    # --- state of partitions -------------------------------------------------------------------------

    async def restore(self, partitions: set[int]) -> None:
        """Read the open cases of newly assigned partitions back from router.open-cases."""
        wanted = sorted(partitions - self.open_cases.keys())
        if not wanted:
            return
        found: dict[int, dict[bytes, list[Candidate]]] = {p: {} for p in wanted}

        def keep(record: Any) -> None:
            if record.value is None or record.key is None:
                return
            township = record.key.split(b"|", 1)[0]
            found[record.partition].setdefault(township, []).append(Candidate.model_validate_json(record.value))

        await read_to_end(self.common, [TopicPartition(self.open_cases_topic, p) for p in wanted], keep)
        for partition, townships in found.items():
            self.open_cases[partition] = {
                township: OpenCases(self.policy, prune(rows, max(r.report.received_at for r in rows), self.policy))
                for township, rows in townships.items()
            }
        log.info("open cases restored", extra={"partitions": wanted, "townships": sum(map(len, found.values()))})

    def revoked(self, partitions: set[int]) -> None:
        """Drop the state of partitions given away."""
        for p in partitions:
            self.open_cases.pop(p, None)

    # --- inputs --------------------------------------------------------------------------------------

    def territory(self, record: Any) -> Sequence[Outgoing]:
        """An event from intake: re-keyed by its township for merging (or routed at once, merging off)."""
        if not self.merge_enabled:
            return self._route(record, _event(record.value), self.lists(), merge=False)
        # Only what placing reads: the whole event is validated once, where it is decided (and dead-lettered
        # there if it is malformed).
        try:
            placed = EventPlace.model_validate_json(record.value)
        except ValidationError as exc:
            raise PermanentError("malformed-event", describe_validation_error(exc)) from exc
        _grid, township, _where = locate(placed, self.lists())
        return (Outgoing(self.cases_topic, record.value, township.encode() if township else NO_TERRITORY),)

    def case(self, record: Any) -> Sequence[Outgoing]:
        """An event of a township: decide, then link it to an open case or dispatch it."""
        return self._route(record, _event(record.value), self.lists(), merge=True)

    # --- deciding ------------------------------------------------------------------------------------

    def _route(self, record: Any, event: EventNormalised, duty: DutyList, *, merge: bool) -> Sequence[Outgoing]:
        started = time.perf_counter()
        decision = decide(event, duty)
        if merge:
            outcome, outs = self._merge_or_dispatch(record, event, decision, duty)
        else:
            outcome, outs = "new", self._dispatch(record.value, event, decision, duty)
        matter = decision.matter.code if decision.matter else "none"
        triage = "true" if decision.routing.triage else "false"
        self.counts.decided(matter, decision.tier.value, triage, outcome, time.perf_counter() - started)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "routed",
                extra={
                    "event_id": event.event_id,
                    "outcome": outcome,
                    "units": [a.unit_code for a in decision.assignments],
                    "reason": decision.routing.reason,
                },
            )
        return outs

    def _dispatch(
        self, event_bytes: bytes, event: EventNormalised, decision: Decision, duty: DutyList
    ) -> list[Outgoing]:
        tasks = build_tasks(event, decision, duty, datetime.now(UTC))
        self.counts.dispatched(tasks)
        outs = [Outgoing(self.tasks_topic, t.to_bytes(), t.task_id.encode()) for t in tasks]
        # Returns, summons and the triage queue start from here (a replay is recognised there too).
        outs.append(Outgoing(self.flows_topic, routed_bytes(event_bytes, decision, tasks), event.event_id.encode()))
        if decision.routing.triage:
            command = queue_command(event, decision, duty, datetime.now(UTC))
            outs.append(Outgoing(self.commands_topic, command.to_bytes(), TRIAGE_KEY.encode()))
        return outs

    def _merge_or_dispatch(
        self, record: Any, event: EventNormalised, decision: Decision, duty: DutyList
    ) -> tuple[str, list[Outgoing]]:
        if exclusion_reason(event) is not None:
            return "separate", self._dispatch(record.value, event, decision, duty)
        matter = decision.matter
        report = report_features(
            event,
            matter_code=matter.code if matter else None,
            matter_name=matter.name if matter else None,
            grid_code=decision.grid.code if decision.grid else None,
            rules=self.rules,
        )
        if not is_mergeable(report):
            return "separate", self._dispatch(record.value, event, decision, duty)
        township: bytes = record.key or NO_TERRITORY
        table = self.open_cases[record.partition]
        cases = table.get(township)
        if cases is not None and (seen := cases.prior(event.event_id)) is not None:
            # A replay (redelivery after a crash, or a re-run): answer exactly as the first time.
            if seen.link is not None:
                return "linked", [self._link_output(cases, seen, event)]
            return "new", self._dispatch(record.value, event, decision, duty)
        if cases is None:
            cases = OpenCases(self.policy)
            self.journal.set(table, township, cases)
        elif (pruned := cases.pruned(report.received_at)) is not None:
            cases = pruned
            self.journal.set(table, township, cases)
        match = cases.find(report)
        if match is None:
            row = Candidate(case_id=event.event_id, report=report)
        else:
            row = Candidate(case_id=match.case_id, report=report, link=link_record(match))
        cases.add(row)
        self.journal.undo(cases.remove_last)
        state = Outgoing(
            self.open_cases_topic,
            row.model_dump_json().encode(),
            township + b"|" + event.event_id.encode(),
            partition=record.partition,
            after_acks=True,
        )
        if row.link is not None:
            return "linked", [self._link_output(cases, row, event), state]
        return "new", [*self._dispatch(record.value, event, decision, duty), state]

    def _link_output(self, cases: OpenCases, row: Candidate, event: EventNormalised) -> Outgoing:
        link = case_linked(cases.rows, row, event.message_id)
        log.info(
            "linked",
            extra={"event_id": event.event_id, "case_id": link.case_id, "explanation": link.explanation},
        )
        return Outgoing(self.links_topic, link.to_bytes(), link.case_id.encode())


def _event(value: bytes) -> EventNormalised:
    try:
        return EventNormalised.model_validate_json(value)
    except ValidationError as exc:
        raise PermanentError("malformed-event", describe_validation_error(exc)) from exc
