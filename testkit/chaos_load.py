"""Load and observation for the fault suite (``benchmarks/chaos.py``).

:class:`ChaosLoad` publishes catalog changes, user events (with re-sent duplicates) and
recommendation requests at steady rates, and poison messages when told, remembering
each message's partition and offset from the broker's delivery reports. What it
published is the input of the offline recomputation (:mod:`testkit.chaos_oracle`).

:class:`Recorder` reads ``rec.responses`` and every dead-letter topic from offset 0
without a consumer group, so that answers and dead letters are counted as they appear —
the embedded broker forgets its topics when ``up`` restarts, so each incarnation of the
stack gets its own recorder, drained before the restart.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from recsys.records import CatalogChange, ChangeOp, EventType, RecRequest, RecResponse, UserEvent
from streams.consumer_loop import headers_of
from streams.dlq import DeadLetter, parse_dlq_headers, value_digest
from streams.kafka import producer_config
from streams.serde import AvroSerde
from streams.settings import Settings
from streams.topics import Topics, TopicSpec
from testkit.poison import Poison

__all__ = ["ChaosLoad", "Delivered", "Recorder", "SentPoison"]

log = logging.getLogger(__name__)

_KINDS = [EventType.VIEW] * 6 + [EventType.CLICK] * 3 + [EventType.CART, EventType.RATING]


@dataclass
class Delivered:
    """Where the broker put a message (-1 until the delivery report arrives)."""

    topic: str
    sent_at: float
    incarnation: int
    partition: int = -1
    offset: int = -1
    failed: str | None = None


@dataclass
class SentPoison:
    """A poison message that was published, and where it landed."""

    poison: Poison
    topic: str
    where: Delivered
    digest: str


@dataclass
class ChaosLoad:
    """Steady load through every worker, plus poison on demand (thread-safe to read)."""

    settings: Settings
    n_users: int = 200
    n_items: int = 200
    event_rate: float = 20.0
    request_rate: float = 4.0
    catalog_rate: float = 0.5
    seed: int = 14
    incarnation: int = 1
    #: Every valid user event in publish order (re-sent duplicates included).
    events: list[UserEvent] = field(default_factory=list)
    #: request_id → where it went and when.
    requests: dict[str, Delivered] = field(default_factory=dict)
    #: item_id → (last version published, deleted?).
    catalog: dict[str, tuple[int, bool]] = field(default_factory=dict)
    poisons: list[SentPoison] = field(default_factory=list)
    delivery_errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.topics = Topics(self.settings)
        self.serde = AvroSerde()
        self._producer: Producer | None = None
        self._lock = threading.RLock()
        self._running = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._n = 0
        self._clock: dict[str, float] = {}
        self._resend: list[tuple[int, UserEvent]] = []

    # ---- producing ------------------------------------------------------------------------
    @property
    def producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(
                producer_config(
                    self.settings,
                    logger=logging.getLogger("librdkafka"),
                    **{"linger.ms": 5, "message.timeout.ms": 120_000},
                )
            )
        return self._producer

    def _produce(
        self, spec: TopicSpec, key: str | None, value: bytes | None, on: Delivered | None = None
    ) -> None:
        def report(err: KafkaError | None, msg: Message) -> None:
            if on is None:
                if err is not None:
                    self.delivery_errors.append(f"{spec.name}: {err}")
                return
            if err is not None:
                on.failed = str(err)
                self.delivery_errors.append(f"{spec.name}: {err}")
                return
            on.partition, on.offset = int(msg.partition() or 0), int(msg.offset() or 0)

        while True:
            try:
                self.producer.produce(spec.name, value=value, key=key, on_delivery=report)
                return
            except BufferError:
                self.producer.poll(0.1)

    def _send(self, spec: TopicSpec, key: str, record: Any, on: Delivered | None = None) -> None:
        self._produce(spec, key, self.serde.encode(record, spec.subject), on)

    def flush(self, timeout_s: float = 120.0) -> None:
        """Wait for every delivery report."""
        if self._producer is not None:
            remaining = self._producer.flush(timeout_s)
            if remaining:
                self.delivery_errors.append(f"{remaining} message(s) not delivered")

    def new_incarnation(self, settings: Settings) -> None:
        """The stack was restarted (a new, empty broker): a new producer for it."""
        self.flush()
        self._producer = None
        self.settings = settings
        self.incarnation += 1

    # ---- what is published ---------------------------------------------------------------
    def seed_catalog(self) -> None:
        """Version 1 of every item."""
        for i in range(self.n_items):
            self._change(f"i{i}")
        self.flush()

    def _change(self, item_id: str) -> None:
        version, _ = self.catalog.get(item_id, (0, False))
        version += 1
        delete = version > 2 and self.rng.random() < 0.1
        change = CatalogChange(
            item_id=item_id,
            version=version,
            op=ChangeOp.DELETE if delete else ChangeOp.UPSERT,
            title=f"Item {item_id} v{version}",
            categories=[self.rng.choice(["Drama", "Comedy", "Sci-Fi", "Horror", "Family"])],
            description=f"A {self.rng.choice(['quiet', 'loud', 'odd'])} story, edition {version}",
        )
        with self._lock:
            self.catalog[item_id] = (version, delete)
        self._send(self.topics.catalog_changes, item_id, change)

    def _event(self) -> None:
        self._n += 1
        user = f"u{self.rng.randrange(self.n_users)}"
        kind = self.rng.choice(_KINDS)
        event = UserEvent(
            event_id=f"e{self.incarnation}-{self._n}",
            user_id=user,
            event_type=kind,
            item_id=f"i{self.rng.randrange(self.n_items)}",
            rating=float(self.rng.choice([2, 3.5, 4, 5])) if kind is EventType.RATING else None,
        )
        self._publish_event(event)
        if self._n % 15 == 0:  # sent again later: a duplicate upstream
            self._resend.append((self._n + self.rng.randrange(5, 60), event))
        for due in [r for r in self._resend if r[0] <= self._n]:
            self._resend.remove(due)
            self._publish_event(due[1])

    def _publish_event(self, event: UserEvent) -> None:
        with self._lock:
            self.events.append(event)
        self._send(self.topics.user_events, event.user_id, event)

    def _request(self) -> None:
        rid = f"r{self.incarnation}-{len(self.requests)}"
        user = f"u{self.rng.randrange(self.n_users + 50)}"  # some never seen: cold
        query = "something funny for tonight" if self.rng.random() < 0.2 else None
        request = RecRequest(request_id=rid, user_id=user, k=5, query=query, deadline_ms=5000)
        where = Delivered(self.topics.rec_requests.name, time.monotonic(), self.incarnation)
        with self._lock:
            self.requests[rid] = where
        self._send(self.topics.rec_requests, user, request, where)

    def publish_poison(self, spec: TopicSpec, poison: Poison) -> None:
        """One poison message, its delivery remembered (a valid but refused event is also
        an ordinary event for the workers that accept it)."""
        where = Delivered(spec.name, time.monotonic(), self.incarnation)
        with self._lock:
            self.poisons.append(SentPoison(poison, spec.name, where, value_digest(poison.value)))
            if poison.kind == "store_refused" and poison.value is not None:
                self.events.append(self.serde.decode(poison.value, UserEvent))
        self._produce(spec, poison.key, poison.value, where)

    # ---- the steady load -----------------------------------------------------------------
    def start(self) -> None:
        self._running.set()
        self._thread = threading.Thread(target=self._run, name="chaos-load", daemon=True)
        self._thread.start()

    def pause(self) -> None:
        """Stop publishing (the thread stays) and wait for the delivery reports."""
        self._running.clear()
        time.sleep(0.2)
        with self._lock:
            self.flush()

    def resume(self) -> None:
        self._running.set()

    def stop(self) -> None:
        self._stop.set()
        self._running.set()
        if self._thread is not None:
            self._thread.join(30)
        self.flush()

    def _run(self) -> None:
        rates = {"event": self.event_rate, "request": self.request_rate}
        rates["catalog"] = self.catalog_rate
        due = dict.fromkeys(rates, time.monotonic())
        while not self._stop.is_set():
            if not self._running.wait(0.5):
                due = dict.fromkeys(rates, time.monotonic())
                continue
            if self._stop.is_set():
                break
            now = time.monotonic()
            with self._lock:
                for what, rate in rates.items():
                    while due[what] <= now:
                        due[what] += self.rng.expovariate(rate)
                        if what == "event":
                            self._event()
                        elif what == "request":
                            self._request()
                        else:
                            self._change(f"i{self.rng.randrange(self.n_items)}")
                self.producer.poll(0)
            time.sleep(0.02)


class Recorder:
    """Reads rec.responses and every DLQ from offset 0, without a group, in a thread."""

    def __init__(self, settings: Settings, incarnation: int) -> None:
        self.settings = settings
        self.incarnation = incarnation
        topics = Topics(settings)
        self.responses_topic = topics.rec_responses.name
        self.dlq_topics = [t.name for t in topics.data_topics() if t.dlq is not None]
        self.dlq_topics = [f"{t}.dlq" for t in self.dlq_topics]
        #: request_id → arrival times (monotonic) of its responses.
        self.answers: dict[str, list[float]] = {}
        self.letters: list[DeadLetter] = []
        self.undecodable = 0
        self.last_record_at = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-recorder", daemon=True)
        self._serde = AvroSerde()

    def start(self) -> Recorder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def quiet_for(self) -> float:
        """Seconds since the last record arrived."""
        return time.monotonic() - self.last_record_at

    def _run(self) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": self.settings.kafka_bootstrap,
                "group.id": f"chaos-recorder-{self.incarnation}-{time.time_ns()}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 20,
                "logger": logging.getLogger("librdkafka"),
            }
        )
        names = [self.responses_topic, *self.dlq_topics]
        md = consumer.list_topics(timeout=30)
        consumer.assign(
            [
                TopicPartition(name, p, 0)
                for name in names
                if name in md.topics
                for p in md.topics[name].partitions
            ]
        )
        try:
            while not self._stop.is_set():
                for msg in consumer.consume(500, 0.2):
                    if msg.error() is None:
                        self._record(msg)
        finally:
            consumer.close()

    def _record(self, msg: Message) -> None:
        self.last_record_at = time.monotonic()
        if msg.topic() == self.responses_topic:
            try:
                response = self._serde.decode(msg.value(), RecResponse)
            except Exception:
                self.undecodable += 1
                return
            self.answers.setdefault(response.request_id, []).append(time.monotonic())
        else:
            self.letters.append(parse_dlq_headers(headers_of(msg)))


def wait_for(
    predicate: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.5
) -> bool:
    """Poll ``predicate`` until true or ``timeout_s``; log (not raise) on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    log.warning("chaos: timed out after %.0fs waiting for %s", timeout_s, what)
    return False
