"""Text signatures of reports for merging: what happened, as character bigrams; pure."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

SEPARATOR = "|"
# Long reports are mostly narrative; the first sentences name the incident.
MAX_SIGNATURE_CHARS = 200
_NOT_CJK = re.compile(r"[^\u4e00-\u9fff]+")
# A channel's tag in front of a title: "[投诉] ", "[网格 PA-CG-01-001] ", "[110 燃气泄漏] ".
_TITLE_TAG = re.compile(r"^\s*\[[^\]]*\]\s*")


@dataclass(frozen=True)
class TextRules:
    """Canonical words, reporting phrases and place patterns that shape a signature."""

    canonical: tuple[tuple[str, str], ...]  # (variant, canonical word), longest variant first
    reporting_phrases: tuple[str, ...]  # longest first
    place_words: tuple[str, ...]  # longest first
    place_patterns: tuple[re.Pattern[str], ...]

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> TextRules:
        """Rules from the JSON shape of services/router/data/merging_text.json."""
        canonical_map = data["canonical"]
        phrases = data["reporting_phrases"]
        place_words = data["place_words"]
        patterns = data["place_patterns"]
        assert isinstance(canonical_map, dict)
        assert isinstance(phrases, list) and isinstance(place_words, list) and isinstance(patterns, list)
        pairs = [(variant, word) for word, variants in canonical_map.items() for variant in variants]
        return cls(
            canonical=tuple(sorted(pairs, key=lambda p: -len(p[0]))),
            reporting_phrases=tuple(sorted(phrases, key=len, reverse=True)),
            place_words=tuple(sorted(place_words, key=len, reverse=True)),
            place_patterns=tuple(re.compile(p) for p in patterns),
        )

    @classmethod
    def load(cls, path: Path | None = None) -> TextRules:
        """The rules in a JSON file; the packaged ones when no path is given."""
        if path is None:
            text = resources.files("services.router").joinpath("data/merging_text.json").read_text("utf-8")
        else:
            text = path.read_text("utf-8")
        return cls.from_dict(json.loads(text))


def _replace_all(text: str, needles: Iterable[str], by: str) -> str:
    # Most needles are absent: a set lookup of their first character skips them before str.replace scans.
    chars = set(text)
    for needle in needles:
        if needle and needle[0] in chars:
            replaced = text.replace(needle, by)
            if replaced is not text:
                text = replaced
                chars.update(by)
    return text


def signature_text(title: str, description: str, places: Iterable[str | None], rules: TextRules) -> str:
    """The report's words about what happened: canonical words, no place words, no reporting phrases."""
    headline = _TITLE_TAG.sub("", title)
    # Titles are usually the description's first line; counting it twice would weigh it double.
    text = description if headline in description else f"{headline}{SEPARATOR}{description}"
    text = unicodedata.normalize("NFKC", text)
    # Place is judged by grid, distance and address; in the text it would make every report of a building alike.
    text = _replace_all(text, sorted((p for p in places if p), key=len, reverse=True), SEPARATOR)
    for pattern in rules.place_patterns:
        text = pattern.sub(SEPARATOR, text)
    text = _replace_all(text, rules.place_words, SEPARATOR)
    chars = set(text)
    for variant, word in rules.canonical:
        if variant[0] in chars and variant in text:
            text = text.replace(variant, f"{SEPARATOR}{word}{SEPARATOR}")
            chars.update(word)
    text = _replace_all(text, rules.reporting_phrases, SEPARATOR)
    # Keep Chinese only: digits, codes, phone numbers and punctuation say nothing about the incident's kind.
    parts = [p for p in _NOT_CJK.split(text) if p]
    return SEPARATOR.join(parts)[:MAX_SIGNATURE_CHARS]


@lru_cache(maxsize=8192)
def bigrams(signature: str) -> frozenset[str]:
    """Character bigrams of a signature, never across a separator (a lone character says too little)."""
    grams: set[str] = set()
    for part in signature.split(SEPARATOR):
        grams.update(part[i : i + 2] for i in range(len(part) - 1))
    return frozenset(grams)


def dice(a: frozenset[str], b: frozenset[str]) -> float:
    """Dice coefficient of two bigram sets (0 when either is empty)."""
    if not a or not b:
        return 0.0
    return 2 * len(a & b) / (len(a) + len(b))


def common_words(signature: str, shared: frozenset[str], limit: int = 5) -> list[str]:
    """Runs of the signature made of shared bigrams, longest first: the words two reports have in common."""
    runs: list[str] = []
    for part in signature.split(SEPARATOR):
        start = None
        for i in range(len(part) - 1):
            if part[i : i + 2] in shared:
                start = i if start is None else start
                continue
            if start is not None:
                runs.append(part[start : i + 1])
                start = None
        if start is not None:
            runs.append(part[start:])
    unique = list(dict.fromkeys(runs))
    return sorted(unique, key=len, reverse=True)[:limit]
