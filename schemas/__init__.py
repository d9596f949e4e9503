"""GridHub's contract: one versioned pydantic model per topic message, and the topic catalogue."""

from schemas.base import Message, new_id
from schemas.catalogue import CATALOGUE, TopicSpec, topic_spec
from schemas.deadletter import ReportDeadLettered
from schemas.delivery import DeliveryOutcome, DeliveryRecorded
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
    TaskRole,
    Tier,
)
from schemas.update import TaskUpdated, UpdateKind

__all__ = [
    "CATALOGUE",
    "AlertKind",
    "Attachment",
    "Channel",
    "Clock",
    "ClockKind",
    "ClockTerm",
    "DeadlineClass",
    "DeliveryOutcome",
    "DeliveryRecorded",
    "DurationUnit",
    "EventNormalised",
    "EventSupplemented",
    "IndexOutcome",
    "Location",
    "Message",
    "ReportDeadLettered",
    "ReportIndexed",
    "ReportReceived",
    "Reporter",
    "RoutingDecision",
    "SelfResolvedRecorded",
    "SlaAlertRaised",
    "SourceRef",
    "TaskDispatched",
    "TaskRole",
    "TaskStatus",
    "TaskStatusChanged",
    "TaskUpdated",
    "Tier",
    "TopicSpec",
    "UpdateKind",
    "Urgency",
    "new_id",
    "topic_spec",
]
