"""Where one request's wall time goes: the routed recommender in-process (no Kafka), each
Postgres statement and the query embedding timed inside the request.

    python -m benchmarks serve_stages [--items 1000] [--users 300] [--requests 200]
                                      [--route hybrid|natural]

A synthetic world as ``benchmarks/serve.py`` seeds it; then requests of known users that
carry a query, one at a time, through the serve worker's recommender (item cache on, LLM
off), by default all forced onto the HYBRID route (the slowest in ``serve``'s runs). Every
statement a request sends (psycopg ``execute``) and every query embedding is recorded
with its start and end relative to the request's start; per request the benchmark reports
the wall time, the sum of the statements' and embedding's times, and the *critical path*
(the union of the intervals: what a request would take with no Python between them).

Last line: ``{"requests", "wall_ms", "statements_per_request", "statement_ms_sum",
"embed_ms", "busy_union_ms", "by_label", "stages_cumulative"}`` (each ``*_ms`` a p50/p99
pair, ``by_label`` per statement kind: count per request, p50/p99 duration and start).
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import re
import time
from collections import defaultdict
from typing import Any

import psycopg

from benchmarks.common import embedded_stack, emit, percentile
from recsys import db
from recsys.embedding import SentenceTransformerEmbedder, limit_threads
from recsys.records import RecRequest, Route, utcnow
from recsys.serving.item_cache import ItemCache
from recsys.serving.query_embedding import QueryEncoder
from recsys.synthetic import SyntheticWorkload, WorkloadConfig
from streams.settings import Settings
from testkit.synthetic_world import seed_world
from workers.query_embedder import query_embedder
from workers.serve_wiring import build_recommender

#: (label, start, end) of the current request's statements, seconds from its start
_TRACE: contextvars.ContextVar[list[tuple[str, float, float]] | None] = contextvars.ContextVar(
    "trace", default=None
)
_LABELS = [
    ("user_view", re.compile(r"FROM user_state")),
    ("als_factors", re.compile(r"als_item_factors.*= ANY", re.S)),
    ("als_ann", re.compile(r"als_item_factors", re.S)),
    ("covisit", re.compile(r"covisit", re.I)),
    ("popular", re.compile(r"popularity", re.I)),
    ("knn_head", re.compile(r"AS MATERIALIZED.*UNION ALL", re.S)),
    ("knn", re.compile(r"AS MATERIALIZED")),
    ("similarities", re.compile(r"AS similarity FROM")),
    ("details", re.compile(r"updated_at FROM")),
    ("vectors", re.compile(r"AS v FROM")),
    ("eligible", re.compile(r"SELECT item_id FROM .* = ANY", re.S)),
    ("eligible_each", re.compile(r"AS ok FROM")),
    ("set_config", re.compile(r"set_config|SET LOCAL")),
]


def _label(query: Any) -> str:
    text = query.as_string(None) if hasattr(query, "as_string") else str(query)
    for name, pattern in _LABELS:
        if pattern.search(text):
            return name
    return "other:" + " ".join(text.split())[:40]


def _instrument(origin: list[float]) -> None:
    """Wrap psycopg's async cursor ``execute`` (a connection's ``execute`` calls it) to
    record into the trace."""
    for cls in (psycopg.AsyncCursor,):
        plain = cls.execute

        def timed(self: Any, query: Any, *args: Any, __plain: Any = plain, **kw: Any) -> Any:
            async def run() -> Any:
                trace = _TRACE.get()
                start = time.perf_counter()
                try:
                    return await __plain(self, query, *args, **kw)
                finally:
                    if trace is not None:
                        t0 = origin[0]
                        trace.append((_label(query), start - t0, time.perf_counter() - t0))

            return run()

        cls.execute = timed  # type: ignore[method-assign]


def _union(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def pair(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(percentile(values, 50), 2) if values else float("nan"),
        "p99": round(percentile(values, 99), 2) if values else float("nan"),
    }


async def run(settings: Settings, embedder: Any, requests: list[RecRequest], route: str) -> Any:
    assert settings.database_url is not None
    pool = db.async_pool(
        settings.database_url.get_secret_value(), name="bench-stages", autocommit=True
    )
    await pool.open(wait=True)
    queries = query_embedder(settings)  # what a serve process uses
    if not isinstance(queries, SentenceTransformerEmbedder):
        embedder = queries
    _ = embedder.dim
    encoder = QueryEncoder(embedder)
    origin = [0.0]
    _instrument(origin)
    plain_embed = encoder.embed

    async def embed(text: str) -> Any:
        trace = _TRACE.get()
        start = time.perf_counter()
        try:
            return await plain_embed(text)
        finally:
            if trace is not None:
                trace.append(("embed", start - origin[0], time.perf_counter() - origin[0]))

    encoder.embed = embed  # type: ignore[method-assign]
    overrides: dict[str, Any] = {"epsilon": 0.0}
    if route == "hybrid":
        overrides["force_route"] = Route.HYBRID
    try:
        rec = build_recommender(
            settings, pool, encoder, None, ItemCache(settings.serve_item_cache_size), **overrides
        )
        for r in requests[:20]:  # warm caches and connections
            await rec.recommend(r)
        rows = []
        stages: dict[str, list[float]] = defaultdict(list)
        for r in requests[20:]:
            r = r.model_copy(update={"requested_at": utcnow(), "deadline_ms": 60_000})
            trace: list[tuple[str, float, float]] = []
            token = _TRACE.set(trace)
            origin[0] = time.perf_counter()
            try:
                served = await rec.recommend(r, received=rec.clock())
            finally:
                _TRACE.reset(token)
            wall = time.perf_counter() - origin[0]
            for name, at in served.timings.items():
                stages[name].append(at * 1000)
            rows.append((served.response.route.value, wall, trace))
    finally:
        encoder.close()
        await pool.close()
    walls = [w * 1000 for _, w, _ in rows]
    by_label: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for _, _, trace in rows:
        seen: dict[str, int] = defaultdict(int)
        for label, a, b in trace:
            by_label[label]["ms"].append((b - a) * 1000)
            by_label[label]["start_ms"].append(a * 1000)
            seen[label] += 1
        for label in by_label:
            by_label[label]["count"].append(seen.get(label, 0))
    n = len(rows)
    return {
        "requests": n,
        "query_embedding": type(embedder).__name__,
        "routes": sorted({route for route, _, _ in rows}),
        "wall_ms": pair(walls),
        "statements_per_request": round(
            sum(sum(1 for t in trace if t[0] != "embed") for _, _, trace in rows) / max(n, 1), 2
        ),
        "statement_ms_sum": pair(
            [sum((b - a) * 1000 for lab, a, b in t if lab != "embed") for _, _, t in rows]
        ),
        "embed_ms": pair([(b - a) * 1000 for _, _, t in rows for lab, a, b in t if lab == "embed"]),
        "busy_union_ms": pair([_union([(a, b) for _, a, b in t]) * 1000 for _, _, t in rows]),
        "by_label": {
            label: {
                "per_request": round(sum(v["count"]) / max(n, 1), 2),
                "ms": pair(v["ms"]),
                "start_ms": pair(v["start_ms"]),
            }
            for label, v in sorted(by_label.items())
        },
        "stages_cumulative": {k: pair(v) for k, v in stages.items()},
        "slowest": [
            {
                "wall_ms": round(w * 1000, 1),
                "trace": [(lab, round(a * 1000, 1), round(b * 1000, 1)) for lab, a, b in t],
            }
            for _, w, t in sorted(rows, key=lambda r: -r[1])[:3]
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--route", choices=["hybrid", "natural"], default="hybrid")
    args = parser.parse_args()
    workload = SyntheticWorkload(WorkloadConfig(n_items=args.items, n_users=args.users, seed=3))
    embedder = SentenceTransformerEmbedder()
    _ = embedder.dim
    limit_threads(Settings().serve_embed_threads)
    with embedded_stack(with_postgres=True) as settings:
        assert settings.database_url is not None
        db.apply_migrations(settings.database_url.get_secret_value())
        asyncio.run(seed_world(settings, embedder, workload.catalog(), list(workload.events())))
        pool = [
            r
            for r in workload.requests(args.requests * 8, new_user_share=0.0, query_share=1.0)
            if r.query
        ][: args.requests + 20]
        emit(asyncio.run(run(settings, embedder, pool, args.route)))


if __name__ == "__main__":
    main()
