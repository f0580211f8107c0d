"""Users worker throughput and lag beside a plain confluent-kafka consumer, in the same run.

1. ``--events`` user events (``--users`` users, ``--items`` items) are produced to a fresh
   ``user.events``;
2. yardstick: a plain confluent-kafka consumer reads them all (no decode, no commit);
3. the ``users`` worker (in process, the production consumer loop) reads them: per-user
   state, ``user_events`` + co-visitation + read model in one Postgres transaction per
   chunk of ``--chunk`` events, offsets committed. Timed from its first consumed event
   until the committed offsets reach the end of every partition (group join excluded);
   CPU seconds per event of this process, Postgres and the broker over the same span;
4. lag: events produced at ``--rate`` per second for ``--lag-seconds`` by another process
   (lingering ``LAG_LINGER_MS``), after ``LAG_WARMUP_S`` of the same stream that is not
   measured; produce time → the moment the event's chunk is durable in Postgres (the
   worker's own ``on_durable`` callback, in this process: detecting it costs no poll).
   These users have history by now, so each visit pairs with more recent items than in
   step 3: the per-event cost of the steady state.

    python -m benchmarks users [--events 50000] [--batch 2000] [--fetch-wait-ms 100]
        [--chunk 500] [--rate 2000] [--lag-seconds 15] [--profile out.prof]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import logging
import multiprocessing
import os
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import psycopg
from confluent_kafka import Consumer
from confluent_kafka import TopicPartition as KafkaTP

from benchmarks.common import embedded_stack, emit, percentile, summary_ms
from recsys import db
from recsys.cf.covisit import CovisitConfig
from recsys.records import EventType, UserEvent
from recsys.users.batch_write import prepare, write
from recsys.users.nearline import update_batch
from recsys.users.state import Position, UserState, UserStateConfig
from streams import admin
from streams.producer import RecordProducer
from streams.settings import Settings
from streams.topics import Topics
from workers.bootstrap import bootstrap
from workers.runtime import freeze_startup_heap, serve_forever
from workers.users_worker import UsersWorker

T0 = datetime(2026, 3, 1, tzinfo=UTC)
#: Producer linger of the lag run: upstream services batch what they publish (DESIGN:
#: Tansu walks every stored batch on each fetch, so one batch per event at 2,000/s makes
#: the broker, not the worker, the figure); the linger counts in the lag measured.
LAG_LINGER_MS = 5
#: Seconds of the lag run's stream produced before the measured events. A fresh
#: librdkafka producer holds its first messages ≈ 0.5 s (measured here: connection,
#: idempotent producer id) and then releases them as one burst; an upstream service's
#: producer is long-lived, so the lag measured is the worker's steady state, not that.
LAG_WARMUP_S = 1.0
log = logging.getLogger("benchmarks.users")
KINDS = (
    [EventType.VIEW] * 6
    + [EventType.CLICK] * 2
    + [
        EventType.CART,
        EventType.PURCHASE,
        EventType.RATING,
        EventType.SEARCH,
    ]
)


def make_event(rng: random.Random, n: int, users: int, items: int, at: datetime) -> UserEvent:
    kind = rng.choice(KINDS)
    return UserEvent(
        event_id=f"b{n}-{uuid.uuid4().hex[:6]}",
        user_id=f"user-{rng.randrange(users):05d}",
        event_type=kind,
        item_id=None if kind is EventType.SEARCH else f"item-{rng.randrange(items)}",
        rating=float(rng.choice([2, 3, 4, 5])) if kind is EventType.RATING else None,
        query="a tense heist film" if kind is EventType.SEARCH else None,
        occurred_at=at,
    )


def produce(settings: Settings, n: int, users: int, items: int) -> None:
    rng = random.Random(3)
    with RecordProducer(settings, config={"linger.ms": 20}) as producer:
        for i in range(n):
            producer.publish_user_event(make_event(rng, i, users, items, T0 + timedelta(seconds=i)))
            if i % 10_000 == 0:
                producer.flush()


def postgres_only(
    settings: Settings, phases: list[int], users: int, items: int, chunk: int
) -> list[dict[str, float]]:
    """Postgres alone at this write pattern: the yardstick of the worker's writes.

    In a database of its own (same server, every migration), events like the
    benchmark's are folded and their rows built beforehand (untimed), then written chunk
    by chunk on one connection as fast as Postgres takes them (the worker writes on one
    connection too). One figure per phase: ``phases[0]`` events from no history, then
    each further phase continuing the same users (the lag run's steady state).
    """
    assert settings.database_url is not None
    dsn = settings.database_url.get_secret_value()
    name = f"yardstick_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yard = psycopg.conninfo.make_conninfo(dsn, dbname=name)
    db.apply_migrations(yard)
    rng = random.Random(3)
    cfg, covisit_cfg = (
        UserStateConfig.from_settings(settings.users),
        CovisitConfig.from_settings(settings.users),
    )
    states: dict[str, UserState] = {}
    out: list[dict[str, float]] = []
    first = 0
    with psycopg.connect(yard, autocommit=True) as conn:
        backend = psutil.Process(int(conn.execute("SELECT pg_backend_pid()").fetchone()[0]))  # type: ignore[index]
        for n in phases:
            prepared = []
            for start in range(first, first + n, chunk):
                events = [
                    (
                        make_event(rng, i, users, items, T0 + timedelta(seconds=i)),
                        Position("yardstick", 0, i),
                    )
                    for i in range(start, min(start + chunk, first + n))
                ]
                update = update_batch(states.get, events, cfg, covisit_cfg)
                states.update(update.states)
                prepared.append(prepare(update.accepted, update.states.values()))
            first += n
            cpu0, t0 = sum(backend.cpu_times()[:2]), time.perf_counter()
            for batch in prepared:
                write(conn, batch)
            wall = time.perf_counter() - t0
            cpu = sum(backend.cpu_times()[:2]) - cpu0
            out.append(
                {"events_per_s": round(n / wall), "backend_cpu_us_per_event": round(cpu / n * 1e6)}
            )
    return out


def raw_consumer(settings: Settings, topic: str, n: int) -> tuple[float, dict[int, int]]:
    """Events/s of a plain confluent-kafka consumer reading the topic from the start (no
    decoding, no commit, the users worker's fetch settings), and the end offset of each
    partition."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"raw-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": settings.users_fetch_wait_ms,
            "logger": logging.getLogger("librdkafka"),
        }
    )
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([KafkaTP(topic, p, 0) for p in sorted(parts)])
        got, ends = 0, {}
        start = time.perf_counter()
        while got < n:
            for msg in consumer.consume(10_000, 1.0):
                if msg.error() is None:
                    got += 1
                    ends[int(msg.partition() or 0)] = int(msg.offset() or 0) + 1
        return n / (time.perf_counter() - start), ends
    finally:
        consumer.close()


class CpuMeter:
    """CPU seconds (user + system) of this process, the embedded Postgres (postmaster and
    backends) and the broker: what an event costs wherever it runs, a figure that other
    load on the machine shifts far less than wall time."""

    def __init__(self, settings: Settings) -> None:
        me = psutil.Process()
        pgdata = str(Path(settings.home) / "pgdata")
        port = settings.kafka_bootstrap.rsplit(":", 1)[-1]
        self.parts: dict[str, list[psutil.Process]] = {"worker_process": [me]}
        for proc in psutil.process_iter(["cmdline"]):
            cmd = " ".join(proc.info["cmdline"] or [])
            if "postgres" in cmd and pgdata in cmd and "-D" in cmd:
                self.parts["postgres"] = [proc]
            elif "tansu" in cmd and f":{port}" in cmd:
                self.parts["broker"] = [proc]

    def snapshot(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, (proc, *_) in self.parts.items():
            procs = [proc, *proc.children(recursive=True)] if name == "postgres" else [proc]
            total = 0.0
            for p in procs:
                try:
                    t = p.cpu_times()
                except psutil.Error:
                    continue
                total += t.user + t.system
                if name == "postgres" and p is proc:
                    total += t.children_user + t.children_system
            out[name] = total
        return out


class MachineMeter:
    """Cores busy on the whole machine and in this benchmark's processes (worker,
    Postgres, broker, the lag run's producer), sampled every half second: on a shared
    machine, the lag of a window is read beside what others took from it."""

    def __init__(self, meter: CpuMeter, sender_pid: int | None) -> None:
        self.meter = meter
        self.sender = psutil.Process(sender_pid) if sender_pid else None
        self.sender_s = 0.0
        #: (time, machine busy, ours, of which the producer) in CPU seconds.
        self.samples: list[tuple[float, float, float, float]] = []

    def sample(self) -> None:
        """Take a sample if the last one is half a second old."""
        now = time.time()
        if self.samples and now - self.samples[-1][0] < 0.5:
            return
        t = psutil.cpu_times()
        busy = t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
        if self.sender is not None:
            try:
                self.sender_s = sum(self.sender.cpu_times()[:2])
            except psutil.Error:
                self.sender = None  # exited: its last figure stands
        ours = sum(self.meter.snapshot().values()) + self.sender_s
        self.samples.append((now, busy, ours, self.sender_s))

    def cores_by_window(self, start: float, width: float, n: int) -> dict[str, list[float]]:
        """Mean cores busy per window from ``start``: ours (of which the lag run's
        producer) and everyone else's."""
        out: dict[str, list[float]] = {"ours": [], "producer": [], "others": []}
        for w in range(n):
            lo, hi = start + w * width, start + (w + 1) * width
            inside = [s for s in self.samples if lo <= s[0] <= hi]
            if len(inside) < 2:
                break
            (t0, busy0, ours0, prod0), (t1, busy1, ours1, prod1) = inside[0], inside[-1]
            ours = (ours1 - ours0) / (t1 - t0)
            out["ours"].append(round(ours, 2))
            out["producer"].append(round((prod1 - prod0) / (t1 - t0), 2))
            out["others"].append(round(max(0.0, (busy1 - busy0) / (t1 - t0) - ours), 2))
        return out


def send_at_rate(
    settings: Settings,
    results: multiprocessing.Queue[dict[str, float]],
    count: int,
    rate: float,
    first: int,
    users: int,
    items: int,
    warmup: int,
) -> None:
    """Produce ``warmup`` events then ``count`` events at ``rate``/s, one stream; put the
    send times (epoch s) of the ``count`` measured ones on ``results``.

    The events are built and Avro-encoded before the clock starts, so that this process
    spends its CPU on producing only: on 2 cores, building them at rate took ≈ 0.2 core
    from the stack it measures.
    """
    rng = random.Random(9)
    sent: dict[str, float] = {}
    with RecordProducer(settings, config={"linger.ms": LAG_LINGER_MS}) as producer:
        spec = producer.topics.user_events
        encoded = []
        for i in range(warmup + count):
            e = make_event(rng, first + i, users, items, T0 + timedelta(seconds=first + i))
            encoded.append((e.event_id, e.user_id, producer.serde.encode(e, spec.subject)))
        t_start = time.perf_counter()
        for i, (event_id, user_id, value) in enumerate(encoded):
            delay = t_start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if i >= warmup:
                sent[event_id] = time.time()
            producer.send_raw(spec, user_id, value)
    results.put(sent)


def committed_offsets(settings: Settings, group: str, topic: str) -> dict[int, int]:
    """Committed offset per partition of ``topic`` for ``group``."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
        }
    )
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        tps = [KafkaTP(topic, p) for p in parts]
        return {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=10)}
    finally:
        consumer.close()


async def worker_run(
    settings: Settings,
    topic: str,
    n: int,
    ends: dict[int, int],
    rate: float,
    lag_seconds: float,
    users: int,
    items: int,
    profile: Path | None = None,
) -> dict[str, Any]:
    ctx = bootstrap(settings)
    freeze_startup_heap()  # as `streamrec worker users` does before its loop
    meter = CpuMeter(settings)
    cpu_start: dict[str, float] = {}
    cpu: dict[str, float] = {}
    profiler = cProfile.Profile() if profile else None
    stop = asyncio.Event()
    task = asyncio.create_task(serve_forever("users", ctx, stop))
    group = f"{settings.topic_prefix}streamrec-users"
    loop = asyncio.get_running_loop()
    try:
        start = None
        while True:
            if task.done():
                task.result()
            handle = ctx.handles.get(UsersWorker)
            updater = handle.updater if handle else None
            if start is None and updater is not None and updater.stats.consumed:
                start = time.perf_counter()
                cpu_start = meter.snapshot()
                if profiler:
                    profiler.enable()
            if (
                start is not None
                and updater is not None
                and updater.stats.durable_offsets
                and all(updater.stats.durable_offsets.get(p, -1) + 1 >= o for p, o in ends.items())
            ):
                durable_s = time.perf_counter() - start
                cpu_end = meter.snapshot()
                cpu = {k: v - cpu_start.get(k, 0.0) for k, v in cpu_end.items()}
                if profiler and profile:
                    profiler.disable()
                    profiler.dump_stats(profile)
                break
            await asyncio.sleep(0.005)
        log.warning("durable after %.1fs; waiting for commits to reach %s", durable_s, ends)
        while True:
            got = await loop.run_in_executor(None, committed_offsets, settings, group, topic)
            if got == ends:
                break
            await asyncio.sleep(0.05)
        committed_s = time.perf_counter() - start
        assert updater is not None
        stats = updater.stats
        applied, duplicates = stats.applied, stats.duplicates

        # lag at a fixed rate
        durable: dict[str, float] = {}

        def record(events: list[tuple[UserEvent, Position]]) -> None:
            now = time.time()
            for e, _ in events:
                durable.setdefault(e.event_id, now)

        updater.on_durable.append(record)
        count = int(rate * lag_seconds)
        warmup = int(rate * LAG_WARMUP_S)

        lag_cpu_start = meter.snapshot()
        # the producer runs in a process of its own, as upstream services do: in this
        # one it would take the GIL from the worker it measures
        mp = multiprocessing.get_context("spawn")
        results: multiprocessing.Queue[dict[str, float]] = mp.Queue()
        sender = mp.Process(
            target=send_at_rate,
            args=(settings, results, count, rate, n, users, items, warmup),
            daemon=True,
        )
        sender.start()
        sent: dict[str, float] = {}
        machine = MachineMeter(meter, sender.pid)
        deadline = time.monotonic() + LAG_WARMUP_S + lag_seconds + 60
        while time.monotonic() < deadline:
            machine.sample()
            if not sent and not results.empty():
                sent = results.get()
            if sent and len(durable) >= warmup + count:
                break
            await asyncio.sleep(0.05)
        sender.join(10)
        lag_cpu = {k: v - lag_cpu_start.get(k, 0.0) for k, v in meter.snapshot().items()}
        lags = [durable[k] - t for k, t in sent.items() if k in durable]
        t_first = min(sent.values(), default=0.0)
        windows: dict[int, list[float]] = {}
        for k, t in sent.items():
            if k in durable:
                windows.setdefault(int((t - t_first) // 3), []).append(durable[k] - t)
        return {
            "cpu_us_per_event": {k: round(v / n * 1e6) for k, v in cpu.items()},
            "lag_cpu_us_per_event": {
                k: round(v / (warmup + count) * 1e6) for k, v in lag_cpu.items()
            },
            "durable_s": durable_s,
            "committed_s": committed_s,
            "applied": applied,
            "duplicates": duplicates,
            "batches": stats.batches,
            "lag": summary_ms(lags),
            "lag_lost": count - len(lags),
            "lag_p99_ms_by_3s": [round(percentile(windows[w], 99) * 1000) for w in sorted(windows)],
            "lag_cores_by_3s": machine.cores_by_window(t_first, 3.0, len(windows)),
            "busy_s": {
                "read": round(stats.read_s, 2),
                "domain": round(stats.domain_s, 2),
                "prepare": round(stats.prepare_s, 2),
                "wait_for_writer": round(stats.wait_s, 2),
                "postgres_writer_thread": round(stats.db_s, 2),
            },
        }
    finally:
        stop.set()
        await task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--items", type=int, default=3_000)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--batch", type=int, default=None, help="users_batch_size")
    parser.add_argument("--fetch-wait-ms", type=int, default=None, help="users_fetch_wait_ms")
    parser.add_argument("--chunk", type=int, default=None, help="users_write_chunk")
    parser.add_argument("--rate", type=float, default=2000.0, help="events/s of the lag run")
    parser.add_argument("--lag-seconds", type=float, default=15.0)
    parser.add_argument("--profile", type=Path, default=None, help="cProfile the throughput run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    overrides: dict[str, Any] = {"user_partitions": args.partitions}
    if args.batch:
        overrides["users_batch_size"] = args.batch
    if args.fetch_wait_ms:
        overrides["users_fetch_wait_ms"] = args.fetch_wait_ms
    if args.chunk:
        overrides["users_write_chunk"] = args.chunk
    with embedded_stack(with_postgres=True, **overrides) as settings:
        assert settings.database_url is not None
        db.apply_migrations(settings.database_url.get_secret_value())
        admin.ensure_topics(settings)
        topic = Topics(settings).user_events.name
        t = time.perf_counter()
        produce(settings, args.events, args.users, args.items)
        produce_s = time.perf_counter() - t
        log.warning("produced %d events in %.1fs", args.events, produce_s)
        # the yardstick three times (it is quick), its median reported
        raws: list[float] = []
        ends: dict[int, int] = {}
        for _ in range(3):
            one, ends = raw_consumer(settings, topic, args.events)
            raws.append(one)
        raw = statistics.median(raws)
        log.warning("raw consumer: %s events/s", [round(r) for r in raws])
        run = asyncio.run(
            worker_run(
                settings,
                topic,
                args.events,
                ends,
                args.rate,
                args.lag_seconds,
                args.users,
                args.items,
                args.profile,
            )
        )
        yardstick = postgres_only(
            settings,
            [args.events, int(args.rate * args.lag_seconds)],
            args.users,
            args.items,
            settings.users_write_chunk,
        )
    rate = args.events / run["committed_s"]
    detail = {
        "benchmark": "users",
        "events": args.events,
        "users": args.users,
        "partitions": args.partitions,
        "users_batch_size": settings.users_batch_size,
        "users_fetch_wait_ms": settings.users_fetch_wait_ms,
        "users_write_chunk": settings.users_write_chunk,
        "produce_events_per_s": round(args.events / produce_s),
        "raw_consumer_runs_events_per_s": [round(r) for r in raws],
        "events_per_s_durable": round(args.events / run["durable_s"]),
        "applied": run["applied"],
        "batches": run["batches"],
        "lag_rate_per_s": args.rate,
        "lag": run["lag"],
        "lag_lost": run["lag_lost"],
        "lag_p99_ms_by_3s": run["lag_p99_ms_by_3s"],
        "lag_cores_by_3s": run["lag_cores_by_3s"],
        "worker_busy_s": run["busy_s"],
        "postgres_only": {"first_events": yardstick[0], "with_history": yardstick[1]},
        "cpu_us_per_event": run["cpu_us_per_event"],
        "lag_run_cpu_us_per_event": run["lag_cpu_us_per_event"],
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "worker_s": round(run["committed_s"], 2),
    }
    print(json.dumps(detail, sort_keys=True), flush=True)
    emit(
        {
            "events_per_s": round(rate),
            "raw_consumer_events_per_s": round(raw),
            "ratio_to_raw_consumer": round(rate / raw, 4),
            "lag_p99_ms_at_2000_per_s": run["lag"]["p99_ms"],
        }
    )


if __name__ == "__main__":
    main()
