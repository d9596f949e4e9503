"""Measure the router on a labelled development set: unit accuracy, triage rate, per-matter figures.

The set (tests/data/routing_devset.jsonl) is split by a stable hash of each event's id into a tuning part
(about 70 %), the only part whose mistakes may be looked at when the list's words or the classifier change,
and a held-out part that only reports. Events are built the way intake builds them (title tag, location).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

from ulid import ULID

from schemas import Channel, EventNormalised, Location, Reporter, SourceRef
from schemas.dutylist import DutyList
from services.router.decide import Decision, decide

Part = Literal["tuning", "held-out"]
PARTS: tuple[Part, ...] = ("tuning", "held-out")
TUNING_PERCENT = 70
TARGET_UNIT_ACCURACY = 0.92
TARGET_TRIAGE_RATE = 0.10
DEVSET_PATH = Path(__file__).resolve().parents[2] / "tests" / "data" / "routing_devset.jsonl"
_CST = timezone(timedelta(hours=8))
_REPORTED_AT = datetime(2026, 11, 20, 9, 30, tzinfo=_CST)
_TITLE_TAGS = {
    Channel.HOTLINE_12345: "[投诉]",
    Channel.WECHAT: "[微信]",
    Channel.PETITION: "[信访]",
}


@dataclass(frozen=True)
class DevEvent:
    """One labelled event of the development set."""

    id: str
    channel: str
    text: str
    category: str | None
    grid: str | None
    lat: float | None
    lon: float | None
    address: str | None
    expected_matter: str | None
    expected_unit: str
    expected_township: str | None
    note: str | None = None

    @property
    def part(self) -> Part:
        return part_of(self.id)


def part_of(event_id: str) -> Part:
    """Tuning or held-out, by a stable hash of the id (about 70/30)."""
    bucket = int.from_bytes(hashlib.sha256(event_id.encode()).digest()[:4], "big") % 100
    return "tuning" if bucket < TUNING_PERCENT else "held-out"


def load_devset(path: Path | None = None) -> list[DevEvent]:
    """The labelled events of a JSON-lines file (the packaged development set by default)."""
    rows = []
    with (path or DEVSET_PATH).open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                data = json.loads(line)
                rows.append(DevEvent(**{k: data.get(k) for k in DevEvent.__dataclass_fields__}))
    return rows


def report_event(
    source: str,
    text: str,
    *,
    category: str | None = None,
    grid: str | None = None,
    lat: float | None = None,
    lon: float | None = None,
    address: str | None = None,
    district: str | None = None,
    source_id: str = "adhoc-1",
    event_id: str | None = None,
) -> EventNormalised:
    """An EventNormalised as intake would build it from a channel's report (no broker involved)."""
    channel = Channel(source)
    headline = text.strip().splitlines()[0] if text.strip() else text
    tag = _TITLE_TAGS.get(channel)
    if channel is Channel.POLICE_110:
        tag = f"[110 {category or '其他'}]"
    elif channel is Channel.GRID_APP:
        tag = f"[网格 {grid or '-'}]"
    if event_id is None:
        digest = hashlib.sha256(f"{source}|{source_id}|{text}".encode()).digest()[:10]
        event_id = str(ULID.from_bytes(int(_REPORTED_AT.timestamp() * 1000).to_bytes(6, "big") + digest))
    return EventNormalised(
        causation_id=event_id,
        event_id=event_id,
        sources=(SourceRef(source=channel, source_id=source_id, raw_message_id=event_id),),
        type="事件",
        title=f"{tag} {headline[:60]}",
        description=text,
        location=Location(address=address, district=district, grid_code=grid, lat=lat, lon=lon),
        reporter=Reporter(anonymous=True),
        reported_at=_REPORTED_AT,
        received_at=_REPORTED_AT,
        declared_category=category,
    )


def dev_event(row: DevEvent) -> EventNormalised:
    """The event a development-set row describes."""
    return report_event(
        row.channel,
        row.text,
        category=row.category,
        grid=row.grid,
        lat=row.lat,
        lon=row.lon,
        address=row.address,
        source_id=row.id,
    )


@dataclass(frozen=True)
class Outcome:
    """What the router did with one labelled event."""

    row: DevEvent
    unit: str
    matter: str | None  # the matter it routed on (None when triaged)
    classified: str | None  # the classifier's matter, even when triaged
    triaged: bool
    confidence: float
    rule: str
    reason: str

    @property
    def correct_unit(self) -> bool:
        return self.unit == self.row.expected_unit


def run(duty: DutyList, rows: Iterable[DevEvent]) -> list[Outcome]:
    """Route every row."""
    outcomes = []
    for row in rows:
        d = decide(dev_event(row), duty)
        outcomes.append(_outcome(row, d))
    return outcomes


def _outcome(row: DevEvent, d: Decision) -> Outcome:
    r = d.routing
    return Outcome(
        row=row,
        unit=d.assignments[0].unit_code,
        matter=None if r.triage else r.matter_code,
        classified=r.matter_code,
        triaged=r.triage,
        confidence=r.confidence,
        rule=r.rule,
        reason=r.reason,
    )


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


@dataclass
class Figures:
    """The figures of one part (or the whole set)."""

    events: int
    routed: int
    correct_on_routed: int
    triaged: int
    matter_correct: int
    unit_correct: int
    expected_triage: int
    expected_triage_triaged: int
    by_channel: dict[str, dict[str, Any]] = field(default_factory=dict)
    per_matter: dict[str, dict[str, Any]] = field(default_factory=dict)
    confusion: list[dict[str, Any]] = field(default_factory=list)
    calibration: list[dict[str, Any]] = field(default_factory=list)
    rules: dict[str, int] = field(default_factory=dict)
    # Per rule that routed: events routed and correct unit (a fallback's precision shows here).
    rules_routed: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def unit_accuracy_on_routed(self) -> float | None:
        return _ratio(self.correct_on_routed, self.routed)

    @property
    def triage_rate(self) -> float | None:
        return _ratio(self.triaged, self.events)

    @property
    def meets_targets(self) -> bool:
        acc, triage = self.unit_accuracy_on_routed, self.triage_rate
        return acc is not None and triage is not None and acc >= TARGET_UNIT_ACCURACY and triage <= TARGET_TRIAGE_RATE

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures."""
        return {
            "events": self.events,
            "routed": self.routed,
            "unit_accuracy_on_routed": self.unit_accuracy_on_routed,
            "triage_rate": self.triage_rate,
            "matter_accuracy": _ratio(self.matter_correct, self.events),
            "unit_accuracy_all": _ratio(self.unit_correct, self.events),
            "ambiguous_correctly_triaged": _ratio(self.expected_triage_triaged, self.expected_triage),
            "ambiguous_events": self.expected_triage,
            "meets_targets": self.meets_targets,
            "rules": self.rules,
            "rules_routed": self.rules_routed,
            "by_channel": self.by_channel,
            "per_matter": self.per_matter,
            "confusion_top10": self.confusion,
            "calibration": self.calibration,
        }


def figures(outcomes: Sequence[Outcome], matters: Sequence[str], command_centre: str) -> Figures:
    """Accuracy, triage, per-matter precision and recall, confusions and calibration of some outcomes."""
    routed = [o for o in outcomes if not o.triaged]
    expected_triage = [o for o in outcomes if o.row.expected_unit == command_centre]
    f = Figures(
        events=len(outcomes),
        routed=len(routed),
        correct_on_routed=sum(o.correct_unit for o in routed),
        triaged=len(outcomes) - len(routed),
        matter_correct=sum(o.matter == o.row.expected_matter for o in outcomes),
        unit_correct=sum(o.correct_unit for o in outcomes),
        expected_triage=len(expected_triage),
        expected_triage_triaged=sum(o.triaged for o in expected_triage),
        rules=dict(Counter(o.rule for o in outcomes).most_common()),
    )
    for rule in f.rules:
        by_rule = [o for o in routed if o.rule == rule]
        if by_rule:
            right = sum(o.correct_unit for o in by_rule)
            f.rules_routed[rule] = {
                "routed": len(by_rule),
                "correct_unit": right,
                "unit_accuracy": _ratio(right, len(by_rule)),
            }
    for channel in sorted({o.row.channel for o in outcomes}):
        mine = [o for o in outcomes if o.row.channel == channel]
        ok = [o for o in mine if not o.triaged]
        f.by_channel[channel] = {
            "events": len(mine),
            "unit_accuracy_on_routed": _ratio(sum(o.correct_unit for o in ok), len(ok)),
            "triage_rate": _ratio(len(mine) - len(ok), len(mine)),
        }
    for code in matters:
        predicted = [o for o in outcomes if o.matter == code]
        expected = [o for o in outcomes if o.row.expected_matter == code]
        hit = sum(o.row.expected_matter == code for o in predicted)
        f.per_matter[code] = {
            "expected": len(expected),
            "predicted": len(predicted),
            "precision": _ratio(hit, len(predicted)),
            "recall": _ratio(hit, len(expected)),
        }
    pairs = Counter(
        (o.row.expected_matter or "—", o.matter or "triage") for o in outcomes if o.matter != o.row.expected_matter
    )
    f.confusion = [{"expected": e, "got": g, "events": n} for (e, g), n in pairs.most_common(10)]
    for low, high in ((0.0, 0.5), (0.5, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.01)):
        band = [o for o in outcomes if low <= o.confidence < high and o.classified is not None]
        f.calibration.append(
            {
                "confidence": f"{low:.1f}–{min(high, 1.0):.1f}",
                "events": len(band),
                "matter_accuracy": _ratio(sum(o.classified == o.row.expected_matter for o in band), len(band)),
            }
        )
    return f


@dataclass
class Evaluation:
    """Figures per part and overall, the speed of decide(), and the outcomes behind them."""

    duty_list_version: str
    parts: dict[str, Figures]
    micros_per_event: float
    outcomes: list[Outcome]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready evaluation."""
        return {
            "duty_list_version": self.duty_list_version,
            "targets": {"unit_accuracy_on_routed": TARGET_UNIT_ACCURACY, "triage_rate": TARGET_TRIAGE_RATE},
            "micros_per_event": round(self.micros_per_event, 1),
            "parts": {name: f.as_dict() for name, f in self.parts.items()},
        }


def evaluate(duty: DutyList, rows: Sequence[DevEvent], *, timing_rounds: int = 5) -> Evaluation:
    """Route the set, compute the figures per part, and time decide() alone (classify, locate, assign)."""
    outcomes = run(duty, rows)
    matters = [m.code for m in duty.matters]
    centre = duty.county.command_centre
    parts: dict[str, Figures] = {
        name: figures([o for o in outcomes if o.row.part == name], matters, centre) for name in PARTS
    }
    parts["all"] = figures(outcomes, matters, centre)
    return Evaluation(duty.version, parts, time_decide(duty, rows, timing_rounds), outcomes)


def time_decide(duty: DutyList, rows: Sequence[DevEvent], rounds: int = 5) -> float:
    """Microseconds per event of decide() on prepared events (best of some rounds, one core)."""
    events = [dev_event(r) for r in rows]
    if not events or rounds <= 0:
        return 0.0
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for event in events:
            decide(event, duty)
        best = min(best, time.perf_counter() - start)
    return best / len(events) * 1e6
