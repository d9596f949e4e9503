"""Text classification against the duty list: segment a report, find its weighted words, score the matters.

The segmenter is jieba's (jieba-rs through `rjieba`) with every keyword, phrase and exclude of the list added
to its dictionary, so "拖欠工资" or "被狗咬" come out whole. A keyword counts where the segmented text has a
word boundary at one of its ends at least, so "拉沙" counts in "拉沙子" but "口角" not in "路口角落" and
"安检" not in "公安检查"; a one-character keyword must be a word of its own. A phrase counts anywhere. A
longer word covers the words inside it: "被狗咬" scores once, not again as "狗咬" and "狗". Every occurrence
of the list's words is found in one Aho-Corasick pass (`Occurrences`, pyahocorasick in C), then checked against
the segmentation. Deterministic and pure: the same list and text give the same scores; segmenters are cached
per word set.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Generic, Literal, NamedTuple, TypeVar

import ahocorasick
import rjieba

from schemas.dutylist import DutyList, Matter

# A channel's tag in front of a title: "[投诉] ", "[网格 PA-CG-01-001] ", "[110 燃气泄漏] ".
_TITLE_TAG = re.compile(r"^\s*\[[^\]]*\]\s*")
# Confidence: the weight at which a lone word is about 63 % sure (see `confidence`), fitted on the tuning part
# of the development set: one weight-1 word was right 64 % of the time, one weight-2 word 89 %.
SCALE = 1.0
V = TypeVar("V")


@dataclass(frozen=True)
class Hit:
    """One word of the text that counts for a matter."""

    word: str
    weight: int
    kind: Literal["keyword", "phrase", "category"]
    shown: str = field(init=False, repr=False, compare=False)  # label(), made once: a list's hits are shared

    def __post_init__(self) -> None:
        if self.kind == "category":
            shown = f"分类“{self.word}”+{self.weight}"
        else:
            shown = f"「{self.word}」({self.weight})" if self.kind == "phrase" else f"{self.word}({self.weight})"
        object.__setattr__(self, "shown", shown)

    def label(self) -> str:
        """How the reason shows it: 下水道(2), 「路灯不亮」(3) for a phrase, 分类“设施故障”+2 for a category's prior."""
        return self.shown


# The scores and decisions made for every event are named tuples: immutable like frozen dataclasses, and made
# without a Python-level __setattr__ per field (three times faster; a few of them are made per event).
class MatterScore(NamedTuple):
    """A matter's total weight in one text, and the words that made it."""

    matter: Matter
    score: int
    hits: tuple[Hit, ...]


class TextScores(NamedTuple):
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
    ends: int  # how many of its ends must be word boundaries: 0 for a phrase, 1 for a keyword, 2 for one character


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
_HALF_WIDTH = {chr(code): chr(code - 0xFEE0) for code in range(0xFF01, 0xFF5F)} | {"\u3000": " "}
_FULL_WIDTH = re.compile("[\uff01-\uff5e\u3000]")


def normalise(text: str) -> str:
    """Full-width letters and digits to ASCII, lower case: the form terms and places are matched in."""
    # Not str.translate: it looks every character up in the table, a few µs per report of Chinese text; a
    # report has a handful of distinct full-width characters (，？（）), each replaced at once.
    for wide in set(_FULL_WIDTH.findall(text)):
        text = text.replace(wide, _HALF_WIDTH[wide])
    return text.lower()


def event_text(title: str, description: str) -> str:
    """The words of a report: the title without its channel tag, unless the description repeats it."""
    headline = _TITLE_TAG.sub("", title).strip().removesuffix("…")
    if not headline or headline in description:
        return description
    return f"{headline}\n{description}"


class Occurrences(Generic[V]):
    """Every occurrence of some words in a text, overlapping ones too: one Aho-Corasick pass (pyahocorasick, C)."""

    def __init__(self, words: Mapping[str, V]) -> None:
        # pyahocorasick looks a character up among a state's children one by one, and a duty list's words start
        # with some 400 different characters. It searches the text's UTF-16 code units instead, two latin-1
        # characters each: a state has a handful of children, the search is 2.5 times faster.
        self.by_unit = ahocorasick.Automaton()
        self.by_char = ahocorasick.Automaton()  # for a text with characters beyond the BMP (emoji)
        for word, value in words.items():
            self.by_unit.add_word(_units(word), value)
            self.by_char.add_word(word, value)
        self.by_unit.make_automaton()
        self.by_char.make_automaton()

    def of(self, text: str) -> list[tuple[int, V]]:
        """(end, value) of each occurrence, ends in characters, in the order of their ends."""
        units = _units(text)
        if len(units) != 2 * len(text):  # an emoji is two UTF-16 units: offsets would not halve
            return [(last + 1, value) for last, value in self.by_char.iter(text)]
        # A match at an odd offset straddles two characters: not a word of the text.
        return [((last + 1) >> 1, value) for last, value in self.by_unit.iter(units) if last & 1]


def _units(text: str) -> str:
    # Every character one or two UTF-16 code units, each code unit two latin-1 characters (big-endian bytes).
    return text.encode("utf-16-be", "surrogatepass").decode("latin-1")


def _ends(word: str, terms: list[tuple[int, int, Hit]]) -> int:
    # Only phrases: anywhere. A keyword (or only an exclude word): one end on a word boundary; one character: both.
    if terms and all(hit.kind == "phrase" for _, _, hit in terms):
        return 0
    return 2 if len(word) == 1 else 1


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
        self.lexicon = {w: _Entry(tuple(t), tuple(x), _ends(w, t)) for w, (t, x) in lexicon.items()}
        self.occurrences = Occurrences({word: (len(word), word, entry) for word, entry in self.lexicon.items()})
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
        found, words = self._found(text)
        return [word for _, word, _ in found], words

    def _found(self, text: str) -> tuple[list[tuple[int, str, _Entry]], list[str]]:
        """(start, word, entry) of each word found, left to right, and the segmented text (see `find`)."""
        text = normalise(text)
        words = self.jieba.cut(text, False)
        bounds = {0, *accumulate(map(len, words))}
        # Those of the words' occurrences that count, as (-length, start, word, entry): sorting puts the longest
        # first, then the leftmost.
        counted = []
        for end, (size, word, entry) in self.occurrences.of(text):
            i = end - size
            if entry.ends <= (i in bounds) + (end in bounds):
                counted.append((-size, i, word, entry))
        if len(counted) < 2:
            return [(i, word, entry) for _, i, word, entry in counted], words
        counted.sort()  # never compares entries: a length and a start give one word
        taken: list[tuple[int, int]] = []
        kept: list[tuple[int, str, _Entry]] = []
        for neg, i, word, entry in counted:
            j = i - neg
            for a, b in taken:
                if i < b and j > a:
                    break
            else:
                taken.append((i, j))
                kept.append((i, word, entry))
        kept.sort()  # never compares entries: kept words start at different places
        return kept, words

    def score(self, text: str) -> TextScores:
        """Weighted hits per matter, best first; ties keep the list's order."""
        found, words = self._found(text)
        totals: dict[int, int] = {}
        hits: dict[int, list[Hit]] = {}
        ruled_out: dict[int, str] = {}
        seen: set[str] = set()
        for _, word, entry in found:
            if word in seen:  # a word said twice counts once
                continue
            seen.add(word)
            for m, weight, hit in entry.terms:
                if m in totals:
                    totals[m] += weight
                    hits[m].append(hit)
                else:
                    totals[m] = weight
                    hits[m] = [hit]
            for m in entry.excludes:
                ruled_out.setdefault(m, word)
        if ruled_out:
            for m in ruled_out:
                totals.pop(m, None)
            excluded = tuple((self.matters[m], w) for m, w in sorted(ruled_out.items()))
        else:
            excluded = ()
        matters = self.matters
        ranked = tuple(
            [MatterScore(matters[m], -neg, tuple(hits[m])) for neg, m in sorted([(-t, m) for m, t in totals.items()])]
        )
        return TextScores(ranked, excluded, tuple(words))


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
