"""Cross-channel merging (案件归并): does a report belong to a case already open? Pure and explainable."""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict
from ulid import ULID

from schemas import CaseLinked, Channel, EventNormalised, SourceRef, Urgency
from services.router.signature import TextRules, bigrams, common_words, dice, signature_text

Place = Literal["distance", "grid", "address"]

CHANNEL_LABELS = {
    Channel.HOTLINE_12345: "12345 工单",
    Channel.POLICE_110: "110 警情",
    Channel.WECHAT: "微信报料",
    Channel.PETITION: "信访件",
    Channel.GRID_APP: "网格上报",
}
# An address suffix shorter than this ("3号楼") names too little to place two reports together.
MIN_ADDRESS_SUFFIX = 6
_ADDRESS_NOISE = re.compile(r"[\s\W_]+")


@dataclass(frozen=True)
class MergePolicy:
    """When two reports are one incident: how near, how close in time, how alike in words."""

    distance_m: float = 300.0
    window: timedelta = timedelta(hours=6)
    # Tuned on tests/unit/test_router_merging.py's examples. Same matter, place and time already say a lot;
    # the words only have to tell another incident of that matter at that place (0.00-0.18) from the same
    # one told differently (0.29-0.57; long narratives fall below, a duplicate dispatch rather than a wrong link).
    min_similarity: float = 0.25
    # Reports the classifier put under different matters (or none) merge only when nearly the same text:
    # channels label one incident differently, but a wrong merge would keep the other matter's unit untold.
    cross_matter_similarity: float = 0.6
    max_candidates: int = 200

    @property
    def retention(self) -> timedelta:
        """How long a case stays in the table: two windows, so a replay finds the link it made."""
        return 2 * self.window


class Report(BaseModel):
    """What merging knows of one report; kept in the router's open-cases table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str
    sources: tuple[SourceRef, ...]
    matter_code: str | None = None
    matter_name: str | None = None
    grid_code: str | None = None
    grid_declared: bool = False
    lat: float | None = None
    lon: float | None = None
    address: str | None = None
    reported_at: datetime
    received_at: datetime
    urgent: bool = False
    signature: str = ""


class Link(BaseModel):
    """How a report was linked to its case, kept so that a replay publishes the same link."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    matched_event_id: str
    score: float
    place: Place
    distance_m: float | None
    minutes_apart: float
    similarity: float
    explanation: str


class Candidate(BaseModel):
    """One recent report of an open case (the case id is its first report's event id)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    case_id: str
    report: Report
    link: Link | None = None


@dataclass(frozen=True)
class MergeDecision:
    """The case a report joins, the report it matched and the figures that justify it."""

    case_id: str
    matched: Report
    score: float
    place: Place
    distance_m: float | None
    minutes_apart: float
    similarity: float
    common_words: tuple[str, ...]
    same_matter: bool
    explanation: str


def normalise_address(address: str | None) -> str | None:
    """An address without spaces, punctuation or full-width forms, for comparison."""
    if not address:
        return None
    return _ADDRESS_NOISE.sub("", unicodedata.normalize("NFKC", address)) or None


def exclusion_reason(event: EventNormalised) -> str | None:
    """Why a report must never join (or open) a shared case, or None when it may."""
    # Petitions follow their own procedure (信访 reply duties and terms), and a case's links list its
    # sources: a petition inside another report's case would tell whoever handles that case, possibly the
    # unit complained about, that a petition exists. A complained-about unit or a confidential reporter
    # needs the same separation, whatever the channel.
    if any(ref.source is Channel.PETITION for ref in event.sources):
        return "信访件单独办理，不参与归并"
    if event.complained_unit:
        return "含被投诉单位，单独办理，不参与归并"
    if event.reporter.confidential:
        return "举报人身份保密，单独办理，不参与归并"
    loc = event.location
    if not (loc.grid_code or (loc.lat is not None and loc.lon is not None) or loc.address):
        return "无网格、坐标或地址，无法判断是否同一地点"
    return None


def report_features(
    event: EventNormalised,
    *,
    matter_code: str | None,
    matter_name: str | None,
    grid_code: str | None,
    rules: TextRules,
) -> Report:
    """The merging features of an event, with the matter and grid the router found for it."""
    loc = event.location
    return Report(
        event_id=event.event_id,
        sources=event.sources,
        matter_code=matter_code,
        matter_name=matter_name,
        grid_code=grid_code,
        grid_declared=grid_code is not None and loc.grid_code == grid_code,
        lat=loc.lat,
        lon=loc.lon,
        address=normalise_address(loc.address),
        reported_at=event.reported_at,
        received_at=event.received_at,
        urgent=event.urgency is Urgency.URGENT,
        signature=signature_text(event.title, event.description, (loc.address, loc.district), rules),
    )


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (haversine)."""
    rlat1, rlat2 = math.radians(lat1), math.radians(lat2)
    a = (
        math.sin((rlat2 - rlat1) / 2) ** 2
        + math.cos(rlat1) * math.cos(rlat2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 6_371_000.0 * 2 * math.asin(math.sqrt(a))


def _same_address(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    short, long = sorted((a, b), key=len)
    # Chinese addresses run from county down to door: a shared tail of six or more characters is one place.
    return short == long or (len(short) >= MIN_ADDRESS_SUFFIX and long.endswith(short))


def place_match(a: Report, b: Report, policy: MergePolicy) -> tuple[Place, float | None, float, str] | None:
    """How two reports share a place: (basis, metres apart, place score, Chinese wording), or None."""
    metres = None
    if a.lat is not None and a.lon is not None and b.lat is not None and b.lon is not None:
        metres = distance_m(a.lat, a.lon, b.lat, b.lon)
    same_grid = a.grid_code is not None and a.grid_code == b.grid_code
    if metres is not None and metres <= policy.distance_m:
        wording = f"相距 {metres:.0f} 米"
        if same_grid:
            wording = f"同一网格 {a.grid_code} / {wording}"
        return "distance", metres, 1.0 - 0.5 * metres / policy.distance_m, wording
    # A grid inferred from coordinates is only as good as those coordinates: when both reports have some
    # and they are too far apart, only grids both reporters named themselves still count.
    if same_grid and (metres is None or (a.grid_declared and b.grid_declared)):
        inferred = "" if a.grid_declared and b.grid_declared else "（按坐标推定）"
        wording = f"同一网格 {a.grid_code}{inferred}"
        if metres is not None:
            wording += f" / 相距 {metres:.0f} 米"
        return "grid", metres, 0.6, wording
    if metres is None and _same_address(a.address, b.address):
        short = min((a.address or "", b.address or ""), key=len)
        return "address", None, 0.6, f"同一地址“{short}”"
    return None


def _minutes_wording(minutes: float) -> str:
    whole = round(minutes)
    if whole < 60:
        return f"相隔 {whole} 分钟"
    return f"相隔 {whole // 60} 小时 {whole % 60} 分钟"


def _matter_wording(event: Report, other: Report) -> tuple[bool, str]:
    if event.matter_code is not None and event.matter_code == other.matter_code:
        name = (event.matter_name or "").split("（")[0]
        return True, f"同一事项 {event.matter_code} {name}".rstrip()
    if event.matter_code is None or other.matter_code is None:
        return False, "事项未定，文本高度相似"
    return False, f"事项不同（{other.matter_code} / {event.matter_code}），文本高度相似"


def _source_wording(report: Report) -> str:
    ref = report.sources[0]
    return f"{CHANNEL_LABELS.get(ref.source, ref.source.value)} {ref.source_id}"


def find_case(event: Report, candidates: Sequence[Candidate], policy: MergePolicy) -> MergeDecision | None:
    """The open case an event belongs to, by the best-scoring report of the case, or None."""
    return find_case_among(event, candidates, policy, lambda case: [c for c in candidates if c.case_id == case])


def find_case_among(
    event: Report,
    candidates: Sequence[Candidate],
    policy: MergePolicy,
    case_rows: Callable[[str], Sequence[Candidate]],
) -> MergeDecision | None:
    """`find_case` over some candidates (those that may share the event's place); case_rows gives a whole case."""
    words = bigrams(event.signature)
    if not words:
        return None
    own = {(ref.source, ref.source_id) for ref in event.sources}
    refs: dict[str, set[tuple[Channel, str]]] = {}
    urgent: dict[str, bool] = {}

    def case_refs(case_id: str) -> set[tuple[Channel, str]]:
        if case_id not in refs:
            refs[case_id] = {(r.source, r.source_id) for c in case_rows(case_id) for r in c.report.sources}
        return refs[case_id]

    def urgent_case(case_id: str) -> bool:
        if case_id not in urgent:
            urgent[case_id] = any(c.link is None and c.report.urgent for c in case_rows(case_id))
        return urgent[case_id]

    best: tuple[float, int, MergeDecision] | None = None
    for index, c in enumerate(candidates):
        other = c.report
        if other.event_id == event.event_id:
            continue  # the same report again is a replay, not a second channel
        minutes = abs((event.reported_at - other.reported_at).total_seconds()) / 60
        if minutes > policy.window.total_seconds() / 60:
            continue
        place = place_match(event, other, policy)
        if place is None:
            continue
        if own & case_refs(c.case_id):
            continue  # the same source report again is a duplicate, not a second channel
        if event.urgent and not urgent_case(c.case_id):
            continue  # an urgent report is not silenced by a case dispatched at normal urgency
        other_words = bigrams(other.signature)
        similarity = dice(words, other_words)
        same_matter, matter_wording = _matter_wording(event, other)
        if similarity < (policy.min_similarity if same_matter else policy.cross_matter_similarity):
            continue
        basis, metres, place_score, place_wording = place
        time_score = 1.0 - minutes / (policy.window.total_seconds() / 60)
        score = round(0.5 * similarity + 0.3 * place_score + 0.2 * time_score, 3)
        common = tuple(common_words(event.signature, words & other_words))
        explanation = "；".join(
            (
                f"与案件 {c.case_id} 中的{_source_wording(other)} 归并：{place_wording}",
                _minutes_wording(minutes),
                f"文本相似度 {similarity:.2f}（共同词：{'、'.join(common)}）",
                matter_wording,
            )
        )
        decision = MergeDecision(
            case_id=c.case_id,
            matched=other,
            score=score,
            place=basis,
            distance_m=None if metres is None else round(metres, 1),
            minutes_apart=round(minutes, 1),
            similarity=round(similarity, 3),
            common_words=common,
            same_matter=same_matter,
            explanation=explanation,
        )
        # Highest score wins; on a tie the earlier report (the older case) keeps it.
        if best is None or (score, -index) > (best[0], -best[1]):
            best = (score, index, decision)
    return best[2] if best else None


def is_mergeable(report: Report) -> bool:
    """True when a report has words to compare (a bare photo report has none)."""
    return bool(bigrams(report.signature))


def prior(candidates: Iterable[Candidate], event_id: str) -> Candidate | None:
    """The table's record of this event when it was seen before (a replay)."""
    return next((c for c in candidates if c.report.event_id == event_id), None)


def prune(candidates: Sequence[Candidate], received_at: datetime, policy: MergePolicy) -> list[Candidate]:
    """Cases still worth keeping: seen within the retention, newest first up to the cap; whole cases only."""
    latest: dict[str, datetime] = {}
    for c in candidates:
        latest[c.case_id] = max(latest.get(c.case_id, c.report.received_at), c.report.received_at)
    # The hub's own receive times, not the reporters' clocks: one bad clock must not empty the table.
    horizon = max([received_at, *latest.values()]) - policy.retention
    keep = {case for case, at in latest.items() if at >= horizon}
    kept = [c for c in candidates if c.case_id in keep]
    cap = max(policy.max_candidates, 0)
    if len(kept) > cap:
        # Whole cases go, the one seen longest ago first, until the rest fits under the cap.
        rows = Counter(c.case_id for c in kept)
        total = len(kept)
        for case in sorted(keep, key=lambda case: (latest[case], case)):
            if total <= cap:
                break
            keep.discard(case)
            total -= rows[case]
        kept = [c for c in kept if c.case_id in keep]
    return kept


def case_sources(candidates: Iterable[Candidate], case_id: str, *more: SourceRef) -> tuple[SourceRef, ...]:
    """Every source of a case in the table, then the given ones, each once."""
    refs = [ref for c in candidates if c.case_id == case_id for ref in c.report.sources]
    return tuple(dict.fromkeys((*refs, *more)))


def link_id_for(case_id: str, event_id: str) -> str:
    """A CaseLinked message id that is the same every time the same report is linked to the same case."""
    timestamp_ms = ULID.from_str(event_id).milliseconds
    digest = hashlib.sha256(f"case-link|{case_id}|{event_id}".encode()).digest()[:10]
    return str(ULID.from_bytes(timestamp_ms.to_bytes(6, "big") + digest))


def link_record(decision: MergeDecision) -> Link:
    """What the table keeps of a link."""
    return Link(
        matched_event_id=decision.matched.event_id,
        score=decision.score,
        place=decision.place,
        distance_m=decision.distance_m,
        minutes_apart=decision.minutes_apart,
        similarity=decision.similarity,
        explanation=decision.explanation,
    )


def case_linked(candidates: Sequence[Candidate], candidate: Candidate, causation_id: str) -> CaseLinked:
    """The CaseLinked message of a linked report in the table; the same message for a replay."""
    link = candidate.link
    assert link is not None, "only a linked report has a CaseLinked"
    # The case's sources up to this report: rows are appended in order and cases pruned whole, so a replay
    # sees the same prefix (and the table need not copy every source into every link).
    upto = next(i for i, c in enumerate(candidates) if c.report.event_id == candidate.report.event_id)
    return CaseLinked(
        message_id=link_id_for(candidate.case_id, candidate.report.event_id),
        causation_id=causation_id,
        case_id=candidate.case_id,
        event_id=candidate.report.event_id,
        matched_event_id=link.matched_event_id,
        sources=case_sources(candidates[: upto + 1], candidate.case_id),
        explanation=link.explanation,
        score=min(1.0, max(0.0, link.score)),
        place=link.place,
        distance_m=link.distance_m,
        minutes_apart=link.minutes_apart,
        similarity=link.similarity,
        matter_code=candidate.report.matter_code,
    )
