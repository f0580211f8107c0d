"""Offline probe: EASE item-item models for cold users, on the route selection's validation split.

Not a product benchmark: a reproducible record of the issue-12 cold-user exploration that
asked whether an EASE model (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse
Data": ``B = I - P diag(1/diag(P))``, ``P = (XᵀX + λI)⁻¹``, zero diagonal) would lift
``sim_cold`` to 1.1x the equal-weight hybrid. It uses only the **validation split** the
selection procedure uses (``temporal_split`` of the test split's training data; the test
split is never scored here) and compares with the lists the production serving path
returned for the same users, saved by::

    python -m benchmarks quality_routed --select-only --save DIR     # DIR/validation.json

then::

    python -m benchmarks ease_cold_probe --lists DIR/validation.json [--movielens DIR]

* X: the validation-training interactions, binary, either every rating (``all``) or
  ratings ≥ 4 only (``liked``), on the items with at least ``--min-count`` ratings.
* λ is chosen on splits of the **training users**, never on the judged cold users: in 5
  seeded folds of the users, each fold's users with ≥ 4 positives are held out of X, written
  as its first 3 positives, scored against its last 20 % of positives (as the splits
  do), its other rated items excluded; the λ of the best mean NDCG@10 wins, then EASE is
  refit on all training users with it.
* Judged: the validation split's cold pool as the procedure pools it (real cold users
  with their whole training history as seeds + every user with ≥ 4 training positives
  cut to their first 3), the same held-out items and exclusions as the served lists.
* Reported: NDCG@10 per model and the paired bootstrap interval (users resampled) of the
  difference to the served hybrid, at 95 % and at the selection's Bonferroni level, plus
  reciprocal-rank fusions (``Σ w/(60 + rank)``) of EASE with the served hybrid and
  popularity lists. Last line: JSON ``{model: {"ndcg@10", "ratio_to_hybrid", "ci95",
  "ci_bonferroni"}}`` for the sim-cold users.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys.evaluation.ranking import ndcg_at_k
from recsys.evaluation.route_selection import CANDIDATES
from recsys.evaluation.selection import ALPHA
from recsys.movielens import POSITIVE, MovieLens, Rating, temporal_split
from streams.settings import Settings

LAMBDAS = (10.0, 100.0, 1000.0, 3000.0, 10000.0, 30000.0, 1e5, 3e5, 1e6)
FOLDS = 5
SEEDS_KEPT = 3
K = 10
POOL = 100


def ease(x: sp.csr_matrix, lam: float) -> np.ndarray:
    """EASE weights: ``B = I - P diag(1/diag(P))``, ``P = (XᵀX + λI)⁻¹`` (diagonal 0)."""
    g = (x.T @ x).toarray().astype(np.float64)
    g[np.diag_indices_from(g)] += lam
    p = np.linalg.inv(g)
    b = -p / np.diag(p)[None, :]
    b[np.diag_indices_from(b)] = 0.0
    return b.astype(np.float32)


def top(scores: np.ndarray, exclude: np.ndarray, prior: np.ndarray, n: int) -> np.ndarray:
    s = scores.astype(np.float64) + 1e-9 * prior
    s[exclude] = -np.inf
    return np.argsort(-s, kind="stable")[:n]


def rrf(lists: Sequence[Sequence[str]], weights: Sequence[float]) -> list[str]:
    out: dict[str, float] = defaultdict(float)
    for lst, w in zip(lists, weights, strict=True):
        for rank, item in enumerate(lst, 1):
            out[item] += w / (60 + rank)
    return [i for i, _ in sorted(out.items(), key=lambda kv: (-kv[1], kv[0]))]


def interval(diff: np.ndarray, level: float, reps: int = 2000, seed: int = 7) -> list[float]:
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (reps, len(diff)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return [round(float(lo), 4), round(float(hi), 4)]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lists", type=Path, required=True, help="validation.json (--save)")
    parser.add_argument("--movielens", type=Path, default=None)
    parser.add_argument("--min-count", type=int, default=5, help="ratings an item needs")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    ml = MovieLens(args.movielens or Settings().movielens_path)
    split = temporal_split(temporal_split(ml.ratings()).train)  # the validation split
    saved = json.loads(args.lists.read_text())
    history: dict[str, list[Rating]] = defaultdict(list)
    for r in split.train:
        history[r.user_id].append(r)
    for rows in history.values():
        rows.sort(key=lambda r: (r.ts, r.item_id))
    counts: dict[str, int] = defaultdict(int)
    for r in split.train:
        counts[r.item_id] += 1
    items = sorted(i for i, c in counts.items() if c >= args.min_count)
    idx = {i: n for n, i in enumerate(items)}
    pos_count = np.zeros(len(items))
    for r in split.train:
        if r.rating >= POSITIVE and r.item_id in idx:
            pos_count[idx[r.item_id]] += 1
    prior = pos_count / pos_count.max()
    print(f"{len(items)} items with ≥ {args.min_count} ratings", file=sys.stderr)

    def matrix(users: Sequence[str], liked: bool) -> sp.csr_matrix:
        rows, cols = [], []
        for n, u in enumerate(users):
            for r in history[u]:
                if r.item_id in idx and (not liked or r.rating >= POSITIVE):
                    rows.append(n)
                    cols.append(idx[r.item_id])
        x = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(users), len(items)))
        x.data[:] = 1.0
        return x

    def recommend(b: np.ndarray | None, seeds: Sequence[str], excl: np.ndarray) -> list[str]:
        s = np.zeros(len(items))
        known = [idx[i] for i in seeds if i in idx]
        if b is not None and known:
            s = b[known].sum(axis=0)
        return [items[j] for j in top(s, excl, prior, POOL)]

    def exclusion(user: str) -> np.ndarray:
        return np.array([idx[r.item_id] for r in history[user] if r.item_id in idx], dtype=int)

    # λ on splits of the training users (never the judged cold users): FOLDS folds by a
    # seeded hash; each fold's users are held out of X in turn
    all_users = sorted(history)
    fold_of = {u: zlib.crc32(f"{args.seed}:{u}".encode()) % FOLDS for u in all_users}
    tune_cases: dict[int, list[tuple[list[str], list[str], np.ndarray]]] = defaultdict(list)
    for u in all_users:
        positives = [r for r in history[u] if r.rating >= POSITIVE]
        if len(positives) < SEEDS_KEPT + 1:
            continue
        held = positives[-max(1, round(0.2 * len(positives))) :]
        held_ids = {r.item_id for r in held}
        seeds = [r.item_id for r in positives[:SEEDS_KEPT] if r.item_id not in held_ids]
        excl = np.array(
            [idx[r.item_id] for r in history[u] if r.item_id in idx and r.item_id not in held_ids],
            dtype=int,
        )
        tune_cases[fold_of[u]].append((seeds, list(held_ids), excl))
    chosen: dict[str, float] = {}
    tuning_table: dict[str, dict[str, float]] = {}
    for kind in ("all", "liked"):
        per_lam: dict[float, list[float]] = defaultdict(list)
        for fold in range(FOLDS):
            x = matrix([u for u in all_users if fold_of[u] != fold], liked=kind == "liked")
            for lam in LAMBDAS:
                b = ease(x, lam)
                per_lam[lam] += [
                    ndcg_at_k(recommend(b, s, e), h, K) for s, h, e in tune_cases[fold]
                ]
        scores = {lam: float(np.mean(v)) for lam, v in per_lam.items()}
        chosen[kind] = max(scores, key=lambda k: scores[k])
        tuning_table[kind] = {f"{k:g}": round(v, 4) for k, v in scores.items()}
        n_tune = len(per_lam[LAMBDAS[0]])
        print(f"λ tuning ({kind}, {n_tune} users): {tuning_table[kind]}", file=sys.stderr)

    models = {k: ease(matrix(all_users, liked=k == "liked"), chosen[k]) for k in chosen}
    lists = saved["lists"]
    scored: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for uid, case in saved["cases"].items():
        if case["bucket"] not in ("sim_cold", "cold"):
            continue
        real = uid.split("-", 1)[1] if case["bucket"] == "sim_cold" else uid
        rel = case["relevant"]
        positives = [r for r in history[real] if r.rating >= POSITIVE]
        if case["bucket"] == "sim_cold":
            seeds_all = seeds_liked = [r.item_id for r in positives[:SEEDS_KEPT]]
        else:
            seeds_all = [r.item_id for r in history[real]]
            seeds_liked = [r.item_id for r in positives]
        excl = exclusion(real)
        ranked = {
            "ease_all": recommend(models["all"], seeds_all, excl),
            "ease_liked": recommend(models["liked"], seeds_liked, excl),
        }
        for name in ("hybrid", "popularity", "cf_sum", "content"):
            ranked[name] = lists[name][uid]
        for e in ("ease_all", "ease_liked"):
            ranked[f"rrf({e}, hybrid)"] = rrf([ranked[e], lists["hybrid"][uid]], [1, 1])
            ranked[f"rrf({e}, popularity)"] = rrf([ranked[e], lists["popularity"][uid]], [1, 1])
            ranked[f"rrf({e}, hybrid, popularity)"] = rrf(
                [ranked[e], lists["hybrid"][uid], lists["popularity"][uid]], [1, 1, 1]
            )
        for pool in ("pool", case["bucket"]):
            for name, lst in ranked.items():
                scored[pool][name].append(ndcg_at_k(lst, rel, K))
    bonferroni = 1 - ALPHA / (len(CANDIDATES) - 4)
    result: dict[str, Any] = {}
    for pool in ("sim_cold", "pool"):
        base = np.array(scored[pool]["hybrid"])
        print(
            f"\n{pool} ({len(base)} users), NDCG@10; difference to the served hybrid",
            file=sys.stderr,
        )
        for name, values in scored[pool].items():
            v = np.array(values)
            row = {
                "ndcg@10": round(float(v.mean()), 4),
                "ratio_to_hybrid": round(float(v.mean() / base.mean()), 3),
                "ci95": interval(v - base, 0.95, seed=args.seed),
                "ci_bonferroni": interval(v - base, bonferroni, seed=args.seed),
            }
            print(
                f"  {name:36s} {row['ndcg@10']:.4f}  {row['ratio_to_hybrid']:.3f}x  "
                f"95% {row['ci95']}  {bonferroni:.4f}: {row['ci_bonferroni']}",
                file=sys.stderr,
            )
            if pool == "sim_cold":
                result[name] = row
    print(
        f"λ chosen: {chosen}; bonferroni level {bonferroni:.4f}; "
        f"{time.perf_counter() - started:.0f} s",
        file=sys.stderr,
    )
    print(json.dumps(result, sort_keys=True))
    return result


if __name__ == "__main__":
    main()
