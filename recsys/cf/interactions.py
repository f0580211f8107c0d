"""User events → the sparse user x item weight matrix that ALS trains on.

The matrix holds *weights* (:mod:`recsys.cf.weights`), not confidences: the model
turns them into confidences with its ``alpha``. A negative weight is a cell with
preference 0 (a shown item not acted on, :mod:`recsys.cf.impressions`). Rows and
columns are indexed by first appearance, and the id lists map them back. Events without
an item, with a zero weight (DISMISS) or for a (user, item) whose weights add up to
nothing are left out; unknown or deleted catalog items are kept (CF learns from them
all the same, and serving filters eligibility later).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix

from recsys.cf.weights import DEFAULT_WEIGHTS, InteractionWeights
from recsys.records import EventType

__all__ = ["Interaction", "InteractionMatrix", "MatrixBuilder", "build_matrix"]


@dataclass(frozen=True, slots=True)
class Interaction:
    """One user event as CF sees it (``at`` in epoch seconds)."""

    user_id: str
    item_id: str
    event_type: str
    rating: float | None
    at: float


@dataclass(frozen=True)
class InteractionMatrix:
    """Weights per (user, item) as CSR, with the ids of its rows and columns."""

    users: list[str]
    items: list[str]
    weights: csr_matrix
    n_events: int
    first_at: float | None
    last_at: float | None

    @property
    def n_interactions(self) -> int:
        """Non-zero (user, item) cells."""
        return int(self.weights.nnz)

    @property
    def n_negative(self) -> int:
        """Cells with preference 0 (weak negatives from impressions)."""
        return int((self.weights.data < 0).sum())

    def user_row(self, user_id: str) -> list[tuple[str, float]]:
        """(item, weight) of one user, for fold-in checks."""
        row = self.users.index(user_id)
        start, end = self.weights.indptr[row], self.weights.indptr[row + 1]
        return [
            (self.items[int(j)], float(w))
            for j, w in zip(
                self.weights.indices[start:end], self.weights.data[start:end], strict=True
            )
        ]


class MatrixBuilder:
    """Aggregates events one at a time (a stream of millions need not be held in memory):
    weights add up per (user, item), the latest rating replaces earlier ones, the total
    is capped at ``weights.cap``."""

    def __init__(self, weights: InteractionWeights = DEFAULT_WEIGHTS) -> None:
        self.weights = weights
        self._users: dict[str, int] = {}
        self._items: dict[str, int] = {}
        self._summed: dict[tuple[int, int], float] = {}
        self._rated: dict[tuple[int, int], tuple[float, float]] = {}
        self.n_events = 0
        self.first_at: float | None = None
        self.last_at: float | None = None

    def add(self, event: Interaction) -> None:
        """Count one event (events without an item are ignored)."""
        if not event.item_id:
            return
        self.n_events += 1
        self.first_at = event.at if self.first_at is None else min(self.first_at, event.at)
        self.last_at = event.at if self.last_at is None else max(self.last_at, event.at)
        w = self.weights.event_weight(event.event_type, event.rating)
        is_rating = event.event_type == EventType.RATING
        if w <= 0 and not is_rating:
            return
        key = (
            self._users.setdefault(event.user_id, len(self._users)),
            self._items.setdefault(event.item_id, len(self._items)),
        )
        if is_rating:
            previous = self._rated.get(key)
            if previous is None or event.at >= previous[0]:
                self._rated[key] = (event.at, w)
        else:
            self._summed[key] = self._summed.get(key, 0.0) + w

    def build(
        self,
        negatives: Mapping[tuple[str, str], float] | None = None,
        scales: Mapping[tuple[str, str], float] | None = None,
    ) -> InteractionMatrix:
        """The CSR matrix of what was added.

        ``scales``: (user, item) → factor of that positive cell's weight; ``negatives``:
        (user, item) → weight of a *negative* cell (preference 0, stored as ``-weight``)
        where the user has no positive weight (:mod:`recsys.cf.impressions`). Both are
        capped like positives.
        """
        cells: dict[tuple[int, int], float] = dict(self._summed)
        for key, (_, w) in self._rated.items():
            cells[key] = cells.get(key, 0.0) + w
        for (user, item), factor in (scales or {}).items():
            u, i = self._users.get(user), self._items.get(item)
            if u is not None and i is not None and (u, i) in cells:
                cells[(u, i)] *= factor
        cells = {k: min(v, self.weights.cap) for k, v in cells.items() if v > 0}
        for (user, item), weight in (negatives or {}).items():
            key = (
                self._users.setdefault(user, len(self._users)),
                self._items.setdefault(item, len(self._items)),
            )
            if weight > 0 and key not in cells:
                cells[key] = -min(weight, self.weights.cap)
        # users and items left without a cell (only zero-weight ratings) get no row/column
        users = list(self._users)
        items = list(self._items)
        user_rows = {u: r for r, u in enumerate(sorted({k[0] for k in cells}))}
        item_cols = {i: c for c, i in enumerate(sorted({k[1] for k in cells}))}
        rows = np.fromiter((user_rows[k[0]] for k in cells), dtype=np.int32, count=len(cells))
        cols = np.fromiter((item_cols[k[1]] for k in cells), dtype=np.int32, count=len(cells))
        data = np.fromiter(cells.values(), dtype=np.float32, count=len(cells))
        matrix = csr_matrix((data, (rows, cols)), shape=(len(user_rows), len(item_cols)))
        matrix.sort_indices()
        return InteractionMatrix(
            users=[users[u] for u in user_rows],
            items=[items[i] for i in item_cols],
            weights=matrix,
            n_events=self.n_events,
            first_at=self.first_at,
            last_at=self.last_at,
        )


def build_matrix(
    interactions: Iterable[Interaction], weights: InteractionWeights = DEFAULT_WEIGHTS
) -> InteractionMatrix:
    """:class:`MatrixBuilder` over an iterable."""
    builder = MatrixBuilder(weights)
    for event in interactions:
        builder.add(event)
    return builder.build()
