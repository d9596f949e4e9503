"""Routing decisions: which matter, which territory, which units; pure and explainable.

classify: an explicit matter code, else the channel's own category (a mapped category decides; a coarse one
narrows the candidates and the text chooses), else the words of the report (`text.py`); a tie between units,
or a report with no word of the list, falls back on its likeness to each matter's own text in the list
(`fallback.py`, `similarity.py`), which routes only when clear. locate: the grid code, else the nearest grid
centre to the coordinates, else township, village and landmark names in the district, the address, then the
text. decide: township-tier matters go to the township centre, county-tier ones to their department,
co-operating units get their own copies; low confidence, or a township matter with no territory, goes to the
command centre's triage.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from schemas import (
    EventNormalised,
    Location,
    RoutingDecision,
    TaskRole,
    Tier,
)
from schemas.dutylist import TOWNSHIP, DutyList, Grid, Matter, Unit
from services.router.fallback import break_tie, nearest
from services.router.similarity import SimilarityIndex
from services.router.text import (
    Hit,
    MatterScore,
    Occurrences,
    TextIndex,
    TextScores,
    confidence,
    event_text,
    normalise,
)

# Confidence of a mapped channel category, and weight a coarse category lends each of its candidates.
CHANNEL_CATEGORY_CONFIDENCE = 0.9
CATEGORY_PRIOR = 2
# A coarse category with no word for any matter: its first candidate, at this confidence.
CATEGORY_DEFAULT_CONFIDENCE = 0.6
CHANNEL_NAMES = {"12345": "12345", "110": "110", "wechat": "微信", "petition": "信访", "gridapp": "网格通"}
_EARTH_KM = 6371.0


# Made for every event: named tuples, immutable and cheap to make (see MatterScore in text.py).
class Classification(NamedTuple):
    """The matter chosen for an event, by which rule, how sure, and why."""

    matter: Matter | None
    rule: str
    confidence: float
    reason: str
    hits: tuple[Hit, ...] = ()
    runner_up: MatterScore | None = None


class Placement(NamedTuple):
    """Where an event happened, as far as the list can tell, and how it was told."""

    grid: Grid | None
    township: str | None
    village: str | None  # village committee unit code
    where: str


@dataclass(frozen=True)
class Assignment:
    """One unit that gets a task copy, with its role."""

    unit_code: str
    role: TaskRole


@dataclass(frozen=True)
class _Place:
    name: str  # normalised
    township: str
    village: str | None
    display: str


class RouterIndex:
    """A duty list prepared for routing: lookups by code, grid points, place names, the text and similarity indexes."""

    def __init__(self, duty: DutyList) -> None:
        self.duty = duty
        self.text = TextIndex(duty)
        self.similar = SimilarityIndex(duty.matters)  # the fallbacks' (fallback.py): no word, or a tie
        self.units = {u.code: u for u in duty.units}
        self.matters = {m.code: m for m in duty.matters}
        self.order = {m.code: i for i, m in enumerate(duty.matters)}
        self.centres = {u.township: u for u in duty.units if u.kind == "township-centre" and u.township}
        self.grids = {g.code: g for g in duty.grids}
        self.grid_village = {g.code: g.village_code or _village_by_prefix(g, self.units) for g in duty.grids}
        # Placement is immutable: a declared grid's is made once.
        self.at_grid = {
            g.code: Placement(g, g.township, self.grid_village[g.code], f"网格 {g.code}（{g.village}）")
            for g in duty.grids
        }
        mean_lat = sum(g.lat for g in duty.grids) / len(duty.grids) if duty.grids else 0.0
        self.lon_scale = math.cos(math.radians(mean_lat))
        self.grid_points = tuple((g.lat, g.lon, g) for g in duty.grids)
        self.places = _places(duty, self.grid_village)
        self.place_names = Occurrences({p.name: (len(p.name), k) for k, p in enumerate(self.places)})
        # A text that is one name and nothing else (a district field: "河西乡") names that place alone.
        self.named = {p.name: (p.township, p.village, p.display) for p in self.places}
        # Every matter's units in every township (None: no township), so decide() only looks them up.
        self.assignments = {
            (m.code, t): _assignments(m, t, self.centres) for m in duty.matters for t in (None, *self.centres)
        }

    def nearest_grid(self, lat: float, lon: float) -> tuple[Grid, float] | None:
        """The grid whose centre is nearest, and how far it is (km)."""
        if not self.grid_points:
            return None
        scale, nearest, best = self.lon_scale, self.grid_points[0][2], math.inf
        for p_lat, p_lon, g in self.grid_points:
            dy, dx = p_lat - lat, (p_lon - lon) * scale
            d = dy * dy + dx * dx
            if d < best:
                nearest, best = g, d
        return nearest, _distance_km(lat, lon, nearest.lat, nearest.lon)

    def find_place(self, text: str) -> tuple[str, str | None, str] | None:
        """(township, village, the names shown) from the names in a text; a township named outright wins."""
        text = normalise(text)
        if whole := self.named.get(text):
            return whole
        # Every name in the text (start, -length), then left to right the longest starting at each place;
        # names do not overlap.
        named = sorted((end - size, -size, k) for end, (size, k) in self.place_names.of(text))
        if not named:
            return None
        found: list[_Place] = []
        pos = 0
        for start, neg, k in named:
            if start >= pos:
                found.append(self.places[k])
                pos = start - neg
        township = next((p for p in found if p.village is None), None)
        if township is None:  # only villages or landmarks: the first one named
            return found[0].township, found[0].village, found[0].display
        village = next((p for p in found if p.village and p.township == township.township), None)
        if village is None:
            return township.township, None, township.display
        return township.township, village.village, f"{township.display}”“{village.display}"


def _assignments(matter: Matter, township: str | None, centres: dict[str, Unit]) -> tuple[Assignment, ...] | None:
    """The matter's primary and co-operating units in a township; None when a township-led matter has none."""

    def resolve(ref: str) -> str | None:
        if ref != TOWNSHIP:
            return ref
        return centres[township].code if township in centres else None

    primary = resolve(matter.primary)
    if primary is None:
        return None
    co_ops = dict.fromkeys(c for c in map(resolve, matter.co_operating) if c and c != primary)
    return (Assignment(primary, TaskRole.PRIMARY), *(Assignment(c, TaskRole.CO_OPERATING) for c in co_ops))


def _village_by_prefix(grid: Grid, units: dict[str, Unit]) -> str | None:
    # Grid codes extend their village committee's code: PA-CG-01-001 is in PA-CG-01.
    prefix = grid.code.rsplit("-", 1)[0]
    unit = units.get(prefix)
    return prefix if unit is not None and unit.kind == "village-committee" else None


def _places(duty: DutyList, grid_village: dict[str, str | None]) -> tuple[_Place, ...]:
    places: dict[str, _Place] = {}
    for unit in duty.units:
        if unit.kind not in ("township-centre", "village-committee") or not unit.township:
            continue
        village = unit.code if unit.kind == "village-committee" else None
        for name in (unit.name, *unit.aliases, *unit.places):
            places.setdefault(normalise(name), _Place(normalise(name), unit.township, village, name))
    for grid in duty.grids:
        name = normalise(grid.village)
        places.setdefault(name, _Place(name, grid.township, grid_village.get(grid.code), grid.village))
    # Longest first, so "东街社区" is shown rather than "东街".
    return tuple(sorted(places.values(), key=lambda p: -len(p.name)))


_INDEXES: OrderedDict[int, RouterIndex] = OrderedDict()


def router_index(duty: DutyList) -> RouterIndex:
    """The routing index of a duty list, built once (the last three lists kept)."""
    index = _INDEXES.get(id(duty))
    if index is None or index.duty is not duty:
        index = RouterIndex(duty)
        _INDEXES[id(duty)] = index
        # Each index holds its own jieba dictionary (~25 MB): a router that switches lists keeps the list in
        # force, the one before (decisions in flight) and one more, not every list it ever saw.
        while len(_INDEXES) > 3:
            _INDEXES.popitem(last=False)
    return index


def _channel_of(event: EventNormalised) -> str:
    return event.sources[0].source  # a StrEnum: the channel's own code


def _words(hits: tuple[Hit, ...]) -> str:
    return "、".join([h.shown for h in hits])


def _same_unit(a: Matter, b: Matter) -> bool:
    # Two matters whose primary is the same unit (or both the event's township centre) route alike.
    return a.primary == b.primary


def _rival(best: MatterScore, ranked: list[MatterScore] | tuple[MatterScore, ...]) -> MatterScore | None:
    """The best matter that would go to another primary unit: what the confidence is measured against."""
    primary = best.matter.primary
    for s in ranked:
        if s.matter.primary != primary:  # see _same_unit
            return s
    return None


def _runner_up_text(best: MatterScore, runner_up: MatterScore | None) -> str:
    if runner_up is None:
        return "无次选"
    text = f"次选 {runner_up.matter.code} {runner_up.matter.name}（{runner_up.score} 分"
    if _same_unit(best.matter, runner_up.matter):
        text += "，主办单位相同" if best.matter.primary != TOWNSHIP else "，同为乡镇属地"
    return text + "）"


def classify(event: EventNormalised, duty: DutyList) -> Classification:
    """Explicit matter code, then the channel's own category, then the weighted words of the report."""
    return _classify(event, router_index(duty))


def _classify(event: EventNormalised, index: RouterIndex) -> Classification:
    duty = index.duty
    declared = (event.declared_category or "").strip() or None
    channel = _channel_of(event)
    if declared and (matter := index.matters.get(declared.upper())):
        return Classification(matter, "explicit-category", 1.0, f"报送时已指定事项 {matter.code}")
    target = duty.channel_categories.get(channel, {}).get(declared) if declared else None
    if isinstance(target, str):
        matter = index.matters[target]
        reason = f"{CHANNEL_NAMES.get(channel, channel)} 分类“{declared}”对应事项 {matter.code}"
        return Classification(matter, "channel-category", CHANNEL_CATEGORY_CONFIDENCE, reason)
    text = event_text(event.title, event.description)
    if declared and target is None:
        text = f"{text}\n{declared}"  # a category the list does not map still says something
    scores = index.text.score(text)
    excluded = "".join(f"；排除 {m.code}（含“{w}”）" for m, w in scores.excluded) if scores.excluded else ""
    if target:  # a coarse category: its candidates get a prior, the words decide
        return _narrow(declared or "", target, text, scores, CHANNEL_NAMES.get(channel, channel), excluded, index)
    ranked = scores.ranked
    if not ranked:
        ruled_out = {m.code for m, _ in scores.excluded}
        if near := nearest(normalise(text), ruled_out, index.similar, duty.confidence_threshold):
            return Classification(near.matter, "text-similarity", near.confidence, f"{near.reason}{excluded}")
        return Classification(None, "triage", 0.0, f"未匹配任何事项关键词{excluded}")
    best, runner_up = ranked[0], ranked[1] if len(ranked) > 1 else None
    rival = _rival(best, ranked)
    if rival is not None and rival.score == best.score and (tie := _break_tie(text, ranked, index)):
        return tie._replace(reason=f"{tie.reason}{excluded}")
    conf = confidence(best.score, rival.score if rival else 0)
    reason = (
        f"文本关键词 {best.matter.code}：{_words(best.hits)}，计 {best.score} 分；"
        f"{_runner_up_text(best, runner_up)}{excluded}"
    )
    return Classification(best.matter, "keywords", conf, reason, best.hits, runner_up)


def _narrow(
    declared: str,
    candidates: tuple[str, ...],
    text: str,
    scores: TextScores,
    label: str,
    excluded: str,
    index: RouterIndex,
) -> Classification:
    ruled_out = {m.code for m, _ in scores.excluded}
    codes = [c for c in candidates if c in index.matters and c not in ruled_out]
    ranked = scores.ranked
    by_code = {s.matter.code: s for s in ranked}
    prior = Hit(declared, CATEGORY_PRIOR, "category")
    scored = [
        MatterScore(s.matter, s.score + CATEGORY_PRIOR, (prior, *s.hits)) if s.matter.code in codes else s
        for s in ranked
    ]
    scored += [MatterScore(index.matters[c], CATEGORY_PRIOR, (prior,)) for c in codes if c not in by_code]
    scored.sort(
        key=lambda s: (
            -s.score,
            codes.index(s.matter.code) if s.matter.code in codes else len(codes),
            index.order[s.matter.code],
        )
    )
    narrowed = f"{label} 分类“{declared}”限定候选 {'、'.join(codes)}（各加 {CATEGORY_PRIOR} 分）"
    if not scored:  # every candidate ruled out by an exclude word, and no other word
        return Classification(None, "triage", 0.0, f"{narrowed}；候选均被排除，未匹配其他事项关键词{excluded}")
    if not ranked:  # no word for any matter: the category's first candidate
        matter = index.matters[codes[0]]
        reason = f"{narrowed}；正文无关键词，取首选 {matter.code}{excluded}"
        return Classification(matter, "channel-category", CATEGORY_DEFAULT_CONFIDENCE, reason, (prior,))
    best = scored[0]
    runner_up = scored[1] if len(scored) > 1 else None
    rival = _rival(best, scored)
    if rival is not None and rival.score == best.score and (tie := _break_tie(text, scored, index)):
        return tie._replace(reason=f"{narrowed}；{tie.reason}{excluded}")
    conf = confidence(best.score, rival.score if rival else 0)
    reason = (
        f"{narrowed}；文本关键词 {best.matter.code}：{_words(best.hits)}，计 {best.score} 分；"
        f"{_runner_up_text(best, runner_up)}{excluded}"
    )
    return Classification(best.matter, "channel-candidates", conf, reason, best.hits, runner_up)


def _break_tie(
    text: str, ranked: list[MatterScore] | tuple[MatterScore, ...], index: RouterIndex
) -> Classification | None:
    """A tie between units settled by the tied matters' likeness to the text (fallback.py), if it clearly is."""
    tied = [s for s in ranked if s.score == ranked[0].score]
    settled = break_tie(normalise(text), tied, index.similar, index.duty.confidence_threshold)
    if settled is None:
        return None
    found, chosen, other = settled
    return Classification(found.matter, "tie-similarity", found.confidence, found.reason, chosen.hits, other)


def _distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    rlat1, rlat2 = math.radians(lat1), math.radians(lat2)
    a = (
        math.sin((rlat2 - rlat1) / 2) ** 2
        + math.cos(rlat1) * math.cos(rlat2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return _EARTH_KM * 2 * math.asin(math.sqrt(a))


class Placeable(Protocol):
    """What placing a report reads of it (an EventNormalised, or a lighter view of one)."""

    @property
    def location(self) -> Location: ...
    @property
    def title(self) -> str: ...
    @property
    def description(self) -> str: ...


def place(event: Placeable, duty: DutyList) -> Placement:
    """Where the event happened: grid code, nearest grid centre, or the names of township, village, landmark."""
    return _place(event, router_index(duty))


def _place(event: Placeable, index: RouterIndex) -> Placement:
    duty = index.duty
    loc = event.location
    if loc.grid_code and (at := index.at_grid.get(loc.grid_code.strip().upper())):
        return at
    if loc.lat is not None and loc.lon is not None and (near := index.nearest_grid(loc.lat, loc.lon)):
        grid, km = near
        if km <= duty.max_grid_distance_km:
            where = f"坐标距网格 {grid.code}（{grid.village}）中心 {km:.1f} km"
            return Placement(grid, grid.township, index.grid_village.get(grid.code), where)
    for text in (loc.district, loc.address):
        if text and (found := index.find_place(text)):
            township, village, shown = found
            return Placement(None, township, village, f"地址含“{shown}”")
    if found := index.find_place(f"{event.title}\n{event.description}"):
        township, village, shown = found
        return Placement(None, township, village, f"正文提到“{shown}”")
    return Placement(None, None, None, "无网格、坐标或乡镇信息")


def locate(event: Placeable, duty: DutyList) -> tuple[Grid | None, str | None, str]:
    """The event's grid, township and how they were found (see `place`, which also gives the village)."""
    p = place(event, duty)
    return p.grid, p.township, p.where


class Decision(NamedTuple):
    """The router's full answer for one event."""

    matter: Matter | None
    tier: Tier
    assignments: tuple[Assignment, ...]
    routing: RoutingDecision
    grid: Grid | None = None
    township: str | None = None
    village: str | None = None
    classification: Classification | None = None


def decide(event: EventNormalised, duty: DutyList) -> Decision:
    """Route an event: matter, territory, primary and co-operating units, or triage."""
    index = router_index(duty)
    cls = _classify(event, index)
    where = _place(event, index)
    township = where.township
    triage_reason = None
    if cls.matter is None or cls.confidence < duty.confidence_threshold:
        triage_reason = f"置信度 {cls.confidence:.2f} 低于阈值 {duty.confidence_threshold:.2f}"
    # Only a township-led matter needs a place; a county department acts county-wide.
    needs_territory = cls.matter is not None and cls.matter.primary == TOWNSHIP
    if triage_reason is None and needs_territory and township is None:
        triage_reason = f"属地事项但无法确定乡镇（{where.where}）"
    if triage_reason is not None or cls.matter is None:
        return Decision(
            matter=cls.matter,
            tier=Tier.COMMAND_CENTRE,
            assignments=(Assignment(duty.county.command_centre, TaskRole.PRIMARY),),
            routing=_routing(
                cls, "triage", f"转指挥中心人工分拨：{triage_reason}；{cls.reason}；{where.where}", where, duty
            ),
            grid=where.grid,
            township=township,
            village=where.village,
            classification=cls,
        )
    matter = cls.matter
    key = (matter.code, township)
    assignments = index.assignments[key] if key in index.assignments else _assignments(matter, township, index.centres)
    assert assignments is not None  # township-led matters without a township went to triage above
    handled = "乡镇属地办理" if matter.tier is Tier.TOWNSHIP else "县直部门办理"
    reason = f"{cls.reason}；置信度 {cls.confidence:.2f}；{where.where}；{handled}"
    return Decision(
        matter=matter,
        tier=matter.tier,
        assignments=assignments,
        routing=_routing(cls, cls.rule, reason, where, duty),
        grid=where.grid,
        township=township,
        village=where.village,
        classification=cls,
    )


def _routing(cls: Classification, rule: str, reason: str, where: Placement, duty: DutyList) -> RoutingDecision:
    matter = cls.matter
    # Validated as RoutingDecision(**fields) would be, without BaseModel.__init__'s keyword packing (one per event).
    fields = {
        "matter_code": matter.code if matter else None,
        "matter_name": matter.name if matter else None,
        "rule": rule,
        "confidence": cls.confidence,
        "reason": f"{reason}；清单 {duty.version}",
        "duty_list_version": duty.version,
        "triage": rule == "triage",
        "township": where.township,
        "village": where.village,
        "grid_code": where.grid.code if where.grid else None,
    }
    return RoutingDecision.model_validate(fields)
