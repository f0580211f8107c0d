"""What ``train-cf --feedback`` gains: weak negatives, inverse-propensity and LLM weights,
measured on MovieLens with simulated impressions (no real traffic exists to log).

MovieLens has ratings but no impressions, so the impressions are simulated — *declared
assumptions*, not data:

* **Logging policy.** For every user, at up to ``--impressions`` evenly spaced points
  of their training history, a request is served k = 10 items they had not rated yet:
  the CF route (an ALS model trained on the fold's training ratings, folded in from
  what they had rated until then) with probability 1 - ε, else POPULARITY or a uniform
  draw from the 3,000 most popular items (ε/2 each, ε = 0.2); the route's propensity is
  logged. An LLM reranks ``--llm-share`` of the responses (a shuffle of the list).
* **Outcomes.** Rank r is examined with probability 1/log2(r + 1). An examined item the
  user rates ≥ 4 later in the training period is acted on (its rating); anything else
  is not. ``--persuasion q``: an examined, not-liked item of an LLM-touched response is
  clicked anyway with probability q — a CLICK event that lands in the user's events
  like any other (the harm an LLM's persuasive wording could do to the training data;
  q = 0 assumes none).

Each impression is a :class:`~recsys.records.FeedbackExample`; training goes through
the product's :class:`~recsys.cf.impressions.FeedbackSignals` and
:class:`~recsys.cf.interactions.MatrixBuilder` and ``train_als`` with the settings'
parameters; users are folded in from their CF profile (:mod:`recsys.cf.profile`, as
served) and scored by NDCG@10 / recall@10 on their held-out positives.

Protocol: the grid (:data:`GRID`) runs on a *validation* split carved from the
training data; :func:`recsys.evaluation.selection.pick` keeps "no feedback" unless a
configuration beats it with a Bonferroni-corrected paired bootstrap interval above 0;
the test split is then scored once, for "no feedback", the chosen configuration, the
best variant and each knob alone (reported, not chosen from).

    python -m benchmarks cf_feedback [--movielens DIR] [--persuasion 0.0] [--seed 7]

Last line: ``{"chosen": {...}, "validation": {config: {"ndcg@10", "recall@10"}},
"test": {config: {"ndcg@10", "ndcg@10_ci95", "recall@10"}}, "test_best_minus_none":
[config, d, [lo, hi]], "reason": "...", ...}``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import emit
from recsys.cf.als import AlsModel, AlsParams, fold_in, train_als
from recsys.cf.impressions import FeedbackSignals, FeedbackWeights
from recsys.cf.interactions import Interaction, MatrixBuilder
from recsys.cf.profile import DEFAULT_PROFILE_EVENTS, user_profile
from recsys.cf.weights import DEFAULT_WEIGHTS
from recsys.evaluation.bootstrap import mean_interval, paired_difference
from recsys.evaluation.ranking import ndcg_at_k, recall_at_k
from recsys.evaluation.selection import pick
from recsys.movielens import MovieLens, Rating, TemporalSplit, temporal_split
from recsys.records import FeedbackExample
from streams.settings import Settings

K = 10
EPSILON = 0.2
RANDOM_HEAD = 3000
#: negative weight x IPS clip x LLM weight; (0, 0, 1) is "no feedback".
GRID: list[tuple[float, float, float]] = [
    (neg, clip, llm)
    for neg, clip, llm in itertools.product([0.0, 0.1, 0.3, 1.0], [0.0, 10.0], [1.0, 0.0])
]
NONE = (0.0, 0.0, 1.0)
#: Each knob alone, also scored on the test split (reported, never used to choose).
ONE_KNOB = [(0.1, 0.0, 1.0), (0.0, 10.0, 1.0), (0.0, 0.0, 0.0)]


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def name_of(config: tuple[float, float, float]) -> str:
    neg, clip, llm = config
    return "none" if config == NONE else f"neg{neg:g}_ips{clip:g}_llm{llm:g}"


@dataclass
class Logged:
    """A fold's simulated log: examples, and the extra (persuaded) click events."""

    examples: list[FeedbackExample]
    clicks: list[Interaction]


def _interaction(r: Rating) -> Interaction:
    return Interaction(r.user_id, r.item_id, "RATING", r.rating, float(r.ts))


def params(settings: Settings) -> AlsParams:
    return AlsParams(
        factors=settings.als_factors,
        iterations=settings.als_iterations,
        regularization=settings.als_regularization,
        alpha=settings.als_alpha,
        threads=settings.als_threads,
    )


def simulate(split: TemporalSplit, model: AlsModel, args: argparse.Namespace, seed: int) -> Logged:
    """The logging policy's impressions and their outcomes (module docstring)."""
    rng = random.Random(seed)
    counts: dict[str, int] = defaultdict(int)
    history: dict[str, list[Rating]] = defaultdict(list)
    for r in split.train:
        history[r.user_id].append(r)
        if r.rating >= 4.0:
            counts[r.item_id] += 1
    popular = sorted(counts, key=lambda i: (-counts[i], i))
    head = popular[:RANDOM_HEAD]
    examples: list[FeedbackExample] = []
    clicks: list[Interaction] = []
    routes = [("CF", 1 - EPSILON), ("POPULARITY", EPSILON / 2), ("RANDOM", EPSILON / 2)]
    for user in sorted(history, key=int):
        rows = sorted(history[user], key=lambda r: (r.ts, r.item_id))
        if len(rows) < 6:
            continue
        points = sorted(set(np.linspace(5, len(rows) - 1, args.impressions).astype(int)))
        for n, i in enumerate(points):
            at = rows[i].ts
            seen = {r.item_id for r in rows[:i]}
            later = {r.item_id: r.rating for r in rows[i:] if r.rating >= 4.0}
            route, propensity = rng.choices(routes, weights=[p for _, p in routes])[0]
            if route == "CF":
                pairs = [
                    (model.item_index[r.item_id], DEFAULT_WEIGHTS.rating_weight(r.rating))
                    for r in rows[:i]
                    if r.item_id in model.item_index and r.rating >= 4.0
                ]
                shown: list[str] = []
                if pairs:
                    idx = np.array([j for j, _ in pairs])
                    w = np.array([w for _, w in pairs])
                    p = model.params
                    vec = fold_in(
                        model.item_factors[idx], w, model.gramian, p.regularization, p.alpha
                    )
                    scores = model.item_factors @ vec
                    order = np.argsort(-scores)
                    shown = [
                        model.item_ids[j]
                        for j in order[: K + len(seen)]
                        if model.item_ids[j] not in seen
                    ][:K]
                if len(shown) < K:
                    shown += [x for x in popular if x not in seen and x not in shown][
                        : K - len(shown)
                    ]
            elif route == "POPULARITY":
                shown = [x for x in popular[: K + len(seen)] if x not in seen][:K]
            else:
                shown = rng.sample([x for x in head if x not in seen], K)
            llm = rng.random() < args.llm_share
            if llm:
                rng.shuffle(shown)
            when = datetime.fromtimestamp(at, tz=UTC)
            for rank, item in enumerate(shown, start=1):
                examined = rng.random() < 1.0 / np.log2(rank + 1)
                rating = later.get(item) if examined else None
                clicked = False
                if examined and rating is None and llm and rng.random() < args.persuasion:
                    clicked = True
                    clicks.append(Interaction(user, item, "CLICK", None, float(at)))
                examples.append(
                    FeedbackExample(
                        example_id=f"{user}-{n}:{item}",
                        request_id=f"{user}-{n}",
                        user_id=user,
                        item_id=item,
                        rank=rank,
                        route=route,
                        warmth_bucket="WARM",
                        llm_used=llm,
                        propensity=propensity,
                        clicked=clicked,
                        rating=rating,
                        attributed_by="item" if rating is not None or clicked else "none",
                        impression_at=when,
                    )
                )
    return Logged(examples, clicks)


@dataclass
class Scored:
    ndcg: np.ndarray
    recall: np.ndarray


def train_and_score(
    split: TemporalSplit,
    logged: Logged,
    config: tuple[float, float, float],
    als: AlsParams,
    users: Sequence[str],
) -> Scored:
    neg, clip, llm = config
    builder = MatrixBuilder(DEFAULT_WEIGHTS)
    events: dict[str, list[Interaction]] = defaultdict(list)
    for x in itertools.chain((_interaction(r) for r in split.train), logged.clicks):
        builder.add(x)
        events[x.user_id].append(x)
    if config == NONE:
        matrix = builder.build()
    else:
        signals = FeedbackSignals(FeedbackWeights(negative=neg, ips_clip=clip, llm_weight=llm))
        signals.add_all(logged.examples)
        matrix = builder.build(negatives=signals.negatives(), scales=signals.scales())
    model = train_als(matrix, als, weight_cap=DEFAULT_WEIGHTS.cap)
    nd, rc = [], []
    for user in users:
        rows = sorted(events[user], key=lambda x: x.at)[-DEFAULT_PROFILE_EVENTS:]
        seen = {x.item_id for x in events[user]}
        found = [i for i, _ in model.recommend(user_profile(rows), K, seen)]
        nd.append(ndcg_at_k(found, split.test[user], K))
        rc.append(recall_at_k(found, split.test[user], K))
    return Scored(np.asarray(nd), np.asarray(rc))


def run_fold(
    split: TemporalSplit,
    configs: Sequence[tuple[float, float, float]],
    args: argparse.Namespace,
    als: AlsParams,
    seed: int,
) -> tuple[dict[str, Scored], dict[str, Any]]:
    t = time.perf_counter()
    logging_matrix = MatrixBuilder(DEFAULT_WEIGHTS)
    for r in split.train:
        logging_matrix.add(_interaction(r))
    log_model = train_als(logging_matrix.build(), als, weight_cap=DEFAULT_WEIGHTS.cap)
    logged = simulate(split, log_model, args, seed)
    users = sorted(split.test, key=int)
    meta = {
        "examples": len(logged.examples),
        "acted_on": sum(1 for e in logged.examples if e.rating is not None or e.clicked),
        "persuaded_clicks": len(logged.clicks),
        "llm_touched": sum(e.llm_used for e in logged.examples),
        "users": len(users),
    }
    say(f"simulated {meta} in {time.perf_counter() - t:.1f} s")
    out = {}
    for config in configs:
        out[name_of(config)] = scored = train_and_score(split, logged, config, als, users)
        say(f"  {name_of(config):22s} ndcg@10 {scored.ndcg.mean():.4f}")
    return out, meta


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--movielens", type=Path, default=None, help="ml-latest-small folder")
    parser.add_argument("--impressions", type=int, default=20, help="per user")
    parser.add_argument("--llm-share", type=float, default=0.3)
    parser.add_argument("--persuasion", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    settings = Settings()
    als = params(settings)
    split = temporal_split(MovieLens(args.movielens or settings.movielens_path).ratings())
    validation = temporal_split(split.train)
    say(f"validation: {len(GRID)} configurations")
    val, val_meta = run_fold(validation, GRID, args, als, args.seed)
    names = [name_of(c) for c in GRID]
    outcome = pick({n: s.ndcg for n, s in val.items()}, ["none"], [n for n in names if n != "none"])
    say(outcome.reason)
    chosen = next(c for c in GRID if name_of(c) == outcome.chosen)
    best = next(c for c in GRID if name_of(c) == outcome.challenger)
    test_configs = list(dict.fromkeys([NONE, chosen, best, *ONE_KNOB]))
    say("test: " + ", ".join(name_of(c) for c in test_configs))
    test, test_meta = run_fold(split, test_configs, args, als, args.seed + 1)
    result: dict[str, Any] = {
        "chosen": {
            "name": outcome.chosen,
            "negative": chosen[0],
            "ips_clip": chosen[1],
            "llm_weight": chosen[2],
        },
        "reason": outcome.reason,
        "assumptions": {
            "epsilon": EPSILON,
            "impressions_per_user": args.impressions,
            "llm_share": args.llm_share,
            "persuasion": args.persuasion,
        },
        "validation": {
            n: {
                "ndcg@10": round(float(s.ndcg.mean()), 4),
                "recall@10": round(float(s.recall.mean()), 4),
            }
            for n, s in val.items()
        },
        "validation_log": val_meta,
        "test_log": test_meta,
        "test": {},
    }
    for config in test_configs:
        s = test[name_of(config)]
        result["test"][name_of(config)] = {
            "ndcg@10": round(float(s.ndcg.mean()), 4),
            "ndcg@10_ci95": mean_interval(s.ndcg).rounded(),
            "recall@10": round(float(s.recall.mean()), 4),
        }
    other = name_of(best)
    diff = paired_difference(test[other].ndcg, test["none"].ndcg)
    result["test_best_minus_none"] = [other, round(diff.mean, 4), diff.rounded()]
    result["seconds"] = round(time.perf_counter() - started, 1)
    print("details " + json.dumps({"grid": names}), flush=True)
    emit(result)
    return result


if __name__ == "__main__":
    main()
