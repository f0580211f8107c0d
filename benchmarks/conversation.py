"""Conversation vs single shot on MovieLens: does eliciting preferences beat one query?

Fixed transcripts built from MovieLens (``--movielens DIR``, default the
``movielens_path`` setting):

* users: ``--users`` (≥ 40) users drawn with a fixed seed among those with at least
  ``--min-held`` held-out likes (the last 20 % of their ratings ≥ 4.0, per user in time);
* each user opens with one sentence naming the genre most common among their held-out
  likes ("I'd like a Comedy film"); the **single shot** is that sentence as the query of
  one request (:meth:`Recommender.recommend`);
* the **conversation** starts with the same sentence and goes through the real dialogue
  engine (:class:`recsys.dialogue.engine.Dialogue`, rules reading the turns): to each
  question the simulated user answers with the offered option that most of their
  held-out likes carry (by the catalog's own labels), or "any" when none does;
* both are scored on the held-out likes: recall@5 and NDCG@5, the mean of each with a
  percentile bootstrap CI over users, and the paired difference conversation - single
  shot with its CI; turns per conversation.

Each runs on two catalogs: **raw** (title + genres + viewer tags embedded, no
enrichment: the catalog knows genres and years) and **enriched** (the same items
through the enrichment pipeline with the simulated LLM — a deterministic stand-in that
reads moods and tags from the item text, not a real model — embedded in the enriched
space; the catalog also knows moods, so the conversation may ask about them). Users
are cold (no history): the conversation is all the recommender knows. Items, vectors
and serving ports are in memory (no Kafka, no Postgres): the serving code is the
production code.

Last line: ``{"single_shot": {...}, "conversation": {...}, "turns_mean": t}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import emit
from recsys.dialogue.attributes import labels
from recsys.dialogue.engine import Dialogue, DialogueConfig
from recsys.dialogue.llm_reading import TurnReader
from recsys.dialogue.store import MemoryConversations
from recsys.embedding import SentenceTransformerEmbedder
from recsys.enrichment import Enricher, InMemoryEnrichmentCache, Taxonomy, content_hash
from recsys.enrichment.text import enriched_text, raw_text
from recsys.evaluation.enrich_ab.retrieval import bootstrap_delta
from recsys.evaluation.ranking import ndcg_at_k, recall_at_k
from recsys.items.memory import InMemoryItemStore
from recsys.items.model import ItemRecord
from recsys.llm.client import LlmClient
from recsys.movielens import MovieLens, temporal_split
from recsys.records import CatalogChange, ConversationTurn, DialogueAction, RecRequest
from recsys.serving.config import ServingConfig
from recsys.serving.pg_ports import PgItems
from recsys.serving.ports import UserView
from recsys.serving.query_embedding import QueryEncoder
from recsys.serving.recommender import Recommender
from streams.settings import Settings

K = 5
ARMS = ("raw", "enriched")


class ColdUsers:
    """Every simulated user is new: the conversation is all serving knows."""

    async def view(self, user_id: str) -> UserView:
        return UserView(user_id=user_id)


class TrainPopularity:
    """CF port with no model: popularity of the training ratings only."""

    def __init__(self, counts: Counter[str]) -> None:
        self.ranked = counts.most_common()

    async def als(self, recent: Any, n: int, exclude: Collection[str]) -> list[tuple[str, float]]:
        return []

    async def covisit(
        self, items: Sequence[str], n: int, exclude: Collection[str], *, shares: bool = False
    ) -> list[tuple[str, float, str]]:
        return []

    async def popular(self, n: int, exclude: Collection[str]) -> list[tuple[str, float]]:
        return [(i, float(c)) for i, c in self.ranked if i not in exclude][:n]

    async def model_version(self) -> str | None:
        return None


async def _enrich(items: Sequence[CatalogChange], log: Any) -> dict[str, Any]:
    """Enrichment of every item by the simulated LLM (None where it fell back)."""
    from testkit.llm_server import SimulatedLlmServer

    out: dict[str, Any] = {}
    with SimulatedLlmServer() as server:
        client = LlmClient(base_url=server.base_url, model=server.model, max_concurrency=16)
        enricher = Enricher(client, InMemoryEnrichmentCache(len(items) + 1), Taxonomy())
        slots = asyncio.Semaphore(16)

        async def one(change: CatalogChange) -> None:
            async with slots:
                outcome = await enricher.enrich(
                    change,
                    content_hash(change),
                    deadline=time.monotonic() + 30,
                    emit=lambda r: None,
                )
            out[change.item_id] = outcome.enrichment

        try:
            for start in range(0, len(items), 2000):
                await asyncio.gather(*(one(c) for c in items[start : start + 2000]))
                log(f"enriched {min(start + 2000, len(items))}/{len(items)}")
        finally:
            await client.aclose()
    return out


def _embed(embedder: Any, texts: Sequence[str], log: Any, what: str) -> np.ndarray:
    parts = []
    for start in range(0, len(texts), 512):
        parts.append(embedder.embed(list(texts[start : start + 512])))
        log(f"embedded {what} {min(start + 512, len(texts))}/{len(texts)}")
    return np.vstack(parts)


def _records(
    items: Sequence[CatalogChange], vectors: np.ndarray, model: str, enrichment: dict[str, Any]
) -> list[ItemRecord]:
    out = []
    for change, vec in zip(items, vectors, strict=True):
        e = enrichment.get(change.item_id)
        out.append(
            ItemRecord(
                item_id=change.item_id,
                version=1,
                change_id=change.change_id,
                content_hash=content_hash(change),
                title=change.title,
                categories=tuple(change.categories),
                description=change.description,
                attributes=dict(change.attributes),
                summary=e.summary if e else None,
                themes=tuple(e.themes) if e else (),
                mood=e.mood if e else None,
                audience=e.audience if e else None,
                tags=tuple(e.tags) if e else (),
                raw_embedding=vec,
                enriched_embedding=vec,
                embedding_model=model,
                embedding_dim=int(vec.shape[0]),
            )
        )
    return out


def answer(attribute: str, options: Sequence[str], liked: Sequence[ItemRecord]) -> str:
    """The simulated user's answer: the option most of their held-out likes carry."""
    counts: Counter[str] = Counter()
    for item in liked:
        for label in labels(attribute, item):
            if label in options:
                counts[label] += 1
    if not counts:
        return "any"
    best = max(options, key=lambda o: (counts[o], -options.index(o)))
    return best


def _ci(values: Sequence[float], resamples: int, seed: int) -> dict[str, Any]:
    x = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"mean": round(float(x.mean()), 4), "ci": [round(float(low), 4), round(float(high), 4)]}


async def _arm(
    arm: str,
    records: list[ItemRecord],
    users: list[tuple[str, list[str]]],
    encoder: QueryEncoder,
    popularity: Counter[str],
    args: argparse.Namespace,
) -> dict[str, Any]:
    store = InMemoryItemStore(records[0].embedding_dim or 384)
    await store.apply(records)
    by_id = {r.item_id: r for r in records}
    config = ServingConfig(space="enriched", epsilon=0.0, llm_rerank=False, llm_intent=False)
    rec = Recommender(
        items=PgItems(store, "enriched"),
        users=ColdUsers(),
        cf=TrainPopularity(popularity),
        embedder=encoder,
        config=config,
    )
    dialogue = Dialogue(rec, MemoryConversations(), TurnReader(None), DialogueConfig())
    out: dict[str, Any] = {"single": [], "conversation": [], "turns": [], "transcripts": []}
    for user, held in users:
        liked = [by_id[i] for i in held if i in by_id]
        genres = Counter(g for item in liked for g in item.categories)
        opening = f"I'd like a {genres.most_common(1)[0][0]} film"
        single = await rec.recommend(RecRequest(user_id=user, k=K, query=opening))
        shown = [i.item_id for i in single.response.items]
        out["single"].append((recall_at_k(shown, set(held), K), ndcg_at_k(shown, set(held), K)))
        transcript, text, turn = [], opening, 0
        while True:
            turn += 1
            request = RecRequest(
                user_id=user,
                k=K,
                conversation=ConversationTurn(
                    conversation_id=f"{arm}-{user}", turn=turn, text=text
                ),
            )
            served = await dialogue.serve(request)
            reply = served.response.conversation
            assert reply is not None
            transcript.append({"user": text, "reply": reply.question or reply.reason})
            if reply.action is DialogueAction.RECOMMEND:
                break
            text = answer(reply.attribute or "", reply.options, liked)
        shown = [i.item_id for i in served.response.items]
        out["conversation"].append(
            (recall_at_k(shown, set(held), K), ndcg_at_k(shown, set(held), K))
        )
        out["turns"].append(turn)
        out["transcripts"].append({"user": user, "arm": arm, "turns": transcript})
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    def log(message: str) -> None:
        print(f"[conversation] {message}", file=sys.stderr, flush=True)

    ml = MovieLens(args.movielens)
    split = temporal_split(ml.ratings())
    catalog = ml.catalog()
    popularity: Counter[str] = Counter(r.item_id for r in split.train if r.rating >= 4.0)
    if args.max_items:
        keep = {i for i, _ in Counter(r.item_id for r in ml.ratings()).most_common(args.max_items)}
        catalog = [c for c in catalog if c.item_id in keep]
    ids = {c.item_id for c in catalog}
    eligible = sorted(
        (
            u
            for u, held in split.test.items()
            if len([i for i in held if i in ids]) >= args.min_held
        ),
        key=int,
    )
    if len(eligible) < args.users:
        raise SystemExit(f"only {len(eligible)} users have {args.min_held}+ held-out likes")
    users = [
        (u, [i for i in split.test[u] if i in ids])
        for u in sorted(random.Random(args.seed).sample(eligible, args.users), key=int)
    ]
    log(f"{len(catalog)} items, {len(users)} users, enriching with the simulated LLM")
    enrichment = await _enrich(catalog, log)
    embedder = SentenceTransformerEmbedder()
    raw_vectors = _embed(
        embedder, [raw_text(c.title, c.categories, c.description) for c in catalog], log, "raw"
    )
    enriched_texts = []
    for c in catalog:
        e = enrichment.get(c.item_id)
        enriched_texts.append(
            enriched_text(c.title, c.categories, e.summary, e.themes, e.mood, e.audience, e.tags)
            if e
            else raw_text(c.title, c.categories, c.description)
        )
    enriched_vectors = _embed(embedder, enriched_texts, log, "enriched")
    encoder = QueryEncoder(embedder)
    arms = {
        "raw": _records(catalog, raw_vectors, embedder.name, {}),
        "enriched": _records(catalog, enriched_vectors, embedder.name, enrichment),
    }
    results = {}
    try:
        for arm in ARMS:
            log(f"serving {len(users)} single shots and conversations on the {arm} catalog")
            results[arm] = await _arm(arm, arms[arm], users, encoder, popularity, args)
    finally:
        encoder.close()
    if args.transcripts:
        args.transcripts.write_text(
            json.dumps([t for arm in ARMS for t in results[arm]["transcripts"]], indent=1)
        )
    single: dict[str, Any] = {}
    conversation: dict[str, Any] = {}
    for arm in ARMS:
        r = results[arm]
        single[arm] = {}
        conversation[arm] = {"turns_mean": round(statistics.fmean(r["turns"]), 3)}
        for j, name in enumerate((f"recall@{K}", f"ndcg@{K}")):
            a = [x[j] for x in r["single"]]
            b = [x[j] for x in r["conversation"]]
            single[arm][name] = _ci(a, args.resamples, args.seed)
            conversation[arm][name] = _ci(b, args.resamples, args.seed)
            delta = bootstrap_delta(a, b, resamples=args.resamples, seed=args.seed)
            conversation[arm][f"{name} minus single shot"] = {
                "mean": round(float(delta["delta"] or 0.0), 4),
                "ci": [
                    round(float(delta["ci_low"] or 0.0), 4),
                    round(float(delta["ci_high"] or 0.0), 4),
                ],
            }
    enriched_share = sum(1 for e in enrichment.values() if e is not None) / max(1, len(catalog))
    single["conditions"] = {
        "users": len(users),
        "items": len(catalog),
        "k": K,
        "seed": args.seed,
        "enrichment": f"simulated LLM (deterministic stand-in), {enriched_share:.0%} enriched",
        "turn_reader": "rules (no LLM)",
        "users_are": "cold (no history)",
    }
    turns = [t for arm in ARMS for t in results[arm]["turns"]]
    return {
        "single_shot": single,
        "conversation": conversation,
        "turns_mean": round(statistics.fmean(turns), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--movielens", type=Path, default=None, help="ml-latest-small folder")
    parser.add_argument("--users", type=int, default=60, help="transcripts (at least 40)")
    parser.add_argument("--min-held", type=int, default=5, help="held-out likes per user")
    parser.add_argument("--max-items", type=int, default=None, help="most-rated items only")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--transcripts", type=Path, default=None, help="write them as JSON")
    args = parser.parse_args()
    if args.users < 40:
        parser.error("--users must be at least 40")
    if args.movielens is None:
        args.movielens = Settings().movielens_path
    if not MovieLens.available(args.movielens):
        parser.error(f"no MovieLens ml-latest-small at {args.movielens}")
    emit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
