"""What serving reads, as small async ports (Postgres adapters in :mod:`.pg_ports`)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from recsys.cf.als import Fold
from recsys.items.model import ItemFilters, ItemRecord
from recsys.records import WarmthBucket

__all__ = ["CfSource", "ItemSource", "QueryEmbedder", "UserReader", "UserView"]


@dataclass(frozen=True)
class UserView:
    """What the request path knows about a user when the request arrives.

    Attributes:
        recent: (item_id, weight) of recent visits, newest first (positional weights).
        cf_profile: (item_id, weight) as ALS training weighs the user's events, newest
            first (:mod:`recsys.cf.profile`) — the CF fold-in's input; None when the
            reader has no profile (then ``recent`` is folded in).
        session_items: items of the current session, newest first.
        session_query: the session's last natural-language query.
        consumed: items the user already consumed (never recommended again).
    """

    user_id: str
    warmth: WarmthBucket = WarmthBucket.COLD
    positives: int = 0
    recent: tuple[tuple[str, float], ...] = ()
    cf_profile: tuple[tuple[str, float], ...] | None = None
    session_items: tuple[str, ...] = ()
    session_query: str | None = None
    consumed: frozenset[str] = field(default_factory=frozenset)

    @property
    def recent_items(self) -> list[str]:
        """Recent item ids, newest first, without repeats."""
        return list(dict.fromkeys(item for item, _ in self.recent))


class UserReader(Protocol):
    async def view(self, user_id: str) -> UserView:
        """The user's state; an unknown user is a cold, empty view."""
        ...


class CfSource(Protocol):
    async def als(
        self,
        recent: Sequence[tuple[str, float]],
        n: int,
        exclude: Collection[str],
        fold: Fold = "least_squares",
    ) -> list[tuple[str, float]]:
        """ALS candidates for a user folded in from ``recent`` by ``fold`` (empty without
        a model)."""
        ...

    async def covisit(
        self, items: Sequence[str], n: int, exclude: Collection[str], *, shares: bool = False
    ) -> list[tuple[str, float, str]]:
        """Items that go with ``items``: (item, score, via item), best first (``shares``:
        each seed's co-visits as shares of its own weight, summed over the seeds)."""
        ...

    async def popular(self, n: int, exclude: Collection[str]) -> list[tuple[str, float]]:
        """The most popular items now, best first."""
        ...

    async def model_version(self) -> str | None:
        """Version of the active CF model (None without one)."""
        ...


class ItemSource(Protocol):
    async def knn(
        self,
        vector: np.ndarray,
        k: int,
        *,
        filters: ItemFilters | None = None,
        exclude: Collection[str] = (),
    ) -> list[tuple[str, float]]:
        """Eligible items nearest to ``vector`` in the serving space."""
        ...

    async def eligible(self, item_ids: Sequence[str], filters: ItemFilters | None) -> set[str]:
        """The ids that are real, live, embedded and satisfy ``filters``."""
        ...

    async def similarities(
        self, vector: np.ndarray, item_ids: Sequence[str], filters: ItemFilters | None
    ) -> dict[str, float]:
        """Cosine of ``vector`` to each given item that is eligible and matches ``filters``."""
        ...

    async def nearest(
        self,
        vector: np.ndarray,
        k: int,
        *,
        filters: ItemFilters | None = None,
        exclude: Collection[str] = (),
        also: Sequence[str] = (),
    ) -> tuple[list[tuple[str, float]], dict[str, float]]:
        """``knn(vector, k, …)`` and ``similarities(vector, also, filters)`` in one read
        (``exclude`` applies to the search only)."""
        ...

    async def eligible_each(
        self, item_ids: Sequence[str], filter_sets: Sequence[ItemFilters | None]
    ) -> list[set[str]]:
        """``[eligible(item_ids, f) for f in filter_sets]`` in one read."""
        ...

    async def count_eligible(self, filters: ItemFilters | None, exclude: Collection[str]) -> int:
        """How many eligible items satisfy ``filters`` and are not in ``exclude``."""
        ...

    async def details(self, item_ids: Sequence[str]) -> dict[str, ItemRecord]:
        """Text and categories of items (no vectors)."""
        ...

    async def vectors(self, item_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Serving-space vectors of items."""
        ...

    async def categories(self) -> list[str]:
        """Categories of eligible items (intent parsing enumerates them)."""
        ...


class QueryEmbedder(Protocol):
    @property
    def name(self) -> str: ...

    async def embed(self, text: str) -> np.ndarray:
        """The query's vector in the items' space."""
        ...

    async def embed_many(self, texts: list[str]) -> np.ndarray:
        """Vectors of several texts in one model call (uncached; e.g. sentences to score)."""
        ...
