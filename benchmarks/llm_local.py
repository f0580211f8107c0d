"""The local LLM (``--llm local``) on MovieLens: validity, hallucinations, latency, speed.

Starts the embedded LLM server (SmolLM2-135M-Instruct, llguidance-constrained) as
``streamrec up --llm local`` does, then runs each use case through its production code
path, one call at a time (one model, 2 cores), over MovieLens items and the frozen
MovieLens query set of ``ab-enrich``:

* **enrich** — :class:`~recsys.enrichment.Enricher` on ``--calls`` tagged movies (every
  LLM call counts, the one re-ask after an invalid answer included);
* **intent** — :class:`~recsys.serving.intent.IntentParser` on ``--calls`` queries;
* **rerank** — :class:`~recsys.serving.rerank.LlmReranker` on ``--calls`` queries, 20
  candidates each (the query's relevant items among random ones, shuffled), cache off.

``json_valid_rate`` is the share of LLM calls whose answer passed the production
validation; ``hallucinated_id_rate`` the share of rerank calls whose answer named
something that is not a candidate. ``unconstrained_json_valid_rate`` sends the same
prompts (``--unconstrained`` per use case) without ``response_format`` and validates
the answers the same way: what the grammar buys. ``tokens_per_s`` is the server's
decode rate over the constrained calls (prefill excluded; it is printed apart).

    python -m benchmarks llm_local [--calls 200] [--unconstrained 50] [--style compact]
                                   [--use-cases enrich,intent,rerank]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.common import emit, percentile
from recsys.enrichment.cache import InMemoryEnrichmentCache
from recsys.enrichment.enricher import Enricher
from recsys.enrichment.schema import Enrichment, enrichment_messages
from recsys.enrichment.taxonomy import Taxonomy
from recsys.enrichment.text import content_hash
from recsys.evaluation.enrich_ab.queries import AbQuery, load_query_set
from recsys.llm.answer import read_answer
from recsys.llm.client import LlmClient
from recsys.llm.prompts import quote_untrusted
from recsys.movielens import MovieLens
from recsys.records import CatalogChange, LlmInvolvement, ValidationResult
from recsys.serving.intent import IntentParser
from recsys.serving.rerank import Candidate, LlmReranker, RerankContext
from recsys.serving.rerank_prompt import validate_ranking
from stack.embedded import free_port
from stack.local_llm.launcher import EmbeddedLlm
from streams.settings import Settings

CANDIDATES = 20
USE_CASES = ("enrich", "intent", "rerank")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def totals(llm: EmbeddedLlm) -> dict[str, float]:
    with urllib.request.urlopen(f"http://{llm.host}:{llm.port}/health", timeout=5) as r:
        return dict(json.loads(r.read())["totals"])


def rerank_inputs(
    queries: list[AbQuery], items: list[CatalogChange], seed: int
) -> list[tuple[AbQuery, RerankContext, list[Candidate], set[str]]]:
    rng = random.Random(seed)
    by_id = {c.item_id: c for c in items}
    out = []
    for q in queries:
        relevant = [i for i in q.relevant if i in by_id][:5]
        others = [c.item_id for c in rng.sample(items, CANDIDATES * 2) if c.item_id not in relevant]
        ids = relevant + others[: CANDIDATES - len(relevant)]
        rng.shuffle(ids)
        cands = [
            Candidate(i, by_id[i].title, tuple(by_id[i].categories), by_id[i].description)
            for i in ids
        ]
        history = [(c.title, tuple(c.categories)) for c in rng.sample(items, 3)]
        out.append((q, RerankContext(f"u-{q.query_id}", q.text, history), cands, set(relevant)))
    return out


async def run_enrich(
    client: LlmClient, changes: list[CatalogChange], style: Any
) -> tuple[list[LlmInvolvement], Enricher]:
    enricher = Enricher(client, InMemoryEnrichmentCache(), Taxonomy(), prompt_style=style)
    records: list[LlmInvolvement] = []
    for n, change in enumerate(changes, 1):
        await enricher.enrich(change, content_hash(change), deadline=None, emit=records.append)
        if n % 25 == 0:
            log(f"enrich {n}/{len(changes)}")
    return [r for r in records if r.called], enricher


async def unconstrained(client: LlmClient, messages: list[dict[str, str]], check: Any) -> bool:
    response = await client.sdk.chat.completions.create(
        model=client.model, messages=messages, temperature=0.0, max_tokens=150
    )
    answer = read_answer(response, None)
    if answer.reason is not None:
        return False
    try:
        return bool(check(answer.value))
    except ValueError:
        return False


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    use_cases = set(args.use_cases.split(","))
    if not use_cases <= set(USE_CASES):
        raise SystemExit(f"--use-cases: choose among {', '.join(USE_CASES)}")
    movielens = MovieLens(args.movielens)
    qs = load_query_set(movielens)  # the frozen query set of ab-enrich
    items = movielens.catalog()  # titles, genres, viewers' tags as the description
    rng = random.Random(args.seed)
    changes = rng.sample([c for c in items if c.description], args.calls)
    queries = rng.sample(list(qs.queries), min(args.calls, len(qs.queries)))
    while len(queries) < args.calls:
        queries.append(rng.choice(list(qs.queries)))
    categories = sorted({g for c in items for g in c.categories})
    log(f"{len(changes)} items, {len(queries)} queries, {len(categories)} categories")

    started = time.monotonic()
    llm = EmbeddedLlm(
        args.model_path,
        port=free_port(),
        repeat_penalty=args.repeat_penalty,
        threads=args.threads,
        log_dir=Path(tempfile.mkdtemp(prefix="llm-local-bench-")),
    )
    llm.start(timeout_s=900)
    log(f"server ready in {time.monotonic() - started:.1f}s; log {llm.log_path}")
    load_s = float(llm.card.get("meta", {}).get("load_s", float("nan")))
    client = LlmClient(
        base_url=llm.base_url,
        model=llm.model,
        temperature=0.0,
        timeout_s=300,
        max_retries=0,
        max_concurrency=1,
    )
    latency: dict[str, list[float]] = {}
    valid: dict[str, float] = {}
    try:
        before = totals(llm)
        # ---- enrich
        enricher = Enricher(client, InMemoryEnrichmentCache(), Taxonomy(), prompt_style=args.style)
        if "enrich" in use_cases:
            calls, enricher = await run_enrich(client, changes, args.style)
            latency["enrich"] = [r.latency_ms for r in calls]
            valid["enrich"] = sum(r.validation is ValidationResult.VALID for r in calls) / len(
                calls
            )
            reasons = [
                f"{r.fallback_reason or 're-asked'}: {'; '.join(r.validation_errors)[:200]}"
                for r in calls
                if r.validation is not ValidationResult.VALID
            ]
            log(f"enrich: {len(calls)} calls, valid {valid['enrich']:.3f}, failures {reasons[:10]}")
        # ---- intent
        parser = IntentParser(client, cache_size=0, prompt_style=args.style)
        intents = []
        for n, q in enumerate(queries if "intent" in use_cases else [], 1):
            intents.append(await parser.parse(q.text, categories, deadline_s=300))
            if n % 50 == 0:
                log(f"intent {n}/{len(queries)}")
        called = [o for o in intents if o.called]
        if called:
            latency["intent"] = [o.latency_ms for o in called]
            valid["intent"] = sum(o.validation is ValidationResult.VALID for o in called) / len(
                called
            )
            log(
                f"intent: {len(called)} calls ({len(intents) - len(called)} not called: "
                f"{sorted({str(o.fallback_reason) for o in intents if not o.called})}), valid "
                f"{valid['intent']:.3f}, fallbacks "
                f"{[(o.fallback_reason, o.errors[:1]) for o in called if not o.used][:10]}"
            )
        # ---- rerank
        reranker = LlmReranker(client, cap=CANDIDATES, cache_size=0, prompt_style=args.style)
        inputs = rerank_inputs(queries, items, args.seed) if "rerank" in use_cases else []
        outcomes = []
        hits_llm = hits_base = 0
        for n, (_q, ctx, cands, relevant) in enumerate(inputs, 1):
            outcome = await reranker.rerank(ctx, cands, deadline_s=300)
            outcomes.append(outcome)
            hits_llm += len(set(outcome.order[:5]) & relevant)
            hits_base += len({c.item_id for c in cands[:5]} & relevant)
            if n % 50 == 0:
                log(f"rerank {n}/{len(inputs)}")
        called_r = [o for o in outcomes if o.called]
        hallucinated: float | None = None
        if called_r:
            latency["rerank"] = [o.latency_ms for o in called_r]
            valid["rerank"] = sum(o.validation is ValidationResult.VALID for o in called_r) / len(
                called_r
            )
            hallucinated = sum(bool(o.hallucinated_ids) for o in called_r) / len(called_r)
            log(
                f"rerank: {len(called_r)} calls, valid {valid['rerank']:.3f}, fallbacks "
                f"{[o.fallback_reason for o in called_r if not o.used][:10]}; relevant items "
                f"in the top 5: LLM order {hits_llm}, shuffled ranker order {hits_base}"
            )
        after = totals(llm)
        out_tokens = after["completion_tokens"] - before["completion_tokens"]
        in_tokens = after["prompt_tokens"] - before["prompt_tokens"]
        decode_s = after["decode_s"] - before["decode_s"]
        prefill_s = after["prefill_s"] - before["prefill_s"]
        tokens_per_s = out_tokens / decode_s if decode_s else float("nan")
        log(
            f"constrained: {out_tokens} tokens out at {tokens_per_s:.1f}/s (decode), "
            f"{in_tokens} prompt tokens at {in_tokens / prefill_s:.0f}/s (prefill)"
        )
        # ---- unconstrained: the same prompts, no response_format
        ok = 0
        total = 0
        unc: dict[str, float] = {}
        taxonomy = enricher.taxonomy
        for change in changes[: args.unconstrained] if "enrich" in use_cases else []:
            messages = enrichment_messages(enricher.prompt, change, taxonomy)
            ok += await unconstrained(
                client,
                messages,
                lambda v: Enrichment.model_validate(v, context={"taxonomy": taxonomy}),
            )
            total += 1
        if total:
            unc["enrich"] = ok / total
        ok = total = 0
        for q in queries[: args.unconstrained] if "intent" in use_cases else []:
            messages = parser.prompt.render(
                query=quote_untrusted("QUERY", {"query": q.text}), categories=", ".join(categories)
            )
            ok += await unconstrained(
                client,
                messages,
                lambda v: parser.to_intent(
                    parser.answer_model.model_validate(v, context={"categories": categories}),
                    categories,
                ),
            )
            total += 1
        if total:
            unc["intent"] = ok / total
        ok = total = 0
        shuffle = random.Random(args.seed)
        for _q, ctx, cands, _rel in inputs[: args.unconstrained]:
            messages = unconstrained_rerank_messages(reranker, ctx, cands, shuffle)
            ok += await unconstrained(
                client, messages, lambda v, n=len(cands): validate_ranking(v, n)[1] is None
            )
            total += 1
        if total:
            unc["rerank"] = ok / total
        unconstrained_rate = sum(unc.values()) / len(unc) if unc else float("nan")
        log(f"unconstrained valid by use case: {unc}")
    finally:
        await client.aclose()
        llm.stop()
    return {
        "model": llm.model,
        "load_s": round(load_s, 1),
        "tokens_per_s": round(tokens_per_s, 1),
        "json_valid_rate": {k: round(v, 4) for k, v in valid.items()},
        "hallucinated_id_rate": None if hallucinated is None else round(hallucinated, 4),
        "p50_ms": {k: round(percentile(v, 50), 1) for k, v in latency.items()},
        "p99_ms": {k: round(percentile(v, 99), 1) for k, v in latency.items()},
        "unconstrained_json_valid_rate": round(unconstrained_rate, 4),
    }


def unconstrained_rerank_messages(
    reranker: LlmReranker, ctx: RerankContext, cands: list[Candidate], rng: random.Random
) -> list[dict[str, str]]:
    """The compact rerank prompt as the reranker builds it: the candidates shuffled and
    numbered n = 1..N with their ``prior_rank`` (MovieLens texts need no redaction; the
    guard's verdicts do not change them)."""
    user = {
        "query": ctx.query,
        "recent_items": [
            {"title": t, "categories": list(c)} for t, c in ctx.history[: reranker.history_max]
        ],
    }
    order = list(range(len(cands)))
    rng.shuffle(order)
    listed = [
        {
            "n": n,
            "prior_rank": k + 1,
            "title": cands[k].title,
            "categories": list(cands[k].categories),
            "description": cands[k].description[: reranker.description_chars],
        }
        for n, k in enumerate(order, start=1)
    ]
    return reranker.prompt.render(
        user=quote_untrusted("USER", user), candidates=quote_untrusted("CANDIDATES", listed)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="calls per use case")
    parser.add_argument("--unconstrained", type=int, default=50, help="per use case")
    parser.add_argument("--style", choices=("compact",), default="compact")
    parser.add_argument(
        "--use-cases",
        default=",".join(USE_CASES),
        help="comma-separated subset of enrich,intent,rerank (a partial run: the maps "
        "carry only these, hallucinated_id_rate is null without rerank)",
    )
    parser.add_argument("--repeat-penalty", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2, help="the server's torch threads")
    parser.add_argument("--model-path", type=Path, default=None)
    parser.add_argument("--movielens", type=Path, default=Settings().movielens_path)
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()
    emit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
