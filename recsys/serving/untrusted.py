"""Turning untrusted text (queries, history titles, item text) into prompt data.

Every such text passes through the same two steps before it is quoted into a prompt:
PII redaction (:mod:`recsys.serving.pii`) and the injection guard
(:mod:`recsys.serving.guard`), which drops instruction-like sentences. Callers record
whether the guard flagged anything (``injection_flagged`` on ``rec.llm-log``).
"""

from __future__ import annotations

from dataclasses import dataclass

from recsys.serving.guard import InjectionGuard
from recsys.serving.pii import redact

__all__ = ["Sanitised", "sanitise"]


@dataclass(frozen=True)
class Sanitised:
    """Text fit to be quoted as data, and what was done to it."""

    text: str
    flagged: bool = False
    reasons: tuple[str, ...] = ()
    pii: int = 0


def sanitise(text: str | None, guard: InjectionGuard, max_chars: int = 400) -> Sanitised:
    """``text`` redacted, neutralised and cut to ``max_chars`` characters."""
    if not text:
        return Sanitised("")
    redacted = redact(text)
    verdict = guard.scan(redacted.text)
    clean = guard.neutralise(redacted.text) if verdict.flagged else redacted.text
    if len(clean) > max_chars:
        clean = clean[: max_chars - 1].rstrip() + "…"
    return Sanitised(clean, verdict.flagged, tuple(verdict.reasons), sum(redacted.counts.values()))
