"""Co-visitation in Postgres (``migrations/0202_covisit.sql``): the nearline twin of
:class:`recsys.cf.covisit.Covisitation`.

The ``users`` worker calls :meth:`PgCovisitation.add_in` inside the transaction that
inserts a batch's events into ``user_events``, with the co-visits of the events that
insert actually added — so a redelivered event never counts twice. Contributions are
summed per pair in the batch first, then merged into the row in log2 space (forward
decay: no row is rewritten to decay it). Rows are written in key order, so two workers
updating the same pairs cannot deadlock.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from recsys import db
from recsys.cf.covisit import Pair, aggregate, log2_time, rank_neighbors

__all__ = ["COVISIT_MERGE", "PgCovisitation"]

#: How a contribution merges into an existing pair: log2(2^a + 2^b) without overflow.
COVISIT_MERGE = """
ON CONFLICT (item_id, other_id) DO UPDATE SET
    log2_weight = GREATEST(covisit.log2_weight, EXCLUDED.log2_weight) + CASE
        WHEN abs(covisit.log2_weight - EXCLUDED.log2_weight) > 60 THEN 0
        ELSE ln(1 + power(2.0::float8, -abs(covisit.log2_weight - EXCLUDED.log2_weight)))
             / ln(2.0::float8)
    END,
    updated_at = now()
"""

_MERGE = f"""
INSERT INTO covisit (item_id, other_id, log2_weight)
SELECT * FROM unnest(%b::text[], %b::text[], %b::float8[])
{COVISIT_MERGE}
"""

_NEIGHBOURS = """
SELECT c.item_id, c.other_id, c.log2_weight
FROM unnest(%s::text[]) AS s(item_id)
CROSS JOIN LATERAL (
    SELECT item_id, other_id, log2_weight FROM covisit
    WHERE covisit.item_id = s.item_id
    ORDER BY log2_weight DESC
    LIMIT %s
) AS c
"""


class PgCovisitation:
    """Co-visitation pairs in Postgres: merged by the worker, ranked at request time."""

    def __init__(self, pool: AsyncConnectionPool, half_life_h: float = 168.0) -> None:
        self.pool = pool
        self.half_life_h = half_life_h

    def _conn(self) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        return db.connection(self.pool, "co-visitation", 30.0)

    @staticmethod
    async def add_in(conn: psycopg.AsyncConnection, pairs: Iterable[Pair]) -> int:
        """Merge co-visit contributions on ``conn`` (the caller's transaction); return
        the number of pairs touched."""
        merged = sorted(aggregate(pairs).items())
        if not merged:
            return 0
        a = [k[0] for k, _ in merged]
        b = [k[1] for k, _ in merged]
        w = [v for _, v in merged]
        await conn.execute(_MERGE, (a, b, w))
        return len(merged)

    async def add(self, pairs: Iterable[Pair]) -> int:
        """Merge contributions in a transaction of their own (tests, backfills)."""
        async with self._conn() as conn, conn.transaction():
            return await self.add_in(conn, pairs)

    async def neighbors(
        self,
        items: Sequence[str],
        n: int,
        exclude: Collection[str] = (),
        at: datetime | None = None,
    ) -> list[tuple[str, float, str]]:
        """Items that go with ``items``: ``(item_id, score, via_item_id)``, best first.

        Scores are decayed to ``at`` (default: now). Each seed contributes its strongest
        ``n + len(exclude) + len(items)`` pairs, which is exact for one seed and for
        candidates near the top with several.
        """
        seeds = list(dict.fromkeys(items))
        if not seeds or n <= 0:
            return []
        per_seed = n + len(exclude) + len(seeds)
        async with self._conn() as conn:
            cur = await conn.execute(_NEIGHBOURS, (seeds, per_seed))
            rows = await cur.fetchall()
        ref = log2_time(at or datetime.now(UTC), self.half_life_h)
        return rank_neighbors(((r[0], r[1], float(r[2])) for r in rows), seeds, n, exclude, ref)

    async def log2_weights(self) -> dict[tuple[str, str], float]:
        """Every pair's log2 weight (tests and small exports)."""
        async with self._conn() as conn:
            cur = await conn.execute("SELECT item_id, other_id, log2_weight FROM covisit")
            return {(r[0], r[1]): float(r[2]) for r in await cur.fetchall()}
