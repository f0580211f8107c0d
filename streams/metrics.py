"""Prometheus metrics of the stream machinery, and their exposition.

Every consumer loop counts what it consumed, handled, dead-lettered and committed, how
big its batches were and how long the handler took, and keeps a lag gauge per owned
partition — in one place (:class:`streams.consumer_loop.ConsumerLoop`), so no worker
repeats it. The workers' own metrics (serving routes, LLM decisions, enrichment,
feedback) are defined beside them in :mod:`workers.metrics`.

Names follow Prometheus conventions: ``streamrec_`` prefix, base units in the name
(``_seconds``, ``_messages``), ``_total`` on counters, label values from bounded sets
(worker names, topic names of the catalogue, partition numbers, reason codes).

Several processes of one worker (one consumer group) may share a metrics directory:
when ``PROMETHEUS_MULTIPROC_DIR`` is set (``streamrec up`` sets one per worker), values
live in files there and :func:`exposition` merges every process's — counters survive a
restart of the process, gauges of dead processes are dropped.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = [
    "CONTENT_TYPE_LATEST",
    "LoopMetrics",
    "exposition",
    "loop_metrics",
    "multiprocess_dir",
]

#: Batch sizes, messages.
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
#: Handler and request durations, seconds (1 ms … 30 s).
SECONDS_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


def multiprocess_dir() -> str | None:
    """The shared metrics directory of this worker's processes, if any."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


@dataclass(frozen=True)
class LoopMetrics:
    """What every consumer loop reports."""

    consumed: Counter
    handled: Counter
    dead_lettered: Counter
    batches: Counter
    batch_size: Histogram
    handle_seconds: Histogram
    commits: Counter
    retries: Counter
    lag: Gauge
    assigned: Gauge


@functools.cache
def loop_metrics() -> LoopMetrics:
    """The process's consumer-loop metrics (registered once, on first use)."""
    return LoopMetrics(
        consumed=Counter(
            "streamrec_messages_consumed",
            "Messages a worker consumed, per input topic.",
            ["worker", "topic"],
        ),
        handled=Counter(
            "streamrec_messages_handled",
            "Decoded messages a worker's handler finished, per input topic.",
            ["worker", "topic"],
        ),
        dead_lettered=Counter(
            "streamrec_messages_dead_lettered",
            "Messages sent to a dead-letter topic, per source topic and reason.",
            ["worker", "topic", "reason"],
        ),
        batches=Counter("streamrec_batches", "Batches a worker's handler finished.", ["worker"]),
        batch_size=Histogram(
            "streamrec_batch_size_messages",
            "Messages per handled batch.",
            ["worker"],
            buckets=BATCH_BUCKETS,
        ),
        handle_seconds=Histogram(
            "streamrec_batch_handle_seconds",
            "Time the handler took per batch (retries included).",
            ["worker"],
            buckets=SECONDS_BUCKETS,
        ),
        commits=Counter("streamrec_offset_commits", "Synchronous offset commits done.", ["worker"]),
        retries=Counter(
            "streamrec_batch_retries",
            "Batches retried after a transient failure (Postgres away, a timeout).",
            ["worker"],
        ),
        lag=Gauge(
            "streamrec_consumer_lag_messages",
            "Messages behind the partition's end (from the last fetch's high watermark).",
            ["worker", "topic", "partition"],
            multiprocess_mode="livesum",
        ),
        assigned=Gauge(
            "streamrec_assigned_partitions",
            "Partitions this worker owns now, per topic.",
            ["worker", "topic"],
            multiprocess_mode="livesum",
        ),
    )


def exposition() -> bytes:
    """The text exposition of this process's metrics (all processes', when shared)."""
    path = multiprocess_dir()
    if path is None:
        return generate_latest(REGISTRY)
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)
    return generate_latest(registry)
