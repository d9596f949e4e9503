"""Routing decisions: which matter, which territory, which units; pure and explainable."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime

from ulid import ULID

from schemas import (
    ClockKind,
    ClockTerm,
    DeadlineClass,
    DurationUnit,
    EventNormalised,
    RoutingDecision,
    TaskDispatched,
    TaskRole,
    Tier,
    Urgency,
)
from schemas.dutylist import TOWNSHIP, DutyList, Grid, Matter

# A grid centre further away than this does not place an event (coordinates outside the county).
MAX_GRID_DISTANCE_KM = 5.0


@dataclass(frozen=True)
class Classification:
    """The matter chosen for an event, by which rule, how sure, and why."""

    matter: Matter | None
    rule: str
    confidence: float
    reason: str


def classify(event: EventNormalised, duty: DutyList) -> Classification:
    """Explicit category, then the channel's own category, then weighted keywords."""
    declared = event.declared_category
    if declared and (matter := duty.matter(declared)):
        return Classification(matter, "explicit-category", 1.0, f"报送时已指定事项 {matter.code}")
    channel = event.sources[0].source.value
    if declared and (code := duty.channel_categories.get(channel, {}).get(declared)):
        matter = duty.matter(code)
        return Classification(matter, "channel-category", 0.9, f"{channel} 分类“{declared}”对应事项 {code}")
    text = f"{event.title}\n{event.description}"
    best: tuple[int, Matter, list[str]] | None = None
    for matter in duty.matters:
        hits = [word for word in matter.keywords if word in text]
        score = sum(matter.keywords[w] for w in hits)
        if hits and (best is None or score > best[0]):
            best = (score, matter, hits)
    if best is None:
        return Classification(None, "triage", 0.0, "未匹配任何事项关键词")
    score, matter, hits = best
    # Two points of keyword weight is one clear term ("下水道"); each further point adds certainty.
    confidence = round(min(0.95, 0.3 + 0.15 * score), 2)
    return Classification(matter, "keywords", confidence, f"关键词 {'、'.join(hits)}（权重 {score}）")


def _distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    rlat1, rlat2 = math.radians(lat1), math.radians(lat2)
    a = (
        math.sin((rlat2 - rlat1) / 2) ** 2
        + math.cos(rlat1) * math.cos(rlat2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 6371.0 * 2 * math.asin(math.sqrt(a))


def locate(event: EventNormalised, duty: DutyList) -> tuple[Grid | None, str | None, str]:
    """The event's grid and township, from grid code, coordinates or the named township."""
    loc = event.location
    if loc.grid_code:
        grid = next((g for g in duty.grids if g.code == loc.grid_code), None)
        if grid:
            return grid, grid.township, f"网格 {grid.code}"
    if loc.lat is not None and loc.lon is not None and duty.grids:
        grid = min(duty.grids, key=lambda g: _distance_km(loc.lat or 0, loc.lon or 0, g.lat, g.lon))
        km = _distance_km(loc.lat, loc.lon, grid.lat, grid.lon)
        if km <= MAX_GRID_DISTANCE_KM:
            return grid, grid.township, f"坐标距网格 {grid.code} 中心 {km:.1f} km"
    for text in (loc.district, loc.address):
        if not text:
            continue
        for unit in duty.units:
            if unit.kind == "township-centre" and any(alias in text for alias in (unit.name, *unit.aliases)):
                return None, unit.township, f"地址含“{next(a for a in (unit.name, *unit.aliases) if a in text)}”"
    return None, None, "无网格、坐标或乡镇信息"


@dataclass(frozen=True)
class Assignment:
    """One unit that gets a task copy, with its role."""

    unit_code: str
    role: TaskRole


@dataclass(frozen=True)
class Decision:
    """The router's full answer for one event."""

    matter: Matter | None
    tier: Tier
    assignments: tuple[Assignment, ...]
    routing: RoutingDecision


def decide(event: EventNormalised, duty: DutyList) -> Decision:
    """Route an event: matter, territory, primary and co-operating units, or triage."""
    cls = classify(event, duty)
    _grid, township, where = locate(event, duty)
    triage_reason = None
    if cls.matter is None or cls.confidence < duty.confidence_threshold:
        triage_reason = f"置信度 {cls.confidence:.2f} 低于阈值 {duty.confidence_threshold:.2f}"
    # Only a township-led matter needs a place; a county department acts county-wide.
    needs_territory = cls.matter is not None and cls.matter.primary == TOWNSHIP
    if triage_reason is None and needs_territory and township is None:
        triage_reason = f"属地事项但无法确定乡镇（{where}）"
    if triage_reason is not None or cls.matter is None:
        centre = duty.county.command_centre
        return Decision(
            matter=cls.matter,
            tier=Tier.COMMAND_CENTRE,
            assignments=(Assignment(centre, TaskRole.PRIMARY),),
            routing=RoutingDecision(
                matter_code=cls.matter.code if cls.matter else None,
                matter_name=cls.matter.name if cls.matter else None,
                rule="triage",
                confidence=cls.confidence,
                reason=f"转指挥中心人工分拨：{triage_reason}；{cls.reason}；{where}",
                duty_list_version=duty.version,
                triage=True,
            ),
        )
    matter = cls.matter

    def resolve(ref: str) -> str | None:
        if ref != TOWNSHIP:
            return ref
        return duty.township_centre(township).code if township else None

    primary = resolve(matter.primary)
    assert primary is not None  # township-led matters without a township went to triage above
    co_ops = tuple(dict.fromkeys(c for c in map(resolve, matter.co_operating) if c and c != primary))
    assignments = (Assignment(primary, TaskRole.PRIMARY), *(Assignment(c, TaskRole.CO_OPERATING) for c in co_ops))
    return Decision(
        matter=matter,
        tier=matter.tier,
        assignments=assignments,
        routing=RoutingDecision(
            matter_code=matter.code,
            matter_name=matter.name,
            rule=cls.rule,
            confidence=cls.confidence,
            reason=f"{cls.reason}；{where}；{'乡镇属地办理' if matter.tier is Tier.TOWNSHIP else '县直部门办理'}",
            duty_list_version=duty.version,
        ),
    )


def task_id_for(event_id: str, unit_code: str, role: TaskRole) -> str:
    """A task id that is the same every time the same event is routed to the same unit and role."""
    # Deterministic so a replayed event yields the same task (and the same webhook-id downstream).
    timestamp_ms = ULID.from_str(event_id).milliseconds  # integer ms: float seconds lose 1 ms past 2038
    digest = hashlib.sha256(f"{event_id}|{unit_code}|{role.value}".encode()).digest()[:10]
    return str(ULID.from_bytes(timestamp_ms.to_bytes(6, "big") + digest))


def build_tasks(event: EventNormalised, decision: Decision, duty: DutyList, now: datetime) -> list[TaskDispatched]:
    """One TaskDispatched per assignment of a decision; an urgent report always gets the 2-hour class."""
    urgent = event.urgency is Urgency.URGENT
    deadline_class = (
        DeadlineClass.URGENT
        if urgent
        else (decision.matter.deadline_class if decision.matter else DeadlineClass.STANDARD)
    )
    resolve_term = duty.deadline_classes[deadline_class]["resolve"]
    terms = (
        ClockTerm(kind=ClockKind.CONTACT, amount=duty.contact_within_hours, unit=DurationUnit.HOURS),
        ClockTerm(kind=ClockKind.RESOLVE, amount=resolve_term.amount, unit=resolve_term.unit),
    )
    return [
        TaskDispatched(
            causation_id=event.message_id,
            task_id=task_id_for(event.event_id, a.unit_code, a.role),
            event_id=event.event_id,
            unit_code=a.unit_code,
            unit_name=duty.unit(a.unit_code).name,
            role=a.role,
            matter_code=decision.matter.code if decision.matter else None,
            tier=decision.tier,
            deadline_class=deadline_class,
            urgency=event.urgency,
            title=event.title,
            description=event.description,
            location=event.location,
            received_at=event.received_at,
            dispatched_at=now,
            deadlines=terms,
            decision=decision.routing,
        )
        for a in decision.assignments
    ]
