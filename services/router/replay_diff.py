"""What a candidate duty list would route differently: recent events decided with both lists, compared; pure.

`gridhub dutylist diff FILE --replay` feeds it events read from events.normalised. An event routes differently
when its primary unit, its matter, its co-operating units or its going to triage differ; each aspect is counted
on its own (one event may count under several), and each differing event is listed, up to `max_rows`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from schemas import EventNormalised, TaskRole
from schemas.dutylist import DutyList
from services.router.decide import Decision, decide

# The aspects an event can route differently in, in the order reports list them.
ASPECTS = ("unit", "matter", "co-operating", "to-triage", "out-of-triage")


@dataclass(frozen=True)
class Routed:
    """One decision in brief: what a dispatcher would see change."""

    unit: str  # the primary unit (the command centre for triage)
    matter: str | None
    co_operating: tuple[str, ...]
    triage: bool
    confidence: float
    rule: str

    @classmethod
    def of(cls, decision: Decision) -> Routed:
        primary = next(a.unit_code for a in decision.assignments if a.role is TaskRole.PRIMARY)
        return cls(
            unit=primary,
            matter=decision.routing.matter_code,
            co_operating=tuple(sorted(a.unit_code for a in decision.assignments if a.role is TaskRole.CO_OPERATING)),
            triage=decision.routing.triage,
            confidence=decision.routing.confidence,
            rule=decision.routing.rule,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "matter": self.matter,
            "co_operating": list(self.co_operating),
            "triage": self.triage,
            "confidence": round(self.confidence, 2),
            "rule": self.rule,
        }


@dataclass(frozen=True)
class DiffRow:
    """One event the two lists route differently."""

    event_id: str
    channel: str
    title: str
    old: Routed
    new: Routed
    changes: tuple[str, ...]  # of ASPECTS

    def as_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "channel": self.channel,
            "title": self.title,
            "changes": list(self.changes),
            "old": self.old.as_dict(),
            "new": self.new.as_dict(),
        }


def changes(old: Routed, new: Routed) -> tuple[str, ...]:
    """The aspects in which two decisions of one event differ (empty: routed the same)."""
    found = []
    if old.unit != new.unit:
        found.append("unit")
    if old.matter != new.matter:
        found.append("matter")
    if old.co_operating != new.co_operating:
        found.append("co-operating")
    if new.triage and not old.triage:
        found.append("to-triage")
    if old.triage and not new.triage:
        found.append("out-of-triage")
    return tuple(found)


@dataclass
class DiffReport:
    """Counts of a replay and the events that would route differently."""

    old_version: str
    new_version: str
    replayed: int = 0
    same: int = 0
    different: int = 0
    by_aspect: Counter[str] = field(default_factory=Counter)
    # (old matter, old unit, new matter, new unit) -> events: where the differing events go instead
    moves: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    rows: list[DiffRow] = field(default_factory=list)
    rows_left_out: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "old_version": self.old_version,
            "new_version": self.new_version,
            "replayed": self.replayed,
            "same": self.same,
            "different": self.different,
            "different_unit": self.by_aspect["unit"],
            "different_matter": self.by_aspect["matter"],
            "different_co_operating": self.by_aspect["co-operating"],
            "newly_to_triage": self.by_aspect["to-triage"],
            "out_of_triage": self.by_aspect["out-of-triage"],
            "moves": [
                {"old_matter": om, "old_unit": ou, "new_matter": nm, "new_unit": nu, "events": n}
                for (om, ou, nm, nu), n in self.moves.most_common()
            ],
            "events": [row.as_dict() for row in self.rows],
            "events_left_out": self.rows_left_out,
        }


class ReplayDiff:
    """Decides events with two lists and keeps what differs; feed it events one by one (a replay streams)."""

    def __init__(self, old: DutyList, new: DutyList, *, max_rows: int = 1000) -> None:
        self.old = old
        self.new = new
        self.max_rows = max_rows
        self.report = DiffReport(old_version=old.version, new_version=new.version)

    def add(self, event: EventNormalised) -> DiffRow | None:
        """Decide one event with both lists; the row when they differ."""
        old, new = Routed.of(decide(event, self.old)), Routed.of(decide(event, self.new))
        report = self.report
        report.replayed += 1
        found = changes(old, new)
        if not found:
            report.same += 1
            return None
        report.different += 1
        report.by_aspect.update(found)
        report.moves[(old.matter or "—", old.unit, new.matter or "—", new.unit)] += 1
        row = DiffRow(event.event_id, event.sources[0].source.value, event.title, old, new, found)
        if len(report.rows) < self.max_rows:
            report.rows.append(row)
        else:
            report.rows_left_out += 1
        return row


def diff_decisions(
    events: Iterable[EventNormalised], old: DutyList, new: DutyList, *, max_rows: int = 1000
) -> DiffReport:
    """Route each event with the list in force (`old`) and a candidate (`new`); report what would change."""
    diff = ReplayDiff(old, new, max_rows=max_rows)
    for event in events:
        diff.add(event)
    return diff.report
