"""Explanations from an evidence contract: only facts that justify the item are said.

Each recommended item gets a list of :class:`~recsys.records.Evidence` — a category it
shares with the user's recent items, the recent item it goes with or resembles, the
query constraint it satisfies, or its popularity — and a template sentence built from
the strongest of them. An LLM may word the sentence (``llm_explain``), but only from
the same evidence, and its wording is checked before it replaces the template.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from recsys.items.model import ItemRecord, category_key
from recsys.records import Evidence, EvidenceKind
from recsys.serving.candidates import Candidate

__all__ = ["Grounds", "evidence_for", "template_sentence"]

SIMILAR_MIN = 0.5


@dataclass(frozen=True)
class Grounds:
    """What the request knows that can justify an item."""

    recent: Sequence[str]  # recent item ids, newest first
    details: Mapping[str, ItemRecord]
    vectors: Mapping[str, np.ndarray]  # vectors of recent and recommended items
    query_categories: Sequence[str] = ()
    year_range: tuple[int | None, int | None] = (None, None)
    #: the preferences a conversation stated that an item satisfies (strongest evidence)
    stated: Callable[[ItemRecord | None], list[Evidence]] | None = None


def _title(details: Mapping[str, ItemRecord], item_id: str) -> str:
    record = details.get(item_id)
    return record.title if record is not None and record.title else item_id


def _year(value: str | None) -> int | None:
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


def evidence_for(cand: Candidate, grounds: Grounds) -> list[Evidence]:
    """The facts that justify ``cand`` for this user and request, strongest first."""
    item = grounds.details.get(cand.item_id)
    out: list[Evidence] = list(grounds.stated(item)) if grounds.stated is not None else []
    categories = item.categories if item is not None else ()
    keys = {category_key(c): c for c in categories}
    if cand.via is not None:
        out.append(
            Evidence(
                kind=EvidenceKind.CO_VISITED,
                value=_title(grounds.details, cand.via),
                ref_item_id=cand.via,
            )
        )
    wanted = [c for c in grounds.query_categories if category_key(c) in keys]
    if wanted:
        out.append(
            Evidence(kind=EvidenceKind.QUERY_CONSTRAINT, value=keys[category_key(wanted[0])])
        )
    low, high = grounds.year_range
    year = _year(item.attributes.get("year")) if item is not None else None
    if (
        year is not None
        and (low is not None or high is not None)
        and (low is None or year >= low)
        and (high is None or year <= high)
    ):
        out.append(Evidence(kind=EvidenceKind.QUERY_CONSTRAINT, value=f"from {year}"))
    vec = grounds.vectors.get(cand.item_id)
    if vec is not None and cand.via is None:
        best, best_sim = None, SIMILAR_MIN
        for recent in grounds.recent[:10]:
            other = grounds.vectors.get(recent)
            if other is None or recent == cand.item_id:
                continue
            sim = float(np.dot(vec, other) / ((np.linalg.norm(vec) * np.linalg.norm(other)) or 1))
            if sim > best_sim:
                best, best_sim = recent, sim
        if best is not None:
            out.append(
                Evidence(
                    kind=EvidenceKind.SIMILAR_TO_RECENT,
                    value=_title(grounds.details, best),
                    ref_item_id=best,
                )
            )
    history: dict[str, int] = {}
    for recent in grounds.recent[:20]:
        record = grounds.details.get(recent)
        for c in record.categories if record is not None else ():
            history[category_key(c)] = history.get(category_key(c), 0) + 1
    shared = sorted((k for k in keys if k in history), key=lambda k: (-history[k], k))
    if shared:
        out.append(Evidence(kind=EvidenceKind.MATCHED_CATEGORY, value=keys[shared[0]]))
    if cand.source == "popularity" or not out:
        out.append(Evidence(kind=EvidenceKind.POPULAR, value="popular right now"))
    return out


def template_sentence(evidence: Sequence[Evidence]) -> str:
    """One plain sentence from the strongest piece of evidence."""
    if not evidence:
        return ""
    e = evidence[0]
    if e.kind is EvidenceKind.STATED_PREFERENCE:
        said = [x.value for x in evidence if x.kind is EvidenceKind.STATED_PREFERENCE]
        listed = said[0] if len(said) == 1 else f"{', '.join(said[:-1])} and {said[-1]}"
        return f"Matches what you told me: {listed}."
    if e.kind is EvidenceKind.CO_VISITED:
        return f"People who liked {e.value} also liked this."
    if e.kind is EvidenceKind.SIMILAR_TO_RECENT:
        return f"Similar to {e.value}, which you recently enjoyed."
    if e.kind is EvidenceKind.QUERY_CONSTRAINT:
        return f"Matches your request: {e.value}."
    if e.kind is EvidenceKind.MATCHED_CATEGORY:
        return f"You often pick {e.value}."
    return "Popular with other users right now."


def evidence_texts(evidence: Sequence[Evidence]) -> list[str]:
    """Evidence as short facts (what an LLM may word, nothing more)."""
    return [template_sentence([e]) for e in evidence]
