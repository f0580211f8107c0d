"""User events → the sparse user x item weight matrix that ALS trains on.

The matrix holds *weights* (:mod:`recsys.cf.weights`), not confidences: the model
turns them into confidences with its ``alpha``. Rows and columns are indexed by
first appearance, and the id lists map them back. Events without an item, with a
zero weight (DISMISS) or for a (user, item) whose weights add up to nothing are left
out; unknown or deleted catalog items are kept (CF learns from them all the same,
and serving filters eligibility later).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix

from recsys.cf.weights import DEFAULT_WEIGHTS, InteractionWeights
from recsys.records import EventType

__all__ = ["Interaction", "InteractionMatrix", "build_matrix"]


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


def build_matrix(
    interactions: Iterable[Interaction], weights: InteractionWeights = DEFAULT_WEIGHTS
) -> InteractionMatrix:
    """Aggregate events per (user, item): weights add up, the latest rating replaces
    earlier ones, the total is capped at ``weights.cap``."""
    user_index: dict[str, int] = {}
    item_index: dict[str, int] = {}
    summed: dict[tuple[int, int], float] = {}
    rated: dict[tuple[int, int], tuple[float, float]] = {}
    n_events = 0
    first_at: float | None = None
    last_at: float | None = None
    for event in interactions:
        if not event.item_id:
            continue
        n_events += 1
        first_at = event.at if first_at is None else min(first_at, event.at)
        last_at = event.at if last_at is None else max(last_at, event.at)
        w = weights.event_weight(event.event_type, event.rating)
        is_rating = event.event_type == EventType.RATING
        if w <= 0 and not is_rating:
            continue
        u = user_index.setdefault(event.user_id, len(user_index))
        i = item_index.setdefault(event.item_id, len(item_index))
        if is_rating:
            previous = rated.get((u, i))
            if previous is None or event.at >= previous[0]:
                rated[(u, i)] = (event.at, w)
        else:
            summed[(u, i)] = summed.get((u, i), 0.0) + w
    cells: dict[tuple[int, int], float] = dict(summed)
    for key, (_, w) in rated.items():
        cells[key] = cells.get(key, 0.0) + w
    cells = {k: min(v, weights.cap) for k, v in cells.items() if v > 0}
    # users and items left without a cell (e.g. only zero-weight ratings) get no row/column
    users = list(user_index)
    items = list(item_index)
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
        n_events=n_events,
        first_at=first_at,
        last_at=last_at,
    )
