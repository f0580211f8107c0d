"""Why the served ALS path scored below ``quality_cf``'s offline ALS: the gap decomposed.

One split (``recsys.movielens.temporal_split`` of MovieLens ml-latest-small, the test
split of ``quality_cf`` and ``quality_routed``), one ALS model (the settings' factors,
λ, alpha, iterations; trained on the training ratings with the CF weights table), written
into Postgres as ``train-cf`` writes it. For every test user, the top 10 (training
items excluded) by:

* ``offline_trained`` — the trained user factor, exact scoring of every item;
* ``offline_profile`` — the fold-in of the user's row of the training matrix, exact
  (``quality_cf``'s ``als``);
* ``offline_newest50`` — the fold-in of the training row of the user's newest 50
  ratings only (the truncation alone), exact;
* ``offline_recent`` — the fold-in of what serving used to fold in: the users worker's
  recent items (newest 50 distinct visits, ratings < 4 included), weighted by position
  (newest 1, halving every 20), exact;
* ``served_recent`` — that input through :meth:`recsys.cf.als_store.PgAls.recommend`
  (pgvector HNSW over the item factors, ``ef_search`` 100, iterative scan): the path as
  it served before the fix;
* ``served_profile`` — the user's CF profile (:mod:`recsys.cf.profile`, the training
  row, from the newest 1,000 events) through ``PgAls.recommend``: the path as it serves now.

and the HNSW answer's recall of the exact top 100 of the same vector at several
``ef_search`` values. Last line:
``{"ndcg@10": {variant: x}, "recall@10": {...}, "ann_recall@100": {ef: r}, "users": n}``.

    python -m benchmarks als_gap [--movielens DIR] [--users N]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import embedded_stack, emit
from recsys import db
from recsys.cf.als import AlsParams, train_als
from recsys.cf.als_store import PgAls, TrainingRun
from recsys.cf.interactions import Interaction, build_matrix
from recsys.cf.profile import DEFAULT_PROFILE_EVENTS, user_profile
from recsys.cf.weights import DEFAULT_WEIGHTS
from recsys.evaluation.bootstrap import mean_interval, paired_difference
from recsys.evaluation.ranking import ndcg_at_k, recall_at_k
from recsys.movielens import MovieLens, Rating, temporal_split
from recsys.records import EventType, UserEvent
from recsys.serving.user_view import view_of
from recsys.users.state import UserStateConfig, fold
from streams.settings import Settings

K = 10
POOL = 100
EF_SEARCH = (100, 200, 400, 1000)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _event(r: Rating) -> UserEvent:
    return UserEvent(
        event_id=f"ml-{r.user_id}-{r.item_id}-{r.ts}",
        user_id=r.user_id,
        event_type=EventType.RATING,
        item_id=r.item_id,
        rating=r.rating,
        occurred_at=datetime.fromtimestamp(r.ts, tz=UTC),
    )


def _interaction(r: Rating) -> Interaction:
    return Interaction(r.user_id, r.item_id, "RATING", r.rating, float(r.ts))


async def served(
    store: PgAls, inputs: dict[str, Sequence[tuple[str, float]]], exclude: dict[str, set[str]]
) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    sem = asyncio.Semaphore(4)

    async def one(user: str) -> None:
        async with sem:
            found = await store.recommend(inputs[user], POOL, exclude[user])
        out[user] = [i for i, _ in found]

    await asyncio.gather(*(one(u) for u in inputs))
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--movielens", type=Path, default=None, help="ml-latest-small folder")
    parser.add_argument("--users", type=int, default=None, help="subsample test users (seeded)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    base = Settings()
    split = temporal_split(MovieLens(args.movielens or base.movielens_path).ratings())
    users = sorted(split.test, key=int)
    if args.users is not None and args.users < len(users):
        users = sorted(random.Random(args.seed).sample(users, args.users), key=int)
    history: dict[str, list[Rating]] = defaultdict(list)
    for r in split.train:
        history[r.user_id].append(r)
    users = [u for u in users if history.get(u)]

    matrix = build_matrix((_interaction(r) for r in split.train), DEFAULT_WEIGHTS)
    params = AlsParams(
        factors=base.als_factors,
        iterations=base.als_iterations,
        regularization=base.als_regularization,
        alpha=base.als_alpha,
        threads=base.als_threads,
    )
    model = train_als(matrix, params, weight_cap=DEFAULT_WEIGHTS.cap)
    say(f"ALS {params.factors} factors on {matrix.n_interactions} cells")

    states = fold((_event(r) for r in split.train), UserStateConfig.from_settings(base.users))
    exclude = {u: {r.item_id for r in history[u]} for u in users}
    recent = {u: list(view_of(u, states[u], ()).recent) for u in users}
    profile = {
        u: user_profile(_interaction(r) for r in history[u][-DEFAULT_PROFILE_EVENTS:])
        for u in users
    }
    newest50 = {u: user_profile(_interaction(r) for r in history[u][-50:]) for u in users}
    lists: dict[str, dict[str, list[str]]] = {
        "offline_trained": {
            u: [i for i, _ in model.recommend_user(u, POOL, exclude[u])] for u in users
        },
        "offline_profile": {
            u: [i for i, _ in model.recommend(profile[u], POOL, exclude[u])] for u in users
        },
        "offline_newest50": {
            u: [i for i, _ in model.recommend(newest50[u], POOL, exclude[u])] for u in users
        },
        "offline_recent": {
            u: [i for i, _ in model.recommend(recent[u], POOL, exclude[u])] for u in users
        },
    }
    ann: dict[str, float] = {}
    with embedded_stack(with_postgres=True) as settings:
        assert settings.database_url is not None
        dsn = settings.database_url.get_secret_value()
        db.apply_migrations(dsn)

        async def run() -> None:
            pool = db.async_pool(dsn, max_size=4, name="als-gap")
            await pool.open(wait=True)
            try:
                writer = PgAls(pool, cache_s=0)
                run_info = TrainingRun(
                    "movielens",
                    matrix.n_events,
                    len(matrix.users),
                    len(matrix.items),
                    matrix.n_interactions,
                )
                version = await writer.write(model, run_info)
                await writer.activate(version)
                store = PgAls(pool, cache_s=600, ef_search=100)
                lists["served_recent"] = await served(store, recent, exclude)
                lists["served_profile"] = await served(store, profile, exclude)
                for ef in EF_SEARCH:
                    got = await served(PgAls(pool, cache_s=600, ef_search=ef), profile, exclude)
                    exact = lists["offline_profile"]
                    ann[str(ef)] = round(
                        float(
                            np.mean(
                                [
                                    len(set(got[u]) & set(exact[u])) / len(exact[u])
                                    for u in users
                                    if exact[u]
                                ]
                            )
                        ),
                        4,
                    )
                    say(f"ef_search {ef}: recall@{POOL} of the exact top {POOL} {ann[str(ef)]}")
            finally:
                await pool.close()

        asyncio.run(run())

    result: dict[str, Any] = {
        "ndcg@10": {},
        "recall@10": {},
        "ndcg@10_ci95": {},
        "ndcg@10_minus_offline_profile_ci95": {},
    }
    ndcg = {
        name: [ndcg_at_k(found[u][:K], split.test[u], K) for u in users]
        for name, found in lists.items()
    }
    for name, found in lists.items():
        rc = [recall_at_k(found[u][:K], split.test[u], K) for u in users]
        ci = mean_interval(ndcg[name])
        diff = paired_difference(ndcg[name], ndcg["offline_profile"])
        result["ndcg@10"][name] = round(ci.mean, 4)
        result["ndcg@10_ci95"][name] = ci.rounded()
        result["ndcg@10_minus_offline_profile_ci95"][name] = [round(diff.mean, 4), diff.rounded()]
        result["recall@10"][name] = round(float(np.mean(rc)), 4)
        say(
            f"{name:16s} ndcg@10 {ci.mean:.4f} {ci.rounded()}  recall@10 {np.mean(rc):.4f}  "
            f"minus offline_profile {diff.mean:+.4f} {diff.rounded()}"
        )
    result["ann_recall@100"] = ann
    result["users"] = len(users)
    result["seconds"] = round(time.perf_counter() - started, 1)
    emit(result)
    return result


if __name__ == "__main__":
    main()
