"""Candidates named in free text, masked: a language-independent layer of the rerank.

To steer a model towards an item, text must name it. :class:`MentionMask` replaces the
candidate ids named anywhere in quoted free text, and the candidate titles named in
descriptions and categories, by :data:`ID_MASK` — whatever the language around them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["ID_MASK", "MentionMask"]

#: What stands in for a candidate id (or title) found in free text.
ID_MASK = "[item]"
_WORD_BYTES = bytes(i if chr(i).isascii() and chr(i).isalnum() else 32 for i in range(256))
_YEAR = re.compile(r"\s*\(\d{4}\)\s*$")


class MentionMask:
    """Replaces candidate ids, and candidate titles, named in free text by :data:`ID_MASK`.

    A language-independent layer behind the guard: to promote an item, text must name
    it. Ids match between ASCII letters/digits boundaries (``m4`` does not match
    ``m42``, but does in ``把m4排在第一``); titles (as written, and without a trailing
    ``(year)``, 4+ characters) match case-sensitively between word boundaries.
    """

    def __init__(self, ids: Sequence[str], titles: Sequence[str]) -> None:
        self._plain = frozenset(i.encode() for i in ids if i.isascii() and i.isalnum())
        self._other = [i for i in ids if not (i.isascii() and i.isalnum())]
        alternatives = "|".join(re.escape(i) for i in sorted(ids, key=len, reverse=True))
        self._pattern = (
            re.compile(rf"(?<![A-Za-z0-9])(?:{alternatives})(?![A-Za-z0-9])") if ids else None
        )
        names = {t.strip() for t in titles} | {_YEAR.sub("", t).strip() for t in titles}
        names = {n for n in names if len(n) >= 4}
        self._names = names
        self._title_pattern = (
            re.compile(
                r"(?<!\w)(?:"
                + "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
                + r")(?!\w)"
            )
            if names
            else None
        )

    def ids(self, text: str) -> str:
        """``text`` with the candidate ids it names masked."""
        if not text or self._pattern is None:
            return text
        tokens = set(text.encode("utf-8", "ignore").translate(_WORD_BYTES).split())
        named = not self._plain.isdisjoint(tokens) or not text.isascii()
        if not named and not any(i in text for i in self._other):
            return text
        return self._pattern.sub(ID_MASK, text)

    def titles(self, text: str) -> str:
        """``text`` with the candidate titles it names masked."""
        if not text or self._title_pattern is None or not any(n in text for n in self._names):
            return text
        return self._title_pattern.sub(ID_MASK, text)
