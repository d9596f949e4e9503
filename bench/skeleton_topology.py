"""The real hub's Kafka topology per accepted report, as data: what each service reads and writes, how many records
per event and of what size. `hub_skeleton.py` runs it with no domain logic."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from schemas import Channel
from schemas.catalogue import RAW_TOPICS
from services.notifier.handler import INPUTS as NOTIFIER_INPUTS
from services.router.worker import INPUTS as ROUTER_INPUTS
from services.sla.worker import INPUTS as SLA_INPUTS

# --- the real hub's topology per accepted report --------------------------------------------------------------------
#
# Records per event and consumers: from the code (schemas/catalogue.py; services/intake/worker.py OUTCOME_TOPICS and
# process; services/router/worker.py INPUTS, case_stage.py _dispatch, flow_stage.py flow/task, triage_stage.py;
# services/sla/worker.py INPUTS and accept_task; services/notifier/handler.py INPUTS and engine.py; services/adapters
# index_follower.py and request_feed.py TOPICS), case merging off as in the bench's e2e. Ratios and sizes: measured
# in-process on 2026-11-23 by building the real messages (normalise → decide → build_tasks → routed_bytes /
# queue_command, start_clocks → status_event, DeliveryRecorded) for
#   * the labelled development set (tests/data/routing_devset.jsonl, 359 reports, all 47 matters; the router
#     stage's corpus): 2.23 tasks per event (1:59, 2:170, 3:117, 4:13 events), 0.111 triage commands per event,
#     event 955 B, routed 1,275 B, task 1,542 B, command 687 B;
#   * the e2e corpus (gridhub.demo.simulator work orders, 3,000 of them): 1.87 tasks per event (1:397, 2:2,603), no
#     triage, raw 664 B, event 968 B, reports.index 237 B, routed 1,248 B, task 1,580 B, tasks.status 1,646 B,
#     deliveries.results 533 B.
# The defaults are the development set's (the heavier, more varied mix); --tasks-per-event 1.87 --triage-per-event 0
# is the e2e corpus.
TASKS_PER_EVENT = 2.23
TRIAGE_PER_EVENT = 0.111
WORK_ORDER_BYTES = 420  # the body the adapters parse per report (a 12345 work order as POSTed)
RAW_CHANNELS = tuple(RAW_TOPICS.values())  # intake subscribes to all five; the reports arrive on raw.12345
RAW = RAW_TOPICS[Channel.HOTLINE_12345]
POST = "POST"  # the adapters' input: an HTTP request, not a topic
WEBHOOK = "webhook"  # the notifier's output to the receiver: an HTTP POST, not a topic


@dataclass(frozen=True)
class Emit:
    """Records a stage writes for the records of one input: `per_event` of them per accepted report.

    key: "report" (source:source_id), "event" (event id), "new-task" (a fresh task id per record), "task" (the
    input task's id) or "triage" (the one key of the triage queue).
    """

    on: str
    topic: str
    per_event: float
    size: int
    key: str = "event"
    after_acks: bool = False


@dataclass(frozen=True)
class Stage:
    """One service: its consumer group's topics, its group-less followers, and what it writes."""

    name: str
    subscribe: tuple[str, ...] = ()
    follow: tuple[tuple[str, ...], ...] = ()
    emits: tuple[Emit, ...] = ()


def topology(tasks_per_event: float = TASKS_PER_EVENT, triage_per_event: float = TRIAGE_PER_EVENT) -> tuple[Stage, ...]:
    """The hub's stages, merging off; topic names without the prefix."""
    t, c = tasks_per_event, triage_per_event
    return (
        Stage(
            "adapters",
            # IndexFollower, TaskOwner follower, RequestFeed (one consumer, three topics).
            follow=(("reports.index",), ("tasks.dispatched",), ("reports.index", "tasks.dispatched", "tasks.status")),
            emits=(Emit(POST, RAW, 1, 664, key="report"),),
        ),
        Stage(
            "intake",
            subscribe=RAW_CHANNELS,
            emits=(
                Emit(RAW, "events.normalised", 1, 968),
                Emit(RAW, "reports.index", 1, 237, key="report", after_acks=True),
            ),
        ),
        Stage(
            "router",
            subscribe=ROUTER_INPUTS,
            follow=(("config.dutylist",),),
            # Its own router.flows (first routings, stored), tasks.dispatched (task index) and router.commands
            # (triage queue) come back to it and write nothing more.
            emits=(
                Emit("events.normalised", "tasks.dispatched", t, 1560, key="new-task"),
                Emit("events.normalised", "router.flows", 1, 1260),
                Emit("events.normalised", "router.commands", c, 687, key="triage"),
            ),
        ),
        Stage(
            "sla",
            subscribe=SLA_INPUTS,
            emits=(Emit("tasks.dispatched", "tasks.status", t, 1646, key="task"),),
        ),
        Stage(
            "notifier",
            subscribe=NOTIFIER_INPUTS,
            follow=(("notifier.endpoints",),),
            emits=(
                Emit("tasks.dispatched", WEBHOOK, t, 0, key="task"),
                Emit("tasks.dispatched", "deliveries.results", t, 533, key="task"),
            ),
        ),
    )


def per_event(stages: Sequence[Stage], topic: str) -> float:
    """Records written to topic per accepted report (1 for the adapters' POSTs)."""
    if topic == POST:
        return 1.0
    return sum(e.per_event for s in stages for e in s.emits if e.topic == topic)


def readers(stages: Sequence[Stage], topic: str) -> list[str]:
    """Who reads topic: consumer groups by service name, group-less followers marked as such."""
    groups = [s.name for s in stages if topic in s.subscribe]
    follows = [f"{s.name} follower" for s in stages for topics in s.follow if topic in topics]
    return groups + follows


def topology_table(stages: Sequence[Stage]) -> str:
    """The topology as text: per stage, its inputs and outputs with records per event, and each topic's readers."""
    lines = [f"{'stage':<9} {'input (records/event)':<34} {'output (records/event, bytes)':<44} readers of the output"]
    for s in stages:
        for e in s.emits:
            inp = f"{e.on} ×{per_event(stages, e.on):.2f}"
            out = f"{e.topic} ×{e.per_event:.2f}" + (f", {e.size:,} B" if e.size else "")
            who = "receiver (HTTP)" if e.topic == WEBHOOK else ", ".join(readers(stages, e.topic)) or "–"
            lines.append(f"{s.name:<9} {inp:<34} {out:<44} {who}")
    return "\n".join(lines)
