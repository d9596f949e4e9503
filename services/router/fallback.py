"""Fallbacks of text classification when the list's words cannot decide: a tie between units, or no word.

Both compare the report with each matter's own text in the list (`similarity.py`) and route only when the
best matter clearly beats the best matter of another primary unit, at a confidence below a word's:

- a tie (the best matters of two units weigh the same): only the tied matters compete, and the confidence is
  the words' strength scaled by the similarity lead, `(1 − e^(−weight)) · (0.5 + 0.25 · lead)`, a similarity
  lead counting half a word lead (`text.confidence`);
- no word at all: every matter not ruled out competes, at `(1 − e^(−similarity / SIMILARITY_SCALE)) ·
  (0.5 + 0.25 · lead)`.

Either needs a lead of `MIN_LEAD` at least and a confidence at the list's threshold, else the event goes to
triage as before. The constants were fitted on the tuning part of the development set only. Pure: the same
list and text give the same answer.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import NamedTuple

from schemas.dutylist import Matter
from services.router.similarity import Similar, SimilarityIndex
from services.router.text import SCALE, MatterScore

# The least similarity lead ((best − rival) / best) that settles anything. On the tuning part, two matters of
# different units within one word weight of each other were told apart rightly 19 times in 20 from a lead of
# 0.25, 19 in 21 from 0.20, 25 in 29 with no minimum.
MIN_LEAD = 0.25
# A similarity lead counts half as much as a word lead in the confidence: 0.5 + LEAD_WEIGHT · lead.
LEAD_WEIGHT = 0.25
# The similarity at which a text with no word of the list is about 63 % strong. The tuning part's texts with
# every list word blanked out route 3 times at this scale, 3 times to the right unit; at 0.11, 6 (5 right,
# and one real wordless report of the tuning part to the wrong unit); at 0.10, 12 (8 right, one out of scope).
# Similarity alone is a weak witness (the most similar matter was the right unit for about a third of those
# texts): it decides only when the likeness is strong and clear.
SIMILARITY_SCALE = 0.12
# How the reasons name the rule.
RULE_ZH = "按清单事项文本相似度（字符 n-gram TF-IDF）"


class Fallback(NamedTuple):
    """A matter chosen by similarity, how sure, and why (in Chinese, as the other rules' reasons)."""

    matter: Matter
    confidence: float
    reason: str
    best: Similar
    rival: Similar | None
    lead: float


def _lead(best: Similar, rival: Similar | None) -> float:
    return (best.score - rival.score) / best.score if rival is not None else 1.0


def _words(scored: MatterScore) -> str:
    return "、".join([h.shown for h in scored.hits])


def _shared(similar: Similar) -> str:
    return "、".join(f"“{g}”" for g in similar.shared) or "无"


def tie_confidence(weight: int, lead: float) -> float:
    """The confidence of a tie settled by similarity: the words' strength scaled by the similarity lead."""
    if weight <= 0 or lead < MIN_LEAD:
        return 0.0
    return round((1.0 - math.exp(-weight / SCALE)) * (0.5 + LEAD_WEIGHT * lead), 2)


def similarity_confidence(score: float, lead: float) -> float:
    """The confidence of a matter chosen by similarity alone (no word of the list in the text)."""
    if score <= 0 or lead < MIN_LEAD:
        return 0.0
    return round((1.0 - math.exp(-score / SIMILARITY_SCALE)) * (0.5 + LEAD_WEIGHT * lead), 2)


def break_tie(
    text: str, tied: Sequence[MatterScore], index: SimilarityIndex, threshold: float
) -> tuple[Fallback, MatterScore, MatterScore] | None:
    """Settle a tie between units among the tied matters only; None when similarity does not clearly settle it.

    Returns the choice, the chosen matter's words and the tied rival's (for the reason and the runner-up).
    """
    by_code = {s.matter.code: s for s in tied}
    # As for words, the rival is the most similar matter another primary unit would handle.
    contest = index.contest(text, [index.position[code] for code in by_code])
    if contest is None:
        return None
    best, rival = contest
    lead = _lead(best, rival)
    weight = tied[0].score
    conf = tie_confidence(weight, lead)
    if conf < threshold or conf <= 0:
        return None
    best = index.explain(text, best)
    chosen = by_code[best.matter.code]
    # The tied matter of another unit it beat: the most similar one, else (sharing nothing) the first tied.
    other = by_code[rival.matter.code] if rival else next(s for s in tied if s.matter.primary != best.matter.primary)
    against = f"相似度 {rival.score:.2f}" if rival else "与清单文本无共同字词"
    reason = (
        f"文本关键词 {'、'.join(by_code)} 同分（{weight} 分），{RULE_ZH}取 {best.matter.code}："
        f"{_words(chosen)}，计 {weight} 分，相似度 {best.score:.2f}（共同字词 {_shared(best)}）；"
        f"次选 {other.matter.code} {other.matter.name}（{_words(other)}，计 {weight} 分，{against}）"
    )
    return Fallback(best.matter, conf, reason, best, rival, round(lead, 2)), chosen, other


def nearest(text: str, excluded: Collection[str], index: SimilarityIndex, threshold: float) -> Fallback | None:
    """The matter a text with no word of the list is most like, when clearly so; None otherwise."""
    contest = index.contest(text, excluded=excluded)  # an exclude word rules its matter out here too
    if contest is None:
        return None
    best, rival = contest
    lead = _lead(best, rival)
    conf = similarity_confidence(best.score, lead)
    if conf < threshold or conf <= 0:
        return None
    best = index.explain(text, best)
    runner_up = f"次选 {rival.matter.code} {rival.matter.name}（相似度 {rival.score:.2f}）" if rival else "无次选"
    reason = (
        f"未匹配任何事项关键词，{RULE_ZH}取 {best.matter.code}：相似度 {best.score:.2f}"
        f"（共同字词 {_shared(best)}）；{runner_up}"
    )
    return Fallback(best.matter, conf, reason, best, rival, round(lead, 2))
