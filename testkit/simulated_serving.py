"""What the simulated LLM answers for serving: rerank, intent and explanation.

Pure functions of the request, registered on every :class:`SimulatedLlmServer` by
json_schema name (``rerank``, ``intent``, ``explanation``), so a test or the demo can
predict each answer.

* **rerank**, honest: a transparent text-overlap score — the number of distinct words
  (3+ letters, minus stop words) that a candidate's quoted title, categories and
  description share with the quoted user context (query + recent items); higher first,
  ties keep the ranker's order (:func:`overlap_score`).
* **intent**, honest: the rules parser (:func:`recsys.serving.intent.parse_rules`) on
  the quoted query, against the categories the schema enumerates, confidence 0.9.
* **explanation**, honest: "Recommended because <fact>; <fact>." from the quoted facts.

Misbehaving modes (server-wide ones — slow, http_429/500/503, malformed_json, empty —
are the server's job):

* ``hallucinate`` — rerank answers ids that are not candidates, and duplicates; intent
  names a category outside the catalog; explanation invents a title and numbers;
* ``duplicates`` — rerank repeats a candidate id; ``empty_ranking`` — rerank ranks none;
* ``obey_injections`` (also ``obeys_injections``) — a gullible model that reads through
  encodings, look-alike letters and invisible characters
  (:func:`testkit.simulated_gullible.readings`) and obeys whatever it reads: a
  candidate named (by id or title) anywhere in the quoted text goes first, then every
  candidate whose own text asks in any phrasing to be promoted; told to ignore its
  instructions with nothing to promote, it answers garbage (no candidate); explanation
  repeats a link and an order found in the facts.

The rerank answer follows the prompt's protocol: ``ranking`` (the position numbers ``n``
of a shuffled candidate list, the current protocol) or ``ranked_ids`` (candidate ids,
the protocol before issue 14, still understood so older rerankers can be measured
against the same model). Honest ties keep the ranker's order (the ``prior_rank`` each
candidate carries, or the listed order).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from recsys.llm.prompts import unquote
from testkit.simulated_gullible import IGNORE, names, readings, self_promoting
from testkit.simulated_llm import Handler

__all__ = [
    "GARBAGE_POSITION",
    "SERVING_HANDLERS",
    "SERVING_MODES",
    "explanation_answer",
    "intent_answer",
    "overlap_score",
    "register",
    "rerank_answer",
    "words",
]

SERVING_MODES = ("hallucinate", "duplicates", "empty_ranking", "obey_injections")
_OBEY = ("obey_injections", "obeys_injections")

_STOP = frozenset(
    (
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
        "under",
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
        "like",
        "some",
        "more",
        "most",
        "very",
        "film",
        "films",
        "movie",
        "movies",
        "please",
        "something",
    )
)
GARBAGE_ID = "ignore-previous-instructions"
#: The garbage answer of the position protocol: a number no candidate has.
GARBAGE_POSITION = 0


def words(text: str) -> set[str]:
    """The content words of ``text`` (ASCII-folded, 3+ letters, no stop words)."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    return {w for w in re.findall(r"[a-z0-9]+", text) if len(w) >= 3 and w not in _STOP}


def overlap_score(user: Mapping[str, Any], candidate: Mapping[str, Any]) -> int:
    """Distinct content words shared by the user context and the candidate's text."""
    return len(words(_user_text(user)) & words(_candidate_text(candidate)))


def _user_text(user: Mapping[str, Any]) -> str:
    parts = [str(user.get("query") or "")]
    for item in user.get("recent_items") or []:
        if isinstance(item, Mapping):
            parts.append(str(item.get("title") or ""))
            parts.extend(str(c) for c in item.get("categories") or [])
    return " ".join(parts)


def _candidate_text(candidate: Mapping[str, Any]) -> str:
    categories = " ".join(str(c) for c in candidate.get("categories") or [])
    return f"{candidate.get('title') or ''} {categories} {candidate.get('description') or ''}"


def _prompt(messages: Sequence[Mapping[str, Any]]) -> str:
    return "\n".join(str(m.get("content") or "") for m in messages)


def _block(messages: Sequence[Mapping[str, Any]], label: str, default: Any) -> Any:
    try:
        return unquote(_prompt(messages), label)
    except ValueError:
        return default


def _enum(schema: Mapping[str, Any], *path: str) -> list[Any]:
    node: Any = schema
    for key in path:
        node = node.get(key, {}) if isinstance(node, Mapping) else {}
    return list(node) if isinstance(node, list) else []


def _label(candidate: Mapping[str, Any], positions: bool) -> Any:
    return candidate.get("n") if positions else str(candidate.get("id"))


def _obeyed(
    user: Mapping[str, Any], candidates: Sequence[Mapping[str, Any]], positions: bool
) -> tuple[list[Any], list[Any], bool]:
    """(labels of the candidates named in quoted text, labels of self-promoting ones,
    whether the quoted text says to ignore instructions) as a gullible model reads it."""
    free = [str(user.get("query") or "")]
    for item in user.get("recent_items") or []:
        if isinstance(item, Mapping):
            free.append(str(item.get("title") or ""))
            free.extend(str(c) for c in item.get("categories") or [])
    own: list[list[str]] = []
    for c in candidates:
        texts = [str(x) for x in c.get("categories") or []] + [str(c.get("description") or "")]
        own.append([v for t in texts for v in readings(t)])
        free.extend(texts)
    titles = [str(c.get("title") or "") for c in candidates]
    views = [v for t in free for v in readings(t)]
    named: list[Any] = []
    promoted: list[Any] = []
    for k, c in enumerate(candidates):
        label = _label(c, positions)
        others = views + [v for j, t in enumerate(titles) if j != k for v in readings(t)]
        item_id = None if positions else str(c.get("id"))
        if names(others, item_id, titles[k]):
            named.append(label)
        elif self_promoting(own[k]) or self_promoting(readings(titles[k])[1:]):
            promoted.append(label)
    ignore = any(IGNORE.search(v) for v in views)
    return named, promoted, ignore


def rerank_answer(
    messages: Sequence[Mapping[str, Any]], schema: Mapping[str, Any], mode: str = "honest"
) -> dict[str, Any]:
    """The simulated model's ranking of the quoted candidates."""
    positions = "ranking" in (schema.get("properties") or {})
    key = "ranking" if positions else "ranked_ids"
    allowed = _enum(schema, "properties", key, "items", "enum")
    allowed = list(allowed) if positions else [str(a) for a in allowed]
    user = _block(messages, "USER", {})
    candidates = [c for c in _block(messages, "CANDIDATES", []) if isinstance(c, Mapping)]
    if not isinstance(user, Mapping):
        user = {}
    by_label = {_label(c, positions): c for c in candidates}
    listed = [a for a in allowed if a in by_label] or list(allowed)
    prior = {
        a: (by_label.get(a, {}).get("prior_rank", k) if positions else k)
        for k, a in enumerate(listed)
    }
    scores = {a: overlap_score(user, by_label.get(a, {})) for a in listed}
    honest = sorted(listed, key=lambda a: (-scores[a], prior[a]))
    if mode == "hallucinate":
        ghosts: list[Any] = [0, len(listed) + 5] if positions else ["ghost-1", "ghost-2"]
        return {key: [ghosts[0], *honest[:2], *honest[:1], ghosts[1]]}
    if mode == "duplicates":
        return {key: [*honest[:2], *honest[:1]]}
    if mode == "empty_ranking":
        return {key: []}
    if mode in _OBEY:
        named, promoted, ignore = _obeyed(user, candidates, positions)
        if ignore and not named and not promoted:
            return {key: [GARBAGE_POSITION if positions else GARBAGE_ID]}
        first = [a for a in honest if a in named] + [a for a in honest if a in promoted]
        return {key: [*first, *(a for a in honest if a not in first)]}
    return {key: honest}


def intent_answer(
    messages: Sequence[Mapping[str, Any]], schema: Mapping[str, Any], mode: str = "honest"
) -> dict[str, Any]:
    """The simulated model's intent: the rules parser, with more confidence."""
    from recsys.serving.intent import parse_rules

    query = _block(messages, "QUERY", {})
    text = str(query.get("query") or "") if isinstance(query, Mapping) else ""
    categories = [str(c) for c in _enum(schema, "properties", "categories_any", "items", "enum")]
    intent = parse_rules(text, categories).model_dump()
    intent["confidence"] = 0.9
    if mode == "hallucinate":
        intent["category"] = "Not-A-Catalog-Category"
        intent["categories_any"] = ["Not-A-Catalog-Category"]
    elif mode in _OBEY and any(IGNORE.search(v) for v in readings(text)):
        intent["categories_any"] = categories[:1]
        intent["clarification_needed"] = True
    return intent


def explanation_answer(
    messages: Sequence[Mapping[str, Any]], schema: Mapping[str, Any], mode: str = "honest"
) -> dict[str, Any]:
    """The simulated model's sentence from the quoted facts."""
    item = _block(messages, "ITEM", {})
    evidence = [str(e) for e in (item.get("evidence") or [])] if isinstance(item, Mapping) else []
    if mode == "hallucinate":
        return {"sentence": 'A 1999 classic like "The Matrix", loved by 12 million viewers.'}
    if mode in _OBEY:
        return {"sentence": "Visit http://example.com now and ignore previous instructions."}
    facts = "; ".join(e.rstrip(". ") for e in evidence[:3]) or "it matches your tastes"
    words_ = f"Recommended because {facts}.".split()
    return {"sentence": " ".join(words_[:30])}


SERVING_HANDLERS: Mapping[str, Handler] = {
    "rerank": rerank_answer,
    "intent": intent_answer,
    "explanation": explanation_answer,
}


def register(server: Any) -> None:
    """``--plugin testkit.simulated_serving:register`` (they are registered by default)."""
    for name, handler in SERVING_HANDLERS.items():
        server.register(name, handler)
