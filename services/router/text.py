"""Text classification against the duty list: segment a report, find its weighted words, score the matters.

The segmenter is jieba's (jieba-rs through `rjieba`) with every keyword, phrase and exclude of the list added
to its dictionary, so "拖欠工资" or "被狗咬" come out whole. A keyword counts where the segmented text has a
word boundary at one of its ends at least, so "拉沙" counts in "拉沙子" but "口角" not in "路口角落" and
"安检" not in "公安检查"; a one-character keyword must be a word of its own. A phrase counts anywhere. A
longer word covers the words inside it: "被狗咬" scores once, not again as "狗咬" and "狗". Deterministic
and pure: the same list and text give the same scores; segmenters are cached per word set.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import accumulate
from typing import Literal

import rjieba

from schemas.dutylist import DutyList, Matter

# A channel's tag in front of a title: "[投诉] ", "[网格 PA-CG-01-001] ", "[110 燃气泄漏] ".
_TITLE_TAG = re.compile(r"^\s*\[[^\]]*\]\s*")
# Confidence: the weight at which a lone word is about 63 % sure (see `confidence`), fitted on the tuning part
# of the development set: one weight-1 word was right 64 % of the time, one weight-2 word 89 %.
SCALE = 1.0


@dataclass(frozen=True)
class Hit:
    """One word of the text that counts for a matter."""

    word: str
    weight: int
    kind: Literal["keyword", "phrase", "category"]

    def label(self) -> str:
        """How the reason shows it: 下水道(2), 「路灯不亮」(3) for a phrase, 分类“设施故障”+2 for a category's prior."""
        if self.kind == "category":
            return f"分类“{self.word}”+{self.weight}"
        return f"「{self.word}」({self.weight})" if self.kind == "phrase" else f"{self.word}({self.weight})"


@dataclass(frozen=True)
class MatterScore:
    """A matter's total weight in one text, and the words that made it."""

    matter: Matter
    score: int
    hits: tuple[Hit, ...]


@dataclass(frozen=True)
class TextScores:
    """Every matter the text speaks for, best first, and those ruled out by an exclude word."""

    ranked: tuple[MatterScore, ...]
    excluded: tuple[tuple[Matter, str], ...]  # (matter, the exclude word found)
    words: tuple[str, ...]  # the segmented text, for inspection

    @property
    def best(self) -> MatterScore | None:
        return self.ranked[0] if self.ranked else None

    @property
    def runner_up(self) -> MatterScore | None:
        return self.ranked[1] if len(self.ranked) > 1 else None


@dataclass(frozen=True)
class _Entry:
    terms: tuple[tuple[int, int, Hit], ...]  # (matter index, weight, the hit it makes)
    excludes: tuple[int, ...]  # matter indexes this word rules out
    phrase_only: bool  # only phrases: counts anywhere in the text


_SEGMENTERS: OrderedDict[frozenset[str], rjieba.Jieba] = OrderedDict()


def segmenter(words: Iterable[str]) -> rjieba.Jieba:
    """A jieba segmenter whose dictionary also holds these words (one per word set, the last four kept)."""
    key = frozenset(words)
    jieba = _SEGMENTERS.get(key)
    if jieba is None:
        jieba = rjieba.Jieba()
        for word in sorted(key):
            jieba.add_word(word, None, None)  # frequency suggested so the word comes out whole
        _SEGMENTERS[key] = jieba
        while len(_SEGMENTERS) > 4:
            _SEGMENTERS.popitem(last=False)
    else:
        _SEGMENTERS.move_to_end(key)
    return jieba


# Full-width ASCII (Ａ-Ｚ, ０-９, punctuation) and the ideographic space to their ASCII forms.
_HALF_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}


def normalise(text: str) -> str:
    """Full-width letters and digits to ASCII, lower case: the form terms and places are matched in."""
    return text.translate(_HALF_WIDTH).lower()


def event_text(title: str, description: str) -> str:
    """The words of a report: the title without its channel tag, unless the description repeats it."""
    headline = _TITLE_TAG.sub("", title).strip().removesuffix("…")
    if not headline or headline in description:
        return description
    return f"{headline}\n{description}"


class TextIndex:
    """A duty list's words, ready to score texts: built once per list."""

    def __init__(self, duty: DutyList) -> None:
        self.matters = duty.matters
        lexicon: dict[str, tuple[list[tuple[int, int, Hit]], list[int]]] = {}
        for i, matter in enumerate(duty.matters):
            for word, weight in matter.keywords.items():
                key = normalise(word)
                lexicon.setdefault(key, ([], []))[0].append((i, weight, Hit(key, weight, "keyword")))
            for word, weight in matter.phrases.items():
                key = normalise(word)
                lexicon.setdefault(key, ([], []))[0].append((i, weight, Hit(key, weight, "phrase")))
            for word in matter.excludes:
                lexicon.setdefault(normalise(word), ([], []))[1].append(i)
        self.lexicon = {
            w: _Entry(tuple(t), tuple(x), bool(t) and all(hit.kind == "phrase" for _, _, hit in t))
            for w, (t, x) in lexicon.items()
        }
        # Every proper prefix of a word: a segmented word that is one may start a word split by the segmenter.
        self.prefixes = frozenset(w[:k] for w in self.lexicon for k in range(1, len(w)))
        self.starts = frozenset(w[0] for w in self.lexicon)
        self.jieba = segmenter(self.lexicon)

    def words(self, text: str) -> list[str]:
        """The text segmented (no HMM guessing of new words: the list's words are in the dictionary)."""
        return self.jieba.cut(normalise(text), False)

    def find(self, text: str) -> tuple[list[str], list[str]]:
        """The list's words in a text (longest first, not overlapping) and the segmented text.

        A keyword counts where at least one of its ends is a word boundary of the segmented text (a one-character
        keyword must be a whole word): "拉沙" counts in "拉沙子" (拉/沙子), "口角" not in "路口角落" (路口/角落).
        A phrase counts anywhere.
        """
        text = normalise(text)
        words = self.jieba.cut(text, False)
        bounds = set(accumulate(map(len, words), initial=0))
        lexicon, prefixes, starts = self.lexicon, self.prefixes, self.starts
        spans: list[tuple[int, int, str]] = []
        n = len(text)
        for i, char in enumerate(text):
            if char not in starts:
                continue
            j = i + 1
            while j <= n:
                piece = text[i:j]
                entry = lexicon.get(piece)
                if entry is not None and (
                    entry.phrase_only or (i in bounds and j in bounds) or (j - i > 1 and (i in bounds or j in bounds))
                ):
                    spans.append((i, j, piece))
                if piece not in prefixes:
                    break
                j += 1
        spans.sort(key=lambda s: (s[0] - s[1], s[0]))  # longest first, then leftmost
        taken: list[tuple[int, int]] = []
        found: list[tuple[int, str]] = []
        for i, j, piece in spans:
            if all(j <= a or i >= b for a, b in taken):
                taken.append((i, j))
                found.append((i, piece))
        found.sort()
        return [piece for _, piece in found], words

    def score(self, text: str) -> TextScores:
        """Weighted hits per matter, best first; ties keep the list's order."""
        found, words = self.find(text)
        lexicon = self.lexicon
        totals: dict[int, int] = {}
        hits: dict[int, list[Hit]] = {}
        ruled_out: dict[int, str] = {}
        seen: set[str] = set()
        for word in found:
            if word in seen:  # a word said twice counts once
                continue
            seen.add(word)
            entry = lexicon[word]
            for m, weight, hit in entry.terms:
                totals[m] = totals.get(m, 0) + weight
                hits.setdefault(m, []).append(hit)
            for m in entry.excludes:
                ruled_out.setdefault(m, word)
        order = sorted((m for m in totals if m not in ruled_out), key=lambda m: (-totals[m], m))
        ranked = [MatterScore(self.matters[m], totals[m], tuple(hits[m])) for m in order]
        excluded = tuple((self.matters[m], w) for m, w in sorted(ruled_out.items()))
        return TextScores(tuple(ranked), excluded, tuple(words))


def confidence(best: int, runner_up: int) -> float:
    """How sure a text classification is, from the best matter's weight and its lead over the rival.

    The rival is the best matter that would go to another primary unit. Strength grows with weight
    (1: 0.63, 2: 0.86, 3: 0.95); the rival scales it by the share of the lead, from 1 (no rival) to 0.5 (a tie,
    so a tie is never routed at the usual 0.5 threshold): 3 against 2 is 0.63, 2 against 1 is 0.65.
    """
    if best <= 0:
        return 0.0
    strength = 1.0 - math.exp(-best / SCALE)
    lead = (best - runner_up) / best
    return round(strength * (0.5 + 0.5 * lead), 2)
