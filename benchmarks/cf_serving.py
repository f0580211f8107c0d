"""Request-time cost of CF in Postgres: ALS fold-in + pgvector search, and popularity.

On an embedded Postgres: trains ALS on MovieLens ml-latest-small (all ratings), writes
the version with ``PgAls.write`` and activates it, loads the ratings into
``user_events``, then measures (sequential requests, one connection pool):

* ``als_recommend`` — ``PgAls.recommend(recent 20 items, n=50)`` latency, beside the
  yardstick: the same fold-in and an exact scoring of every item in numpy, in process
  (``exact_numpy``); ``ann_recall_at_n`` is the overlap of the two top-50s.
* ``popularity_top`` — ``PgPopularity.top(50)`` from the snapshot table, beside the
  alternative it replaces: the decayed aggregate over ``user_events`` per request
  (``popularity_direct_query``); plus the snapshot refresh time.
* ``als_plan_uses_hnsw`` — whether the planner picks the inner-product index.
* ``factor_write_rows_per_s`` — ``PgAls.write`` (COPY into the indexed table), beside
  COPY into a table without an index and a bulk HNSW build afterwards (yardsticks).

    python -m benchmarks cf_serving [--movielens DIR] [--requests 300] [--factors 64]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from benchmarks.common import emit, summary_ms
from recsys import db
from recsys.cf.als import AlsParams, train_als
from recsys.cf.als_store import PgAls, TrainingRun
from recsys.cf.interactions import Interaction, build_matrix
from recsys.cf.popularity import PgPopularity
from recsys.cf.weights import DEFAULT_WEIGHTS, is_positive
from recsys.movielens import MovieLens
from stack.embedded import EmbeddedPostgres
from streams.settings import Settings

DIRECT = (
    "SELECT item_id, sum(weight * power(2.0, -greatest(extract(epoch FROM (now() - "
    "occurred_at)), 0) / %s)) AS score FROM user_events WHERE positive AND item_id IS NOT NULL "
    "AND item_id <> ALL(%s) GROUP BY item_id ORDER BY score DESC, item_id LIMIT %s"
)


def load_events(dsn: str, ratings: list[Any]) -> None:
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY user_events (event_id, user_id, item_id, event_type, rating, occurred_at, "
            "positive, weight) FROM STDIN"
        ) as copy:
            for r in ratings:
                copy.write_row(
                    (
                        f"ml-{r.user_id}-{r.item_id}-{r.ts}",
                        r.user_id,
                        r.item_id,
                        "RATING",
                        r.rating,
                        datetime.fromtimestamp(r.ts, tz=UTC),
                        is_positive("RATING", r.rating),
                        DEFAULT_WEIGHTS.rating_weight(r.rating),
                    )
                )
        conn.execute("ANALYZE user_events")


async def copy_yardstick(pool: Any, model: Any, factors: int) -> tuple[float, float]:
    """The same rows COPYed into a table without an index, then an HNSW index built in
    bulk: what writing costs without incremental index inserts."""
    async with pool.connection() as conn:
        await conn.execute("SET statement_timeout = 0")
        await conn.execute(
            "CREATE TEMP TABLE bench_factors (item_id text, dims int2, factor vector)"
        )
        t = time.perf_counter()
        async with (
            conn.cursor() as cur,
            cur.copy(
                "COPY bench_factors (item_id, dims, factor) FROM STDIN WITH (FORMAT BINARY)"
            ) as copy,
        ):
            copy.set_types(["text", "int2", "vector"])
            for item_id, factor in zip(model.item_ids, model.item_factors, strict=True):
                await copy.write_row((item_id, factors, factor))
        copy_s = time.perf_counter() - t
        t = time.perf_counter()
        await conn.execute(
            f"CREATE INDEX ON bench_factors USING hnsw ((factor::vector({factors})) vector_ip_ops)"
        )
        build_s = time.perf_counter() - t
        await conn.execute("DROP TABLE bench_factors")
    return copy_s, build_s


async def run(args: argparse.Namespace, dsn: str, ratings: list[Any]) -> dict[str, Any]:
    matrix = build_matrix(
        Interaction(r.user_id, r.item_id, "RATING", r.rating, float(r.ts)) for r in ratings
    )
    params = AlsParams(factors=args.factors, iterations=15, regularization=0.05, alpha=2.0)
    model = train_als(matrix, params)
    pool = db.async_pool(dsn, max_size=2)
    await pool.open(wait=True)
    try:
        store = PgAls(pool, cache_s=60)
        t = time.perf_counter()
        version = await store.write(
            model,
            TrainingRun(
                "postgres",
                len(ratings),
                len(matrix.users),
                len(matrix.items),
                matrix.n_interactions,
            ),
        )
        write_s = time.perf_counter() - t
        await store.activate(version)
        copy_s, build_s = await copy_yardstick(pool, model, args.factors)
        async with pool.connection() as conn:
            await conn.execute("ANALYZE als_item_factors")
            cur = await conn.execute(
                "EXPLAIN SELECT item_id FROM als_item_factors WHERE dims = %s AND version = %s "
                f"ORDER BY factor::vector({args.factors}) <#> %s::vector({args.factors}) LIMIT 50",
                (args.factors, version, np.ones(args.factors, dtype=np.float32)),
            )
            plan = "\n".join(r[0] for r in await cur.fetchall())
        rng = random.Random(1)
        users = [u for u in matrix.users if len(matrix.user_row(u)) >= 20]
        requests = [
            rng.sample(matrix.user_row(rng.choice(users)), 20) for _ in range(args.requests)
        ]
        await store.recommend(requests[0], 50)  # warm the cache and the connection
        ann: list[float] = []
        exact: list[float] = []
        overlap: list[float] = []
        for recent in requests:
            t = time.perf_counter()
            got = await store.recommend(recent, 50)
            ann.append(time.perf_counter() - t)
            t = time.perf_counter()
            want = model.recommend(recent, 50)
            exact.append(time.perf_counter() - t)
            overlap.append(len({i for i, _ in got} & {i for i, _ in want}) / 50)

        load_events(dsn, ratings)
        popularity = PgPopularity(pool, half_life_h=24 * 365 * 30, max_age_s=3600)
        t = time.perf_counter()
        rows = await popularity.refresh()
        refresh_s = time.perf_counter() - t
        snapshot: list[float] = []
        direct: list[float] = []
        for recent in requests[:100]:
            exclude = [i for i, _ in recent]
            t = time.perf_counter()
            top = await popularity.top(50, exclude)
            snapshot.append(time.perf_counter() - t)
            t = time.perf_counter()
            async with pool.connection() as conn:
                cur = await conn.execute(DIRECT, (popularity.half_life_s, exclude, 50))
                direct_top = await cur.fetchall()
            direct.append(time.perf_counter() - t)
            assert [i for i, _ in top][:10] == [r[0] for r in direct_top][:10]
    finally:
        await pool.close()
    return {
        "items": len(matrix.items),
        "factors": args.factors,
        "factor_write_rows_per_s": round(len(matrix.items) / write_s),
        "yardstick_copy_no_index_rows_per_s": round(len(matrix.items) / copy_s),
        "yardstick_hnsw_bulk_build_s": round(build_s, 3),
        "als_recommend": summary_ms(ann),
        "exact_numpy": summary_ms(exact),
        "ann_recall_at_n": round(float(np.mean(overlap)), 4),
        "als_plan_uses_hnsw": f"als_item_factors_ip_{args.factors}" in plan,
        "popularity_top": summary_ms(snapshot),
        "popularity_direct_query": summary_ms(direct),
        "popularity_refresh_s": round(refresh_s, 3),
        "popularity_items": rows,
        "user_events_rows": len(ratings),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--movielens", type=Path, default=None)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--factors", type=int, default=64)
    args = parser.parse_args()
    ratings = MovieLens(args.movielens or Settings().movielens_path).ratings()
    tmp = Path(tempfile.mkdtemp(prefix="streamrec-bench-cf-"))
    pg = EmbeddedPostgres(tmp / "pgdata")
    dsn = pg.start()
    try:
        db.apply_migrations(dsn)
        result = asyncio.run(run(args, dsn, ratings))
    finally:
        pg.destroy()
        shutil.rmtree(tmp, ignore_errors=True)
    emit(result)


if __name__ == "__main__":
    main()
