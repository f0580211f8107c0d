"""A bound, by construction, on how far an LLM decision can move any item.

The LLM reorders the ranker's head; :func:`bounded_order` turns its preference into the
served order under a *displacement bound*: item ``i`` at ranker position ``r(i)`` ends
between ``r(i) - up(i)`` and ``r(i) + down``. Whatever the model was told or tricked
into, no item gains more than ``up`` places over the ranker's order, and — since every
answer (or none) keeps each item within ``[r - up, r + down]`` — no answer puts an item
more than ``up + down`` places above where any other answer would have put it. That is
the guarantee :func:`split_bound` gives a single setting ``B``: ``up + down = B``.
Items whose text a guard layer flagged get a smaller ``up`` (0 by default: the LLM may
demote them, never promote them).

Within the bound, items are placed by a blend of the two orders: the key of ``i`` is
``weight * llm(i) + (1 - weight) * r(i)`` (ties to the ranker). Placement is greedy,
position by position: an item that reached its lowest allowed position is placed now;
otherwise the best-keyed item allowed this high is. Both rules are always satisfiable
(at position ``p`` at least one unplaced item has ``r <= p``, and only one item can
reach its lowest position there), so the result is always a permutation of the input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Bounded", "bounded_order", "split_bound"]


def split_bound(bound: int) -> tuple[int, int]:
    """``(up, down)`` with ``up + down == bound`` (up gets the odd place)."""
    if bound < 0:
        raise ValueError("a displacement bound is at least 0")
    return bound - bound // 2, bound // 2


@dataclass(frozen=True)
class Bounded:
    """The served order and how far it moved items from the ranker's order."""

    order: list[str]
    moved_max: int
    moved_up_max: int


def bounded_order(
    ranker: Sequence[str],
    llm: Sequence[str],
    *,
    up: int | None,
    down: int | None,
    up_for: Mapping[str, int] | None = None,
    weight: float = 1.0,
) -> Bounded:
    """``ranker`` reordered by the ``llm`` preference within the displacement bound.

    Args:
        ranker: item ids in the ranker's order.
        llm: the LLM's order of (some of) the same ids; ids it left out follow in the
            ranker's order, ids that are not in ``ranker`` are ignored.
        up: places any item may gain over its ranker position (None: unbounded).
        down: places any item may lose (None: unbounded).
        up_for: a smaller ``up`` for particular items (flagged text).
        weight: 1 = the LLM's order decides within the bound, 0 = the ranker's does.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError("the LLM blend weight is between 0 and 1")
    n = len(ranker)
    rank = {item: k for k, item in enumerate(ranker)}
    seen = [i for i in dict.fromkeys(llm) if i in rank]
    preference = seen + [i for i in ranker if i not in set(seen)]
    pos = {item: k for k, item in enumerate(preference)}
    limit_up = n if up is None else up
    limit_down = n if down is None else down
    overrides = up_for or {}
    highest = {i: rank[i] - min(limit_up, overrides.get(i, limit_up)) for i in ranker}
    key = {i: (weight * pos[i] + (1.0 - weight) * rank[i], rank[i]) for i in ranker}
    placed: list[str] = []
    left = set(ranker)
    for p in range(n):
        due = p - limit_down
        forced = ranker[due] if 0 <= due < n and ranker[due] in left else None
        if forced is not None:
            pick = forced
        else:
            pick = min((i for i in left if highest[i] <= p), key=key.__getitem__)
        placed.append(pick)
        left.discard(pick)
    moves = [rank[i] - k for k, i in enumerate(placed)]
    return Bounded(
        order=placed,
        moved_max=max((abs(m) for m in moves), default=0),
        moved_up_max=max(moves, default=0),
    )
