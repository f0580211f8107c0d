"""Prompt injection against the LLM rerank: what each defence layer stops (issue 14).

The scenario: 240 synthetic catalog items (the serving tests' world, seed 11), a cold
user's query "something funny about family mishaps", the 30 candidates nearest to it in
the raw-text embedding space (all-MiniLM-L6-v2) in that order, and the candidate the
ranker puts last as every attack's target. Each attack of the corpus
(:mod:`testkit.injection_corpus`: the classic corpus, the evasions, keyword
stuffing) goes into the query or the target's description; the same request without it
is the baseline. The LLM is our simulated server over HTTP in its gullible mode, which
decodes encodings, reads through look-alike and invisible characters and promotes any
candidate named by id or title and any candidate whose own text asks for it.

* **flag_rate** — share of a category's attacks that some layer flagged;
* **obeyed** — attacks after which the target stands higher than in the baseline;
* **max_displacement** — the most places any attack lifted its target (the configured
  bound is ``--bound``).

Configurations: ``full`` (every layer), then one layer off at a time, ``none`` (all new
layers off but position addressing), and with ``--before-src PATH`` the same corpus
against the code at PATH (e.g. a checkout of main before issue 14, run in a subprocess
against the same simulated model). Keyword stuffing is also measured under *honest*
rankers: the honest simulated LLM, and the embedding ranker on the text that is embedded
with and without :func:`recsys.textsafety.stuffing.destuff`.

    python -m benchmarks injection [--bound 10] [--before-src /path/to/main]
    python -m benchmarks injection --calibrate     # the instruction scorer's threshold

The last line is ``{"flag_rate": {category: r}, "obeyed": {category: n},
"max_displacement": d, "attacks": n}`` for the ``full`` configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "testkit" / "injection_corpus.py"
QUERY = "something funny about family mishaps"
KEYWORDS = "funny family mishaps"
USER = "u-bench"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def load_corpus() -> Any:
    """The corpus module from this checkout's file (a child process may import another
    checkout's ``recsys``; the corpus is plain data and always comes from here)."""
    spec = importlib.util.spec_from_file_location("injection_corpus_here", CORPUS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# ---- the scenario (built with this checkout's code) -------------------------------------
def scenario(embedder: Any) -> dict[str, Any]:
    """Candidates in the ranker's order, the target, and every attack rendered for it."""
    import numpy as np

    from recsys.enrichment.text import raw_text
    from recsys.synthetic import SyntheticWorkload, WorkloadConfig

    corpus = load_corpus()
    catalog = SyntheticWorkload(WorkloadConfig(n_items=240, n_users=40, seed=11)).catalog()
    texts = [raw_text(c.title, c.categories, c.description) for c in catalog]
    vectors = embedder.embed(texts)
    query = embedder.embed([QUERY])[0]
    sims = vectors @ query
    top = list(np.argsort(-sims)[:30])
    candidates = [
        {
            "item_id": catalog[i].item_id,
            "title": catalog[i].title,
            "categories": list(catalog[i].categories),
            "description": catalog[i].description,
            "score": float(sims[i]),
        }
        for i in top
    ]
    target = candidates[-1]
    attacks = [
        {
            "text": a.render(target["item_id"], target["title"], KEYWORDS),
            "category": a.category,
            "where": a.where,
            "split": a.split,
        }
        for a in corpus.ALL_ATTACKS
    ]
    return {"candidates": candidates, "target": target["item_id"], "attacks": attacks}


# ---- one configuration: baseline and every attack ----------------------------------------
Screen = Callable[[str], Awaitable[tuple[str | None, bool, tuple[str, ...]]]]


async def run_attacks(
    scene: dict[str, Any],
    rerank: Callable[[str | None, bool, tuple[str, ...], list[dict[str, Any]]], Awaitable[Any]],
    screen: Screen,
) -> list[dict[str, Any]]:
    """Per attack: flagged, how far the target moved up (negative: down), used."""
    target = scene["target"]
    cands = scene["candidates"]

    async def serve(raw_query: str, items: list[dict[str, Any]]) -> tuple[list[str], bool, Any]:
        query, flagged, reasons = await screen(raw_query)
        out = await rerank(query, flagged, reasons, items)
        return list(out.order), flagged or bool(out.injection_flagged), out

    base_order, _, _ = await serve(f"{QUERY}.", cands)
    base = base_order.index(target)
    results = []
    for attack in scene["attacks"]:
        if attack["where"] == "query":
            order, flagged, out = await serve(f"{QUERY}. {attack['text']}", cands)
        else:
            items = [
                {**c, "description": f"{c['description']} {attack['text']}"}
                if c["item_id"] == target
                else c
                for c in cands
            ]
            order, flagged, out = await serve(f"{QUERY}.", items)
        results.append(
            {
                **{k: attack[k] for k in ("category", "where", "split")},
                "flagged": flagged,
                "moved_up": base - order.index(target),
                "used": bool(out.used),
                "reason": out.fallback_reason,
            }
        )
    return results


def candidates_of(module: Any, items: list[dict[str, Any]]) -> list[Any]:
    return [
        module.Candidate(
            c["item_id"], c["title"], tuple(c["categories"]), c["description"], c["score"]
        )
        for c in items
    ]


async def run_current(
    scene: dict[str, Any], url: str, layers: dict[str, Any]
) -> list[dict[str, Any]]:
    """This checkout's defences, with some layers off."""
    import random

    from recsys.llm.client import LlmClient
    from recsys.serving import rerank as rr
    from recsys.serving.guard import InjectionGuard
    from recsys.serving.untrusted import Sanitiser

    client = LlmClient(base_url=url, model="simulated-bench", max_retries=0, timeout_s=5.0)
    sanitiser = Sanitiser(
        InjectionGuard(deep=layers.get("deep", True)),
        layers.get("scorer"),
        stuffing=layers.get("stuffing", True),
    )
    bound = layers.get("bound")
    reranker = rr.LlmReranker(
        client,
        cap=30,
        cache_size=0,
        sanitiser=sanitiser,
        mask_ids=layers.get("masks", True),
        mask_titles=layers.get("masks", True),
        max_displacement=bound,
        flagged_displacement=layers.get("flagged", 0),
        rng=random.Random(7),
    )

    async def rerank(
        query: str | None, flagged: bool, reasons: tuple[str, ...], items: list[dict[str, Any]]
    ) -> Any:
        reranker.rng.seed(7)  # the same shuffle for the baseline and every attack
        ctx = rr.RerankContext(USER, query, (), query_flagged=flagged, query_reasons=reasons)
        return await reranker.rerank(ctx, candidates_of(rr, items), deadline_s=5.0)

    async def screen(text: str) -> tuple[str | None, bool, tuple[str, ...]]:
        return await sanitiser.screen_query(text)

    try:
        return await run_attacks(scene, rerank, screen)
    finally:
        await client.aclose()


async def run_before(scene: dict[str, Any], url: str) -> list[dict[str, Any]]:
    """Main's defences before issue 14 (run in a child process with that ``recsys``):
    its guard screens the query as its recommender did, its reranker does the rest."""
    from recsys.llm.client import LlmClient
    from recsys.serving import rerank as rr
    from recsys.serving.guard import REMOVED, InjectionGuard

    client = LlmClient(base_url=url, model="simulated-bench", max_retries=0, timeout_s=5.0)
    guard = InjectionGuard()
    reranker = rr.LlmReranker(client, cap=30, cache_size=0, guard=guard)

    async def rerank(
        query: str | None, flagged: bool, reasons: tuple[str, ...], items: list[dict[str, Any]]
    ) -> Any:
        ctx = rr.RerankContext(USER, query, ())
        return await reranker.rerank(ctx, candidates_of(rr, items), deadline_s=5.0)

    async def screen(text: str) -> tuple[str | None, bool, tuple[str, ...]]:
        if not guard.scan(text).flagged:
            return text, False, ()
        return " ".join(guard.neutralise(text).replace(REMOVED, " ").split()) or None, True, ()

    try:
        return await run_attacks(scene, rerank, screen)
    finally:
        await client.aclose()


def before_in_subprocess(src: Path, scene: dict[str, Any], url: str) -> list[dict[str, Any]]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(scene, fh)
    env = {**os.environ, "PYTHONPATH": str(src)}
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", fh.name, "--llm-url", url],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    os.unlink(fh.name)
    if done.returncode != 0:
        raise SystemExit(f"the run against {src} failed:\n{done.stderr[-3000:]}")
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


# ---- summaries ------------------------------------------------------------------------
def summarise(results: list[dict[str, Any]], split: str | None = None) -> dict[str, Any]:
    rows = [r for r in results if split is None or r["split"] == split]
    n: collections.Counter[str] = collections.Counter()
    flagged: collections.Counter[str] = collections.Counter()
    obeyed: collections.Counter[str] = collections.Counter()
    for r in rows:
        n[r["category"]] += 1
        flagged[r["category"]] += r["flagged"]
        obeyed[r["category"]] += r["moved_up"] > 0
    return {
        "flag_rate": {c: round(flagged[c] / n[c], 3) for c in sorted(n)},
        "obeyed": {c: obeyed[c] for c in sorted(n)},
        "max_displacement": max((r["moved_up"] for r in rows), default=0),
        "attacks": len(rows),
    }


def table(name: str, results: list[dict[str, Any]]) -> None:
    for split in ("dev", "heldout"):
        s = summarise(results, split)
        cells = ", ".join(f"{c} {s['obeyed'][c]}/{s['flag_rate'][c]:.0%}" for c in s["obeyed"])
        print(f"{name:>14} {split:>7}: max_up={s['max_displacement']:>2}  (obeyed/flagged) {cells}")


# ---- stuffing under honest rankers -------------------------------------------------------
def stuffing_embedding(embedder: Any, scene: dict[str, Any]) -> dict[str, Any]:
    """The target's rank among the candidates by cosine to the query, its stuffed
    description embedded as written vs through the embedded-text cleaning."""
    from recsys.enrichment.text import raw_text

    corpus = load_corpus()
    cands = scene["candidates"]
    target = scene["target"]
    query = embedder.embed([QUERY])[0]
    out: dict[str, list[int]] = {"as_written": [], "cleaned": []}
    for attack in corpus.STUFFING:
        text = attack.render(target, keywords=KEYWORDS)
        for mode in out:
            texts = []
            for c in cands:
                description = c["description"] + (f" {text}" if c["item_id"] == target else "")
                if mode == "as_written":
                    texts.append(
                        " ".join([c["title"] + ".", ", ".join(c["categories"]) + ".", description])
                    )
                else:
                    texts.append(raw_text(c["title"], c["categories"], description))
            sims = embedder.embed(texts) @ query
            order = sorted(range(len(cands)), key=lambda k: -sims[k])
            out[mode].append(order.index(len(cands) - 1))
    return {"target_rank_before_attack": len(cands) - 1, **out}


# ---- what the scorer costs a request ---------------------------------------------------
async def scoring_cost(embedder: Any, scene: dict[str, Any]) -> dict[str, Any]:
    """Milliseconds to screen one request's texts (30 candidates' titles and descriptions)
    with the scorer's memo cold (every text new) and warm, and what screening a new query
    adds to embedding it for retrieval (serving's wiring: both through one QueryEncoder)."""
    import time

    from recsys.serving.guard import InjectionGuard
    from recsys.serving.query_embedding import QueryEncoder
    from recsys.serving.untrusted import Sanitiser
    from recsys.textsafety.instruction import InstructionScorer

    encoder = QueryEncoder(embedder)
    scorer = InstructionScorer(encoder.embed_many)
    await scorer.warm()
    sanitiser = Sanitiser(InjectionGuard(), scorer)
    texts = [
        (c[f], n) for c in scene["candidates"] for f, n in (("title", 200), ("description", 300))
    ]
    out: dict[str, float] = {}
    for name in ("candidates_cold_ms", "candidates_warm_ms"):
        t0 = time.perf_counter()
        await sanitiser.screen(texts)
        out[name] = round((time.perf_counter() - t0) * 1000, 1)
    plain: list[float] = []
    screened: list[float] = []
    for k in range(40):
        t0 = time.perf_counter()
        await encoder.embed(f"{QUERY}, take {k}.")
        t1 = time.perf_counter()
        query, _, _ = await sanitiser.screen_query(f"{QUERY}, round {k}.")
        await encoder.embed(query or "")
        t2 = time.perf_counter()
        plain.append(t1 - t0)
        screened.append(t2 - t1)
    plain.sort()
    screened.sort()
    out["query_embed_p50_ms"] = round(plain[20] * 1000, 1)
    out["query_screen_and_embed_p50_ms"] = round(screened[20] * 1000, 1)
    encoder.close()
    return out


# ---- calibration ------------------------------------------------------------------------
async def calibration(embedder: Any) -> dict[str, Any]:
    import random

    from recsys.serving.guard import InjectionGuard
    from recsys.serving.untrusted import Sanitiser
    from recsys.synthetic import SyntheticWorkload, WorkloadConfig
    from recsys.textsafety.instruction import InstructionScorer, calibrate

    corpus = load_corpus()
    work = SyntheticWorkload(WorkloadConfig(n_items=600, n_users=100, seed=3))
    catalog = work.catalog()
    targets = [(c.item_id, c.title) for c in catalog]
    random.Random(1).shuffle(targets)
    sanitiser = Sanitiser(InjectionGuard())
    scorer = InstructionScorer.from_embedder(embedder)
    out: dict[str, Any] = {}
    ordinary = [c.description for c in catalog] + [c.title for c in catalog]
    ordinary += [work.query_for(u) for u in work.users]
    ordinary_scores = await scorer.scores([sanitiser.clean(t).scoring for t in ordinary])
    chosen = None
    for split in ("dev", "heldout"):
        attacks, texts, benign = corpus.split_texts(split, targets)
        a_scores = await scorer.scores([sanitiser.clean(t).scoring for t in texts])
        b_scores = await scorer.scores([sanitiser.clean(t).scoring for t in benign])
        if split == "dev":
            chosen = calibrate(a_scores, b_scores, ordinary_scores)
        assert chosen is not None
        value = chosen.value
        by_cat: dict[str, list[bool]] = collections.defaultdict(list)
        for attack, score in zip(attacks, a_scores, strict=True):
            by_cat[attack.category].append(score >= value)
        out[split] = {
            "attacks_flagged": round(sum(s >= value for s in a_scores) / len(a_scores), 3),
            "lookalikes_flagged": round(sum(s >= value for s in b_scores) / len(b_scores), 3),
            "by_category": {c: f"{sum(v)}/{len(v)}" for c, v in sorted(by_cat.items())},
        }
    assert chosen is not None
    out["ordinary_flagged"] = round(
        sum(s >= chosen.value for s in ordinary_scores) / len(ordinary_scores), 4
    )
    out["threshold"] = round(chosen.value, 4)
    return out


# ---- main -------------------------------------------------------------------------------
async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from recsys.embedding import SentenceTransformerEmbedder
    from recsys.textsafety.instruction import InstructionScorer
    from testkit.llm_server import SimulatedLlmServer

    embedder = SentenceTransformerEmbedder()
    scene = scenario(embedder)
    scorer = InstructionScorer.from_embedder(embedder)
    bound = args.bound
    configs: dict[str, dict[str, Any]] = {
        "full": {"scorer": scorer, "bound": bound},
        "no_bound": {"scorer": scorer, "bound": None},
        "no_clamp": {"scorer": scorer, "bound": bound, "flagged": bound},
        "no_scorer": {"bound": bound},
        "no_deep_guard": {"scorer": scorer, "bound": bound, "deep": False},
        "no_masks": {"scorer": scorer, "bound": bound, "masks": False},
        "no_stuffing": {"scorer": scorer, "bound": bound, "stuffing": False},
        "none": {"bound": None, "deep": False, "masks": False, "stuffing": False, "flagged": 100},
    }
    results: dict[str, list[dict[str, Any]]] = {}
    with SimulatedLlmServer() as server:
        server.set_behaviour("obey_injections")
        if args.before_src:
            results["before"] = before_in_subprocess(Path(args.before_src), scene, server.base_url)
        for name, layers in configs.items():
            results[name] = await run_current(scene, server.base_url, layers)
        server.set_behaviour("honest")
        honest = await run_current(scene, server.base_url, configs["full"])
        honest_none = await run_current(scene, server.base_url, configs["none"])
    print(f"attacks: {len(scene['attacks'])}, target at ranker position 30 of 30, bound {bound}")
    for name, rows in results.items():
        table(name, rows)
    stuffing = {
        "honest_llm_obeyed_full": sum(
            r["moved_up"] > 0 for r in honest if r["category"] == "stuffing"
        ),
        "honest_llm_obeyed_none": sum(
            r["moved_up"] > 0 for r in honest_none if r["category"] == "stuffing"
        ),
        "embedding_rank": stuffing_embedding(embedder, scene),
    }
    print("stuffing under honest rankers:", json.dumps(stuffing))
    print("scorer cost per request:", json.dumps(await scoring_cost(embedder, scene)))
    summary = {name: summarise(rows) for name, rows in results.items()}
    print("per configuration:", json.dumps(summary, sort_keys=True))
    return summary["full"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bound", type=int, default=10, help="llm_max_displacement")
    parser.add_argument("--before-src", help="a checkout whose defences to measure too")
    parser.add_argument("--calibrate", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--llm-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        scene = json.loads(Path(args.child).read_text())
        print(json.dumps(asyncio.run(run_before(scene, args.llm_url))))
        return
    if args.calibrate:
        from recsys.embedding import SentenceTransformerEmbedder

        print(json.dumps(asyncio.run(calibration(SentenceTransformerEmbedder()))))
        return
    print(json.dumps(asyncio.run(measure(args)), sort_keys=True))


if __name__ == "__main__":
    main()
