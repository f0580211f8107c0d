"""What the dashboard reads from Kafka: topic sizes, dead letters, recent responses and
``rec.llm-log`` records.

Nothing here joins a consumer group (the workers' lag stays theirs): partitions are
assigned explicitly, and every read is bounded in count and time. Dead-letter values
are bytes that failed to decode: they are shown as a hex dump and a printable preview,
both escaped by the templates, never interpreted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from recsys.records import LlmInvolvement, RecResponse, new_id
from streams.dlq import DeadLetter, parse_dlq_headers
from streams.exceptions import SerializationError
from streams.kafka import consumer_config
from streams.lag import topic_sizes
from streams.serde import AvroSerde
from streams.settings import Settings
from streams.topics import Topics

__all__ = ["DeadLetterView", "KafkaViews", "TailIndex", "hexdump"]

log = logging.getLogger(__name__)


def _consumer(settings: Settings, purpose: str) -> Consumer:
    return Consumer(
        consumer_config(
            settings,
            f"streamrec-dashboard-{purpose}-{new_id()[:8]}",
            latency_sensitive=True,
            logger=logging.getLogger("librdkafka"),
        )
    )


def hexdump(data: bytes, limit: int = 512) -> tuple[str, str]:
    """``(hex lines, printable preview)`` of at most ``limit`` bytes (non-printables → ·)."""
    chunk = data[:limit]
    lines = []
    for i in range(0, len(chunk), 16):
        row = chunk[i : i + 16]
        text = "".join(chr(b) if 32 <= b < 127 else "·" for b in row)
        lines.append(f"{i:06x}  {row.hex(' '):<47}  {text}")
    preview = chunk.decode("utf-8", "replace")
    preview = "".join(c if c.isprintable() or c in "\n\t" else "·" for c in preview)
    return "\n".join(lines), preview


@dataclass(frozen=True)
class DeadLetterView:
    """One dead letter as the browser shows it."""

    partition: int
    offset: int
    key: str
    headers: DeadLetter
    other_headers: list[tuple[str, str]]
    size: int
    hex: str
    preview: str


class KafkaViews:
    """Topic sizes (cached a few seconds) and dead-letter browsing."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = Topics(settings)
        self._sizes: tuple[float, dict[str, int]] = (0.0, {})
        self._lock = threading.Lock()

    def sizes(self, max_age_s: float = 5.0) -> dict[str, int]:
        """Messages ever written per topic of the catalogue (DLQs included)."""
        with self._lock:
            at, cached = self._sizes
            if time.monotonic() - at < max_age_s:
                return cached
            try:
                sizes = topic_sizes(self.settings, [t.name for t in list(self.topics)])
            except KafkaException as exc:
                log.warning("topic sizes unavailable: %s", exc)
                sizes = cached
            self._sizes = (time.monotonic(), sizes)
            return sizes

    def dead_letters(self, topic: str, limit: int = 50) -> list[DeadLetterView]:
        """The newest ``limit`` dead letters of DLQ ``topic`` (newest first)."""
        if topic not in {t.name for t in list(self.topics) if t.is_dlq}:
            return []
        consumer = _consumer(self.settings, "dlq")
        out: list[DeadLetterView] = []
        try:
            md = consumer.list_topics(topic, timeout=self.settings.admin_timeout_s)
            parts = sorted(md.topics[topic].partitions) if topic in md.topics else []
            assignment, ends = [], {}
            for p in parts:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, p), timeout=self.settings.admin_timeout_s
                )
                if high > low:
                    assignment.append(TopicPartition(topic, p, max(low, high - limit)))
                    ends[p] = high
            if not assignment:
                return []
            consumer.assign(assignment)
            deadline = time.monotonic() + 3.0
            pending = set(ends)
            while pending and time.monotonic() < deadline:
                for msg in consumer.consume(500, 0.2):
                    if msg.error() is not None:
                        continue
                    p, off = msg.partition() or 0, msg.offset() or 0
                    out.append(_view(p, off, msg.key(), msg.value(), msg.headers()))
                    if off + 1 >= ends.get(p, 0):
                        pending.discard(p)
                if not pending:
                    break
        finally:
            consumer.close()
        out.sort(key=lambda d: d.headers.failed_at, reverse=True)
        return out[:limit]


def _view(p: int, off: int, key: Any, value: Any, headers: Any) -> DeadLetterView:
    raw = list(headers.items() if isinstance(headers, dict) else headers or [])
    pairs = [(str(k), v if isinstance(v, bytes) else str(v or "").encode()) for k, v in raw]
    data = value if isinstance(value, bytes) else b""
    hex_, preview = hexdump(data)
    key_text = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key or "")
    return DeadLetterView(
        partition=p,
        offset=off,
        key=key_text,
        headers=parse_dlq_headers(pairs),
        other_headers=[
            (k, v.decode("utf-8", "replace")[:200]) for k, v in pairs if not k.startswith("dlq.")
        ],
        size=len(data),
        hex=hex_,
        preview=preview[:512],
    )


class TailIndex:
    """The last responses and ``rec.llm-log`` records, indexed by request id.

    Followed only while someone looks: a page that shows them (the serving page, the
    try-it panel) calls :meth:`follow`, which starts a background thread reading both
    topics from a little before their end; the thread stops once no page asked for
    ``idle_s``. A consumer that polls the embedded broker costs it CPU even when nobody
    reads what it fetches (every fetch that finds data lists every batch stored in the
    partition), so an unwatched dashboard reads nothing. The fetch wait is the throughput
    consumers' (``batch_fetch_wait_ms``): a person reading a page does not need the
    serving path's few milliseconds.
    """

    def __init__(
        self, settings: Settings, serde: AvroSerde, *, keep: int = 5000, idle_s: float = 300.0
    ) -> None:
        self.settings = settings
        self.serde = serde
        self.topics = Topics(settings)
        self.keep = keep
        self.idle_s = idle_s
        self.responses: OrderedDict[str, RecResponse] = OrderedDict()
        self.logs: OrderedDict[str, list[LlmInvolvement]] = OrderedDict()
        self.recent: deque[RecResponse] = deque(maxlen=50)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._used = time.monotonic()
        self._caught_up = threading.Event()
        self._lock = threading.Lock()

    @property
    def following(self) -> bool:
        """Whether the background thread reads the topics now."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def follow(self, wait_s: float = 0.0) -> TailIndex:
        """Follow the topics (from up to 200 messages before their end) for ``idle_s``
        more; on a start, wait up to ``wait_s`` for the first read to finish."""
        with self._lock:
            self._used = time.monotonic()
            if self._stop.is_set() or self.following:
                return self
            self._caught_up.clear()
            self._thread = threading.Thread(target=self._run, name="dashboard-tail", daemon=True)
            self._thread.start()
        self._caught_up.wait(wait_s)
        return self

    def stop(self) -> None:
        """Stop following (for good)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _idle(self) -> bool:
        with self._lock:
            if time.monotonic() - self._used < self.idle_s:
                return False
            self._thread = None  # the next follow() starts a new thread
            return True

    def _assign(self, consumer: Consumer, backfill: int = 200) -> None:
        names = [self.topics.rec_responses.name, self.topics.llm_log.name]
        md = consumer.list_topics(timeout=self.settings.admin_timeout_s)
        assignment = []
        for name in names:
            if name not in md.topics:
                continue
            for p in md.topics[name].partitions:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(name, p), timeout=self.settings.admin_timeout_s
                )
                assignment.append(TopicPartition(name, p, max(low, high - backfill)))
        consumer.assign(assignment)

    def _run(self) -> None:
        consumer = Consumer(
            consumer_config(
                self.settings,
                f"streamrec-dashboard-tail-{new_id()[:8]}",
                latency_sensitive=False,
                logger=logging.getLogger("librdkafka"),
            )
        )
        try:
            while not self._stop.is_set():
                try:
                    self._assign(consumer)
                    break
                except KafkaException as exc:
                    log.warning("dashboard cannot follow the logged topics yet: %s", exc)
                    self._stop.wait(2.0)
            with self._cond:
                self.recent.clear()  # the backfill reads the newest ones again
            while not self._stop.is_set() and not self._idle():
                messages = consumer.consume(500, 0.1)
                for msg in messages:
                    if msg.error() is not None:
                        continue
                    self._add(msg.topic(), msg.value())
                if len(messages) < 500:
                    self._caught_up.set()
        finally:
            self._caught_up.set()
            consumer.close()

    def _add(self, topic: str | None, value: Any) -> None:
        try:
            if topic == self.topics.rec_responses.name:
                response = self.serde.decode(value, RecResponse)
                with self._cond:
                    self.responses[response.request_id] = response
                    self.recent.appendleft(response)
                    while len(self.responses) > self.keep:
                        self.responses.popitem(last=False)
                    self._cond.notify_all()
            elif topic == self.topics.llm_log.name:
                record = self.serde.decode(value, LlmInvolvement)
                with self._cond:
                    self.logs.setdefault(record.request_id, []).append(record)
                    while len(self.logs) > self.keep:
                        self.logs.popitem(last=False)
                    self._cond.notify_all()
        except SerializationError:
            return

    def wait_logs(self, request_id: str, timeout_s: float = 3.0) -> list[LlmInvolvement]:
        """The log records of ``request_id``, waiting until they stop arriving."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            seen = -1
            while time.monotonic() < deadline:
                count = len(self.logs.get(request_id, []))
                if count and count == seen:
                    break
                seen = count
                self._cond.wait(0.3)
            return list(self.logs.get(request_id, []))
