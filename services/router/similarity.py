"""How alike a report is to each matter's own text in the duty list: character n-gram TF-IDF; pure.

Each matter's text (name, description, keywords and phrases, a word counted as often as its weight) becomes
a vector of character 1- to 3-grams weighted by TF-IDF across the list's matters, built once per list with
the routing index; a report is compared with each by cosine similarity. Chinese has no spaces and reports
are colloquial, so character n-grams see what whole-word matching misses (a word without its boundary, a
variant, a typo, a word the description uses), and they need no labelled data: any county's list works as
it is. Only the fallbacks use it (`fallback.py`): a report with no word of the list, or a tie between units.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Collection, Sequence
from operator import itemgetter
from typing import NamedTuple

from schemas.dutylist import Matter
from services.router.text import normalise

# Runs of Han characters, letters and digits: n-grams never cross punctuation or spaces.
_RUNS = re.compile(r"[\u3400-\u9fff\uf900-\ufaffa-z0-9]+")
# Single characters carry much of a short colloquial report (漂, 锯, 欠); bigrams most words; trigrams the
# longer ones. On the tuning part 1–3-grams settled near ties better than 2–3-grams (25 of 29 against 23).
# (`gram_set` makes the same three sizes directly.)
NGRAMS = (1, 2, 3)


class Similar(NamedTuple):
    """One matter's similarity to a text, and the n-grams that weigh most in it."""

    matter: Matter
    score: float
    shared: tuple[str, ...]


def ngrams(text: str) -> Counter[str]:
    """Character 1- to 3-grams of a normalised text, within runs of Han characters, letters and digits."""
    grams: Counter[str] = Counter()
    for run in _RUNS.findall(text):
        size = len(run)
        for n in NGRAMS:
            for i in range(size - n + 1):
                grams[run[i : i + n]] += 1
    return grams


def gram_set(text: str) -> set[str]:
    """The distinct character 1- to 3-grams of a normalised text (as `ngrams`, faster: a report's are few)."""
    grams: set[str] = set()
    for run in _RUNS.findall(text):
        rest = run[1:]
        grams.update(run)
        pairs = list(map(str.__add__, run, rest))
        grams.update(pairs)
        grams.update(map(str.__add__, pairs, run[2:]))
    return grams


def matter_grams(matter: Matter) -> Counter[str]:
    """The n-grams of a matter's own words in the list: name, description, keywords and phrases by weight."""
    grams = ngrams(normalise(matter.name)) + ngrams(normalise(matter.description))
    for word, weight in (*matter.keywords.items(), *matter.phrases.items()):
        for gram, count in ngrams(normalise(word)).items():
            grams[gram] += count * weight  # the list's weight says how much the word speaks for the matter
    return grams


def shared_words(text: str, weights: dict[str, float], most: int = 3) -> tuple[str, ...]:
    """The stretches of a text that its shared n-grams of two characters or more cover, weightiest first.

    Overlapping n-grams join into the words a person reads (防护用品, not 防护用 and 护用品); a stretch weighs
    what its n-grams add up to. With no such stretch, the weightiest single characters.
    """
    spans: list[tuple[float, str]] = []
    for run in _RUNS.findall(text):
        covered = [0.0] * len(run)
        hit = [False] * len(run)
        for n in NGRAMS:
            for i in range(len(run) - n + 1):
                w = weights.get(run[i : i + n], 0.0)
                if w > 0:
                    covered[i] += w
                    if n > 1:
                        hit[i : i + n] = [True] * n
        i = 0
        while i < len(run):
            if not hit[i]:
                i += 1
                continue
            j = i
            while j < len(run) and hit[j]:
                j += 1
            spans.append((sum(covered[i:j]), run[i:j]))
            i = j
    if not spans:
        spans = [(w, g) for g, w in weights.items() if len(g) == 1]
    seen: dict[str, float] = {}
    for w, word in spans:
        seen[word] = max(w, seen.get(word, 0.0))
    return tuple(word for word, _ in sorted(seen.items(), key=lambda item: (-item[1], item[0]))[:most])


class SimilarityIndex:
    """TF-IDF vectors of a list's matters over character n-grams, with postings to compare texts quickly."""

    def __init__(self, matters: Sequence[Matter]) -> None:
        self.matters = tuple(matters)
        self.position = {m.code: i for i, m in enumerate(self.matters)}
        counts = [matter_grams(m) for m in self.matters]
        df: Counter[str] = Counter()
        for c in counts:
            df.update(c.keys())
        n = len(counts)
        # Smoothed IDF: an n-gram in every matter still weighs a little, one in a single matter the most.
        self.idf = {g: math.log((1 + n) / (1 + d)) + 1.0 for g, d in df.items()}
        self.vectors: list[dict[str, float]] = []
        postings: dict[str, list[tuple[int, float]]] = {}
        for i, c in enumerate(counts):
            vector = {g: (1.0 + math.log(k)) * self.idf[g] for g, k in c.items()}  # sublinear: a long list of
            norm = math.sqrt(sum(w * w for w in vector.values())) or 1.0  # words does not drown the name
            unit = {g: w / norm for g, w in vector.items()}
            self.vectors.append(unit)
            for g, w in unit.items():
                postings.setdefault(g, []).append((i, w))
        # The text's side of each product is the n-gram's IDF: folded in here, once per list.
        self.postings = {g: tuple((i, self.idf[g] * w) for i, w in p) for g, p in postings.items()}
        self.primaries = tuple(m.primary for m in self.matters)
        self.codes = tuple(m.code for m in self.matters)

    def query(self, text: str) -> dict[str, float]:
        """A normalised text's unit TF-IDF vector over the list's n-grams (each n-gram once: reports are short)."""
        idf = self.idf
        vector = {g: idf[g] for g in gram_set(text) & idf.keys()}
        norm = math.sqrt(sum([w * w for w in vector.values()])) or 1.0
        return {g: w / norm for g, w in vector.items()}

    def _totals(self, text: str, among: Collection[int] | None) -> dict[int, float]:
        """Cosine similarity of a text to each matter sharing an n-gram with it (those in `among` if given)."""
        idf = self.idf
        grams = gram_set(text) & idf.keys()
        if not grams:
            return {}
        # The text's vector is its n-grams' IDFs; its norm divides every total once, at the end.
        scale = 1.0 / math.sqrt(sum([idf[g] * idf[g] for g in grams]))
        totals: dict[int, float] = {}
        if among is not None:  # a few candidates (a tie): the n-grams each shares with the text
            for i in sorted(among):
                vector = self.vectors[i]
                shared = grams & vector.keys()
                if shared:
                    totals[i] = sum([idf[g] * vector[g] for g in shared]) * scale
            return totals
        sums = [0.0] * len(self.matters)  # every matter: through the postings of the text's n-grams
        postings = self.postings
        for g in grams:
            for i, w in postings[g]:
                sums[i] += w
        return {i: t * scale for i, t in enumerate(sums) if t > 0}

    def rank(self, text: str, among: Collection[int] | None = None) -> tuple[Similar, ...]:
        """Matters by cosine similarity to a normalised text, best first; only those indexed in `among` if given.

        Ties keep the list's order; matters sharing no n-gram with the text are left out.
        """
        totals = self._totals(text, among)
        return tuple(Similar(self.matters[i], totals[i], ()) for i in sorted(totals, key=lambda i: (-totals[i], i)))

    def contest(
        self, text: str, among: Collection[int] | None = None, excluded: Collection[str] = ()
    ) -> tuple[Similar, Similar | None] | None:
        """The most similar matter and the most similar one of another primary unit (its rival), if any.

        Only matters indexed in `among` when given, never one whose code is in `excluded`; as `rank`, without
        ranking every matter (this runs for every wordless report).
        """
        totals = self._totals(text, among)
        # Best first; sorting is stable and the totals are in the list's order, so ties keep it.
        order = sorted(totals.items(), key=itemgetter(1), reverse=True)
        if excluded:
            order = [(i, t) for i, t in order if self.codes[i] not in excluded]
        if not order:
            return None
        best, score = order[0]
        primaries = self.primaries
        rival = next(((i, t) for i, t in order if primaries[i] != primaries[best]), None)
        return (
            Similar(self.matters[best], score, ()),
            None if rival is None else Similar(self.matters[rival[0]], rival[1], ()),
        )

    def explain(self, text: str, similar: Similar, most: int = 3) -> Similar:
        """The same similarity with the n-grams that weigh most in it (for the reason shown to people)."""
        query = self.query(text)
        vector = self.vectors[self.position[similar.matter.code]]
        weights = {g: q * vector[g] for g, q in query.items() if g in vector}
        return similar._replace(shared=shared_words(text, weights, most))
