"""PII redaction: nothing a user or an upstream catalog typed that identifies a person
reaches an LLM prompt.

Emails, phone numbers (international ``+CC …`` and local formats such as
``(555) 123-4567``, ``555-123-4567``, ``020 7946 0958``, ``06 12 34 56 78``) and
payment card numbers (13 to 19 digits, optionally spaced or dashed, Luhn-checked) are
replaced by ``[EMAIL]``, ``[PHONE]`` and ``[CARD]``. The rules are deliberately
conservative about numbers: years (``1995``, ``1980-1990``), prices (``$12.99``), dates
and item ids (``m123``) are left alone — a phone needs at least 9 digits in separated
groups, or a ``+`` prefix, or the ``123-4567`` local shape.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["PLACEHOLDERS", "Redacted", "luhn_ok", "redact"]

PLACEHOLDERS = {"email": "[EMAIL]", "phone": "[PHONE]", "card": "[CARD]"}

_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
)
# 13-19 digits, single spaces or dashes allowed between them
_CARD = re.compile(r"(?<![\w+])\d(?:[ -]?\d){12,18}(?![\w])")
_PHONE_INTL = re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,5}\)?){2,6}(?![\w])")
_PHONE_LOCAL = re.compile(
    r"(?<![\w+$€£.,])(?:\(\d{2,5}\)[ .-]?)?\d{2,5}(?:[ .-]\d{2,8}){1,4}(?![\w]|[.,]\d)"
)
_DIGIT = re.compile(r"\d")
_NOT_DIGITS = bytes(i for i in range(256) if not 48 <= i <= 57)
_PHONE_SHORT = re.compile(r"(?<![\w+$€£.,-])\d{3}-\d{4}(?![\w-])")


@dataclass(frozen=True)
class Redacted:
    """Text with PII replaced, and how many of each kind were found."""

    text: str
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        """True when anything was redacted."""
        return any(self.counts.values())


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _is_year_run(text: str) -> bool:
    """``1980 1990`` or ``1990-1999``: groups that are all plausible years."""
    groups = re.findall(r"\d+", text)
    return all(len(g) == 4 and 1800 <= int(g) <= 2099 for g in groups)


def _card(match: re.Match[str], counts: Counter[str]) -> str:
    digits = _digits(match.group(0))
    if 13 <= len(digits) <= 19 and luhn_ok(digits):
        counts["card"] += 1
        return PLACEHOLDERS["card"]
    return match.group(0)


def _phone(match: re.Match[str], counts: Counter[str], min_digits: int) -> str:
    text = match.group(0)
    digits = _digits(text)
    if not min_digits <= len(digits) <= 15 or _is_year_run(text):
        return text
    counts["phone"] += 1
    return PLACEHOLDERS["phone"]


def redact(text: str) -> Redacted:
    """``text`` with emails, phone numbers and card numbers replaced by placeholders."""
    if not text:
        return Redacted(text, {})
    if "@" not in text and not _DIGIT.search(text):  # the common case: nothing to look at
        return Redacted(text, {})
    counts: Counter[str] = Counter()

    def email(match: re.Match[str]) -> str:
        counts["email"] += 1
        return PLACEHOLDERS["email"]

    out = _EMAIL.sub(email, text) if "@" in text else text
    # cheap prefilters: most text has too few digits to hold a card or a phone number
    # (\d also matches other scripts' digits: no shortcut for non-ASCII text)
    ascii_digits = len(out.encode().translate(None, _NOT_DIGITS)) if out.isascii() else None
    digits = len(out) if ascii_digits is None else ascii_digits
    if digits >= 13:
        out = _CARD.sub(lambda m: _card(m, counts), out)
    if digits >= 8 and "+" in out:
        out = _PHONE_INTL.sub(lambda m: _phone(m, counts, 8), out)
    if digits >= 9:
        out = _PHONE_LOCAL.sub(lambda m: _phone(m, counts, 9), out)
    if digits >= 7 and "-" in out:
        out = _PHONE_SHORT.sub(lambda m: _phone(m, counts, 7), out)
    return Redacted(out, {k: v for k, v in counts.items() if v})
