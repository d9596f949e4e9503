"""Router's Kafka wiring: events.normalised in; tasks.dispatched, or cases.links for a merged report, out.

What happens after the first routing (returns, the triage queue and its API, the mediation ladder, summons)
is wired in `flows_wiring.py` and `triage_api.py`.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import faust
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from gridhub.kernel.faust_app import make_faust_app
from gridhub.kernel.metrics import ServiceMetrics
from gridhub.kernel.problems import describe_validation_error
from gridhub.kernel.service import prepare, run_worker
from gridhub.kernel.streams import DeadLetters, bytes_topic
from schemas import CaseLinked, EventNormalised
from schemas.catalogue import PARTITIONS
from schemas.dutylist import DutyList, load_duty_list
from services.router.decide import Decision, decide, locate
from services.router.flows_wiring import install_flows
from services.router.merging import (
    Candidate,
    case_linked,
    exclusion_reason,
    find_case,
    is_mergeable,
    link_record,
    prior,
    prune,
    report_features,
)
from services.router.settings import RouterSettings
from services.router.signature import TextRules
from services.router.tasks import build_tasks
from services.router.triage_api import install_triage

SERVICE = "router"
# Table key (and repartition key) of events whose township cannot be told; they can merge only among themselves.
NO_TERRITORY = b"-"
log = logging.getLogger(__name__)


class RouterMetrics:
    """Router's decision, task and case counters and latency histogram."""

    def __init__(self, registry: CollectorRegistry) -> None:
        m = ServiceMetrics(SERVICE, registry)
        self.decisions = m.counter(
            "decisions", "Routing decisions, by matter, tier and triage.", ("matter", "tier", "triage")
        )
        self.tasks = m.counter("tasks", "Tasks dispatched, by role.", ("role",))
        self.cases = m.counter(
            "cases",
            "Reports by case outcome: new (opened a case), linked (merged into one), separate (never merged).",
            ("outcome",),
        )
        self.processing = m.histogram("processing", "Time to route one event.")


def create_app(settings: RouterSettings, registry: CollectorRegistry, duty: DutyList | None = None) -> faust.App:
    """The router Faust app: one decision per event; tasks for a new case, a link for a merged report."""
    common = settings.common
    duty = duty or load_duty_list(settings.duty_list)
    policy = settings.merge_policy()
    rules = TextRules.load()
    matter_codes = {m.code for m in duty.matters}
    app = make_faust_app(
        SERVICE, common, web_port=settings.port, web_host=settings.host, canonical_url=settings.canonical_url()
    )
    metrics = RouterMetrics(registry)
    prepare(app, SERVICE, registry)

    events_in = bytes_topic(app, common, "events.normalised")
    tasks_out = bytes_topic(app, common, "tasks.dispatched")
    links_out = bytes_topic(app, common, "cases.links")
    dead_letters = DeadLetters(app, common, SERVICE, registry)
    # Reports of one incident come from different channels with different event ids (so different
    # partitions of events.normalised); re-keyed by township they meet in one partition and one table entry.
    by_territory = app.topic(
        common.topic(f"{SERVICE}-open-cases-repartition"),
        internal=True,
        partitions=PARTITIONS,
        key_serializer="raw",
        value_serializer="raw",
    )
    # township code -> recent reports of open cases (JSON list of Candidate), changelog-backed.
    open_cases = app.Table("open-cases", default=None, key_type=bytes, partitions=PARTITIONS)
    flows = install_flows(app, common, duty, settings.flow_policy(), dead_letters, tasks_out, registry)
    install_triage(app, settings, duty, dead_letters, flows, registry)

    async def dispatch(event: EventNormalised, decision: Decision) -> None:
        tasks = build_tasks(event, decision, duty, datetime.now(UTC))
        for task in tasks:
            await tasks_out.send(key=task.task_id.encode(), value=task.to_bytes())
            metrics.tasks.labels(task.role.value).inc()
        # Returns, summons and the triage queue start from here (a replay is recognised there too).
        await flows.routed(event, decision, tasks, duty)

    async def publish_link(link: CaseLinked, event: EventNormalised) -> None:
        await links_out.send(key=link.case_id.encode(), value=link.to_bytes())
        log.info(
            "linked",
            extra={"event_id": event.event_id, "case_id": link.case_id, "explanation": link.explanation},
        )

    async def merge_or_dispatch(key: bytes, event: EventNormalised, decision: Decision) -> str:
        if exclusion_reason(event) is not None:
            await dispatch(event, decision)
            return "separate"
        matter = decision.matter
        report = report_features(
            event,
            matter_code=matter.code if matter else None,
            matter_name=matter.name if matter else None,
            grid_code=decision.grid.code if decision.grid else None,
            rules=rules,
        )
        if not is_mergeable(report):
            await dispatch(event, decision)
            return "separate"
        rows = [Candidate.model_validate(raw) for raw in open_cases.get(key) or []]
        if (seen := prior(rows, event.event_id)) is not None:
            # A replay (redelivery after a crash, or a re-run): answer exactly as the first time.
            if seen.link is not None:
                await publish_link(case_linked(rows, seen, event.message_id), event)
                return "linked"
            await dispatch(event, decision)
            return "new"
        rows = prune(rows, report.received_at, policy)
        match = find_case(report, rows, policy)
        if match is None:
            row = Candidate(case_id=event.event_id, report=report)
        else:
            row = Candidate(case_id=match.case_id, report=report, link=link_record(match))
        rows.append(row)
        link = case_linked(rows, row, event.message_id) if row.link is not None else None
        # The table first: a crash before the sends replays into the branch above, with the same outcome.
        open_cases[key] = [c.model_dump(mode="json") for c in prune(rows, report.received_at, policy)]
        if link is not None:
            await publish_link(link, event)
            return "linked"
        await dispatch(event, decision)
        return "new"

    async def decide_event(key: bytes, event: EventNormalised, *, merge: bool) -> None:
        started = time.perf_counter()
        decision = decide(event, duty)
        if merge:
            outcome = await merge_or_dispatch(key, event, decision)
        else:
            await dispatch(event, decision)
            outcome = "new"
        metrics.cases.labels(outcome).inc()
        matter = decision.matter.code if decision.matter and decision.matter.code in matter_codes else "none"
        metrics.decisions.labels(matter, decision.tier.value, str(decision.routing.triage).lower()).inc()
        metrics.processing.observe(time.perf_counter() - started)
        log.debug(
            "routed",
            extra={
                "event_id": event.event_id,
                "outcome": outcome,
                "units": [a.unit_code for a in decision.assignments],
                "reason": decision.routing.reason,
            },
        )

    @app.agent(events_in, name="route-events")
    async def route_events(stream: faust.StreamT[bytes]) -> None:
        async for item in stream.events():
            message = item.message
            try:
                event = EventNormalised.model_validate_json(message.value)
            except ValidationError as exc:
                await dead_letters.event(item, "malformed-event", describe_validation_error(exc))
                continue
            if not settings.merge_enabled:
                await decide_event(NO_TERRITORY, event, merge=False)
                continue
            _grid, township, _where = locate(event, duty)
            await by_territory.send(key=township.encode() if township else NO_TERRITORY, value=message.value)

    @app.agent(by_territory, name="merge-cases")
    async def cases(stream: faust.StreamT[bytes]) -> None:
        async for item in stream.events():
            try:
                event = EventNormalised.model_validate_json(item.message.value)
            except ValidationError as exc:  # only bytes this app wrote arrive here; kept for safety
                await dead_letters.event(item, "malformed-event", describe_validation_error(exc))
                continue
            await decide_event(item.message.key or NO_TERRITORY, event, merge=True)

    return app


def main() -> None:
    """Entry point of `gridhub serve router`."""
    settings = RouterSettings()
    run_worker(create_app(settings, CollectorRegistry()), settings.common, SERVICE)
