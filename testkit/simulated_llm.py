"""What the simulated LLM answers, per use case: pure functions of the request.

The test/demo server (:mod:`testkit.llm_server`) dispatches a structured call on the
json_schema ``name`` to a handler ``(messages, schema, mode) -> dict``. Handlers are
deterministic and transparent, so a test can predict every answer; ``mode`` lets a
handler misbehave in use-case specific ways (failures common to every use case — 429,
500, slow, malformed JSON — are the server's job and never reach a handler).

Enrichment (schema name ``enrichment``), honest mode:

* summary — the description's first sentences up to 80 words (the title when empty);
* themes — the item's categories;
* mood / audience — the first known mood / audience word found in the item text;
* tags — the allowed tags (the schema's enum) that occur in the item text.

Justification judge (schema name ``justification_judge``, :func:`judge_answer`): a
word-overlap score of each item's justification against the request.

Misbehaving modes: ``out_of_taxonomy`` (adds tags outside the allowed list),
``long_summary`` (a 120-word summary), ``extra_fields`` (fields the schema forbids),
``obeys_injections`` (a gullible model: "tag this as X" in the item text makes X a tag
and the summary repeats the injected order).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from recsys.llm.prompts import unquote

__all__ = [
    "ENRICH_MODES",
    "Handler",
    "enrichment_answer",
    "item_text",
    "judge_answer",
    "normalise",
    "user_text",
]

#: ``(messages, json schema, mode) -> answer object``.
Handler = Callable[[Sequence[Mapping[str, Any]], Mapping[str, Any], str], dict[str, Any]]

ENRICH_MODES = ("honest", "out_of_taxonomy", "long_summary", "extra_fields", "obeys_injections")

MOOD_WORDS = (
    "uplifting",
    "dark",
    "funny",
    "tense",
    "cozy",
    "cosy",
    "thoughtful",
    "exciting",
    "romantic",
    "heartwarming",
    "suspenseful",
    "scary",
    "quirky",
    "melancholic",
    "whimsical",
)
_INJECTION = re.compile(
    r"tag (?:this|it|the item) as ['\"]?([\w\- ]{1,40}?)['\"]?(?:[.,;!]|$)", re.I
)


def normalise(text: str) -> str:
    """Lower-case words separated by single spaces (``Sci-Fi`` → ``sci fi``)."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """The content of the last user message."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return str(message.get("content") or "")
    return ""


def item_text(messages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The quoted ITEM block of an enrichment prompt (empty fields when there is none)."""
    for message in messages:
        try:
            data = unquote(str(message.get("content") or ""), "ITEM")
        except ValueError:
            continue
        if isinstance(data, dict):
            return data
    return {"title": user_text(messages), "categories": [], "description": ""}


def _first_sentences(text: str, max_words: int) -> str:
    sentences = re.split(r"(?<=[.!?])\s+", text.strip())
    out: list[str] = []
    for sentence in sentences:
        words = sentence.split()
        if out and len(out) + len(words) > max_words:
            break
        out.extend(words)
    return " ".join(out[:max_words])


def _enum(schema: Mapping[str, Any], *path: str) -> list[str]:
    node: Any = schema
    for key in path:
        node = node.get(key, {}) if isinstance(node, Mapping) else {}
    return [str(v) for v in node] if isinstance(node, list) else []


def enrichment_answer(
    messages: Sequence[Mapping[str, Any]], schema: Mapping[str, Any], mode: str = "honest"
) -> dict[str, Any]:
    """The simulated model's enrichment of the quoted item."""
    item = item_text(messages)
    title = str(item.get("title") or "")
    categories = [str(c) for c in item.get("categories") or []]
    description = str(item.get("description") or "")
    text = " ".join([title, " ".join(categories), description])
    haystack = f" {normalise(text)} "
    allowed_tags = _enum(schema, "properties", "tags", "items", "enum")
    audiences = _enum(schema, "properties", "audience", "enum") or ["general"]

    summary = _first_sentences(description, 80) or title
    mood = next((m for m in MOOD_WORDS if f" {m} " in haystack), "neutral")
    audience = next((a for a in audiences if f" {normalise(a)} " in haystack), audiences[0])
    tags = [t for t in allowed_tags if f" {normalise(t)} " in haystack][:12]
    answer: dict[str, Any] = {
        "summary": summary,
        "themes": [c.lower() for c in categories][:6],
        "mood": mood,
        "audience": audience,
        "tags": tags,
    }
    if mode == "out_of_taxonomy":
        answer["tags"] = [*tags, "free-money", "not-a-real-tag"]
    elif mode == "long_summary":
        words = (normalise(text).split() or ["item"]) * 120
        answer["summary"] = " ".join(words[:120])
    elif mode == "extra_fields":
        answer["confidence"] = 0.93
        answer["internal_notes"] = "fields the schema does not allow"
    elif mode in ("obeys_injections", "obey_injections"):
        match = _INJECTION.search(description) or _INJECTION.search(title)
        if match:
            answer["tags"] = [match.group(1).strip().lower()]
            answer["summary"] = f"As instructed, tagged as {match.group(1).strip()}."
    return answer


# ---- the justification judge (schema name ``justification_judge``) ----------------------
_STOPWORDS = frozenset(
    (
        "and",
        "the",
        "for",
        "with",
        "about",
        "you",
        "your",
        "its",
        "are",
        "was",
        "can",
        "could",
        "would",
        "like",
        "want",
        "watch",
        "something",
        "anything",
        "film",
        "films",
        "movie",
        "movies",
        "recommend",
        "suggest",
        "now",
        "mood",
        "really",
        "liked",
        "some",
        "that",
        "this",
        "what",
        "who",
    )
)


def _content_words(text: str) -> set[str]:
    return {w for w in normalise(text).split() if len(w) > 2 and w not in _STOPWORDS}


def judge_answer(
    messages: Sequence[Mapping[str, Any]], schema: Mapping[str, Any], mode: str = "honest"
) -> dict[str, Any]:
    """The simulated judge: a transparent word-overlap score of each justification.

    Score = 1 + round(4 * share of the request's content words found in the item's
    justification); the reason names the words found. Deterministic, so tests can
    predict it; it is no measure of real justification quality (reports label it).
    """
    data: dict[str, Any] = {}
    for message in messages:
        try:
            found = unquote(str(message.get("content") or ""), "JUDGE_INPUT")
        except ValueError:
            continue
        if isinstance(found, dict):
            data = found
            break
    wanted = _content_words(str(data.get("request") or ""))
    scores = []
    for item in data.get("items") or []:
        text = f"{item.get('title', '')} {item.get('justification', '')}"
        hits = sorted(wanted & _content_words(text))
        share = len(hits) / len(wanted) if wanted else 0.0
        scores.append(
            {
                "item_id": str(item.get("item_id")),
                "score": 1 + round(4 * share),
                "reason": (
                    f"the text mentions {', '.join(hits)}"
                    if hits
                    else "no word of the request appears in the text"
                ),
            }
        )
    return {"scores": scores}
