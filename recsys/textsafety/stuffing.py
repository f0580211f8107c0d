"""Keyword stuffing: repeated terms in item text, capped before it is embedded or matched.

A description that repeats a query's keywords ("funny family mishaps funny family
mishaps …") pulls its mean-pooled embedding towards those words and looks more relevant
to any ranker that counts terms. :func:`destuff` keeps at most ``max_repeats``
occurrences of each content word (case-insensitive; words of 3+ letters that are not
stop words) and drops the punctuation left dangling, so ordinary prose — where a
content word rarely appears three times in a few hundred characters — comes back
unchanged. :func:`stuffing_ratio` is the share of
content words it removed: a high ratio marks the text as stuffed (the reranker then lets
no LLM decision move that item up).
"""

from __future__ import annotations

import re
from collections import Counter

__all__ = ["MAX_REPEATS", "STUFFED_RATIO", "destuff", "stuffing_ratio"]

#: Occurrences of one content word kept by default.
MAX_REPEATS = 2
#: Share of content words removed by :func:`destuff` from which a text counts as stuffed.
STUFFED_RATIO = 0.25

_TOKEN = re.compile(r"\w+|[^\w\s]+|\s+")
_STOP = frozenset(
    [
        "the",
        "and",
        "for",
        "with",
        "from",
        "that",
        "this",
        "but",
        "not",
        "are",
        "was",
        "were",
        "you",
        "your",
        "his",
        "her",
        "its",
        "their",
        "our",
        "who",
        "what",
        "when",
        "where",
        "which",
        "while",
        "about",
        "into",
        "over",
        "than",
        "then",
        "them",
        "they",
        "she",
        "him",
        "has",
        "have",
        "had",
        "all",
        "any",
        "can",
        "will",
        "just",
        "one",
        "out",
        "les",
        "des",
        "une",
        "der",
        "die",
        "das",
        "und",
        "den",
        "los",
        "las",
        "del",
        "una",
    ]
)


def _content(word: str) -> bool:
    return len(word) >= 3 and word.isalpha() and word.lower() not in _STOP


def destuff(text: str, max_repeats: int = MAX_REPEATS) -> str:
    """``text`` with each content word kept at most ``max_repeats`` times."""
    if not text or len(text) < 40:
        return text
    tokens = _TOKEN.findall(text)
    words = [t.lower() for t in tokens if t[:1].isalnum() or t[:1] == "_"]
    counts = Counter(w for w in words if _content(w))
    if not counts or max(counts.values()) <= max_repeats:
        return text
    seen: Counter[str] = Counter()
    kept: list[str] = []
    for token in tokens:
        low = token.lower()
        if _content(token):
            seen[low] += 1
            if seen[low] > max_repeats:
                continue
        kept.append(token)
    out = "".join(kept)
    out = re.sub(r"\s+([,;:!?.])", r"\1", out)  # "word , , ," → "word,,,"
    out = re.sub(r"([,;:])(?:\s*[,;:!?])+", r"\1", out)  # runs of separators → one
    out = re.sub(r"(?:^|(?<=[.!?]))\s*[,;:!?.]+", "", out)  # a sentence of punctuation
    return " ".join(out.split())


def stuffing_ratio(text: str, max_repeats: int = MAX_REPEATS) -> float:
    """Share of the content words of ``text`` that :func:`destuff` removes."""
    if not text:
        return 0.0
    words = [w.lower() for w in re.findall(r"\w+", text) if _content(w)]
    if not words:
        return 0.0
    counts = Counter(words)
    removed = sum(max(0, n - max_repeats) for n in counts.values())
    return removed / len(words)
