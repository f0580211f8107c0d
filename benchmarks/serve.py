"""Serving latency and capacity: the routed recommender in-process (per stage), the `serve`
worker's processes over the embedded broker at rising request rates, and the raw
confluent-kafka echo round trip beside them (same run).

    python -m benchmarks serve [--items 1000] [--users 300] [--rates 10,50,100,200,400]
                               [--seconds 10] [--processes N] [--llm simulated|none]
                               [--profile DIR] [--profile-rate 100]

A synthetic world is seeded into a fresh embedded Postgres (items embedded with the real
model, users' histories through the users worker's domain step, ALS trained). Then:

1. in-process: the workload's requests through :class:`Recommender` one at a time — the
   compute and Postgres cost per route and per stage, no Kafka (``--profile`` adds a
   cProfile of this pass);
2. the yardstick: a raw confluent-kafka echo (one responder thread) at 10 and 50 req/s;
3. the worker: ``--processes`` ``serve`` processes in one consumer group (the
   supervisor of ``streamrec up``); requests at each rate through :class:`RecClient`,
   round trip per route (client clock) and the worker's own ``latency_ms``. Each rate
   runs on fresh topics with freshly started processes: Tansu 0.6 slows down as a
   partition accumulates batches (DESIGN.md), and the figure asked for is the serving
   path's, not the broker's drift (``--profile`` records the serve processes with
   py-spy at ``--profile-rate``, and the LLM run below into ``DIR/llm``);
4. with ``--llm simulated``: the lowest rate again against our simulated LLM endpoint;
   the LLM overhead is the round trip minus the LLM calls' own time (from
   ``rec.llm-log``) minus the LLM-off round trip, at the median.

Last line: one JSON object with ``echo_p99_ms``, ``p99_ms`` and ``answered_per_s`` per
offered rate, ``knee_req_per_s`` (the highest offered rate answered at ≥ 98 % with p99
≤ 100 ms), ``llm_overhead_p50_ms``, ``serve_processes`` (the setting ``serve_replicas``;
details in ``detail``).

Expired answers: the workload's requests carry a 1.5 s deadline, and the serve worker
sheds a request already past it when serving would begin (``serve_shed_expired``): it
answers ``status=EXPIRED`` with no items. Such an answer is *not* counted as answered —
``answered_per_s``, ``p99_ms`` and the knee count real (``OK``) answers only — nor as
lost: each rate's ``expired`` count (and their round trips, ``expired_round_trip``) is in
``detail`` and on the rate's stderr line, beside ``within_deadline`` (real answers that
arrived within their request's deadline, by the client's clock).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import pstats
import shutil
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import psutil
from confluent_kafka import Consumer, TopicPartition

from benchmarks.common import echo_round_trip, embedded_stack, emit, percentile
from recsys import db
from recsys.embedding import SentenceTransformerEmbedder, limit_threads
from recsys.records import LlmInvolvement, RecRequest, RecResponse, utcnow
from recsys.serving.item_cache import ItemCache
from recsys.serving.query_embedding import QueryEncoder
from recsys.synthetic import SyntheticWorkload, WorkloadConfig
from stack.supervisor import Supervisor, replica_names
from streams.admin import ensure_topics
from streams.client import RecClient
from streams.exceptions import RequestExpired, RequestTimeout
from streams.producer import registry_from_settings
from streams.serde import AvroSerde
from streams.settings import Settings
from streams.topics import Topics
from testkit.llm_server import SimulatedLlmServer
from testkit.synthetic_world import seed_world
from workers.query_embedder import query_embedder
from workers.serve_wiring import build_recommender

KNEE_ANSWERED = 0.98
KNEE_P99_MS = 100.0


def ms(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 50), 2) if values else float("nan"),
        "p99_ms": round(percentile(values, 99), 2) if values else float("nan"),
    }


async def in_process(
    settings: Settings, embedder: Any, requests: list[RecRequest], profile: Path | None
) -> dict[str, Any]:
    assert settings.database_url is not None
    pool = db.async_pool(  # as the serve worker's pool: autocommit, no COMMIT per read
        settings.database_url.get_secret_value(), name="bench-serve", autocommit=True
    )
    await pool.open(wait=True)
    # the query embedder a serve process uses (STREAMREC_SERVE_EMBED_BACKEND)
    queries = query_embedder(settings)
    if not isinstance(queries, SentenceTransformerEmbedder):
        embedder = queries
    _ = embedder.dim
    encoder = QueryEncoder(embedder)
    try:
        cache = ItemCache(settings.serve_item_cache_size)  # as in the serve worker
        rec = build_recommender(settings, pool, encoder, None, cache, epsilon=0.0)
        for r in requests[:20]:  # warm caches and connections
            await rec.recommend(r)
        by_route: dict[str, list[float]] = defaultdict(list)
        stages: dict[str, list[float]] = defaultdict(list)
        profiler = cProfile.Profile() if profile is not None else None
        if profiler is not None:
            profiler.enable()
        for r in requests:
            r = r.model_copy(update={"requested_at": utcnow(), "deadline_ms": 60_000})
            served = await rec.recommend(r)
            by_route[served.response.route.value].append(served.timings["total"] * 1000)
            for name, at in served.timings.items():
                stages[name].append(at * 1000)
        if profiler is not None and profile is not None:
            profiler.disable()
            profiler.dump_stats(str(profile / "in_process.prof"))
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(60)
            (profile / "in_process.txt").write_text(text.getvalue())
        return {
            "query_embedding": type(embedder).__name__,
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
    settings: Settings, requests: list[RecRequest], rate: float, timeout_s: float = 10.0
) -> dict[str, Any]:
    """Send ``requests`` at ``rate`` per second (open loop) and time each response.

    This process holds the model and torch too: its own full garbage collections (≈ 1 s
    over their objects here) would show up as the server's tail, so they are frozen.
    """
    gc.collect()
    gc.freeze()
    sent: list[tuple[RecRequest, Future[RecResponse], float]] = []
    finished: dict[str, float] = {}  # request id → when its response arrived
    trips: dict[str, list[float]] = defaultdict(list)
    by_id: dict[str, float] = {}
    server: dict[str, list[float]] = defaultdict(list)
    llm_used = lost = in_time = 0
    expired: list[float] = []  # round trips of EXPIRED answers (shed requests)
    slowest: list[tuple[float, float, str, float]] = []
    with RecClient.from_settings(settings) as client:
        # a new client's first sends and fetches pay for connections and metadata
        # (hundreds of ms here): the figure is the steady state, not the client's start
        for i in range(3):
            with contextlib.suppress(RequestExpired):  # an answer all the same: warm
                client.request(f"client-warm-up-{i}", timeout_s=30.0)
        start = time.monotonic()
        for i, request in enumerate(requests):
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
            request = request.model_copy(update={"requested_at": utcnow()})
            future = client.submit(request)
            future.add_done_callback(_arrival(finished, request.request_id))
            sent.append((request, future, time.monotonic()))
        offered_s = time.monotonic() - start
        for request, future, at in sent:
            try:
                response = client.wait(
                    request, future, max(0.1, timeout_s - (time.monotonic() - at))
                )
            except RequestExpired:  # shed: answered, but not with recommendations
                expired.append((finished[request.request_id] - at) * 1000)
                continue
            except RequestTimeout:
                lost += 1
                continue
            done = finished[request.request_id]
            route = response.route.value
            trip = (done - at) * 1000
            trips[route].append(trip)
            trips["all"].append(trip)
            by_id[request.request_id] = trip
            in_time += trip <= request.deadline_ms
            slowest.append((round(trip, 1), round(response.latency_ms, 1), route, done - start))
            server[route].append(response.latency_ms)
            llm_used += response.llm_used
    # the rate answers came at: over the offered window, or until the last answer when
    # the worker falls behind (a saturated worker answers at its own pace); real answers
    # only, and the last of them (an EXPIRED answer is not one)
    answered = len(trips["all"])
    last = max((finished[rid] for rid in by_id), default=start)
    return {
        "rate_per_s": rate,
        "sent": len(requests),
        "offered_s": round(offered_s, 2),
        "answered_per_s": round(answered / max(1e-9, offered_s, last - start), 1),
        "lost": lost,
        "expired": len(expired),
        # real answers that arrived within their request's deadline (client clock)
        "within_deadline": in_time,
        "expired_round_trip": ms(expired),
        "llm_used": llm_used,
        "round_trip": {k: ms(v) for k, v in sorted(trips.items())},
        "server_latency": {k: ms(v) for k, v in sorted(server.items())},
        # (round trip, the worker's own latency, route, seconds into the run)
        "slowest": [
            (t, srv, route, round(at, 2)) for t, srv, route, at in sorted(slowest)[-5:][::-1]
        ],
        "_trips": by_id,
    }


def _py_spy(pids: list[int], seconds: float, out: Path) -> list[subprocess.Popen[bytes]]:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    procs = []
    for pid in pids:
        for fmt, ext in (("raw", "txt"), ("speedscope", "json")):
            procs.append(
                subprocess.Popen(
                    [
                        exe,
                        "record",
                        "--pid",
                        str(pid),
                        "--duration",
                        str(int(seconds)),
                        "--rate",
                        "200",
                        "--format",
                        fmt,
                        "--output",
                        str(out / f"serve-{pid}.{ext}"),
                        "--nonblocking",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
    return procs


def _llm_time(settings: Settings, request_ids: set[str]) -> dict[str, float]:
    """Milliseconds each request spent in LLM calls, from ``rec.llm-log``."""
    topic = Topics(settings).llm_log.name
    serde = AvroSerde(registry_from_settings(settings))
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"bench-llm-log-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 20,
        }
    )
    md = consumer.list_topics(topic, timeout=10)
    consumer.assign([TopicPartition(topic, p, 0) for p in md.topics[topic].partitions])
    spent: dict[str, float] = defaultdict(float)
    idle_at = time.monotonic()
    while time.monotonic() - idle_at < 3.0:
        msgs = consumer.consume(500, 0.5)
        if msgs:
            idle_at = time.monotonic()
        for m in msgs:
            if m.error() is not None:
                continue
            record = serde.decode(m.value(), LlmInvolvement)
            if record.request_id in request_ids and record.called:
                spent[record.request_id] += record.latency_ms
    consumer.close()
    return dict(spent)


def _stack_processes(settings: Settings) -> dict[str, list[psutil.Process]]:
    """The broker's and Postgres's processes of this run (by port / data directory)."""
    port = settings.kafka_bootstrap.rsplit(":", 1)[-1]
    pgdata = str(settings.home / "pgdata")
    found: dict[str, list[psutil.Process]] = {"broker": [], "postgres": []}
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "tansu" in cmd and f":{port}" in cmd:
            found["broker"].append(proc)
        elif "postgres" in cmd and pgdata in cmd:
            found["postgres"].append(proc)
            found["postgres"].extend(proc.children())
    return found


def _cpu_s(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def _machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (every process, every core)."""
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0))


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _assigned(log: Path, since: int) -> bool:
    """Has the process logging to ``log`` been assigned partitions since byte ``since``?"""
    if not log.exists():
        return False
    with open(log, "rb") as f:
        f.seek(since)
        return b"serve assigned [(" in f.read()


def worker_run(
    settings: Settings,
    requests: list[RecRequest],
    rate: float,
    processes: int,
    warm: list[RecRequest],
    profile: Path | None = None,
) -> dict[str, Any]:
    """Fresh topics, ``processes`` serve processes warmed up with ``warm``, then
    ``requests`` at ``rate``."""
    run = settings.with_overrides(
        topic_prefix=f"bench{uuid.uuid4().hex[:8]}.", serve_replicas=processes
    )
    ensure_topics(run)
    logs = run.home / "logs"
    names = [name for name, _ in replica_names(run, ["serve"])]
    seen = {n: _size(logs / f"{n}.log") for n in names}
    supervisor = Supervisor(run, ["serve"], log_dir=str(logs), replicas=True)
    supervisor.start()
    try:
        # every process has loaded its model and owns partitions (the group's last
        # rebalance is over), then a few requests warm the connections up
        deadline = time.monotonic() + 300
        while not all(_assigned(logs / f"{n}.log", seen[n]) for n in names):
            if time.monotonic() > deadline:
                raise TimeoutError(f"serve processes did not all join: see {logs}")
            time.sleep(0.5)
        with RecClient.from_settings(run) as client:
            answered = 0
            while answered < 4 * processes:
                try:
                    client.request(f"warm-up-user-{answered}", timeout_s=5.0)
                    answered += 1
                except RequestTimeout:
                    if time.monotonic() > deadline:
                        raise
        # then the workload's own mix for two seconds (every route, queries, connections
        # and prepared statements), as a process that has been serving for a while
        drive(run, [r.model_copy(update={"request_id": f"warm-{r.request_id}"}) for r in warm], 20)
        spies = []
        if profile is not None:
            seconds = len(requests) / rate
            spies = _py_spy(list(supervisor.pids().values()), seconds, profile)
        tag = uuid.uuid4().hex[:6]
        tagged = [r.model_copy(update={"request_id": f"{tag}-{r.request_id}"}) for r in requests]
        # CPU seconds each part spends per answered request: unlike latency on a shared
        # machine, this does not depend on who else is running
        serve = [psutil.Process(p) for p in supervisor.pids().values()]
        stack = _stack_processes(run)
        me = [psutil.Process()]  # the load generator (this process: client threads only now)

        def cpu() -> dict[str, float]:
            return (
                {"serve": _cpu_s(serve), "client": _cpu_s(me)}
                | {k: _cpu_s(v) for k, v in stack.items()}
                | {"machine": _machine_busy_s()}
            )

        before, wall = cpu(), time.monotonic()
        out = drive(run, tagged, rate)
        after, wall = cpu(), time.monotonic() - wall
        answered = max(1, out["round_trip"].get("all", {}).get("n", 0))
        out["cpu_ms_per_request"] = {
            k: round(1000 * (after[k] - before[k]) / answered, 2) for k in after if k != "machine"
        }
        # cores' worth of CPU each part used over the run, and what the whole machine
        # (other sessions included) used: the share left to us
        out["cores_used"] = {k: round((after[k] - before[k]) / wall, 2) for k in after}
        out["load_average"] = [round(x, 2) for x in psutil.getloadavg()]
        for spy in spies:
            spy.wait(60)
        out["settings"] = run
        return out
    finally:
        supervisor.stop()


def knee(p99: dict[str, float], answered: dict[str, float]) -> float:
    """The highest offered rate answered at ≥ 98 % with p99 ≤ 100 ms (0 if none)."""
    ok = [
        float(r) for r in p99 if answered[r] >= KNEE_ANSWERED * float(r) and p99[r] <= KNEE_P99_MS
    ]
    return max(ok, default=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--rates", default="10,50,100,200,400")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--processes", type=int, default=None, help="default: the setting")
    parser.add_argument("--llm", choices=["simulated", "none"], default="simulated")
    parser.add_argument("--profile", type=Path, default=None, help="write profiles here")
    parser.add_argument("--profile-rate", type=float, default=100.0)
    parser.add_argument("--skip-in-process", action="store_true")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    workload = SyntheticWorkload(WorkloadConfig(n_items=args.items, n_users=args.users, seed=3))
    embedder = SentenceTransformerEmbedder()
    _ = embedder.dim
    limit_threads(Settings().serve_embed_threads)  # as in a serve process
    with embedded_stack(with_postgres=True) as settings:
        processes = args.processes or settings.serve_replicas
        assert settings.database_url is not None
        db.apply_migrations(settings.database_url.get_secret_value())
        ensure_topics(settings)
        t0 = time.perf_counter()
        # with the LLM on, the enrich worker scores item text for the instruction scorer
        # when it writes the items (workers/catalog_scoring.py): the seed does the same
        trained = asyncio.run(
            seed_world(
                settings,
                embedder,
                workload.catalog(),
                list(workload.events()),
                score_text=args.llm == "simulated",
            )
        )
        detail: dict[str, Any] = {
            "items": args.items,
            "users": args.users,
            "events": trained.n_events,
            "seed_s": round(time.perf_counter() - t0, 1),
            "fetch_wait_ms": settings.fetch_wait_ms,
            "user_partitions": settings.user_partitions,
            "seconds_per_rate": args.seconds,
        }
        if not args.skip_in_process:
            detail["in_process"] = asyncio.run(
                in_process(settings, embedder, workload.requests(300), args.profile)
            )
        gc.collect()
        gc.freeze()  # as in drive(): this process's own collections are not the broker's
        echoes = {
            str(r): echo_round_trip(settings.kafka_bootstrap, n=int(r * args.seconds), rate_per_s=r)
            for r in (10.0, 50.0)
        }
        detail["echo"] = echoes
        runs: dict[str, dict[str, Any]] = {}
        low_requests = workload.requests(int(min(rates) * args.seconds))
        warm = workload.requests(40)
        for rate in rates:
            requests = (
                low_requests if rate == min(rates) else workload.requests(int(rate * args.seconds))
            )
            spy = args.profile if args.profile is not None and rate == args.profile_rate else None
            runs[str(rate)] = worker_run(settings, requests, rate, processes, warm, spy)
            runs[str(rate)].pop("settings")
            low = runs[str(rate)].pop("_trips")
            if rate == min(rates):
                low_trips = low
            print(
                f"# rate {rate}: answered {runs[str(rate)]['answered_per_s']}/s, "
                f"{runs[str(rate)]['round_trip'].get('all')}, "
                f"expired {runs[str(rate)]['expired']} of {runs[str(rate)]['sent']}, "
                f"within deadline {runs[str(rate)]['within_deadline']}, "
                f"lost {runs[str(rate)]['lost']}",
                file=sys.stderr,
                flush=True,
            )
        detail["worker_llm_off"] = runs
        llm_overhead = float("nan")
        if args.llm == "simulated":
            rate = min(rates)
            with SimulatedLlmServer() as server:
                llm = settings.with_overrides(llm_base_url=server.base_url, llm_model=server.model)
                spy = None if args.profile is None else args.profile / "llm"
                if spy is not None:
                    spy.mkdir(exist_ok=True)
                run = worker_run(llm, low_requests, rate, processes, warm, spy)
                trips, run_settings = run.pop("_trips"), run.pop("settings")
                spent = _llm_time(run_settings, set(trips))
                detail["worker_llm_simulated"] = run
                detail["llm_calls"] = server.calls
            own = [trip - spent.get(rid, 0.0) for rid, trip in trips.items()]
            detail["llm_time_p50_ms"] = round(percentile(list(spent.values()), 50), 2)
            llm_overhead = round(percentile(own, 50) - percentile(list(low_trips.values()), 50), 1)

    def key(rate: float) -> str:
        return str(int(rate)) if rate == int(rate) else str(rate)

    p99 = {
        key(r): runs[str(r)]["round_trip"].get("all", {}).get("p99_ms", float("nan")) for r in rates
    }
    answered = {key(r): runs[str(r)]["answered_per_s"] for r in rates}
    result = {
        "detail": detail,
        "echo_p99_ms": max(e["p99_ms"] for e in echoes.values()),
        "p99_ms": p99,
        "answered_per_s": answered,
        "knee_req_per_s": knee(p99, answered),
        "llm_overhead_p50_ms": llm_overhead,
        "serve_processes": processes,
    }
    emit(result)


if __name__ == "__main__":
    main()
