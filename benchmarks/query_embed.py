"""One short query at a time, on one thread: the query embedding on torch
(sentence-transformers) and on ONNX Runtime (:mod:`recsys.embedding_onnx`), same texts,
interleaved rounds, plus their agreement.

    python -m benchmarks query_embed [--queries 300] [--rounds 2] [--threads 1]

Last line: ``{"torch": {"p50_ms", "p99_ms", "cpu_ms"}, "onnx": {...}, "cosine_min",
"export_s"}`` (wall time per call, p50/p99 over every round; ``cpu_ms``: this process's
CPU time per query; ``export_s``: the one-time export into a temporary cache).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import emit, percentile
from recsys.embedding import SentenceTransformerEmbedder, limit_threads
from recsys.embedding_onnx import OnnxEmbedder
from recsys.synthetic import SyntheticWorkload, WorkloadConfig


def timed(embed: Callable[[list[str]], Any], texts: list[str]) -> tuple[list[float], float]:
    walls = []
    cpu = time.process_time()
    for text in texts:
        start = time.perf_counter()
        embed([text])
        walls.append((time.perf_counter() - start) * 1000)
    return walls, (time.process_time() - cpu) * 1000 / len(texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    world = SyntheticWorkload(WorkloadConfig(n_items=300, n_users=300, seed=3))
    texts = list(
        dict.fromkeys(
            r.query
            for r in world.requests(args.queries * 10, new_user_share=0.0, query_share=1.0)
            if r.query
        )
    )[: args.queries]
    torch_model = SentenceTransformerEmbedder()
    _ = torch_model.dim
    limit_threads(args.threads)
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        onnx_model = OnnxEmbedder(cache_dir=Path(cache), threads=args.threads)
        _ = onnx_model.dim
        export_s = time.perf_counter() - start
        models = {"torch": torch_model.embed, "onnx": onnx_model.embed}
        for embed in models.values():  # warm up
            timed(embed, texts[:20])
        walls: dict[str, list[float]] = {name: [] for name in models}
        cpus: dict[str, list[float]] = {name: [] for name in models}
        for _ in range(args.rounds):
            for name, embed in models.items():
                w, c = timed(embed, texts)
                walls[name] += w
                cpus[name].append(c)
        cosine = (torch_model.embed(texts) * onnx_model.embed(texts)).sum(axis=1)
    emit(
        {
            **{
                name: {
                    "p50_ms": round(percentile(walls[name], 50), 2),
                    "p99_ms": round(percentile(walls[name], 99), 2),
                    "cpu_ms": round(float(np.mean(cpus[name])), 2),
                }
                for name in models
            },
            "cosine_min": round(float(cosine.min()), 7),
            "export_s": round(export_s, 1),
            "queries": len(texts),
        }
    )


if __name__ == "__main__":
    main()
