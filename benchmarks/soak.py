"""Soak: `streamrec up` with every worker under constant load for many minutes, beside a
bare-broker yardstick at the same message rates on a second embedded broker, same minutes.

    python -m benchmarks soak [--minutes 10] [--rate 20] [--events-per-s 200]
                              [--items 1000] [--users 300] [--warmup-s 30]
                              [--set NAME=VALUE ...] [--no-bare]

Tansu 0.6 in memory never deletes a record batch, and every fetch that finds data lists
every batch stored in the partition, so under constant load any long run on the embedded
broker slows down — the bare yardstick (:mod:`benchmarks.soak_bare`: plain confluent-kafka
clients configured like ours, no streamrec code, a broker of its own, a process of its own)
shows how much. What must stay flat is **our share**: the client's round trip minus the
bare echo's, and the serve worker's own latency.

Set-up: a synthetic world seeded into an embedded Postgres owned by this script (items
embedded with the real model, histories, ALS), then ``streamrec up`` as a child process
(its embedded broker, every worker, the dashboard; ``--set`` passes settings to it as
``STREAMREC_*``), all workers ready, ``--warmup-s`` of full load, then the timed minutes.
Load: user events through the SDK's :class:`RecordProducer` (a tenth of them clicks on a
recommended item, attributed to its request), requests through :class:`RecClient`.

Per minute (one JSON line each): client p50/p99 by send minute, the serve worker's own
``latency_ms`` p50/p99, the bare echo p50/p99, CPU seconds and RSS of every process
(each worker, ``up`` with its dashboard, both brokers, Postgres, the load generators).
A request the serve worker shed (answered ``EXPIRED``: its deadline had passed before
serving began) is answered, so not lost, but it is no recommendation: it is counted in the
minute's ``expired`` and left out of the latencies.
``lost`` counts requests never answered and events absent from ``user_events`` once the
load stopped and the users worker caught up (bounded waits).

Drifts compare the last third of the minutes with the first: ``own_p99_drift`` is
(p99 of client round trips - p99 of bare echo round trips, each pooled over the third)
last ÷ first, with the first third's share floored at 1 ms; ``serve_latency_p99_drift``
is the pooled p99 of ``latency_ms``, last ÷ first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from benchmarks.common import paced, percentile
from benchmarks.soak_procs import BatchStats, ProcessMeter, thread_cpu_s
from recsys import db
from recsys.embedding import SentenceTransformerEmbedder
from recsys.records import EventType, RecRequest, RecResponse, UserEvent, utcnow
from recsys.synthetic import SyntheticWorkload, WorkloadConfig
from stack.embedded import EmbeddedPostgres, free_port, port_is_free
from stack.supervisor import settings_env
from streams.client import RecClient
from streams.ops_probe import probe_workers
from streams.producer import RecordProducer
from streams.settings import Settings
from testkit.synthetic_world import seed_world

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Minute:
    """What the streamrec side measured in one minute (by send time)."""

    client_ms: list[float] = field(default_factory=list)
    serve_ms: list[float] = field(default_factory=list)
    requests: int = 0
    #: Answered EXPIRED (shed by serve: past their deadline); not in the latencies.
    expired: int = 0
    events: int = 0
    cpu_s: dict[str, float] = field(default_factory=dict)
    rss_mb: dict[str, float] = field(default_factory=dict)


def free_port_range(n: int) -> int:
    """A first port whose next ``n`` ports are free too."""
    for _ in range(100):
        base = free_port()
        if base + n < 65000 and all(port_is_free("127.0.0.1", base + i) for i in range(n)):
            return base
    raise RuntimeError(f"no {n} consecutive free ports")


def parse_sets(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        out[name.strip().lower()] = value
    return out


class Load:
    """Requests and events against the running stack, paced; every outcome recorded."""

    def __init__(
        self, settings: Settings, workload: SyntheticWorkload, minutes: int, args: Any
    ) -> None:
        self.settings = settings
        self.workload = workload
        self.args = args
        self.minutes = [Minute() for _ in range(minutes)]
        self.pending: dict[str, tuple[float, int]] = {}
        self.lock = threading.Lock()
        self.event_ids: list[str] = []
        self.recent: deque[tuple[str, str, list[str]]] = deque(maxlen=200)
        self.stop = threading.Event()
        self.rng = random.Random(11)
        self.client = RecClient.from_settings(settings).start()
        self.batches = BatchStats()
        config = self.batches.config()
        if args.event_linger_ms is not None:  # an upstream producer's own choice
            config["linger.ms"] = args.event_linger_ms
        self.producer = RecordProducer.from_settings(settings, config=config)

    def _minute(self, start_at: float, now: float) -> int:
        return min(len(self.minutes) - 1, int((now - start_at) // 60))

    def _on_response(self, request: RecRequest, at: float, minute: int) -> Any:
        def done(future: Future[RecResponse]) -> None:
            arrived = time.time()
            if future.cancelled() or future.exception() is not None:
                return
            response = future.result()
            with self.lock:
                self.pending.pop(request.request_id, None)
            if minute >= 0 and response.expired:
                self.minutes[minute].expired += 1
            elif minute >= 0:
                m = self.minutes[minute]
                m.client_ms.append(round((arrived - at) * 1000, 3))
                m.serve_ms.append(round(response.latency_ms, 3))
            items = [i.item_id for i in response.items[:5]]
            if items:
                self.recent.append((response.user_id, response.request_id, items))

        return done

    def requests(self, start_at: float, end_at: float) -> None:
        """Requests at ``rate``; those sent before ``start_at`` are the warm-up."""
        rate = self.args.rate
        began = time.time()
        total = int((end_at - began) * rate) + 1
        batch = self.workload.requests(total)
        for i, request in enumerate(batch):
            target = began + i / rate
            if target >= end_at or self.stop.is_set():
                break
            time.sleep(max(0.0, target - time.time()))
            request = request.model_copy(update={"requested_at": utcnow()})
            at = time.time()
            minute = self._minute(start_at, at) if at >= start_at else -1
            with self.lock:
                self.pending[request.request_id] = (at, minute)
            if minute >= 0:
                self.minutes[minute].requests += 1
            future = self.client.submit(request)
            future.add_done_callback(self._on_response(request, at, minute))

    def _event(self, i: int) -> UserEvent:
        if self.recent and self.rng.random() < 0.1:
            user_id, request_id, items = self.recent[self.rng.randrange(len(self.recent))]
            return UserEvent(
                event_id=f"soak-{i}",
                user_id=user_id,
                event_type=EventType.CLICK,
                item_id=self.rng.choice(items),
                rec_request_id=request_id,
                occurred_at=utcnow(),
            )
        user = self.rng.choice(self.workload.users)
        item = self.rng.choice(self.workload.items)
        r = self.rng.random()
        kind = (
            EventType.VIEW
            if r < 0.6
            else EventType.CLICK
            if r < 0.9
            else EventType.PURCHASE
            if r < 0.95
            else EventType.DISMISS
        )
        return UserEvent(
            event_id=f"soak-{i}",
            user_id=user.user_id,
            event_type=kind,
            item_id=item.item_id,
            occurred_at=utcnow(),
        )

    def events(self, start_at: float, end_at: float) -> None:
        """User events at ``events_per_s`` through the SDK, as an upstream service would.

        Paced in ticks of ``--event-tick-ms`` (:func:`benchmarks.common.paced`): each tick
        publishes the events due by then, back to back (4 per 20 ms tick at 200/s).
        """
        tick = max(0.0, self.args.event_tick_ms / 1000.0)
        for i in paced(self.args.events_per_s, tick, time.time(), end_at, stop=self.stop):
            event = self._event(i)
            self.producer.publish_user_event(event)
            self.event_ids.append(event.event_id)
            now = time.time()
            if now >= start_at:
                self.minutes[self._minute(start_at, now)].events += 1
        self.producer.flush()

    def run(self, start_at: float, end_at: float) -> None:
        threads = [
            threading.Thread(
                target=self.requests, args=(start_at, end_at), daemon=True, name="requests"
            ),
            threading.Thread(
                target=self.events, args=(start_at, end_at), daemon=True, name="events"
            ),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def drain(self, timeout_s: float = 30.0) -> int:
        """Requests still unanswered after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if not self.pending:
                    return 0
            time.sleep(0.1)
        with self.lock:
            return len(self.pending)

    def close(self) -> None:
        self.stop.set()
        self.client.close()
        self.producer.close()


def events_missing(dsn: str, event_ids: list[str], timeout_s: float = 180.0) -> int:
    """Events not in ``user_events`` once the users worker caught up (bounded wait)."""
    import psycopg

    missing = len(event_ids)
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM user_events WHERE event_id = ANY(%s)", (event_ids,)
            ).fetchone()
            missing = len(event_ids) - int(row[0] if row else 0)
            if missing == 0:
                break
            time.sleep(1.0)
    return missing


def wait_ready(settings: Settings, up: subprocess.Popen[bytes], timeout_s: float = 420) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if up.poll() is not None:
            raise RuntimeError(f"streamrec up exited with {up.returncode}")
        probes = probe_workers(settings, settings.workers, timeout_s=1.0)
        if probes and all(p.state == "ready" for p in probes):
            return
        time.sleep(2.0)
    states = {p.name: f"{p.state} {p.detail}" for p in probe_workers(settings)}
    raise RuntimeError(f"workers not ready in {timeout_s}s: {states}")


def start_bare(args: Any, start_at: float, out: Path, sizes: dict[str, int], s: Settings) -> Any:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.soak_bare",
        f"--minutes={args.minutes}",
        f"--rate={args.rate}",
        f"--events-per-s={args.events_per_s}",
        f"--event-linger-ms={event_linger_ms(args, s)}",
        f"--event-tick-ms={args.event_tick_ms}",
        f"--partitions={s.user_partitions}",
        f"--fetch-wait-ms={s.fetch_wait_ms}",
        f"--events-fetch-wait-ms={s.users_fetch_wait_ms}",
        f"--events-batch={s.users_batch_size}",
        f"--serve-batch={s.serve_concurrency}",
        f"--session-timeout-ms={s.session_timeout_ms}",
        f"--event-bytes={sizes['event']}",
        f"--request-bytes={sizes['request']}",
        f"--response-bytes={sizes['response']}",
        f"--start-at={start_at}",
        f"--out={out}",
    ]
    log = (out.parent / "bare.log").open("wb")
    return subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)


def event_linger_ms(args: Any, settings: Settings) -> float:
    """The event producer's linger: ``--event-linger-ms``, else the SDK default."""
    return float(
        settings.producer_linger_ms if args.event_linger_ms is None else args.event_linger_ms
    )


def drift(last: float, first: float) -> float:
    return round(last / max(first, 1.0), 2)


def thirds(n: int) -> tuple[slice, slice]:
    k = max(1, n // 3)
    return slice(0, k), slice(n - k, n)


def pooled_p99(lists: list[list[float]]) -> float:
    return percentile([v for values in lists for v in values], 99)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=int, default=10)
    p.add_argument("--rate", type=float, default=20.0)
    p.add_argument("--events-per-s", type=float, default=200.0)
    p.add_argument("--items", type=int, default=1000)
    p.add_argument("--users", type=int, default=300)
    p.add_argument("--warmup-s", type=float, default=30.0)
    p.add_argument(
        "--event-linger-ms",
        type=float,
        default=None,
        help="linger.ms of the event producer (the upstream service's); default: the SDK's "
        "producer_linger_ms. The bare yardstick's event producer uses the same.",
    )
    p.add_argument(
        "--event-tick-ms",
        type=float,
        default=20.0,
        help="events are published in ticks of this many ms (0: one sleep per event)",
    )
    p.add_argument("--set", action="append", default=[], help="NAME=VALUE setting for up")
    p.add_argument("--no-bare", action="store_true", help="skip the bare yardstick")
    args = p.parse_args()
    load_at = os.getloadavg()
    home = Path(tempfile.mkdtemp(prefix="streamrec-soak-"))
    pg = EmbeddedPostgres(home / "pgdata")
    dsn = pg.start()
    up: subprocess.Popen[bytes] | None = None
    bare: Any = None
    try:
        base = free_port_range(6)
        env_settings = Settings(
            home=home,
            database_url=dsn,
            broker_port=free_port(),
            metrics_port=base,
            dashboard_port=free_port(),
            **parse_sets(args.set),
        )
        settings = env_settings.with_overrides(
            bootstrap_servers=f"127.0.0.1:{env_settings.broker_port}"
        )
        db.apply_migrations(dsn)
        workload = SyntheticWorkload(WorkloadConfig(n_items=args.items, n_users=args.users, seed=3))
        embedder = SentenceTransformerEmbedder()
        asyncio.run(seed_world(settings, embedder, workload.catalog(), list(workload.events())))
        del embedder
        up_log = (home / "up.log").open("wb")
        up = subprocess.Popen(
            [sys.executable, "-m", "cli.app", "up"],
            cwd=REPO,
            env=settings_env(env_settings),
            stdout=up_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_ready(settings, up)
        load = Load(settings, workload, args.minutes, args)
        sample = load.client.request("soak-warm-up-user", timeout_s=60.0)
        serde = load.producer.serde
        sizes = {
            "event": len(serde.encode(load._event(0), load.producer.topics.user_events.subject)),
            "request": len(
                serde.encode(RecRequest(user_id="u1"), load.producer.topics.rec_requests.subject)
            ),
            "response": len(serde.encode(sample, load.producer.topics.rec_responses.subject)),
        }
        start_at = time.time() + args.warmup_s
        end_at = start_at + 60 * args.minutes
        bare_out = home / "bare.json"
        if not args.no_bare:
            bare = start_bare(args, start_at, bare_out, sizes, settings)
        meter = ProcessMeter(up.pid, pg_data=home / "pgdata", extra={"bare": bare})
        sampler = threading.Thread(
            target=meter.per_minute, args=(start_at, load.minutes), daemon=True
        )
        sampler.start()
        print(
            f"soak: load from now (pid {os.getpid()}), timed minutes from {start_at:.0f}",
            file=sys.stderr,
            flush=True,
        )
        load.run(start_at, end_at)
        sampler.join(timeout=120)
        unanswered = load.drain()
        missing = events_missing(dsn, load.event_ids)
        load.close()
        bare_result: dict[str, Any] = {"minutes": [], "lost": {}}
        if bare is not None:
            bare.wait(timeout=300)
            bare_result = json.loads(bare_out.read_text())
    finally:
        if up is not None and up.poll() is None:
            up.send_signal(signal.SIGINT)
            try:
                up.wait(90)
            except subprocess.TimeoutExpired:
                up.kill()
        if bare is not None and bare.poll() is None:
            bare.kill()
        pg.destroy()
    report(
        args,
        load.minutes,
        bare_result,
        unanswered,
        missing,
        sizes,
        settings,
        load_at,
        load.batches.messages_per_batch(),
    )


def report(
    args: Any,
    minutes: list[Minute],
    bare: dict[str, Any],
    unanswered: int,
    missing: int,
    sizes: dict[str, int],
    settings: Settings,
    load_at: tuple[float, float, float],
    events_per_batch: float | None,
) -> None:
    echo = [m["rtts_ms"] for m in bare["minutes"]] or [[] for _ in minutes]
    for i, m in enumerate(minutes):
        b = bare["minutes"][i] if i < len(bare["minutes"]) else {}
        line = {
            "minute": i + 1,
            "requests": m.requests,
            "answered": len(m.client_ms),
            "expired": m.expired,
            "events": m.events,
            "client_p50_ms": round(percentile(m.client_ms, 50), 1),
            "client_p99_ms": round(percentile(m.client_ms, 99), 1),
            "serve_latency_p50_ms": round(percentile(m.serve_ms, 50), 1),
            "serve_latency_p99_ms": round(percentile(m.serve_ms, 99), 1),
            "echo_p50_ms": round(percentile(echo[i], 50), 1),
            "echo_p99_ms": round(percentile(echo[i], 99), 1),
            "bare_broker_cpu_s": b.get("broker_cpu_s"),
            "bare_broker_rss_mb": b.get("broker_rss_mb"),
            "bare_clients_cpu_s": b.get("self_cpu_s"),
            "cpu_s": m.cpu_s,
            "rss_mb": m.rss_mb,
        }
        print(json.dumps(line), flush=True)
    first, last = thirds(len(minutes))
    share_first = pooled_p99([m.client_ms for m in minutes[first]]) - pooled_p99(echo[first])
    share_last = pooled_p99([m.client_ms for m in minutes[last]]) - pooled_p99(echo[last])
    serve_first = pooled_p99([m.serve_ms for m in minutes[first]])
    serve_last = pooled_p99([m.serve_ms for m in minutes[last]])
    print(
        json.dumps(
            {
                "own_share_p99_ms_first_third": round(share_first, 1),
                "own_share_p99_ms_last_third": round(share_last, 1),
                "serve_latency_p99_ms_first_third": round(serve_first, 1),
                "serve_latency_p99_ms_last_third": round(serve_last, 1),
                "lost_requests": unanswered,
                "lost_events": missing,
                "bare_lost": bare.get("lost"),
                "bare_events_per_batch": bare.get("events_per_batch"),
                "record_bytes": sizes,
                "producer_linger_ms": settings.producer_linger_ms,
                "event_linger_ms": event_linger_ms(args, settings),
                "event_tick_ms": args.event_tick_ms,
                "settings_set": args.set,
                "loadavg_before": [round(x, 2) for x in load_at],
                "loadavg_after": [round(x, 2) for x in os.getloadavg()],
                "cpus": psutil.cpu_count(),
                "load_threads_cpu_s": thread_cpu_s(),
                "events_per_batch": events_per_batch,
            }
        ),
        flush=True,
    )
    # the keys, in the order (emit() would sort them)
    print(
        json.dumps(
            {
                "minutes": len(minutes),
                "p99_ms_by_minute": [round(percentile(m.client_ms, 99), 1) for m in minutes],
                "broker_only_p99_ms_by_minute": [round(percentile(e, 99), 1) for e in echo],
                "own_p99_drift": drift(share_last, share_first),
                "serve_latency_p99_drift": drift(serve_last, serve_first),
                "broker_cpu_s_by_minute": [m.cpu_s.get("broker", 0.0) for m in minutes],
                "lost": unanswered + missing,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
