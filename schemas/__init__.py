"""GridHub's contract: one versioned pydantic model per topic message, and the topic catalogue."""

from schemas.base import Message, new_id
from schemas.case import CaseLinked
from schemas.catalogue import CATALOGUE, TopicSpec, topic_spec
from schemas.command import (
    TRIAGE_KEY,
    ClaimTriagedEvent,
    DispatchTriagedEvent,
    QueueForTriage,
    ReleaseTriagedEvent,
    SummonDepartments,
    TriageCause,
)
from schemas.config import DUTYLIST_KEY, DutyListPublished, dutylist_sha256
from schemas.deadletter import ReportDeadLettered
from schemas.delivery import DeliveryAlertKind, DeliveryAlertRaised, DeliveryOutcome, DeliveryRecorded
from schemas.endpoint import EndpointChannel, EndpointSaved, NotificationType
from schemas.event import (
    Attachment,
    EventNormalised,
    Location,
    Reporter,
    SourceRef,
    Urgency,
)
from schemas.index import IndexOutcome, ReportIndexed
from schemas.raw import Channel, ReportReceived
from schemas.selfresolved import SelfResolvedRecorded
from schemas.sla import AlertKind, Clock, SlaAlertRaised, TaskStatus, TaskStatusChanged
from schemas.supplement import EventSupplemented
from schemas.task import (
    ClockKind,
    ClockTerm,
    DeadlineClass,
    DurationUnit,
    RoutingDecision,
    TaskDispatched,
    TaskDispatchedHeader,
    TaskReporter,
    TaskRole,
    Tier,
)
from schemas.update import TaskUpdated, UpdateKind

__all__ = [
    "CATALOGUE",
    "DUTYLIST_KEY",
    "TRIAGE_KEY",
    "AlertKind",
    "Attachment",
    "CaseLinked",
    "Channel",
    "ClaimTriagedEvent",
    "Clock",
    "ClockKind",
    "ClockTerm",
    "DeadlineClass",
    "DeliveryAlertKind",
    "DeliveryAlertRaised",
    "DeliveryOutcome",
    "DeliveryRecorded",
    "DispatchTriagedEvent",
    "DurationUnit",
    "DutyListPublished",
    "EndpointChannel",
    "EndpointSaved",
    "EventNormalised",
    "EventSupplemented",
    "IndexOutcome",
    "Location",
    "Message",
    "NotificationType",
    "QueueForTriage",
    "ReleaseTriagedEvent",
    "ReportDeadLettered",
    "ReportIndexed",
    "ReportReceived",
    "Reporter",
    "RoutingDecision",
    "SelfResolvedRecorded",
    "SlaAlertRaised",
    "SourceRef",
    "SummonDepartments",
    "TaskDispatched",
    "TaskDispatchedHeader",
    "TaskReporter",
    "TaskRole",
    "TaskStatus",
    "TaskStatusChanged",
    "TaskUpdated",
    "Tier",
    "TopicSpec",
    "TriageCause",
    "UpdateKind",
    "Urgency",
    "dutylist_sha256",
    "new_id",
    "topic_spec",
]
