"""What serving's LLM layer adds to an LLM call, beside the bare call in the same run.

Against the simulated server over HTTP, alternating per request:

* **raw** — ``LlmClient.complete`` with an already-built rerank prompt (the yardstick:
  SDK + HTTP + the simulated model's own time);
* **layer** — ``LlmReranker.rerank`` on the same candidates (PII redaction, the
  injection guard, payload masking and stuffing cap on every text — memoised per text,
  as in serving —, quoting, the shuffled position list, the enum schema, the call,
  validation and the displacement bound), cache off so every request calls. No
  instruction scorer here (it needs the embedding model; its cost is measured by
  ``benchmarks/injection.py``).

``rerank_overhead_p50_ms`` = layer p50 - raw p50 (serving's target for the whole LLM
route: ≤ 15 ms at p50). Also the pure-CPU cost of preparing one request's texts
(``sanitise_candidates_ms``, uncached) and of one guard scan.

    python -m benchmarks llm_layer [--requests 300] [--candidates 30]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from benchmarks.common import emit, summary_ms
from recsys.llm.client import LlmClient
from recsys.serving.guard import InjectionGuard
from recsys.serving.rerank import (
    RERANK_SCHEMA_NAME,
    Candidate,
    LlmReranker,
    RerankContext,
    rerank_schema,
)
from recsys.serving.untrusted import sanitise
from testkit.llm_server import SimulatedLlmServer

WORDS = (
    "space",
    "crew",
    "heist",
    "detective",
    "love",
    "robot",
    "war",
    "family",
    "comedy",
    "horror",
    "drama",
    "island",
    "city",
    "river",
    "secret",
    "journey",
    "friendship",
    "revenge",
    "music",
    "school",
    "dragon",
    "storm",
    "ocean",
    "desert",
)


def candidates(n: int, salt: int) -> list[Candidate]:
    out = []
    for i in range(n):
        words = [WORDS[(i * 7 + j * 5 + salt) % len(WORDS)] for j in range(12)]  # distinct
        description = " ".join(words).capitalize() + ". Call 555-123-4567 for tickets."
        out.append(
            Candidate(
                f"m{i}", f"Film {i} ({1980 + i})", ("Drama", "Sci-Fi"), description, 1 - i / n
            )
        )
    return out


async def run(requests: int, n: int) -> dict[str, Any]:
    guard = InjectionGuard()
    with SimulatedLlmServer() as server:
        client = LlmClient(base_url=server.base_url, model=server.model, max_retries=0)
        assert client.sdk is not None
        reranker = LlmReranker(client, cap=n, cache_size=0, guard=guard)
        ctx = RerankContext(
            "u1",
            "a funny space adventure with a robot, mail me at a@b.com",
            [(f"Seen {i}", ("Comedy",)) for i in range(10)],
        )
        raw_s: list[float] = []
        layer_s: list[float] = []
        for k in range(requests + 20):
            cands = candidates(n, k)
            prepared = await reranker._prepare(ctx, cands)
            messages = reranker.prompt.render(
                user=prepared.user_block, candidates=prepared.candidates_block
            )
            t0 = time.perf_counter()
            result = await client.complete(
                messages,
                schema_name=RERANK_SCHEMA_NAME,
                schema=rerank_schema(len(cands)),
                deadline=None,
            )
            t1 = time.perf_counter()
            out = await reranker.rerank(ctx, cands, deadline_s=5.0)
            t2 = time.perf_counter()
            assert result.ok and out.used, (result.reason, out.fallback_reason)
            if k >= 20:  # warm-up done
                raw_s.append(t1 - t0)
                layer_s.append(t2 - t1)
        await client.aclose()
    prep: list[float] = []
    for k in range(200):
        cands = candidates(n, k)
        t0 = time.perf_counter()
        for c in cands:
            sanitise(c.title, guard, 200)
            sanitise(c.description, guard, 300)
        prep.append(time.perf_counter() - t0)
    text = candidates(1, 0)[0].description
    t0 = time.perf_counter()
    for _ in range(2000):
        guard.scan(text)
    scan_ms = (time.perf_counter() - t0) / 2000 * 1000
    raw, layer = summary_ms(raw_s), summary_ms(layer_s)
    return {
        "benchmark": "llm_layer",
        "candidates": n,
        "requests": requests,
        "raw_call": raw,
        "rerank_layer": layer,
        "rerank_overhead_p50_ms": round(layer["p50_ms"] - raw["p50_ms"], 2),
        "sanitise_candidates_ms": summary_ms(prep),
        "guard_scan_ms": round(scan_ms, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--candidates", type=int, default=30)
    args = parser.parse_args()
    emit(asyncio.run(run(args.requests, args.candidates)))


if __name__ == "__main__":
    main()
