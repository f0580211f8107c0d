"""What a caller that already read the user's words hands the recommender instead of a query.

The dialogue (:mod:`recsys.dialogue`) reads a conversation turn by turn; when it
recommends, the request carries no query of its own: the conversation's summary is the
retrieval and rerank text (already screened and redacted), its preferences are the
intent and filters (no intent parse is made), and the preferences an item satisfies
come first in its evidence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from recsys.items.model import ItemFilters, ItemRecord
from recsys.records import Evidence
from recsys.serving.intent import Intent

__all__ = ["Steer"]


@dataclass(frozen=True)
class Steer:
    """A request's query, intent and filters decided by the caller.

    Attributes:
        query: the text retrieval embeds and the reranker reads (None: none).
        intent: the parsed preferences (hard ones become filters unless ``filters``).
        filters: what eligible items must satisfy.
        stated: the stated preferences an item satisfies (evidence, strongest first).
        flagged: the text behind it was flagged (instruction-like spans were removed).
        reasons: why it was flagged (the layers' reasons, as on ``rec.llm-log``).
    """

    query: str | None
    intent: Intent | None
    filters: ItemFilters | None
    stated: Callable[[ItemRecord | None], list[Evidence]] | None = None
    flagged: bool = False
    reasons: tuple[str, ...] = ()
