"""The bare-broker yardstick of the soak: the soak's message rates on a Tansu broker of its
own, through plain confluent-kafka clients — no streamrec code.

    python -m benchmarks soak_bare [--minutes 30] [--rate 20] [--events-per-s 200]
                                   [--event-linger-ms 1] [--partitions 4]

What runs (each client configured like its streamrec counterpart, with the values passed
on the command line, so that the difference between the two brokers is what streamrec adds):

* an event producer at ``--events-per-s`` (keyed, murmur2, acks=all, idempotent, linger
  ``--event-linger-ms``: what an upstream service's producer does);
* one consumer group reading the events (fetch wait ``--events-fetch-wait-ms``, batches of
  up to ``--events-batch``, a synchronous commit per batch: the users worker's pattern);
* a request/reply echo at ``--rate``: a responder group (fetch wait ``--fetch-wait-ms``,
  a flush and a synchronous commit per batch: the serve worker's pattern) and a client that
  sends with linger 0 and reads the replies from assigned partitions (the request client's
  pattern). Payloads have the sizes passed in (the soak passes its encoded records' sizes).

Standalone it measures the embedded broker's limit: the first minute whose echo p99
passes ``--limit-ms`` (100 ms). The soak runs it as a child process (``--start-at`` aligns
the minutes, ``--out`` receives every round trip) so that its client threads share no
interpreter with the streamrec load.

Last line (standalone): ``{"minutes", "echo_p99_ms_by_minute", "broker_cpu_s_by_minute",
"limit_minutes", "lost"}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from benchmarks.common import emit, paced, percentile
from benchmarks.soak_procs import BatchStats
from stack.embedded import EmbeddedBroker, free_port

logging.getLogger("librdkafka").setLevel(logging.ERROR)


def cpu_s(proc: psutil.Process) -> float:
    """User + system CPU seconds of one process."""
    t = proc.cpu_times()
    return float(t.user + t.system)


def poll_some(consumer: Consumer, max_messages: int, timeout_s: float) -> list[Message]:
    """Wait for one message, then take what is already fetched (as the streamrec loop)."""
    first = consumer.poll(timeout_s)
    if first is None:
        return []
    return [first, *consumer.consume(max_messages - 1, 0)] if max_messages > 1 else [first]


@dataclass
class Minute:
    """What one minute of the bare load measured."""

    rtts_ms: list[float] = field(default_factory=list)
    requests: int = 0
    events_sent: int = 0
    broker_cpu_s: float = 0.0
    broker_rss_mb: float = 0.0
    self_cpu_s: float = 0.0
    self_rss_mb: float = 0.0


class BareLoad:
    """The bare yardstick's clients, on one broker."""

    def __init__(self, bootstrap: str, args: argparse.Namespace) -> None:
        self.bootstrap = bootstrap
        self.args = args
        suffix = uuid.uuid4().hex[:8]
        self.events, self.req, self.resp = (f"{n}-{suffix}" for n in ("events", "req", "resp"))
        self.stop = threading.Event()
        self.sent: dict[bytes, tuple[float, int]] = {}
        self.lock = threading.Lock()
        self.minutes = [Minute() for _ in range(args.minutes)]
        self.answered = 0
        self.events_consumed: set[bytes] = set()
        self.event_ids_sent: set[bytes] = set()
        self.base: dict[str, Any] = {"bootstrap.servers": bootstrap}
        self.batches = BatchStats()

    # ---- set-up ---------------------------------------------------------------------
    def create_topics(self) -> None:
        admin = AdminClient(self.base)
        n = self.args.partitions
        futures = admin.create_topics(
            [NewTopic(t, n, 1) for t in (self.events, self.req, self.resp)]
        )
        for f in futures.values():
            f.result(10)

    def _group_consumer(self, group: str, wait_ms: int) -> Consumer:
        return Consumer(
            self.base
            | {
                "group.id": group,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": wait_ms,
                "session.timeout.ms": self.args.session_timeout_ms,
                "heartbeat.interval.ms": max(300, self.args.session_timeout_ms // 6),
                "partition.assignment.strategy": "range",
            }
        )

    def _producer(self, linger_ms: float, **extra: Any) -> Producer:
        return Producer(
            self.base
            | extra
            | {
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": linger_ms,
                "partitioner": "murmur2_random",
            }
        )

    # ---- the clients ----------------------------------------------------------------
    def event_consumer(self) -> None:
        """The users worker's pattern: batch, commit synchronously."""
        c = self._group_consumer(
            f"bare-users-{uuid.uuid4().hex[:6]}", self.args.events_fetch_wait_ms
        )
        c.subscribe([self.events])
        try:
            while not self.stop.is_set():
                batch = poll_some(c, self.args.events_batch, 0.2)
                offsets: dict[tuple[str, int], int] = {}
                for m in batch:
                    if m.error() is not None:
                        continue
                    self.events_consumed.add((m.value() or b"")[:16])
                    offsets[(m.topic() or "", m.partition() or 0)] = (m.offset() or 0) + 1
                if offsets:
                    with contextlib.suppress(KafkaException):
                        c.commit(
                            offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                            asynchronous=False,
                        )
        finally:
            c.close()

    def responder(self) -> None:
        """The serve worker's pattern: consume a batch, produce replies, flush, commit."""
        c = self._group_consumer(f"bare-serve-{uuid.uuid4().hex[:6]}", self.args.fetch_wait_ms)
        c.subscribe([self.req])
        p = self._producer(self.args.event_linger_ms)
        pad = b"r" * max(0, self.args.response_bytes - 16)
        try:
            while not self.stop.is_set():
                batch = poll_some(c, self.args.serve_batch, 0.2)
                offsets: dict[tuple[str, int], int] = {}
                for m in batch:
                    if m.error() is not None:
                        continue
                    p.produce(self.resp, key=m.key(), value=(m.value() or b"")[:16] + pad)
                    offsets[(m.topic() or "", m.partition() or 0)] = (m.offset() or 0) + 1
                if offsets:
                    p.flush(30)
                    with contextlib.suppress(KafkaException):
                        c.commit(
                            offsets=[TopicPartition(t, p_, o) for (t, p_), o in offsets.items()],
                            asynchronous=False,
                        )
        finally:
            p.flush(10)
            c.close()

    def reader(self, consumer: Consumer) -> None:
        """The request client's pattern: assigned partitions, from their end."""
        while not self.stop.is_set():
            for m in poll_some(consumer, 256, 0.05):
                if m.error() is not None:
                    continue
                now = time.time()
                with self.lock:
                    entry = self.sent.pop((m.value() or b"")[:16], None)
                if entry is not None:
                    at, minute = entry
                    self.minutes[minute].rtts_ms.append(round((now - at) * 1000, 3))
                    self.answered += 1
        consumer.close()

    def event_producer(self, start_at: float, end_at: float) -> None:
        p = self._producer(self.args.event_linger_ms, **self.batches.config())
        pad = b"e" * max(0, self.args.event_bytes - 16)
        rate = self.args.events_per_s
        rng = random.Random(5)
        tick = max(0.0, self.args.event_tick_ms / 1000.0)
        for i in paced(rate, tick, start_at, end_at, stop=self.stop):
            event_id = f"{i:016d}".encode()
            minute = min(len(self.minutes) - 1, int((time.time() - start_at) // 60))
            if minute >= 0:
                self.minutes[minute].events_sent += 1
            self.event_ids_sent.add(event_id)
            while True:
                try:
                    p.produce(self.events, key=f"user-{rng.randrange(300)}", value=event_id + pad)
                    break
                except BufferError:
                    p.poll(0.05)
            p.poll(0)
        p.flush(30)

    def sampler(self, start_at: float, broker: psutil.Process) -> None:
        me = psutil.Process()
        last_b, last_me = cpu_s(broker), cpu_s(me)
        for minute in range(len(self.minutes)):
            end = start_at + (minute + 1) * 60
            while time.time() < end and not self.stop.is_set():
                time.sleep(min(1.0, max(0.0, end - time.time())))
            b, s = cpu_s(broker), cpu_s(me)
            m = self.minutes[minute]
            m.broker_cpu_s, m.self_cpu_s = round(b - last_b, 2), round(s - last_me, 2)
            m.broker_rss_mb = round(broker.memory_info().rss / 1e6, 1)
            m.self_rss_mb = round(me.memory_info().rss / 1e6, 1)
            last_b, last_me = b, s

    # ---- the run --------------------------------------------------------------------
    def run(self, start_at: float, broker: psutil.Process) -> None:
        self.create_topics()
        threads = [
            threading.Thread(target=self.event_consumer, daemon=True),
            threading.Thread(target=self.responder, daemon=True),
        ]
        for t in threads:
            t.start()
        reader = Consumer(
            self.base | {"group.id": "bare-client", "fetch.wait.max.ms": self.args.fetch_wait_ms}
        )
        md = reader.list_topics(self.resp, timeout=10)
        reader.assign([TopicPartition(self.resp, p, 0) for p in md.topics[self.resp].partitions])
        rthread = threading.Thread(target=self.reader, args=(reader,), daemon=True)
        rthread.start()
        end_at = start_at + 60 * len(self.minutes)
        producer_thread = threading.Thread(
            target=self.event_producer, args=(start_at, end_at), daemon=True
        )
        producer_thread.start()
        sampler = threading.Thread(target=self.sampler, args=(start_at, broker), daemon=True)
        sampler.start()
        client = Producer(self.base | {"enable.idempotence": True, "acks": "all", "linger.ms": 0})
        pad = b"q" * max(0, self.args.request_bytes - 16)
        i = 0
        while True:
            target = start_at + i / self.args.rate
            if target >= end_at:
                break
            delay = target - time.time()
            if delay > 0:
                time.sleep(delay)
            key = f"{i:016d}".encode()
            minute = min(len(self.minutes) - 1, int((time.time() - start_at) // 60))
            with self.lock:
                self.sent[key] = (time.time(), minute)
            self.minutes[minute].requests += 1
            client.produce(self.req, key=f"user-{i % 300}", value=key + pad)
            client.flush(0)
            i += 1
        client.flush(10)
        sampler.join()
        deadline = time.monotonic() + 30
        while self.sent and time.monotonic() < deadline:
            time.sleep(0.1)
        deadline = time.monotonic() + 30
        while len(self.events_consumed) < len(self.event_ids_sent) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.stop.set()
        for t in (*threads, rthread, producer_thread):
            t.join(10)

    def lost(self) -> dict[str, int]:
        return {
            "requests": len(self.sent),
            "events": len(self.event_ids_sent - self.events_consumed),
        }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=int, default=30)
    p.add_argument("--rate", type=float, default=20.0, help="echo requests per second")
    p.add_argument("--events-per-s", type=float, default=200.0)
    p.add_argument("--event-linger-ms", type=float, default=1.0)
    p.add_argument(
        "--event-tick-ms",
        type=float,
        default=0.0,
        help="publish the events due in ticks of this many ms (0: one sleep per event)",
    )
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--fetch-wait-ms", type=int, default=5)
    p.add_argument("--events-fetch-wait-ms", type=int, default=100)
    p.add_argument("--events-batch", type=int, default=2000)
    p.add_argument("--serve-batch", type=int, default=32)
    p.add_argument("--session-timeout-ms", type=int, default=6000)
    p.add_argument("--event-bytes", type=int, default=120)
    p.add_argument("--request-bytes", type=int, default=120)
    p.add_argument("--response-bytes", type=int, default=1500)
    p.add_argument("--limit-ms", type=float, default=100.0)
    p.add_argument("--start-at", type=float, default=None, help="epoch seconds of minute 0")
    p.add_argument("--out", type=Path, default=None, help="write every minute here as JSON")
    return p


def main() -> None:
    args = parser().parse_args()
    broker = EmbeddedBroker(port=free_port())
    broker.start()
    try:
        assert broker.pid is not None
        proc = psutil.Process(broker.pid)
        load = BareLoad(broker.bootstrap, args)
        start_at = args.start_at if args.start_at is not None else time.time() + 5.0
        load.run(start_at, proc)
    finally:
        broker.stop()
    minutes = load.minutes
    p99s = [round(percentile(m.rtts_ms, 99), 1) for m in minutes]
    limit = next((i + 1 for i, v in enumerate(p99s) if v > args.limit_ms), None)
    if args.out is not None:
        payload = {
            "minutes": [m.__dict__ for m in minutes],
            "lost": load.lost(),
            "events_per_batch": load.batches.messages_per_batch(),
            "pid": os.getpid(),
        }
        args.out.write_text(json.dumps(payload))
    for i, m in enumerate(minutes):
        print(
            json.dumps(
                {
                    "minute": i + 1,
                    "echo_p50_ms": round(percentile(m.rtts_ms, 50), 1),
                    "echo_p99_ms": p99s[i],
                    "requests": m.requests,
                    "events_sent": m.events_sent,
                    "broker_cpu_s": m.broker_cpu_s,
                    "broker_rss_mb": m.broker_rss_mb,
                    "clients_cpu_s": m.self_cpu_s,
                }
            ),
            flush=True,
        )
    emit(
        {
            "minutes": len(minutes),
            "echo_p99_ms_by_minute": p99s,
            "broker_cpu_s_by_minute": [m.broker_cpu_s for m in minutes],
            "limit_minutes": limit,
            "events_per_batch": load.batches.messages_per_batch(),
            "lost": sum(load.lost().values()),
        }
    )


if __name__ == "__main__":
    main()
