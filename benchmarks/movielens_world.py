"""The MovieLens world the quality benchmarks replay into an embedded stack, and serving it.

Split (``recsys.movielens.temporal_split``): per user, the last 20 % of their ratings
≥ 4 are held out; training = everything the user rated before. The training world goes
into a fresh embedded stack through the same domain steps the workers run
(:func:`testkit.synthetic_world.seed_world`): every movie through the enrichment
pipeline into pgvector — **LLM off, so the enriched vector is the raw text's** (title,
genres, viewers' tags) — the training ratings as RATING events (MovieLens stars on our
0-10 scale as they are, ≥ 4 positive) through the users worker's update into the read
model, ``user_events`` and co-visitation, then ALS trained by ``train-cf``'s function.

``sim_cold``: MovieLens has few cold users, so every judged user with at least 4
training positives is also written as ``simcold-<id>`` with only their first 3 positive
ratings (after ALS training and without co-visitation updates, so the copies change no
model), with the same held-out items. Their requests exclude the real user's other
training items too, so every policy is judged on the same held-out items only.

Buckets by the real user's training positives with the settings' thresholds
(``cold`` ≤ 5, ``warming`` 6-50, ``warm`` ≥ 51) and ``sim_cold``.
"""

from __future__ import annotations

import asyncio
import hashlib
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

from recsys import db
from recsys.embedding import SentenceTransformerEmbedder
from recsys.evaluation.ranking import ndcg_at_k, recall_at_k
from recsys.llm.client import LlmClient
from recsys.movielens import MovieLens, Rating, TemporalSplit
from recsys.records import EventType, RecRequest, RecResponse, UserEvent, utcnow
from recsys.serving.query_embedding import QueryEncoder
from recsys.serving.recommender import Recommender
from stack.supervisor import Supervisor
from streams.admin import ensure_topics
from streams.client import RecClient
from streams.exceptions import RequestTimeout
from streams.settings import Settings
from testkit.synthetic_world import seed_world, write_events
from workers.serve_wiring import build_recommender

__all__ = [
    "Answers",
    "CachedEmbedder",
    "Case",
    "K",
    "PerUser",
    "agreement",
    "build_cases",
    "in_process",
    "per_user",
    "say",
    "seed",
    "through_worker",
]

SIM_COLD_PREFIX = "simcold-"
SIM_COLD_KEEP = 3
SIM_COLD_MIN = 4
K = 10
#: The serving buckets' user-state recent items are bounded; requests for users with
#: more training ratings than serving reads as consumed carry the rest as exclusions.
CONSUMED_LIMIT = 1000


class CachedEmbedder:
    """An :class:`~recsys.embedding.Embedder` that keeps vectors on disk between runs.

    Embedding the 9,742 movies costs minutes on a shared 2-core machine; the vectors of
    a text under one model never change, so runs after the first read them back (keyed
    by model name and the text's SHA-256). Only unseen texts reach the model.
    """

    def __init__(self, inner: SentenceTransformerEmbedder, folder: Path | None) -> None:
        self.inner = inner
        self.file = folder / f"{inner.name.replace('/', '_')}.npz" if folder is not None else None
        self.cache: dict[str, np.ndarray] = {}
        self.hits = self.misses = 0
        if self.file is not None and self.file.is_file():
            with np.load(self.file) as data:
                self.cache = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dim(self) -> int:
        return self.inner.dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        keys = [hashlib.sha256(t.encode()).hexdigest() for t in texts]
        todo = sorted({i for i, key in enumerate(keys) if key not in self.cache})
        self.hits += len(texts) - len(todo)
        self.misses += len(todo)
        if todo:
            fresh = self.inner.embed([texts[i] for i in todo])
            for i, vec in zip(todo, fresh, strict=True):
                self.cache[keys[i]] = vec
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self.cache[key] for key in keys]).astype(np.float32)

    def save(self) -> None:
        if self.file is None or not self.misses:
            return
        self.file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_suffix(".tmp.npz")
        keys = list(self.cache)
        np.savez(tmp, keys=np.array(keys), vectors=np.stack([self.cache[k] for k in keys]))
        tmp.replace(self.file)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Case:
    """One request to judge: who asks, what they must not get, what counts as a hit."""

    user_id: str
    bucket: str  # cold / warming / warm / sim_cold
    relevant: tuple[str, ...]
    exclude: tuple[str, ...]
    train_items: frozenset[str]


def bucket_of(positives: int, settings: Settings) -> str:
    if positives <= settings.cold_max_interactions:
        return "cold"
    if positives >= settings.warm_min_interactions:
        return "warm"
    return "warming"


def _event(user_id: str, r: Rating) -> UserEvent:
    return UserEvent(
        event_id=f"ml-{user_id}-{r.item_id}-{r.ts}",
        user_id=user_id,
        event_type=EventType.RATING,
        item_id=r.item_id,
        rating=r.rating,
        occurred_at=datetime.fromtimestamp(r.ts, tz=UTC),
    )


def build_cases(
    split: TemporalSplit, settings: Settings, users: int | None, seed: int
) -> tuple[list[Case], list[UserEvent], list[UserEvent]]:
    """The judged requests, the training events, and the sim-cold users' events."""
    history: dict[str, list[Rating]] = defaultdict(list)
    for r in split.train:
        history[r.user_id].append(r)
    test_users = sorted(split.test, key=int)
    if users is not None and users < len(test_users):
        test_users = sorted(random.Random(seed).sample(test_users, users), key=int)
    cases: list[Case] = []
    sim_events: list[UserEvent] = []
    for user in test_users:
        rows = sorted(history.get(user, []), key=lambda r: (r.ts, r.item_id))
        items = [r.item_id for r in rows]
        train_items = frozenset(items)
        newest = list(dict.fromkeys(reversed(items)))
        # serving reads the newest CONSUMED_LIMIT visits as consumed; MovieLens has many
        # ratings with one timestamp, so where Postgres cuts among ties is not ours to
        # know: the request excludes everything from well before the cut
        overflow = tuple(newest[CONSUMED_LIMIT // 2 :])
        positives = [r for r in rows if r.rating >= 4.0]
        relevant = tuple(split.test[user])
        cases.append(
            Case(user, bucket_of(len(positives), settings), relevant, overflow, train_items)
        )
        if len(positives) >= SIM_COLD_MIN:
            kept = positives[:SIM_COLD_KEEP]
            sim_id = SIM_COLD_PREFIX + user
            sim_events += [_event(sim_id, r) for r in kept]
            kept_ids = {r.item_id for r in kept}
            rest = tuple(i for i in dict.fromkeys(items) if i not in kept_ids)
            cases.append(Case(sim_id, "sim_cold", relevant, rest, train_items))
    events = [_event(r.user_id, r) for r in split.train]
    return cases, events, sim_events


async def write_users(settings: Settings, events: Sequence[UserEvent]) -> None:
    """The users worker's domain step for ``events``, without co-visitation updates."""
    assert settings.database_url is not None
    pool = db.async_pool(settings.database_url.get_secret_value(), name="bench-simcold")
    await pool.open(wait=True)
    try:
        await write_events(pool, settings, events, covisit=False)
    finally:
        await pool.close()


def request_of(case: Case, deadline_ms: int = 60_000) -> RecRequest:
    return RecRequest(
        user_id=case.user_id,
        k=K,
        exclude_item_ids=list(case.exclude),
        deadline_ms=deadline_ms,
        requested_at=utcnow(),
    )


@dataclass
class Answers:
    """Item lists and routes per request user."""

    items: dict[str, list[str]]
    routes: dict[str, str]
    seconds: float


async def serve_in_process(
    rec: Recommender, cases: Sequence[Case], label: str, concurrency: int = 4
) -> Answers:
    items: dict[str, list[str]] = {}
    routes: dict[str, str] = {}
    t = time.perf_counter()
    sem = asyncio.Semaphore(concurrency)

    async def one(case: Case) -> None:
        async with sem:
            served = await rec.recommend(request_of(case))
        items[case.user_id] = [i.item_id for i in served.response.items]
        routes[case.user_id] = served.response.route.value

    done = 0
    for start in range(0, len(cases), 100):
        await asyncio.gather(*(one(c) for c in cases[start : start + 100]))
        done = min(len(cases), start + 100)
        say(f"  {label}: {done}/{len(cases)}")
    return Answers(items, routes, time.perf_counter() - t)


async def in_process(
    settings: Settings,
    encoder: QueryEncoder,
    cases: Sequence[Case],
    policies: dict[str, dict[str, Any]],
    client: LlmClient | None = None,
    concurrency: int = 4,
) -> dict[str, Answers]:
    assert settings.database_url is not None
    pool = db.async_pool(settings.database_url.get_secret_value(), max_size=4, name="bench-q")
    await pool.open(wait=True)
    try:
        out = {}
        for name, overrides in policies.items():
            rec = build_recommender(
                settings, pool, encoder, client, epsilon=0.0, name=name, **overrides
            )
            out[name] = await serve_in_process(rec, cases, name, concurrency)
        return out
    finally:
        await pool.close()


def through_worker(settings: Settings, cases: Sequence[Case], rate: float) -> Answers:
    """The routed policy: every request through a ``serve`` process over the broker."""
    supervisor = Supervisor(settings, ["serve"], log_dir=str(settings.home / "logs"))
    supervisor.start()
    try:
        with RecClient.from_settings(settings) as client:
            deadline = time.monotonic() + 180
            while True:  # model load + group join
                try:
                    client.request("warm-up-user", timeout_s=5.0)
                    break
                except RequestTimeout:
                    if time.monotonic() > deadline:
                        raise
            t = time.perf_counter()
            sent = []
            for i, case in enumerate(cases):
                time.sleep(max(0.0, t + i / rate - time.perf_counter()))
                request = request_of(case)
                sent.append((case, request, client.submit(request)))
            items: dict[str, list[str]] = {}
            routes: dict[str, str] = {}
            for case, request, future in sent:
                response: RecResponse = client.wait(request, future, 60.0)
                items[case.user_id] = [i.item_id for i in response.items]
                routes[case.user_id] = response.route.value
            return Answers(items, routes, time.perf_counter() - t)
    finally:
        supervisor.stop()


def agreement(a: Answers, b: Answers) -> dict[str, Any]:
    common = [u for u in b.items if u in a.items]
    same = sum(a.items[u] == b.items[u] for u in common)
    same_route = sum(a.routes[u] == b.routes[u] for u in common)
    differ = [
        {
            "user": u,
            "route": b.routes[u],
            "same_set": set(a.items[u]) == set(b.items[u]),
            "first_difference_at": next(
                (i for i, (x, y) in enumerate(zip(a.items[u], b.items[u], strict=False)) if x != y),
                min(len(a.items[u]), len(b.items[u])),
            ),
        }
        for u in common
        if a.items[u] != b.items[u]
    ]
    return {
        "requests": len(common),
        "identical_lists": same,
        "identical_routes": same_route,
        "share_identical": round(same / len(common), 4) if common else None,
        "differences": differ[:10],
    }


@dataclass(frozen=True)
class PerUser:
    """Recall@10 and NDCG@10 of one policy, per case, in the order of the cases."""

    recall: np.ndarray
    ndcg: np.ndarray


def per_user(answers: Answers, cases: Sequence[Case]) -> PerUser:
    """Each case's metrics (and a check that no training item was recommended)."""
    recall, ndcg = [], []
    for case in cases:
        recs = answers.items[case.user_id]
        leaked = case.train_items & set(recs)
        assert not leaked, f"{case.user_id} got training items {sorted(leaked)[:5]}"
        recall.append(recall_at_k(recs, case.relevant, K))
        ndcg.append(ndcg_at_k(recs, case.relevant, K))
    return PerUser(np.asarray(recall), np.asarray(ndcg))


def seed(
    settings: Settings,
    embedder: CachedEmbedder,
    ml: MovieLens,
    split: TemporalSplit,
    users: int | None,
    sample_seed: int,
) -> tuple[list[Case], dict[str, Any]]:
    """Fill the stack's database with the split's training world; the judged cases."""
    t = time.perf_counter()
    cases, events, sim_events = build_cases(split, settings, users, sample_seed)
    assert settings.database_url is not None
    db.apply_migrations(settings.database_url.get_secret_value())
    ensure_topics(settings)
    trained = asyncio.run(
        seed_world(
            settings,
            embedder,
            ml.catalog(),
            events,
            factors=settings.als_factors,
            iterations=settings.als_iterations,
        )
    )
    embedder.save()
    asyncio.run(write_users(settings, sim_events))
    counts: dict[str, int] = defaultdict(int)
    for c in cases:
        counts[c.bucket] += 1
    meta = {
        "users": dict(counts) | {"overall": sum(1 for c in cases if c.bucket != "sim_cold")},
        "training_events": len(events),
        "als": {
            "version": trained.version,
            "factors": settings.als_factors,
            "iterations": settings.als_iterations,
        },
        "embeddings": {"computed": embedder.misses, "from_cache": embedder.hits},
        "seconds": round(time.perf_counter() - t, 1),
    }
    say(f"seeded in {meta['seconds']} s: {len(events)} training events, users {meta['users']}")
    return cases, meta
