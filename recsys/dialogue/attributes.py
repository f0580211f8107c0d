"""The item attributes a clarifying question can ask about, and how well each splits
the current candidates.

An attribute maps an item to zero or more *labels* (the answers a user could give):
``genre`` its categories, ``era`` the decade of its ``year``, ``mood`` its mood (the
catalog's ``mood`` attribute, or the enrichment's mood and mood tags), ``language`` and
``length`` the catalog attributes ``language`` and ``runtime`` (minutes). A catalog
without an attribute is never asked about it: :func:`split` gives it no coverage.

The most informative question is the attribute whose labels, over the candidates, have
the highest entropy (in bits, over the options offered plus "other"), times the share
of candidates that have a label at all — the expected information of the answer if the
user's taste follows the candidates.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from recsys.items.model import ItemRecord

__all__ = [
    "ATTRIBUTES",
    "LANGUAGE_NAMES",
    "LENGTH_LABELS",
    "MOODS",
    "QUESTIONS",
    "Split",
    "attribute_of_key",
    "era_label",
    "era_range",
    "labels",
    "language_label",
    "length_label",
    "length_range",
    "mood_label",
    "split",
]

#: Attributes in the order ties are broken.
ATTRIBUTES = ("genre", "era", "mood", "language", "length")

#: One short question per attribute (options are shown beside it).
QUESTIONS = {
    "genre": "What kind of film are you after?",
    "era": "Older or newer — which era?",
    "mood": "What mood are you in?",
    "language": "Any language preference?",
    "length": "How long should it be?",
}

#: Canonical moods (the enrichment taxonomy's) and the words that name them.
MOODS: dict[str, tuple[str, ...]] = {
    "uplifting": ("uplifting", "feel good", "feelgood", "cheerful", "light hearted", "upbeat"),
    "dark": ("dark", "bleak", "grim", "gritty"),
    "funny": ("funny", "hilarious", "silly"),
    "tense": ("tense", "gripping", "edge of my seat"),
    "cozy": ("cozy", "cosy", "comforting", "comfy"),
    "thoughtful": ("thoughtful", "thought provoking", "deep", "cerebral"),
    "exciting": ("exciting", "thrilling", "action packed", "fast paced"),
    "romantic": ("romantic",),
    "heartwarming": ("heartwarming", "heart warming", "sweet", "touching"),
    "suspenseful": ("suspenseful",),
    "scary": ("scary", "creepy", "spooky", "frightening"),
    "quirky": ("quirky", "weird", "offbeat", "odd"),
}

LANGUAGE_NAMES = {
    "en": "English",
    "fr": "French",
    "es": "Spanish",
    "de": "German",
    "it": "Italian",
    "ja": "Japanese",
    "ko": "Korean",
    "zh": "Chinese",
    "hi": "Hindi",
    "pt": "Portuguese",
    "ru": "Russian",
    "sv": "Swedish",
}

_ERAS: tuple[tuple[str, int | None, int | None], ...] = (
    ("before 1970", None, 1969),
    ("1970s", 1970, 1979),
    ("1980s", 1980, 1989),
    ("1990s", 1990, 1999),
    ("2000s", 2000, 2009),
    ("2010s", 2010, 2019),
    ("2020s", 2020, 2029),
)
_LENGTHS: tuple[tuple[str, int | None, int | None], ...] = (
    ("under 90 min", None, 89),
    ("90-120 min", 90, 120),
    ("over 2 hours", 121, None),
)
#: The length labels, shortest first (what an answer may name).
LENGTH_LABELS: tuple[str, ...] = tuple(label for label, _, _ in _LENGTHS)
_OPTIONS = 4


def attribute_of_key(key: str) -> str:
    """The question attribute of a catalog attribute key (``runtime`` → ``length``)."""
    return "length" if key == "runtime" else key


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    match = re.match(r"\s*(\d{1,4})", text)
    return int(match.group(1)) if match else None


def era_label(year: int) -> str:
    """The era a year falls in."""
    for label, low, high in _ERAS:
        if (low is None or year >= low) and (high is None or year <= high):
            return label
    return f"{year // 10 * 10}s"


def era_range(label: str) -> tuple[int | None, int | None] | None:
    """The years of an era label (None for an unknown label)."""
    for name, low, high in _ERAS:
        if name == label:
            return low, high
    return None


def length_label(minutes: int) -> str:
    """The length bucket of a runtime in minutes."""
    for label, low, high in _LENGTHS:
        if (low is None or minutes >= low) and (high is None or minutes <= high):
            return label
    return _LENGTHS[-1][0]


def length_range(label: str) -> tuple[int | None, int | None] | None:
    """The minutes of a length label (None for an unknown label)."""
    for name, low, high in _LENGTHS:
        if name == label:
            return low, high
    return None


def mood_label(word: str | None) -> str | None:
    """The canonical mood a word names, if any."""
    if not word:
        return None
    text = " ".join(re.findall(r"[a-z]+", word.lower()))
    for mood, aliases in MOODS.items():
        if text == mood or text in aliases:
            return mood
    return None


def language_label(code: str) -> str:
    """A language code as a name (unknown codes as they are)."""
    return LANGUAGE_NAMES.get(code.strip().lower(), code.strip())


def labels(attribute: str, item: ItemRecord) -> list[str]:
    """The answers to ``attribute`` that ``item`` satisfies (empty: the item says nothing)."""
    if attribute == "genre":
        return list(item.categories)
    if attribute == "era":
        year = _int(item.attributes.get("year"))
        return [era_label(year)] if year is not None else []
    if attribute == "mood":
        found = [mood_label(item.attributes.get("mood")), mood_label(item.mood)]
        found += [mood_label(t) for t in item.tags]
        return list(dict.fromkeys(m for m in found if m is not None))
    if attribute == "language":
        code = item.attributes.get("language")
        return [language_label(code)] if code else []
    if attribute == "length":
        minutes = _int(item.attributes.get("runtime"))
        return [length_label(minutes)] if minutes is not None else []
    raise ValueError(f"unknown attribute {attribute!r}")


@dataclass(frozen=True)
class Split:
    """How an attribute divides the candidates."""

    attribute: str
    options: list[str]
    entropy: float  # bits, over the options and "other"
    coverage: float  # share of candidates with at least one label

    @property
    def information(self) -> float:
        """Expected information of asking (entropy weighted by coverage)."""
        return self.entropy * self.coverage


def split(attribute: str, items: Sequence[ItemRecord], exclude: Sequence[str] = ()) -> Split:
    """The options (most common labels, at most four) and the entropy of ``attribute``.

    Each candidate spreads one unit of mass over its labels; ``exclude`` are labels the
    conversation already settled (a wanted genre is no news).
    """
    counts: dict[str, float] = {}
    covered = 0
    banned = {e.casefold() for e in exclude}
    for item in items:
        found = [x for x in labels(attribute, item) if x.casefold() not in banned]
        if not found:
            continue
        covered += 1
        for label in found:
            counts[label] = counts.get(label, 0.0) + 1.0 / len(found)
    if not covered:
        return Split(attribute, [], 0.0, 0.0)
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:_OPTIONS]
    mass = [c for _, c in top]
    other = sum(counts.values()) - sum(mass)
    if other > 1e-9:
        mass.append(other)
    total = sum(mass)
    entropy = -sum((m / total) * math.log2(m / total) for m in mass if m > 0)
    options = [label for label, _ in top]
    if attribute == "era":
        order = [name for name, _, _ in _ERAS]
        options.sort(key=lambda x: order.index(x) if x in order else len(order))
    return Split(attribute, options, entropy, covered / len(items))
