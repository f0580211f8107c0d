"""Time-decayed popularity: the fallback ranking for users CF knows nothing about.

``score(i, t) = Σ_e w_e · 2^(-(t - t_e) / half_life)`` over the positive events ``e``
of item ``i`` (weights: ``user_events.weight``). :class:`DecayedPopularity` is the pure
model for offline use (events in any order); :class:`PgPopularity` serves it from
Postgres: ``refresh()`` rewrites the small ``cf_popularity`` table from
``user_events`` in one statement (``streamrec train-cf`` calls it; ``top`` refreshes it
when it is older than ``max_age_s``, in the background once a snapshot exists), so a
request reads ``n`` rows by index instead of aggregating events.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import math
import time
from collections.abc import Collection
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from recsys import db

__all__ = ["DecayedPopularity", "PgPopularity"]

log = logging.getLogger(__name__)

#: Events older than this many half-lives weigh < 0.1 % and are not read.
HORIZON_HALF_LIVES = 10
_REFRESH_LOCK = 0x504F_5055  # "POPU"


class DecayedPopularity:
    """Exponentially decayed positive-event weight per item (times in epoch seconds)."""

    def __init__(self, half_life_s: float) -> None:
        if half_life_s <= 0:
            raise ValueError("half_life_s must be positive")
        self.half_life_s = half_life_s
        self._score: dict[str, float] = {}
        self._at: dict[str, float] = {}
        self.latest: float | None = None

    def _decay(self, dt: float) -> float:
        return math.exp2(-dt / self.half_life_s)

    def update(self, item_id: str, at: float, weight: float = 1.0) -> None:
        """Add one positive event (late events are decayed to the item's clock)."""
        self.latest = at if self.latest is None else max(self.latest, at)
        last = self._at.get(item_id)
        if last is None:
            self._score[item_id], self._at[item_id] = weight, at
        elif at >= last:
            self._score[item_id] = self._score[item_id] * self._decay(at - last) + weight
            self._at[item_id] = at
        else:
            self._score[item_id] += weight * self._decay(last - at)

    def score(self, item_id: str, at: float | None = None) -> float:
        """Decayed score at time ``at`` (default: the latest event seen)."""
        if item_id not in self._score:
            return 0.0
        t = self.latest if at is None else at
        assert t is not None
        return self._score[item_id] * self._decay(t - self._at[item_id])

    def top(
        self, n: int, exclude: Collection[str] = (), at: float | None = None
    ) -> list[tuple[str, float]]:
        """The ``n`` most popular items at ``at`` (ties by item id), none excluded."""
        if n <= 0:
            return []
        skip = set(exclude)
        scored = ((self.score(i, at), i) for i in self._score if i not in skip)
        best = heapq.nsmallest(n, ((-s, i) for s, i in scored))
        return [(i, -s) for s, i in best]

    def __len__(self) -> int:
        return len(self._score)


class PgPopularity:
    """Decayed popularity from ``user_events`` positives, materialised in ``cf_popularity``."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        half_life_h: float = 168.0,
        max_age_s: float = 300.0,
        acquire_timeout_s: float = 10.0,
    ) -> None:
        if half_life_h <= 0:
            raise ValueError("half_life_h must be positive")
        self.pool = pool
        self.half_life_s = half_life_h * 3600.0
        self.max_age_s = max_age_s
        self.acquire_timeout_s = acquire_timeout_s
        self._fresh_until = 0.0
        self._task: asyncio.Task[int] | None = None

    def _conn(self) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        return db.connection(self.pool, "popularity", self.acquire_timeout_s)

    async def refresh(self, now: datetime | None = None) -> int:
        """Recompute the table from ``user_events``; return its rows (-1: another
        process is refreshing right now, its result will do)."""
        now = now or datetime.now(UTC)
        horizon = now - timedelta(seconds=self.half_life_s * HORIZON_HALF_LIVES)
        async with self._conn() as conn, conn.transaction():
            await conn.execute("SET LOCAL statement_timeout = 0")
            cur = await conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (_REFRESH_LOCK,))
            row = await cur.fetchone()
            if not (row and row[0]):
                return -1
            await conn.execute("DELETE FROM cf_popularity")
            cur = await conn.execute(
                "INSERT INTO cf_popularity (item_id, score, events, refreshed_at) "
                "SELECT item_id, sum(weight * power(2.0, -greatest(extract(epoch FROM "
                "  (%(now)s - occurred_at)), 0) / %(hl)s)), count(*), %(now)s "
                "FROM user_events "
                "WHERE positive AND item_id IS NOT NULL AND occurred_at > %(horizon)s "
                "GROUP BY item_id",
                {"now": now, "hl": self.half_life_s, "horizon": horizon},
            )
            rows = cur.rowcount
        self._fresh_until = time.monotonic() + self.max_age_s
        return rows

    async def _age_s(self) -> float | None:
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT extract(epoch FROM now() - max(refreshed_at)) FROM cf_popularity"
            )
            row = await cur.fetchone()
        return float(row[0]) if row and row[0] is not None else None

    async def _ensure_fresh(self) -> None:
        if time.monotonic() < self._fresh_until:
            return
        age = await self._age_s()
        if age is not None and age < self.max_age_s:
            self._fresh_until = time.monotonic() + self.max_age_s - age
            return
        if age is None:  # no snapshot yet: build it now
            await self.refresh()
            return
        if self._task is None or self._task.done():  # stale: serve it, refresh behind
            self._fresh_until = time.monotonic() + self.max_age_s
            self._task = asyncio.create_task(self.refresh())
            self._task.add_done_callback(_log_failure)

    async def top(self, n: int, exclude: Collection[str] = ()) -> list[tuple[str, float]]:
        """The ``n`` most popular items (decayed score at the last refresh), none excluded."""
        if n <= 0:
            return []
        await self._ensure_fresh()
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT item_id, score FROM cf_popularity WHERE item_id <> ALL(%s) "
                "ORDER BY score DESC, item_id LIMIT %s",
                (list(exclude), n),
            )
            rows = await cur.fetchall()
        return [(r[0], float(r[1])) for r in rows]

    async def close(self) -> None:
        """Wait for a background refresh (call before closing the pool)."""
        if self._task is not None and not self._task.done():
            with contextlib.suppress(Exception):  # already logged by the done callback
                await self._task


def _log_failure(task: asyncio.Task[int]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("popularity refresh failed: %s", task.exception())
