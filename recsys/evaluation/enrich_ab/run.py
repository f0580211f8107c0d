"""The enrichment A/B: raw-text vs enriched-text embeddings on a frozen query set.

1. Every catalog movie gets two texts: **raw** (title + genres, what the enrich worker
   embeds as its baseline) and **enriched** (the enrichment pipeline's enriched text:
   title, genres and the LLM's validated summary, themes, mood, audience and tags —
   :class:`~recsys.enrichment.Enricher` with its prompt, validation and fallback).
   Without an LLM the enriched text *is* the raw text, and the report says so.
2. Both are embedded with the same model; every query is embedded once.
3. Each query ranks the catalog by cosine similarity in each space; recall@k, nDCG@k
   and MRR per query; means, the paired difference and its bootstrap CI, per query kind.
4. With an LLM endpoint, a judge (:mod:`~recsys.evaluation.enrich_ab.judge`) scores the
   justification of each arm's top items on a seeded sample of queries.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recsys.embedding import Embedder
from recsys.enrichment import Enricher, InMemoryEnrichmentCache, Taxonomy, content_hash
from recsys.enrichment.cache import EnrichmentCache
from recsys.enrichment.text import enriched_text, raw_text
from recsys.evaluation.enrich_ab.judge import (
    JUDGE_PROMPT,
    JudgeItem,
    JudgeVerdict,
    judge_arm,
)
from recsys.evaluation.enrich_ab.queries import KINDS, AbQuery, QuerySet
from recsys.evaluation.enrich_ab.retrieval import (
    METRICS,
    QueryScores,
    bootstrap_delta,
    rank_items,
    score_ranking,
)
from recsys.llm.client import LlmClient
from recsys.llm.prompts import PromptStyle
from recsys.records import CatalogChange, EnrichmentStatus, LlmInvolvement

__all__ = ["AbLlm", "AbOptions", "Progress", "run_enrichment_ab"]

#: ``progress(stage, advance, total)``: stages "enrich", "embed", "judge".
Progress = Callable[[str, int, int], None]

ARMS = ("raw", "enriched")


def _no_progress(stage: str, advance: int, total: int) -> None:
    return None


@dataclass(frozen=True)
class AbOptions:
    """Cut-off, judge sample and bootstrap."""

    k: int = 5
    judge_queries: int = 40
    judge_top: int = 3
    resamples: int = 2000
    confidence: float = 0.95
    seed: int = 0
    embed_batch: int = 256
    enrich_deadline_s: float = 20.0


@dataclass
class AbLlm:
    """Which LLM enriches and judges, and how to describe it honestly.

    ``client`` None means no LLM: enriched = raw, judge skipped with ``off_reason``.
    """

    client: LlmClient | None = None
    judge_client: LlmClient | None = None
    simulated: bool = False
    off_reason: str = "no LLM endpoint configured"
    judge_off_reason: str | None = None
    taxonomy: Taxonomy = field(default_factory=Taxonomy)
    #: where validated enrichments are kept between runs (None: this run only)
    cache: EnrichmentCache | None = None
    cache_description: str = "memory (this run only)"
    #: prompt family of the enrichment (compact for a small local model)
    prompt_style: PromptStyle = "standard"


def _raw(change: CatalogChange) -> str:
    return raw_text(change.title, change.categories, change.description)


async def _enrich_texts(
    items: Sequence[CatalogChange], llm: AbLlm, opts: AbOptions, progress: Progress
) -> tuple[list[str], dict[str, Any]]:
    """The enriched text of every item, and what enrichment did."""
    client = llm.client
    if client is None:
        progress("enrich", len(items), len(items))
        return [_raw(c) for c in items], {
            "status": "off",
            "reason": f"{llm.off_reason}: enriched text = raw text, the arms are identical",
            "simulated": False,
            "items": len(items),
        }
    cache = llm.cache if llm.cache is not None else InMemoryEnrichmentCache(len(items) + 1)
    enricher = Enricher(client, cache, llm.taxonomy, prompt_style=llm.prompt_style)
    records: list[LlmInvolvement] = []
    slots = asyncio.Semaphore(client.max_concurrency)
    statuses: Counter[str] = Counter()
    failures: Counter[str] = Counter()

    async def one(change: CatalogChange) -> str:
        async with slots:  # the deadline starts when the item's turn comes
            deadline = time.monotonic() + opts.enrich_deadline_s
            outcome = await enricher.enrich(
                change, content_hash(change), deadline=deadline, emit=records.append
            )
        progress("enrich", 1, len(items))
        statuses[outcome.status.value] += 1
        e = outcome.enrichment
        if e is None:
            failures[outcome.error or "unknown"] += 1
            return _raw(change)
        return enriched_text(
            change.title, change.categories, e.summary, e.themes, e.mood, e.audience, e.tags
        )

    texts = list(await asyncio.gather(*(one(c) for c in items)))
    enriched = statuses[EnrichmentStatus.ENRICHED.value] + statuses[EnrichmentStatus.CACHED.value]
    return texts, {
        "status": "simulated" if llm.simulated else "llm",
        "reason": (
            "simulated LLM (a deterministic stand-in, not a real model)" if llm.simulated else None
        ),
        "simulated": llm.simulated,
        "model": client.model,
        "prompt_version": enricher.prompt.version,
        "items": len(items),
        "enriched": enriched,
        "fell_back_to_raw": len(items) - enriched,
        "statuses": dict(statuses),
        "cache": llm.cache_description,
        "cache_hits": statuses[EnrichmentStatus.CACHED.value],
        "failures": dict(failures),
        "calls": sum(1 for r in records if r.called),
        "tokens_in": sum(r.tokens_in for r in records),
        "tokens_out": sum(r.tokens_out for r in records),
        "cost_usd": sum(r.cost_usd for r in records),
    }


def _embed(
    embedder: Embedder, texts: Sequence[str], opts: AbOptions, progress: Progress, total: int
) -> np.ndarray:
    parts = []
    for start in range(0, len(texts), opts.embed_batch):
        chunk = texts[start : start + opts.embed_batch]
        parts.append(embedder.embed(chunk))
        progress("embed", len(chunk), total)
    if not parts:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    return np.vstack(parts)


def _summaries(
    scores: dict[str, list[QueryScores]], queries: Sequence[AbQuery], opts: AbOptions
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for kind in (*KINDS, "all"):
        idx = [i for i, q in enumerate(queries) if kind in ("all", q.kind)]
        if not idx:
            continue
        metrics: dict[str, Any] = {}
        for name in (m.format(k=opts.k) for m in METRICS):
            a = [scores["raw"][i].as_dict(opts.k)[name] for i in idx]
            b = [scores["enriched"][i].as_dict(opts.k)[name] for i in idx]
            stats = bootstrap_delta(
                a, b, resamples=opts.resamples, confidence=opts.confidence, seed=opts.seed
            )
            metrics[name] = {"raw": stats.pop("a"), "enriched": stats.pop("b"), **stats}
        out[kind] = metrics
    return out


def _judge_sample(queries: Sequence[AbQuery], n: int, seed: int) -> list[int]:
    """Up to ``n`` query indexes, split evenly over the kinds present, seeded."""
    rng = random.Random(seed)
    kinds = [k for k in KINDS if any(q.kind == k for q in queries)]
    picked: list[int] = []
    for j, kind in enumerate(kinds):
        share = n // len(kinds) + (1 if j < n % len(kinds) else 0)
        idx = [i for i, q in enumerate(queries) if q.kind == kind]
        picked += sorted(rng.sample(idx, min(share, len(idx))))
    return picked


async def _judge(
    qs: QuerySet,
    texts: dict[str, list[str]],
    tops: dict[str, list[tuple[str, ...]]],
    llm: AbLlm,
    opts: AbOptions,
    progress: Progress,
) -> dict[str, Any]:
    base: dict[str, Any] = {
        "prompt_name": JUDGE_PROMPT.name,
        "prompt_version": JUDGE_PROMPT.version,
    }
    client = llm.judge_client
    if client is None:
        reason = llm.judge_off_reason or llm.off_reason
        return {**base, "status": "skipped", "reason": f"skipped: {reason}"}
    pinned = client.model
    position = {c.item_id: i for i, c in enumerate(qs.items)}
    sample = _judge_sample(qs.queries, opts.judge_queries, opts.seed)
    if not sample:
        return {**base, "status": "skipped", "reason": "skipped: no queries for the judge"}
    total = len(sample) * len(ARMS)

    async def one(qi: int, arm: str) -> JudgeVerdict:
        query = qs.queries[qi]
        items = [
            JudgeItem(item, qs.items[position[item]].title, texts[arm][position[item]])
            for item in tops[arm][qi][: opts.judge_top]
        ]
        verdict = await judge_arm(client, query.text, items, pinned_model=pinned)
        progress("judge", 1, total)
        return verdict

    jobs = [(qi, arm) for qi in sample for arm in ARMS]
    verdicts = await asyncio.gather(*(one(qi, arm) for qi, arm in jobs))
    by_job = dict(zip(jobs, verdicts, strict=True))
    failures = Counter(v.failure for v in verdicts if not v.ok)
    scores: dict[str, Any] = {}
    for kind in (*KINDS, "all"):
        pairs = [
            (by_job[(qi, "raw")].mean, by_job[(qi, "enriched")].mean)
            for qi in sample
            if kind in ("all", qs.queries[qi].kind)
            and by_job[(qi, "raw")].ok
            and by_job[(qi, "enriched")].ok
        ]
        if not pairs:
            continue
        stats = bootstrap_delta(
            [float(a or 0.0) for a, _ in pairs],
            [float(b or 0.0) for _, b in pairs],
            resamples=opts.resamples,
            confidence=opts.confidence,
            seed=opts.seed,
        )
        scores[kind] = {"raw": stats.pop("a"), "enriched": stats.pop("b"), **stats}
    examples = []
    for qi in sample[:3]:
        for arm in ARMS:
            v = by_job[(qi, arm)]
            for item, score in list(v.scores.items())[:1]:
                examples.append(
                    {
                        "query": qs.queries[qi].text,
                        "arm": arm,
                        "item_id": item,
                        "score": score,
                        "reason": v.reasons.get(item),
                    }
                )
    return {
        **base,
        "status": "ran",
        "reason": "simulated judge (word overlap, not a real model)" if llm.simulated else None,
        "simulated": llm.simulated,
        "model": pinned,
        "answered_by": sorted({v.model for v in verdicts if v.model}),
        "temperature": 0.0,
        "queries": len(sample),
        "items_per_query": opts.judge_top,
        "calls": len(verdicts),
        "failures": {str(k): n for k, n in failures.items()},
        "tokens_in": sum(v.tokens_in for v in verdicts),
        "tokens_out": sum(v.tokens_out for v in verdicts),
        "cost_usd": sum(v.cost_usd for v in verdicts),
        "scores": scores,
        "examples": examples,
    }


async def _run(
    qs: QuerySet, embedder: Embedder, llm: AbLlm, opts: AbOptions, progress: Progress
) -> dict[str, Any]:
    started = time.monotonic()
    items = list(qs.items)
    queries = list(qs.queries)
    if not items or not queries:
        raise ValueError("the query set has no items or no queries: nothing to evaluate")
    raw = [_raw(c) for c in items]
    enriched, enrichment = await _enrich_texts(items, llm, opts, progress)
    identical = enriched == raw
    total = len(items) * (1 if identical else 2) + len(queries)
    vectors = {"raw": _embed(embedder, raw, opts, progress, total)}
    vectors["enriched"] = (
        vectors["raw"] if identical else _embed(embedder, enriched, opts, progress, total)
    )
    query_vectors = _embed(embedder, [q.text for q in queries], opts, progress, total)
    ids = [c.item_id for c in items]
    exclude = [q.exclude for q in queries]
    scores: dict[str, list[QueryScores]] = {}
    for arm in ARMS:
        rankings = rank_items(query_vectors, vectors[arm], ids, exclude)
        scores[arm] = [
            score_ranking(r, q.relevant, opts.k) for r, q in zip(rankings, queries, strict=True)
        ]
    texts = {"raw": raw, "enriched": enriched}
    tops = {arm: [s.top for s in scores[arm]] for arm in ARMS}
    judge = await _judge(qs, texts, tops, llm, opts, progress)
    per_query = []
    for i, q in enumerate(queries):
        row: dict[str, Any] = {
            "query_id": q.query_id,
            "kind": q.kind,
            "text": q.text,
            "relevant": len(q.relevant),
        }
        for arm in ARMS:
            row[arm] = {**scores[arm][i].as_dict(opts.k), "top": list(scores[arm][i].top)}
        per_query.append(row)
    return {
        "k": opts.k,
        "query_set": qs.describe(),
        "embedding_model": embedder.name,
        "enrichment": enrichment,
        "arms_identical": identical,
        "bootstrap": {
            "resamples": opts.resamples,
            "confidence": opts.confidence,
            "seed": opts.seed,
            "method": "paired percentile bootstrap over queries",
        },
        "retrieval": _summaries(scores, queries, opts),
        "judge": judge,
        "per_query": per_query,
        "elapsed_s": round(time.monotonic() - started, 2),
    }


async def _run_and_close(
    qs: QuerySet, embedder: Embedder, llm: AbLlm, opts: AbOptions, progress: Progress
) -> dict[str, Any]:
    try:
        return await _run(qs, embedder, llm, opts, progress)
    finally:
        for client in {id(c): c for c in (llm.client, llm.judge_client) if c}.values():
            await client.aclose()


def run_enrichment_ab(
    qs: QuerySet,
    embedder: Embedder,
    llm: AbLlm | None = None,
    opts: AbOptions | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run the A/B end to end and return the report (JSON-ready)."""
    return asyncio.run(
        _run_and_close(qs, embedder, llm or AbLlm(), opts or AbOptions(), progress or _no_progress)
    )
