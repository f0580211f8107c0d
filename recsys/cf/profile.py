"""A user's CF profile: the (item, weight) pairs ALS training would see for them.

The ALS fold-in (:func:`recsys.cf.als.fold_in`) is exact only when it is given the
same row the model was trained on. Serving once folded users in from the users
worker's 50 *recent visits* with positional weights (newest 1, halving every 20
positions, ratings < 4 included): on MovieLens that scored NDCG@10 0.1165 against
0.1306 for the trained user rows (``benchmarks/quality_cf``, ``als_serving`` vs
``als``). The profile here is the training row itself — the same weights table
(:mod:`recsys.cf.weights`), the same aggregation as
:class:`~recsys.cf.interactions.MatrixBuilder` (weights add up per item, only the latest
rating counts, capped, non-positive totals left out) — computed from the user's newest
``limit`` item events in ``user_events`` (the table ``train-cf`` reads).

Items come newest first (by their latest event), so callers may still truncate by
recency; co-visitation anchors use the head of the list.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from psycopg_pool import AsyncConnectionPool

from recsys import db
from recsys.cf.interactions import Interaction
from recsys.cf.weights import DEFAULT_WEIGHTS, InteractionWeights
from recsys.records import EventType

__all__ = ["DEFAULT_PROFILE_EVENTS", "PgProfiles", "user_profile"]

#: Newest item events read per user (a warm MovieLens user has up to ~2,700 ratings;
#: folding in from the newest 1,000 scored as well as all of them on validation).
DEFAULT_PROFILE_EVENTS = 1000


def user_profile(
    events: Iterable[Interaction], weights: InteractionWeights = DEFAULT_WEIGHTS
) -> list[tuple[str, float]]:
    """(item, weight) of one user's events as training aggregates them, newest first.

    The events may come in any order; they are assumed to be one user's.
    """
    summed: dict[str, float] = {}
    rated: dict[str, tuple[float, float]] = {}
    last: dict[str, float] = {}
    for e in events:
        if not e.item_id:
            continue
        last[e.item_id] = max(last.get(e.item_id, e.at), e.at)
        w = weights.event_weight(e.event_type, e.rating)
        if e.event_type == EventType.RATING:
            previous = rated.get(e.item_id)
            if previous is None or e.at >= previous[0]:
                rated[e.item_id] = (e.at, w)
        elif w > 0:
            summed[e.item_id] = summed.get(e.item_id, 0.0) + w
    cells = dict(summed)
    for item, (_, w) in rated.items():
        cells[item] = cells.get(item, 0.0) + w
    out = [(item, min(w, weights.cap)) for item, w in cells.items() if w > 0]
    out.sort(key=lambda p: (-last[p[0]], p[0]))
    return out


class PgProfiles:
    """Users' CF profiles from ``user_events`` (one indexed read per user)."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        limit: int = DEFAULT_PROFILE_EVENTS,
        weights: InteractionWeights = DEFAULT_WEIGHTS,
        acquire_timeout_s: float = 10.0,
    ) -> None:
        self.pool = pool
        self.limit = limit
        self.weights = weights
        self.acquire_timeout_s = acquire_timeout_s

    async def profile(self, user_id: str) -> list[tuple[str, float]]:
        """The user's profile from their newest ``limit`` item events ([] if none)."""
        if self.limit <= 0:
            return []
        async with db.connection(self.pool, "CF profiles", self.acquire_timeout_s) as conn:
            cur = await conn.execute(
                "SELECT item_id, event_type, rating, extract(epoch FROM occurred_at) "
                "FROM user_events WHERE user_id = %s AND item_id IS NOT NULL "
                "ORDER BY occurred_at DESC LIMIT %s",
                (user_id, self.limit),
            )
            rows: list[Any] = await cur.fetchall()
        return user_profile(
            (
                Interaction(user_id, r[0], r[1], None if r[2] is None else float(r[2]), float(r[3]))
                for r in rows
            ),
            self.weights,
        )
