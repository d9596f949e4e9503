"""The topic catalogue: every topic's name, key, value model, partitions, cleanup and retention."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.base import Message
from schemas.case import CaseLinked
from schemas.command import (
    ClaimTriagedEvent,
    DispatchTriagedEvent,
    QueueForTriage,
    ReleaseTriagedEvent,
    SummonDepartments,
)
from schemas.config import DutyListPublished
from schemas.deadletter import ReportDeadLettered
from schemas.delivery import DeliveryAlertRaised, DeliveryRecorded
from schemas.endpoint import EndpointSaved
from schemas.event import EventNormalised
from schemas.index import ReportIndexed
from schemas.raw import Channel, ReportReceived
from schemas.selfresolved import SelfResolvedRecorded
from schemas.sla import SlaAlertRaised, TaskStatusChanged
from schemas.supplement import EventSupplemented
from schemas.task import TaskDispatched
from schemas.update import TaskUpdated

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    """One topic of the hub. `name` has no deployment prefix; the kernel adds it."""

    name: str
    key: str
    value_model: type[Message]
    partitions: int
    cleanup_policy: str
    retention_ms: int
    description: str
    producers: tuple[str, ...] = ()
    consumers: tuple[str, ...] = ()
    also: tuple[type[Message], ...] = ()  # other message types on the topic, told apart by their `kind`

    @property
    def value_models(self) -> tuple[type[Message], ...]:
        """Every message type the topic carries, value_model first."""
        return (self.value_model, *self.also)

    def config(self) -> dict[str, str]:
        """Topic-level configs to create it with."""
        return topic_config(self.cleanup_policy, self.retention_ms)


def topic_config(cleanup_policy: str, retention_ms: int) -> dict[str, str]:
    """Topic-level configs for a cleanup policy and retention (retention applies where records are deleted)."""
    cfg = {"cleanup.policy": cleanup_policy}
    if "delete" in cleanup_policy.split(","):
        cfg["retention.ms"] = str(retention_ms)
    return cfg


@dataclass(frozen=True)
class InternalTopic:
    """A topic private to one service (its repartitioning and its state); the values are that service's own models."""

    name: str
    key: str
    partitions: int
    cleanup_policy: str
    retention_ms: int
    description: str
    service: str

    def config(self) -> dict[str, str]:
        """Topic-level configs to create it with."""
        return topic_config(self.cleanup_policy, self.retention_ms)


# Topics that a stage joins on the same key share a partition count (co-partitioning):
# the five raw topics and reports.index (intake's dedupe state), tasks.dispatched + tasks.updates (SLA's clocks).
PARTITIONS = 6

RAW_TOPICS: dict[Channel, str] = {channel: f"raw.{channel.value}" for channel in Channel}

CATALOGUE: tuple[TopicSpec, ...] = (
    *(
        TopicSpec(
            name=RAW_TOPICS[channel],
            key="source:source_id",
            value_model=ReportReceived,
            partitions=PARTITIONS,
            cleanup_policy="delete",
            retention_ms=90 * DAY_MS,
            description=f"Reports as received from the {channel.value} channel, untouched, for audit and replay.",
            producers=("adapters",),
            consumers=("intake",),
        )
        for channel in Channel
    ),
    TopicSpec(
        name="events.normalised",
        key="event_id",
        value_model=EventNormalised,
        partitions=PARTITIONS,
        cleanup_policy="delete",
        retention_ms=90 * DAY_MS,
        description="Canonical events after validation, normalisation and deduplication.",
        producers=("intake",),
        consumers=("router",),
    ),
    TopicSpec(
        name="reports.index",
        key="source:source_id",
        value_model=ReportIndexed,
        partitions=PARTITIONS,
        cleanup_policy="compact",
        retention_ms=-1,
        description=(
            "Which event each accepted source report became (compacted). Intake's dedupe state, co-partitioned "
            "with the raw topics; the adapters read it to answer a repeated report with its existing event id."
        ),
        producers=("intake",),
        consumers=("intake", "adapters"),
    ),
    TopicSpec(
        name="events.supplements",
        key="event_id",
        value_model=EventSupplemented,
        partitions=PARTITIONS,
        cleanup_policy="delete",
        retention_ms=90 * DAY_MS,
        description="Follow-ups that add a place, photos or words to an event already reported (WeChat).",
        producers=("intake",),
        consumers=(),
    ),
    TopicSpec(
        name="events.self-resolved",
        key="event_id",
        value_model=SelfResolvedRecorded,
        partitions=PARTITIONS,
        cleanup_policy="delete",
        retention_ms=365 * DAY_MS,
        description="Reports grid workers resolved on the spot (小事就地办结): recorded and counted, not dispatched.",
        producers=("intake",),
        consumers=(),
    ),
    TopicSpec(
        name="events.deadletter",
        key="original key",
        value_model=ReportDeadLettered,
        partitions=PARTITIONS,
        cleanup_policy="delete",
        retention_ms=365 * DAY_MS,
        description="Messages a stage rejected permanently, with the reason and original bytes.",
        producers=("intake", "router", "sla", "notifier"),
        consumers=(),
    ),
    TopicSpec(
        name="tasks.dispatched",
        key="task_id",
        value_model=TaskDispatched,
        partitions=PARTITIONS,
        cleanup_policy="delete",
        retention_ms=365 * DAY_MS,
        description="Tasks routed to units, one per unit and role (and routing round: re-routes after a return, "
        "manual dispatch, mediation ladder, summoned departments).",
        producers=("router",),
        consumers=("sla", "notifier", "adapters", "router"),
    ),
    TopicSpec(
        name="cases.links",
        key="case_id",
        value_model=CaseLinked,
        partitions=PARTITIONS,
        cleanup_policy="delete",
        retention_ms=365 * DAY_MS,
        description=(
            "Reports linked to a case already open (案件归并: same place, time and incident, another channel) "
            "instead of being dispatched again, with the explanation."
        ),
        producers=("router",),
        consumers=(),
    ),
    TopicSpec(
        name="router.commands",
        key="triage (constant: one queue)",
        value_model=QueueForTriage,
        also=(ClaimTriagedEvent, ReleaseTriagedEvent, DispatchTriagedEvent),
        partitions=PARTITIONS,
        cleanup_policy="delete",
        retention_ms=365 * DAY_MS,
        description=(
            "The command centre's triage queue (分拨): events queued by the router, claimed, released and "
            "dispatched by dispatchers through the router's /triage API; the record of who routed what by hand."
        ),
        producers=("router",),
        consumers=("router",),
    ),
    TopicSpec(
        name="tasks.updates",
        key="task_id",
        value_model=TaskUpdated,
        partitions=PARTITIONS,
        cleanup_policy="delete",
        retention_ms=365 * DAY_MS,
        description=(
            "Units' updates on their tasks (accepted, contacted, resolved, returned, mediation-failed...); the router "
            "closes the command centre's triage task when a dispatcher dispatches the event."
        ),
        producers=("adapters", "router"),
        consumers=("sla", "router"),
    ),
    TopicSpec(
        name="tasks.summons",
        key="task_id",
        value_model=SummonDepartments,
        partitions=PARTITIONS,
        cleanup_policy="delete",
        retention_ms=365 * DAY_MS,
        description="A township centre summons county departments onto its task (乡镇吹哨、部门报到).",
        producers=("adapters",),
        consumers=("router",),
    ),
    TopicSpec(
        name="tasks.status",
        key="task_id",
        value_model=TaskStatusChanged,
        partitions=PARTITIONS,
        cleanup_policy="compact",
        retention_ms=-1,
        description="The SLA service's latest view of each task (compacted).",
        producers=("sla",),
        consumers=(),
    ),
    TopicSpec(
        name="sla.alerts",
        key="task_id",
        value_model=SlaAlertRaised,
        partitions=PARTITIONS,
        cleanup_policy="delete",
        retention_ms=90 * DAY_MS,
        description="SLA warnings, overdue alerts and escalations, delivered by the notifier.",
        producers=("sla",),
        consumers=("notifier",),
    ),
    TopicSpec(
        name="deliveries.results",
        key="task_id",
        value_model=DeliveryRecorded,
        partitions=PARTITIONS,
        cleanup_policy="delete",
        retention_ms=90 * DAY_MS,
        description="Outcome of each webhook delivery with its attempts.",
        producers=("notifier",),
        consumers=(),
    ),
    TopicSpec(
        name="deliveries.alerts",
        key="task_id",
        value_model=DeliveryAlertRaised,
        partitions=PARTITIONS,
        cleanup_policy="delete",
        retention_ms=90 * DAY_MS,
        description=(
            "Deliveries the command centre must follow up (投递告警): a task or alert given up after every retry, "
            "an endpoint disabled (410, or failing too long). The notifier raises them and delivers them to the "
            "command centre's endpoints (alert.delivery); co-partitioned with tasks.dispatched."
        ),
        producers=("notifier",),
        consumers=("notifier",),
    ),
    TopicSpec(
        name="config.dutylist",
        key="dutylist (constant: the latest record is the list in force)",
        value_model=DutyListPublished,
        partitions=1,
        cleanup_policy="compact",
        retention_ms=-1,
        description=(
            "The duty list in force (权责清单), published whole with its version and digest by "
            "`gridhub dutylist publish`; every router replica follows it and switches at once, without restart."
        ),
        producers=("gridhub-cli",),  # gridhub dutylist publish
        consumers=("router",),
    ),
    TopicSpec(
        name="notifier.endpoints",
        key="endpoint_id",
        value_model=EndpointSaved,
        partitions=1,
        cleanup_policy="compact",
        retention_ms=-1,
        description=(
            "Units' notification endpoints (webhook, WeCom or DingTalk robot; filter, enabled, rotation), registered "
            "through the notifier's /v1/endpoints; compacted, a tombstone deletes one. Secrets and URLs are sealed "
            "(Fernet, GRIDHUB_NOTIFIER_SECRETS_KEY). Every notifier replica follows it whole."
        ),
        producers=("notifier",),
        consumers=("notifier",),
    ),
)

# The router's own topics (values: services/router models). Co-partitioned with one another and with the public
# topics it joins: one member of the router's group owns partition p of every one of them.
INTERNAL_TOPICS: tuple[InternalTopic, ...] = (
    InternalTopic(
        name="router.cases",
        key="township code (- when unknown)",
        partitions=PARTITIONS,
        cleanup_policy="delete",
        retention_ms=7 * DAY_MS,
        description="Events re-keyed by township, so reports of one incident from several channels meet in one "
        "partition for case merging (value: the EventNormalised bytes).",
        service="router",
    ),
    InternalTopic(
        name="router.open-cases",
        key="township|event_id",
        partitions=PARTITIONS,
        cleanup_policy="compact,delete",
        retention_ms=2 * DAY_MS,
        description="Recent reports of open cases per township partition (merging state; older than the merge "
        "window's retention they are dropped on restore, and the topic deletes them after two days).",
        service="router",
    ),
    InternalTopic(
        name="router.flows",
        key="event_id",
        partitions=PARTITIONS,
        cleanup_policy="delete",
        retention_ms=365 * DAY_MS,
        description="Each event's flow inputs: its first routing (with the event), units' returns and failed "
        "mediations, summons, manual dispatches. The first routings are also the flows' base state.",
        service="router",
    ),
    InternalTopic(
        name="router.flow-state",
        key="event_id, or pending:task_id",
        partitions=PARTITIONS,
        cleanup_policy="compact",
        retention_ms=-1,
        description="Flow states changed after the first routing, and updates held for tasks not yet seen "
        "(compacted; partition = the input's partition).",
        service="router",
    ),
)
TOPICS_TO_CREATE: tuple[TopicSpec | InternalTopic, ...] = (*CATALOGUE, *INTERNAL_TOPICS)

_BY_NAME = {spec.name: spec for spec in CATALOGUE}


def topic_spec(name: str) -> TopicSpec:
    """Look a topic up by its unprefixed name; KeyError names the known ones."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown topic {name!r}; known: {sorted(_BY_NAME)}") from None
