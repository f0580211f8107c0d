"""Serving latency: the routed recommender in-process (per stage) and the `serve` worker
over the embedded broker, beside the raw confluent-kafka echo round trip (same run).

    python -m benchmarks serve [--items 1000] [--users 300] [--rates 10,20,50]
                               [--seconds 10] [--llm simulated|none]

A synthetic world is seeded into a fresh embedded Postgres (items embedded with the real
model, users' histories through the users worker's domain step, ALS trained). Then:

1. in-process: the workload's requests through :class:`Recommender` one at a time — the
   compute and Postgres cost per route and per stage, no Kafka;
2. the worker: a ``serve`` process; requests at each rate through :class:`RecClient`;
   round trip per route (client clock) and the worker's own ``latency_ms``;
3. the yardstick: a raw confluent-kafka echo at the same rate — the broker's floor;
4. with ``--llm simulated``: the same with our simulated LLM endpoint, so the LLM's share
   (intent + rerank calls over HTTP) shows as the difference.

Last line: one JSON object; ``*_overhead_p50_ms`` are the worker's round trip minus the
echo's at the lowest rate.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from benchmarks.common import echo_round_trip, embedded_stack, emit, percentile
from recsys import db
from recsys.embedding import SentenceTransformerEmbedder
from recsys.records import RecRequest, RecResponse, utcnow
from recsys.serving.query_embedding import QueryEncoder
from recsys.synthetic import SyntheticWorkload, WorkloadConfig
from stack.supervisor import Supervisor
from streams.admin import ensure_topics
from streams.client import RecClient
from streams.exceptions import RequestTimeout
from streams.settings import Settings
from testkit.llm_server import SimulatedLlmServer
from testkit.synthetic_world import seed_world
from workers.serve_wiring import build_recommender


def ms(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 50), 2) if values else float("nan"),
        "p99_ms": round(percentile(values, 99), 2) if values else float("nan"),
    }


async def in_process(
    settings: Settings, embedder: Any, requests: list[RecRequest]
) -> dict[str, Any]:
    assert settings.database_url is not None
    pool = db.async_pool(settings.database_url.get_secret_value(), name="bench-serve")
    await pool.open(wait=True)
    encoder = QueryEncoder(embedder)
    try:
        rec = build_recommender(settings, pool, encoder, None, epsilon=0.0)
        for r in requests[:20]:  # warm caches and connections
            await rec.recommend(r)
        by_route: dict[str, list[float]] = defaultdict(list)
        stages: dict[str, list[float]] = defaultdict(list)
        for r in requests:
            r = r.model_copy(update={"requested_at": utcnow(), "deadline_ms": 60_000})
            served = await rec.recommend(r)
            by_route[served.response.route.value].append(served.timings["total"] * 1000)
            for name, at in served.timings.items():
                stages[name].append(at * 1000)
        return {
            "routes": {k: ms(v) for k, v in sorted(by_route.items())},
            "stages_cumulative": {k: ms(v) for k, v in stages.items()},
        }
    finally:
        encoder.close()
        await pool.close()


def _arrival(finished: dict[str, float], request_id: str) -> Callable[[Any], None]:
    """A future callback noting when the response arrived (not when it was looked at)."""

    def note(_: Any) -> None:
        finished.setdefault(request_id, time.monotonic())

    return note


def drive(
    settings: Settings, requests: list[RecRequest], rate: float, timeout_s: float = 30.0
) -> dict[str, Any]:
    sent: list[tuple[RecRequest, Future[RecResponse], float]] = []
    finished: dict[str, float] = {}  # request id → when its response arrived
    trips: dict[str, list[float]] = defaultdict(list)
    server: dict[str, list[float]] = defaultdict(list)
    llm_used = lost = 0
    with RecClient.from_settings(settings) as client:
        start = time.monotonic()
        for i, request in enumerate(requests):
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
            request = request.model_copy(update={"requested_at": utcnow()})
            future = client.submit(request)
            future.add_done_callback(_arrival(finished, request.request_id))
            sent.append((request, future, time.monotonic()))
        last = start
        for request, future, at in sent:
            try:
                response = client.wait(request, future, timeout_s)
            except RequestTimeout:
                lost += 1
                continue
            done = finished[request.request_id]
            last = max(last, done)
            route = response.route.value
            trips[route].append((done - at) * 1000)
            trips["all"].append((done - at) * 1000)
            server[route].append(response.latency_ms)
            llm_used += response.llm_used
    return {
        "rate_per_s": rate,
        "answered_per_s": round(len(trips["all"]) / max(1e-9, last - start), 1),
        "lost": lost,
        "llm_used": llm_used,
        "round_trip": {k: ms(v) for k, v in sorted(trips.items())},
        "server_latency": {k: ms(v) for k, v in sorted(server.items())},
    }


def worker_runs(
    settings: Settings, workload: SyntheticWorkload, rates: list[float], seconds: float
) -> dict[str, Any]:
    supervisor = Supervisor(settings, ["serve"], log_dir=str(settings.home / "logs"))
    supervisor.start()
    try:
        with RecClient.from_settings(settings) as client:  # wait for model load + group join
            deadline = time.monotonic() + 180
            while True:
                try:
                    client.request("warm-up-user", timeout_s=5.0)
                    break
                except RequestTimeout:
                    if time.monotonic() > deadline:
                        raise
        out = {}
        for rate in rates:
            requests = workload.requests(int(rate * seconds))
            out[str(rate)] = drive(settings, requests, rate)
        return out
    finally:
        supervisor.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--rates", default="10,20,50")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--llm", choices=["simulated", "none"], default="simulated")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    workload = SyntheticWorkload(WorkloadConfig(n_items=args.items, n_users=args.users, seed=3))
    embedder = SentenceTransformerEmbedder()
    _ = embedder.dim
    with embedded_stack(with_postgres=True, fetch_wait_ms=5, user_partitions=2) as settings:
        assert settings.database_url is not None
        db.apply_migrations(settings.database_url.get_secret_value())
        ensure_topics(settings)
        t0 = time.perf_counter()
        trained = asyncio.run(
            seed_world(settings, embedder, workload.catalog(), list(workload.events()))
        )
        seeded_s = time.perf_counter() - t0
        requests = workload.requests(300)
        result: dict[str, Any] = {
            "items": args.items,
            "users": args.users,
            "events": trained.n_events,
            "seed_s": round(seeded_s, 1),
            "in_process": asyncio.run(in_process(settings, embedder, requests)),
        }
        result["echo"] = echo_round_trip(
            settings.kafka_bootstrap, n=int(min(rates) * args.seconds), rate_per_s=min(rates)
        )
        result["worker_llm_off"] = worker_runs(settings, workload, rates, args.seconds)
        low = str(min(rates))
        echo_p50 = result["echo"]["p50_ms"]
        result["worker_overhead_p50_ms"] = round(
            result["worker_llm_off"][low]["round_trip"]["all"]["p50_ms"] - echo_p50, 1
        )
        if args.llm == "simulated":
            with SimulatedLlmServer() as server:
                llm = settings.with_overrides(llm_base_url=server.base_url, llm_model=server.model)
                result["worker_llm_simulated"] = worker_runs(
                    llm, workload, [min(rates)], args.seconds
                )
                result["llm_calls"] = server.calls
            on = result["worker_llm_simulated"][low]["round_trip"]["all"]["p50_ms"]
            result["llm_overhead_p50_ms"] = round(
                on - result["worker_llm_off"][low]["round_trip"]["all"]["p50_ms"], 1
            )
    emit(result)


if __name__ == "__main__":
    main()
