"""Quality of the routed serving policy against each single route, on MovieLens
ml-latest-small (or any dataset in its layout), replayed into embedded stacks.

The routed policy is **chosen by a procedure, not by constants**
(:mod:`recsys.evaluation.route_selection`), so that it can be run on data it was never
tuned on:

1. **Validation stage.** A validation split is carved out of the training data the
   same way the test split is made (per user, the last 20 % of training positives
   held out). A fresh stack is seeded with the validation-training world
   (:mod:`benchmarks.movielens_world`) and every candidate of the declared space
   (:data:`~recsys.evaluation.route_selection.CANDIDATES`) serves every validation
   user in-process through the production :class:`~recsys.serving.recommender.Recommender`.
   Per bucket (cold = real cold + simulated cold users), the procedure keeps the best
   single route unless a weighted variant beats it with a Bonferroni-corrected paired
   bootstrap interval above 0.
2. **Test stage.** A second fresh stack is seeded with the test-training world and
   every judged user is served once by ``routed`` (the chosen per-bucket routes, served
   in-process by the same Recommender) and by each single route (``cf``, ``content``,
   ``popularity``, ``hybrid``: the procedure's baselines). The test split is used once.

``--routing shipped`` skips stage 1 and serves ``ServingConfig``'s shipped defaults as
``routed``; ``--select-only`` stops after stage 1 and prints the selection (that is the
command that reproduces the shipped defaults on ml-latest-small). ``--worker`` also
serves ``routed`` through a real ``serve`` worker over the broker (when it is the
shipped policy) and reports the agreement; ``--llm simulated`` adds the routed policy
with rerank by our *simulated* LLM (a word-overlap ranker, not a language model) to
the details; ``--llm local`` the same with the embedded local LLM (SmolLM2-135M,
compact prompts; seconds per call on 2 cores: subsample with ``--users``).

Metrics per bucket (``overall`` = the real users, ``cold``/``warming``/``warm`` by
training positives, ``sim_cold``): recall@10 and NDCG@10 with a 95 % bootstrap
interval of the mean over users. The details line (second to last) carries the
selection, the paired comparison of ``routed`` with the best single route per bucket
(the acceptance rule: at least as good, or the 95 % interval of the difference includes
0, on buckets with ≥ 30 users; on ``sim_cold`` at least 1.1 times), users and timings.

    python -m benchmarks quality_routed [--movielens DIR] [--routing procedure|shipped]
        [--select-only] [--users N] [--worker] [--llm simulated|local|none]

Last line: ``{bucket: {policy: {"recall@10": r, "ndcg@10": n, "ndcg@10_ci95": [lo, hi]}}}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import embedded_stack, emit
from benchmarks.movielens_world import (
    Answers,
    CachedEmbedder,
    Case,
    PerUser,
    agreement,
    in_process,
    per_user,
    say,
    seed,
    through_worker,
)
from recsys import db
from recsys.cf.pg_covisit import PgCovisitation
from recsys.embedding import SentenceTransformerEmbedder
from recsys.evaluation.bootstrap import mean_interval, paired_difference
from recsys.evaluation.route_selection import (
    CANDIDATES,
    SINGLE_ROUTES,
    RoutingChoice,
    choose_routes,
)
from recsys.llm.client import LlmClient
from recsys.movielens import MovieLens, TemporalSplit, temporal_split
from recsys.records import WarmthBucket
from recsys.serving.candidates import COVISIT_SEEDS
from recsys.serving.config import SHIPPED_ROUTES, BucketRoute
from recsys.serving.query_embedding import QueryEncoder
from stack.embedded import free_port
from stack.local_llm.wiring import embedded_llm, local_llm_overrides
from streams.settings import Settings
from testkit.llm_server import SimulatedLlmServer

BUCKETS = ("overall", "cold", "warming", "warm", "sim_cold")
POLICIES = ("routed", *(c.name for c in SINGLE_ROUTES))
#: Buckets the acceptance rule judges need at least this many users.
MIN_JUDGED = 30
SIM_COLD_FACTOR = 1.1
#: Large enough that 1996-2018 ratings are not decayed away at today's date: the
#: popular head is all-time popularity (what the CF benchmark's tuning also chose).
POPULARITY_HALF_LIFE_H = 1e6
#: The same for co-visitation: with the default half-life of a week, the neighbours of an
#: item at today's date are whoever co-visited it last (2018), not MovieLens' co-visits.
COVISIT_HALF_LIFE_H = 1e6
#: Serving reads the popularity snapshot train-cf wrote (no refresh during the run).
POPULARITY_MAX_AGE_S = 86_400.0
#: Requests served in-process a second time: is the in-process answer itself stable?
REPEAT_SAMPLE = 200
#: Which serving bucket decides for the cases of each benchmark bucket.
SERVING_BUCKET = {
    "cold": WarmthBucket.COLD,
    "sim_cold": WarmthBucket.COLD,
    "warming": WarmthBucket.WARMING,
    "warm": WarmthBucket.WARM,
}


def stack(**extra: Any) -> Any:
    return embedded_stack(
        with_postgres=True,
        fetch_wait_ms=5,
        user_partitions=2,
        route_epsilon=0.0,
        popularity_half_life_h=POPULARITY_HALF_LIFE_H,
        covisit_half_life_h=COVISIT_HALF_LIFE_H,
        popularity_max_age_s=POPULARITY_MAX_AGE_S,
        **extra,
    )


async def covisit_statement_ms(
    settings: Settings, cases: Sequence[Case], sample: int, seed_: int
) -> dict[str, Any]:
    """What the ``covisit`` CF list's read costs: :meth:`PgCovisitation.neighbors` with
    shares for up to :data:`COVISIT_SEEDS` of a sampled user's training items (the
    request's exclusions, 100 candidates), one after the other, pool acquire included."""
    assert settings.database_url is not None
    pool = db.async_pool(settings.database_url.get_secret_value(), max_size=1, name="bench-cv")
    await pool.open(wait=True)
    store = PgCovisitation(pool, half_life_h=settings.covisit_half_life_h)
    rng = random.Random(seed_)
    picked = rng.sample(list(cases), min(sample, len(cases)))
    took: list[float] = []
    try:
        for case in picked:
            seeds = rng.sample(sorted(case.train_items), min(COVISIT_SEEDS, len(case.train_items)))
            t = time.perf_counter()
            await store.neighbors(seeds, settings.candidate_pool, case.exclude, shares=True)
            took.append((time.perf_counter() - t) * 1000.0)
    finally:
        await pool.close()
    ms = np.asarray(took)
    return {
        "calls": len(took),
        "p50": round(float(np.percentile(ms, 50)), 2),
        "p99": round(float(np.percentile(ms, 99)), 2),
    }


def same_for_every_bucket(route: BucketRoute) -> dict[str, BucketRoute]:
    """``ServingConfig`` overrides serving every bucket the same way."""
    return {"cold": route, "warming": route, "warm": route}


def select(
    embedder: CachedEmbedder, ml: MovieLens, split: TemporalSplit, args: argparse.Namespace
) -> tuple[RoutingChoice, dict[str, Any]]:
    """Stage 1: every candidate on the validation split, the procedure per bucket."""
    with stack() as settings:
        cases, meta = seed(settings, embedder, ml, split, args.users, args.seed)
        encoder = QueryEncoder(embedder)
        policies = {c.name: same_for_every_bucket(c.bucket_route) for c in CANDIDATES}
        answers = asyncio.run(in_process(settings, encoder, cases, policies))
        encoder.close()
    save(args.save, "validation", cases, answers)
    per_bucket: dict[WarmthBucket, tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = {}
    for bucket in (WarmthBucket.COLD, WarmthBucket.WARMING, WarmthBucket.WARM):
        chosen = [c for c in cases if SERVING_BUCKET[c.bucket] is bucket]
        scored = {name: per_user(a, chosen) for name, a in answers.items()}
        per_bucket[bucket] = (
            {n: s.ndcg for n, s in scored.items()},
            {n: s.recall for n, s in scored.items()},
        )
    choice = choose_routes(per_bucket, seed=args.seed)
    meta["seconds_serving"] = {n: round(a.seconds, 1) for n, a in answers.items()}
    for bucket, c in choice.buckets.items():
        say(f"{bucket.value:8s} → {c.chosen.name}: {c.reason}")
    return choice, meta


def evaluate(
    embedder: CachedEmbedder,
    ml: MovieLens,
    split: TemporalSplit,
    routes: dict[str, BucketRoute],
    args: argparse.Namespace,
) -> tuple[list[Case], dict[str, Answers], dict[str, Any]]:
    """Stage 2: ``routed`` and the single routes on the test split (used once)."""
    with stack() as settings:
        cases, meta = seed(settings, embedder, ml, split, args.users, args.seed)
        encoder = QueryEncoder(embedder)
        policies: dict[str, dict[str, Any]] = {"routed": dict(routes)}
        policies |= {c.name: same_for_every_bucket(c.bucket_route) for c in SINGLE_ROUTES}
        answers = asyncio.run(in_process(settings, encoder, cases, policies))
        sample = random.Random(args.seed).sample(cases, min(REPEAT_SAMPLE, len(cases)))
        again = asyncio.run(in_process(settings, encoder, sample, {"again": dict(routes)}))
        meta["in_process_repeat"] = agreement(answers["routed"], again["again"])
        meta["covisit_statement_ms"] = asyncio.run(
            covisit_statement_ms(settings, cases, REPEAT_SAMPLE, args.seed)
        )
        if args.llm == "simulated":
            with SimulatedLlmServer() as server:
                llm = settings.with_overrides(llm_base_url=server.base_url, llm_model=server.model)
                client = LlmClient.from_settings(llm)
                answers |= asyncio.run(
                    in_process(llm, encoder, cases, {"llm": dict(routes)}, client)
                )
                meta["llm"] = {"model": server.model, "calls": server.calls, "simulated": True}
        elif args.llm == "local":
            with embedded_llm(settings.with_overrides(llm_local_port=free_port())) as local:
                llm = settings.with_overrides(**local_llm_overrides(settings, local))
                client = LlmClient.from_settings(llm)
                # one model on the CPU answers one call at a time: requests in flight
                # would only queue at the server and miss their deadlines
                answers |= asyncio.run(
                    in_process(llm, encoder, cases, {"llm": dict(routes)}, client, concurrency=1)
                )
                meta["llm"] = {
                    "model": local.model,
                    "calls": client.stats.calls,
                    "ok": client.stats.ok,
                    "failures": dict(client.stats.failures),
                    "prompts": llm.prompt_style,
                    "simulated": False,
                }
        encoder.close()
        if args.worker:
            shipped = {b.value.lower(): r for b, r in SHIPPED_ROUTES.items()}
            if routes == shipped:
                worker = through_worker(settings, cases, args.rate)
                meta["worker_agreement"] = agreement(answers["routed"], worker)
                answers["routed_worker"] = worker
            else:
                meta["worker_agreement"] = "skipped: the worker serves the shipped defaults"
    meta["seconds_serving"] = {n: round(a.seconds, 1) for n, a in answers.items()}
    save(args.save, "test", cases, answers)
    return cases, answers, meta


def save(
    folder: Path | None, stage: str, cases: Sequence[Case], answers: dict[str, Answers]
) -> None:
    """The stage's lists per policy and user, with the cases' buckets and held-out items
    (``--save DIR``: re-analyse without serving again)."""
    if folder is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "cases": {c.user_id: {"bucket": c.bucket, "relevant": list(c.relevant)} for c in cases},
        "lists": {p: a.items for p, a in answers.items()},
        "routes": {p: a.routes for p, a in answers.items()},
    }
    (folder / f"{stage}.json").write_text(json.dumps(data))


def bucket_cases(cases: Sequence[Case], bucket: str) -> list[Case]:
    if bucket == "overall":
        return [c for c in cases if c.bucket != "sim_cold"]
    return [c for c in cases if c.bucket == bucket]


def report(
    cases: Sequence[Case], answers: dict[str, Answers], seed_: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The last line's figures, and the acceptance comparisons of the details line."""
    result: dict[str, Any] = {}
    acceptance: dict[str, Any] = {}
    for bucket in BUCKETS:
        chosen = bucket_cases(cases, bucket)
        if not chosen:
            result[bucket] = {p: None for p in POLICIES}
            continue
        scored: dict[str, PerUser] = {p: per_user(answers[p], chosen) for p in answers}
        result[bucket] = {
            p: {
                "recall@10": round(float(scored[p].recall.mean()), 4),
                "ndcg@10": round(float(scored[p].ndcg.mean()), 4),
                "ndcg@10_ci95": mean_interval(scored[p].ndcg, seed=seed_).rounded(),
            }
            for p in POLICIES
        }
        acceptance[bucket] = compare(bucket, scored, len(chosen), seed_)
        extras = [p for p in answers if p not in POLICIES]
        if extras:
            acceptance[bucket]["other_policies"] = {
                p: {
                    "ndcg@10": round(float(scored[p].ndcg.mean()), 4),
                    "recall@10": round(float(scored[p].recall.mean()), 4),
                }
                for p in extras
            }
    return result, acceptance


def compare(bucket: str, scored: dict[str, PerUser], n: int, seed_: int) -> dict[str, Any]:
    """``routed`` against the best single route of the bucket, per metric."""
    out: dict[str, Any] = {"users": n, "judged": n >= MIN_JUDGED}
    ok = True
    for metric in ("ndcg@10", "recall@10"):
        values = {p: getattr(scored[p], metric.split("@")[0]) for p in POLICIES}
        best = max(POLICIES[1:], key=lambda p: float(values[p].mean()))
        diff = paired_difference(values["routed"], values[best], seed=seed_)
        routed, top = float(values["routed"].mean()), float(values[best].mean())
        passed = routed >= top or (diff.lo is not None and diff.lo <= 0 <= (diff.hi or 0))
        if bucket == "sim_cold":
            passed = routed >= SIM_COLD_FACTOR * top
            out[f"{metric}_ratio"] = round(routed / top, 3) if top > 0 else None
            out[f"{metric}_ratio_to"] = {
                p: round(routed / float(values[p].mean()), 3)
                for p in POLICIES[1:]
                if float(values[p].mean()) > 0
            }
        out[metric] = {
            "best_single": best,
            "routed_minus_best": round(diff.mean, 4),
            "ci95": diff.rounded(),
            "pass": passed,
        }
        ok = ok and passed
    out["pass"] = ok if out["judged"] else None
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--movielens", type=Path, default=None, help="ml-latest-small folder")
    parser.add_argument("--routing", choices=["procedure", "shipped"], default="procedure")
    parser.add_argument("--select-only", action="store_true", help="stop after the selection")
    parser.add_argument("--users", type=int, default=None, help="subsample users (seeded)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--llm", choices=["simulated", "local", "none"], default="none")
    parser.add_argument("--worker", action="store_true", help="routed through a serve worker too")
    parser.add_argument(
        "--embedding-cache",
        type=Path,
        default=Path.home() / ".cache" / "streamrec" / "bench-embeddings",
        help="folder keeping item vectors between runs",
    )
    parser.add_argument("--no-embedding-cache", action="store_true")
    parser.add_argument("--rate", type=float, default=50.0, help="requests/s to the worker")
    parser.add_argument("--save", type=Path, default=None, help="write each stage's lists here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    base = Settings()
    ml = MovieLens(args.movielens or base.movielens_path)
    test_split = temporal_split(ml.ratings())
    validation_split = temporal_split(test_split.train)
    embedder = CachedEmbedder(
        SentenceTransformerEmbedder(), None if args.no_embedding_cache else args.embedding_cache
    )
    _ = embedder.dim
    details: dict[str, Any] = {"routing": args.routing}
    if args.routing == "procedure":
        choice, details["validation"] = select(embedder, ml, validation_split, args)
        details["selection"] = choice.as_json()
        routes = choice.overrides()
        if args.select_only:
            shipped = {b.value.lower(): r for b, r in SHIPPED_ROUTES.items()}
            selection = {b: c["chosen"] for b, c in details["selection"].items()} | {
                "same_as_shipped": routes == shipped
            }
            print("details " + json.dumps(details, sort_keys=True), flush=True)
            emit(selection)
            return selection
    else:
        routes = {b.value.lower(): r for b, r in SHIPPED_ROUTES.items()}
    details["routes"] = {b: vars(r) | {"route": r.route.value} for b, r in routes.items()}
    cases, answers, details["test"] = evaluate(embedder, ml, test_split, routes, args)
    routed_routes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for c in cases:
        routed_routes[c.bucket][answers["routed"].routes[c.user_id]] += 1
    details["routed_routes"] = {b: dict(r) for b, r in routed_routes.items()}
    answers.pop("routed_worker", None)
    result, details["acceptance"] = report(cases, answers, args.seed)
    details["seconds_total"] = round(time.perf_counter() - started, 1)
    for b in BUCKETS:
        say(f"{b:9s} " + "  ".join(f"{p}={(v or {}).get('ndcg@10')}" for p, v in result[b].items()))
    print("details " + json.dumps(details, sort_keys=True, default=str), flush=True)
    emit(result)
    return result


if __name__ == "__main__":
    main()
