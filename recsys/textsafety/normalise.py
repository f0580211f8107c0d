# ruff: noqa: RUF002  (look-alike letters are the point of this module)
"""Unicode normalisation of untrusted text, before any scan and before any prompt.

Two levels:

* :func:`visible_text` — what a reader sees, and what may reach a prompt: NFKC (full-width
  and mathematical letters, ligatures and circled letters become plain ones), then every
  invisible character removed — format characters (zero-width space/joiners, soft
  hyphen, word joiner, bidi embeddings/overrides/isolates, BOM, invisible operators,
  Unicode *tag* characters that can smuggle ASCII), variation selectors and the Hangul
  fillers. "ig\\u200bnore" and "𝐢𝐠𝐧𝐨𝐫𝐞" both read "ignore".
* :func:`scan_variants` — extra readings for pattern scans only (never shown to a model):
  look-alike Cyrillic/Greek letters inside Latin words mapped to Latin ("іgnore" with a
  Cyrillic і), digits and symbols in words that read as letters ("1gn0r3", "rule$"),
  letters spelled apart ("i g n o r e", "r-a-n-k", "I.g.n.o.r.e"), words split by
  hyphens ("ig-nore"), and misspelled instruction words corrected to the nearest
  keyword ("ignroe", "previus", "frist" — one edit, two for words of 9+ letters).

Each is cheap: ASCII text without digits or hyphens has no variants to make.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

__all__ = ["INVISIBLE", "KEYWORDS", "is_invisible", "scan_variants", "visible_text"]


def is_invisible(ch: str) -> bool:
    """True for characters that render as nothing (or only steer rendering)."""
    cp = ord(ch)
    return (
        unicodedata.category(ch) == "Cf"
        or 0xFE00 <= cp <= 0xFE0F  # variation selectors
        or 0xE0100 <= cp <= 0xE01EF
        or cp in (0x115F, 0x1160, 0x3164, 0xFFA0, 0x034F)  # Hangul fillers, CGJ
    )


#: ``str.translate`` table deleting every invisible character of the BMP and the tags.
INVISIBLE: dict[int, None] = {
    cp: None
    for cp in [*range(0x10000), *range(0xE0000, 0xE0080), *range(0xE0100, 0xE01F0)]
    if is_invisible(chr(cp))
}


def visible_text(text: str) -> str:
    """NFKC with every invisible character removed (what may reach a prompt)."""
    if not text:
        return text
    if text.isascii():
        return text
    out = unicodedata.normalize("NFKC", text).translate(INVISIBLE)
    if not out.isascii():  # characters beyond the table's planes (rare): check one by one
        out = "".join(ch for ch in out if ord(ch) < 0x10000 or not is_invisible(ch))
    return out


# ---- scan variants ------------------------------------------------------------------
# Cyrillic and Greek letters that look like Latin ones (the common confusables).
_LOOKALIKE = str.maketrans(
    "аеорсухіјѕԁɡһԛԝаАВЕКМНОРСТХІЈЅԌαοτνρκιΑΒΕΗΙΚΜΝΟΡΤΧΥΖ",
    "aeopcyxijsdghqwaABEKMHOPCTXIJSGaotvpkiABEHIKMNOPTXYZ",
)
_LATIN = re.compile(r"[a-z]", re.I)
_MIXED = re.compile(r"\w*[a-z]\w*", re.I)
_LEET = str.maketrans("0134578@$!|", "oieastbasil")
_LEET_WORD = re.compile(r"(?<!\S)[\w@$!|]*[a-z][\w@$!|]*(?!\S)|(?<!\S)[@$][\w@$!|]+", re.I)
_SPELLED = re.compile(r"(?<!\w)\w([ .\-_*])(?:\w\1){1,}\w(?!\w)")
_HYPHENATED = re.compile(r"(?<=[a-z])-(?=[a-z])", re.I)
_WORD = re.compile(r"[a-z]+")

#: Words whose misspellings :func:`scan_variants` corrects (the instruction vocabulary of
#: :mod:`recsys.serving.guard_rules`; other words are never changed).
KEYWORDS = frozenset(
    [
        "ignore",
        "disregard",
        "forget",
        "previous",
        "prior",
        "instructions",
        "instruction",
        "rules",
        "system",
        "prompt",
        "override",
        "rank",
        "first",
        "recommend",
        "always",
        "promote",
        "assistant",
        "pretend",
        "above",
        "everything",
        "number",
        "highest",
        "return",
        "output",
        "respond",
        "reveal",
        "developer",
        "jailbreak",
        "guidelines",
    ]
)


def _osa(a: str, b: str, limit: int) -> int:
    """Optimal-string-alignment distance (transpositions count one), capped at limit+1."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = 0 if ca == cb else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[-1]


@lru_cache(maxsize=65_536)
def _corrected(word: str) -> str:
    """The keyword ``word`` is a misspelling of, or ``word`` itself."""
    if len(word) < 4 or word in KEYWORDS or any(word.startswith(k) for k in KEYWORDS):
        return word  # inflections ("recommends", "ranked") are the rules' business
    limit = 1 if len(word) <= 8 else 2
    best, best_d = word, limit + 1
    for keyword in KEYWORDS:
        if keyword[0] != word[0] and keyword[-1] != word[-1]:
            continue
        d = _osa(word, keyword, limit)
        if d < best_d:
            best, best_d = keyword, d
    return best


def _lookalikes(text: str) -> str:
    def fix(match: re.Match[str]) -> str:
        word = match.group(0)
        return word.translate(_LOOKALIKE) if not word.isascii() else word

    return _MIXED.sub(fix, text) if _LATIN.search(text) else text


def _spelled(match: re.Match[str]) -> str:
    return match.group(0).replace(match.group(1), "")


def scan_variants(text: str) -> list[tuple[str, str]]:
    """Other readings ``(kind, text)`` of already case-folded, visible ``text``.

    Kinds, each applied on top of the previous ones: ``lookalike``, ``leet``, ``spelled``
    (letters spelled apart or split by hyphens), ``misspelled``. Empty when none differs.
    """
    out: list[tuple[str, str]] = []
    base = _lookalikes(text) if not text.isascii() else text
    if base != text:
        out.append(("lookalike", base))
    if any(c in base for c in "0134578@$!|"):
        leet = _LEET_WORD.sub(lambda m: m.group(0).translate(_LEET), base)
        if leet != base:
            out.append(("leet", leet))
            base = leet
    joined = _HYPHENATED.sub("", _SPELLED.sub(_spelled, base))
    if joined != base:
        out.append(("spelled", joined))
        base = joined
    fixed = _WORD.sub(lambda m: _corrected(m.group(0)), base)
    if fixed != base:
        out.append(("misspelled", fixed))
    return out
