"""Shared benchmark plumbing: an embedded stack per run, fresh topics, the echo yardstick."""

from __future__ import annotations

import json
import logging
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from stack.embedded import EmbeddedBroker, EmbeddedPostgres, free_port
from streams.kafka import poll_batch
from streams.settings import Settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
logging.getLogger("librdkafka").setLevel(logging.ERROR)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation; nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def paced(
    rate: float,
    tick_s: float,
    began: float,
    end_at: float,
    *,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[int]:
    """Indices 0, 1, … of messages sent at ``rate`` per second from ``began`` to
    ``end_at``, each yielded once it is due (never before ``began + i / rate``).

    One sleep per tick of ``tick_s`` (the messages due by then follow back to back), not
    per message: at 200 events/s a sleep per event cost a load generator more than the
    events, 200 wake-ups a second competing for the interpreter with its other threads.
    ``tick_s`` 0 sleeps until each message is due.
    """
    total = int((end_at - began) * rate)
    i = 0
    next_tick = began
    while i < total and not (stop is not None and stop.is_set()):
        due = min(total, int((clock() - began) * rate + 1e-9) + 1)  # float-exact at i/rate
        while i < due:
            yield i
            i += 1
        if i >= total:
            return
        next_tick = max(next_tick + tick_s, began + i / rate)
        sleep(max(0.0, next_tick - clock()))


def summary_ms(values_s: list[float]) -> dict[str, float]:
    """p50/p95/p99/mean in milliseconds of durations given in seconds."""
    ms = [v * 1000 for v in values_s]
    return {
        "p50_ms": round(percentile(ms, 50), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "mean_ms": round(statistics.fmean(ms), 2) if ms else float("nan"),
        "n": len(ms),
    }


def emit(result: dict[str, Any]) -> None:
    """Print the result as the last line (one JSON object)."""
    print(json.dumps(result, sort_keys=True), flush=True)


@contextmanager
def embedded_stack(with_postgres: bool = False, **settings: Any) -> Iterator[Settings]:
    """A broker (and optionally Postgres) for one benchmark run, fresh topic prefix."""
    broker = EmbeddedBroker(port=free_port())
    broker.start()
    pg: EmbeddedPostgres | None = None
    tmp = Path(tempfile.mkdtemp(prefix="streamrec-bench-"))
    try:
        overrides: dict[str, Any] = {
            "home": tmp,
            "bootstrap_servers": broker.bootstrap,
            "topic_prefix": f"bench{uuid.uuid4().hex[:8]}.",
            "session_timeout_ms": 3000,
        }
        if with_postgres:
            pg = EmbeddedPostgres(tmp / "pgdata")
            overrides["database_url"] = pg.start()
        overrides.update(settings)
        yield Settings(**overrides)
    finally:
        if pg is not None:
            pg.destroy()
        broker.stop()


def create_topic(bootstrap: str, name: str, partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(10)


def echo_round_trip(
    bootstrap: str, n: int = 500, rate_per_s: float = 100.0, fetch_wait_ms: int = 5
) -> dict[str, float]:
    """Raw confluent-kafka request/response echo: the latency floor of the broker.

    A responder thread consumes ``req`` and produces each value to ``resp``; the caller
    sends ``n`` timestamped requests at ``rate_per_s`` and measures the round trips.
    """
    suffix = uuid.uuid4().hex[:8]
    req, resp = f"echo-req-{suffix}", f"echo-resp-{suffix}"
    create_topic(bootstrap, req)
    create_topic(bootstrap, resp)
    stop = threading.Event()
    base = {
        "bootstrap.servers": bootstrap,
        "fetch.wait.max.ms": fetch_wait_ms,
        "enable.auto.commit": False,
    }

    def responder() -> None:
        c = Consumer(base | {"group.id": f"echo-{suffix}"})
        c.assign([TopicPartition(req, 0, 0)])
        p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
        while not stop.is_set():
            for m in poll_batch(c, 500, 0.05):
                if m.error() is None:
                    p.produce(resp, m.value())
            p.poll(0)
        p.flush(5)
        c.close()

    thread = threading.Thread(target=responder, daemon=True)
    thread.start()
    reader = Consumer(base | {"group.id": f"echo-reader-{suffix}"})
    reader.assign([TopicPartition(resp, 0, 0)])
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    sent: dict[bytes, float] = {}
    rtts: list[float] = []
    lock = threading.Lock()

    def read() -> None:
        while not stop.is_set():
            for m in poll_batch(reader, 500, 0.05):
                if m.error() is None:
                    now = time.perf_counter()
                    with lock:
                        t0 = sent.pop(m.value(), None)
                    if t0 is not None:
                        rtts.append(now - t0)

    rthread = threading.Thread(target=read, daemon=True)
    rthread.start()
    # warm-up: the first fetches establish connections
    time.sleep(1.0)
    interval = 1.0 / rate_per_s
    start = time.perf_counter()
    for i in range(n):
        target = start + i * interval
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        key = f"{i}".encode()
        with lock:
            sent[key] = time.perf_counter()
        producer.produce(req, key)
        producer.poll(0)
    producer.flush(10)
    deadline = time.monotonic() + 10
    while len(rtts) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(5)
    rthread.join(5)
    reader.close()
    return summary_ms(rtts) | {"lost": n - len(rtts), "rate_per_s": rate_per_s}
