"""The router service: one batch loop (plain aiokafka) over its inputs, and its web server.

Inputs, all co-partitioned (one member of the group `router` owns partition p of each, range assignment):
`events.normalised` and `router.cases` (the first routing, `case_stage.py`), `router.flows`, `tasks.dispatched`,
`tasks.updates` and `tasks.summons` (after the first routing, `flow_stage.py`), `router.commands` (the triage
queue's owner, `triage_stage.py`). Each part keeps the state of its partitions in memory, changed under one
journal so that a rolled-back batch rolls the state back too, and rebuilt from topics when a partition is
assigned. The web server answers /metrics, /healthz, /readyz and the /triage API (`triage_api.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from gridhub.kernel.batchloop import BatchHandler
from gridhub.kernel.batchout import KafkaDeadLetters, Outgoing
from gridhub.kernel.batchserve import BatchService, batch_service
from gridhub.kernel.health import Health
from gridhub.kernel.journal import Journal
from gridhub.kernel.metrics import ServiceMetrics
from schemas.dutylist import DutyList, load_duty_list
from services.router.case_stage import CaseStage, RouteCounts
from services.router.duty_follower import DutyListFollower
from services.router.duty_versions import ActiveDutyList
from services.router.flow_stage import FlowStage
from services.router.settings import RouterSettings
from services.router.signature import TextRules
from services.router.triage_api import triage_router
from services.router.triage_stage import TriageOwner, TriageView

SERVICE = "router"
INPUTS = (
    "events.normalised",
    "router.cases",
    "router.flows",
    "tasks.dispatched",
    "tasks.updates",
    "tasks.summons",
    "router.commands",
)
log = logging.getLogger(__name__)


class RouterMetrics:
    """Router's decision, task, case, flow and triage counters and its latency histogram."""

    def __init__(self, registry: CollectorRegistry) -> None:
        m = ServiceMetrics(SERVICE, registry)
        self.decisions = m.counter(
            "decisions", "Routing decisions, by matter, tier and triage.", ("matter", "tier", "triage")
        )
        self.tasks = m.counter("tasks", "Tasks dispatched at the first routing, by role.", ("role",))
        # unit: the duty list's unit codes, a bounded set.
        self.unit_tasks = m.counter(
            "unit_tasks", "Tasks dispatched at the first routing, by unit and role.", ("unit", "role")
        )
        self.cases = m.counter(
            "cases",
            "Reports by case outcome: new (opened a case), linked (merged into one), separate (never merged).",
            ("outcome",),
        )
        self.processing = m.histogram("processing", "Time to decide and merge one event.")
        self.flow_inputs = m.counter(
            "flow_inputs",
            "Inputs to events' flows (routed, returned, mediation-failed, summoned, manual), by outcome.",
            ("input", "outcome"),
        )
        self.triage_commands = m.counter(
            "triage_commands",
            "Triage queue commands applied by the queue's owner, by kind and outcome.",
            ("command", "outcome"),
        )


class RouterHandler(BatchHandler):
    """Sends each record to its part by topic; restores, seals, commits and rolls back every part together."""

    def __init__(
        self,
        settings: RouterSettings,
        lists: Callable[[], DutyList],
        metrics: RouterMetrics,
        registry: CollectorRegistry,
        before_restore: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        common = settings.common
        self.before_restore = before_restore
        self.metrics = metrics
        self.journal = Journal()
        self.dead_letters = KafkaDeadLetters(common, SERVICE, registry)
        self.cases = CaseStage(
            common,
            lists,
            settings.merge_policy(),
            TextRules.load(),
            self.journal,
            merge_enabled=settings.merge_enabled,
        )
        self.flows = FlowStage(
            common,
            lists,
            settings.flow_policy(),
            self.journal,
            self.dead_letters,
            lambda kind, outcome: metrics.flow_inputs.labels(kind, outcome).inc(),
        )
        self.triage = TriageOwner(
            common, self.journal, lambda kind, outcome: metrics.triage_commands.labels(kind, outcome).inc()
        )
        t = common.topic
        self.parts: dict[str, Callable[[Any], Sequence[Outgoing]]] = {
            t("events.normalised"): self.cases.territory,
            t("router.cases"): self.cases.case,
            t("router.flows"): self.flows.flow,
            t("tasks.dispatched"): self.flows.task,
            t("tasks.updates"): self.flows.update,
            t("tasks.summons"): self.flows.summons,
            t("router.commands"): self.triage.command,
        }
        self.topics = [t(name) for name in INPUTS]

    async def restore(self, partitions: frozenset[TopicPartition]) -> None:
        """Rebuild every part's state of the partition numbers newly assigned (the same numbers of every input)."""
        if self.before_restore is not None:
            await self.before_restore()  # e.g. the published duty list read, so no event is decided on an old one
        numbers = {tp.partition for tp in partitions}
        await self.cases.restore(numbers)
        await self.flows.restore(numbers)
        await self.triage.restore(numbers)

    def revoked(self, partitions: frozenset[TopicPartition]) -> None:
        """Drop the state of partition numbers given away."""
        numbers = {tp.partition for tp in partitions}
        self.cases.revoked(numbers)
        self.flows.revoked(numbers)
        self.triage.revoked(numbers)

    def process(self, record: Any) -> Sequence[Outgoing]:
        """The outputs of one record of any input."""
        return self.parts[record.topic](record)

    def sealed(self) -> None:
        """The batch is complete: its state changes wait for its commit; its counts go to the metrics."""
        self.journal.seal()
        self._flush_counts()

    def committed(self) -> None:
        """The oldest batch committed: its state changes are final."""
        self.journal.commit_oldest()

    def rolled_back(self) -> None:
        """Undo the state changes of every batch that will be read again."""
        self.journal.rollback()
        self._flush_counts()

    def _flush_counts(self) -> None:
        counts, m = self.cases.counts, self.metrics
        for (matter, tier, triage), n in counts.decisions.items():
            m.decisions.labels(matter, tier, triage).inc(n)
        for role, n in counts.tasks.items():
            m.tasks.labels(role).inc(n)
        for (unit, role), n in counts.unit_tasks.items():
            m.unit_tasks.labels(unit, role).inc(n)
        for outcome, n in counts.cases.items():
            m.cases.labels(outcome).inc(n)
        for seconds in counts.seconds:
            m.processing.observe(seconds)
        self.cases.counts = RouteCounts()


def create_app(settings: RouterSettings, registry: CollectorRegistry, duty: DutyList | None = None) -> BatchService:
    """The router service: the batch loop over its inputs, the triage queue view, and the web server."""
    common = settings.common
    holder = ActiveDutyList(duty or load_duty_list(settings.duty_list))
    follower = DutyListFollower(common, holder, registry, ready_timeout_s=settings.dutylist_wait_s)

    def lists() -> DutyList:
        # Read once per record: a decision, its tasks and its recorded version all come from one list.
        return holder.current.duty

    metrics = RouterMetrics(registry)
    handler = RouterHandler(settings, lists, metrics, registry, lambda: follower.wait_ready(settings.dutylist_wait_s))
    view = TriageView(common, registry)
    health = Health(SERVICE)
    health.add("dutylist", follower.ready)
    health.add("triage-view", view.ready)
    service: BatchService | None = None

    def producer() -> Any:
        return service.loop.producer if service is not None else None

    service = batch_service(
        SERVICE,
        common,
        handler.topics,
        handler,
        registry,
        host=settings.host,
        port=settings.port,
        dead_letters=handler.dead_letters,
        routers=[triage_router(settings, lists, view, producer)],
        components=[follower, view],
        health=health,
    )
    return service


def main() -> None:
    """Entry point of `gridhub serve router`."""
    create_app(RouterSettings(), CollectorRegistry()).run()
