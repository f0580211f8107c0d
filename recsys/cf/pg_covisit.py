"""Co-visitation in Postgres (``migrations/0202_covisit.sql``, ``0204_covisit_pairs.sql``):
the nearline twin of :class:`recsys.cf.covisit.Covisitation`.

A co-visit adds the same weight to ``(a, b)`` and ``(b, a)``, so each unordered pair is
one row of ``covisit_pair`` (``item_a < item_b`` in byte order, which is Python's string
order); the view ``covisit`` shows both directions. Neighbours of an item are read from
both sides, each through its index by weight.

The ``users`` worker merges a batch's co-visits in the transaction that inserts its
events into ``user_events`` (:mod:`recsys.users.batch_write`), only for the events that
insert actually added — so a redelivered event never counts twice. Contributions are
summed per pair first, then merged into the row in log2 space (forward decay: no row is
rewritten to decay it). Rows are written in key order, so two workers updating the same
pairs cannot deadlock.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from recsys import db
from recsys.cf.covisit import Pair, log2_add, log2_time, rank_neighbors, rank_shares

__all__ = ["COVISIT_INSERT", "PgCovisitation", "undirected_sums"]

#: Insert ``(item_a, item_b, log2_weight)`` rows (``item_a < item_b``, in key order): a
#: contribution merges into an existing pair as log2(2^a + 2^b), without overflow.
COVISIT_INSERT = """
INSERT INTO covisit_pair (item_a, item_b, log2_weight)
{rows}
ON CONFLICT (item_a, item_b) DO UPDATE SET
    log2_weight = GREATEST(covisit_pair.log2_weight, EXCLUDED.log2_weight) + CASE
        WHEN abs(covisit_pair.log2_weight - EXCLUDED.log2_weight) > 60 THEN 0
        ELSE ln(1 + power(2.0::float8, -abs(covisit_pair.log2_weight - EXCLUDED.log2_weight)))
             / ln(2.0::float8)
    END,
    updated_at = now()
"""

_MERGE = COVISIT_INSERT.format(rows="SELECT * FROM unnest(%b::text[], %b::text[], %b::float8[])")

#: Each seed's strongest pairs from either side of the table, merged by weight.
_NEIGHBOURS = """
SELECT s.item_id, c.other_id, c.log2_weight
FROM unnest(%(seeds)s::text[]) AS s(item_id)
CROSS JOIN LATERAL (
    SELECT other_id, log2_weight FROM (
        (SELECT item_b AS other_id, log2_weight FROM covisit_pair
         WHERE item_a = s.item_id ORDER BY log2_weight DESC LIMIT %(k)s)
        UNION ALL
        (SELECT item_a AS other_id, log2_weight FROM covisit_pair
         WHERE item_b = s.item_id ORDER BY log2_weight DESC LIMIT %(k)s)
    ) AS both_sides
    ORDER BY log2_weight DESC
    LIMIT %(k)s
) AS c
"""


def undirected_sums(pairs: Iterable[Pair]) -> list[tuple[str, str, float]]:
    """Directed contributions as stored: the ``a < b`` half (a co-visit contributes to both
    directions alike, as :func:`recsys.cf.covisit.pairs_for` gives them), summed per pair
    in log2 space, in key order (the order rows are locked in)."""
    sums: dict[tuple[str, str], float] = {}
    get = sums.get
    for a, b, w in pairs:  # a plain loop: this runs for every co-visit of every event
        if a < b:
            prev = get((a, b))
            sums[(a, b)] = w if prev is None else log2_add(prev, w)
    return [(a, b, sums[(a, b)]) for a, b in sorted(sums)]


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
        the number of unordered pairs touched.

        ``pairs`` are directed contributions in mirrored couples, ``(a, b, w)`` with
        ``(b, a, w)``, as co-visits always come (:func:`recsys.cf.covisit.pairs_for`).
        """
        merged = undirected_sums(pairs)
        if not merged:
            return 0
        a = [m[0] for m in merged]
        b = [m[1] for m in merged]
        w = [m[2] for m in merged]
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
        *,
        shares: bool = False,
    ) -> list[tuple[str, float, str]]:
        """Items that go with ``items``: ``(item_id, score, via_item_id)``, best first.

        Scores are decayed to ``at`` (default: now). Each seed contributes its strongest
        ``n + len(exclude) + len(items)`` pairs, which is exact for one seed and for
        candidates near the top with several. ``shares``: each seed's pairs become
        shares of its weight over those pairs, summed (:func:`recsys.cf.covisit.rank_shares`).
        One statement whatever the number of seeds: two index scans by weight per seed.
        """
        seeds = list(dict.fromkeys(items))
        if not seeds or n <= 0:
            return []
        per_seed = n + len(exclude) + len(seeds)
        async with self._conn() as conn:
            cur = await conn.execute(_NEIGHBOURS, {"seeds": seeds, "k": per_seed})
            rows = await cur.fetchall()
        if shares:
            return rank_shares(((r[0], r[1], float(r[2])) for r in rows), seeds, n, exclude)
        ref = log2_time(at or datetime.now(UTC), self.half_life_h)
        return rank_neighbors(((r[0], r[1], float(r[2])) for r in rows), seeds, n, exclude, ref)

    async def log2_weights(self) -> dict[tuple[str, str], float]:
        """Every directed pair's log2 weight (tests and small exports)."""
        async with self._conn() as conn:
            cur = await conn.execute("SELECT item_a, item_b, log2_weight FROM covisit_pair")
            rows = await cur.fetchall()
        out: dict[tuple[str, str], float] = {}
        for a, b, w in rows:
            out[(a, b)] = out[(b, a)] = float(w)
        return out
