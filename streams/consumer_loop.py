"""The at-least-once consume → handle → produce → commit loop of confluent-kafka workers.

One batch at a time:

1. consume up to ``max_batch`` messages (the fetch wait bounds latency on Tansu);
2. decode each with the Avro serde; anything that does not decode or validate goes to
   its dead-letter topic with the reason (never crashes, never vanishes);
3. ``await handler(batch)`` — the domain call; it may produce through the shared
   producer;
4. flush the producer (outputs and dead letters acknowledged by the broker);
5. commit the batch's offsets.

Offsets are committed only after the handler's effects are durable, so a crash at any
point replays the batch; handlers make their effects idempotent. A worker whose effects
become durable later than its handler returns (the archive keeps an open file across
batches) passes ``committable`` to hold commits back to what is durable, and
``housekeeping`` to do time-driven work (roll a file, close windows) when no messages
arrive and once more at shutdown; commits follow each housekeeping call.

Failures are decided once, here: input that does not decode or validate (or fails the
worker's ``check``) is dead-lettered before the handler sees it; :class:`Retryable`
(Postgres away) retries the batch with backoff, partitions paused;
:class:`~recsys.exceptions.DataRejected` (the store refused a record) isolates and
dead-letters that record, the rest handled once (:mod:`streams.batch_failures`, which
also says which commit errors are lived with); a handler that handles records one by
one (serving) parks one itself with :meth:`ConsumerLoop.reject`; anything else is a bug
and stops the worker loudly, uncommitted.

The loop is where the generic metrics are kept (:mod:`streams.metrics`): messages
consumed and handled per topic, batch sizes and handle times, commits, retries, owned
partitions and the lag of each (dead letters are counted where they are sent,
:mod:`streams.dlq`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from recsys.exceptions import DataRejected, StreamrecError
from recsys.records import Record
from streams import admin
from streams.batch_failures import STORE_REJECTED, commit_may_fail, handle_isolating
from streams.dlq import DeadLetters
from streams.exceptions import BrokerUnavailable, SerializationError
from streams.kafka import consumer_config, poll_batch, poll_paused, resume_all
from streams.metrics import loop_metrics
from streams.producer import RecordProducer
from streams.settings import Settings
from streams.topics import TopicSpec

__all__ = [
    "STORE_REJECTED",
    "Check",
    "ConsumerLoop",
    "Inbound",
    "LoopStats",
    "Retryable",
    "headers_of",
    "where",
]

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Record)


class Retryable(StreamrecError):
    """A handler failure worth retrying the same batch for (transient I/O)."""


@dataclass(frozen=True)
class Inbound(Generic[R]):
    """One decoded input message and where it came from."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: R
    headers: list[tuple[str, bytes]]
    timestamp_ms: int
    #: The value exactly as consumed (wire bytes), for workers that keep it (archive).
    raw_value: bytes | None = None
    #: The topic's Kafka topic id — which incarnation of ``topic`` the offset belongs to —
    #: or None when the broker reports none. Store it beside any position kept outside
    #: Kafka: offsets restart at 0 when a topic is recreated (or the embedded broker,
    #: which keeps topics in memory, starts again).
    topic_id: str | None = None

    @property
    def source(self) -> str:
        """``topic[partition]@offset``."""
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass
class LoopStats:
    """Counters a loop keeps (shown by the demo and at shutdown)."""

    consumed: int = 0
    handled: int = 0
    dead_lettered: int = 0
    batches: int = 0
    retries: int = 0
    #: Batches split in two to find a record the store refused.
    splits: int = 0
    #: Commits refused because the group was rebalancing (the batch is handled again).
    commit_failures: int = 0
    commits: int = 0
    last_commit: dict[tuple[str, int], int] = field(default_factory=dict)


Handler = Callable[[list[Inbound[Any]]], Awaitable[None]]
#: Next offsets to commit → the part of them whose effects are durable.
Committable = Callable[[dict[tuple[str, int], int]], dict[tuple[str, int], int]]
#: Time-driven work; called with ``final=True`` once after ``stop`` is set.
Housekeeping = Callable[[bool], Awaitable[None]]
#: A worker's own rule on a decoded message: ``(reason, error)`` to dead-letter it, or None.
Check = Callable[["Inbound[Any]"], tuple[str, str] | None]


def where(msg: Message) -> tuple[str, int, int]:
    """``(topic, partition, offset)`` of a consumed message (never None once consumed)."""
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    assert topic is not None and partition is not None and offset is not None
    return topic, partition, offset


def headers_of(msg: Message) -> list[tuple[str, bytes]]:
    """The message's headers as ``(name, bytes)`` pairs."""
    raw = msg.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    out = []
    for key, value in pairs:
        if isinstance(value, str):
            value = value.encode()
        out.append((str(key), value or b""))
    return out


class ConsumerLoop:
    """Run ``handler`` over decoded batches of ``inputs`` with at-least-once commits."""

    def __init__(
        self,
        settings: Settings,
        *,
        worker: str,
        inputs: Sequence[TopicSpec],
        handler: Handler,
        producer: RecordProducer,
        latency_sensitive: bool = False,
        max_batch: int = 500,
        poll_timeout_s: float = 0.2,
        group_id: str | None = None,
        on_assign: Callable[[list[tuple[str, int]]], None] | None = None,
        on_revoke: Callable[[list[tuple[str, int]]], None] | None = None,
        consumer_overrides: dict[str, Any] | None = None,
        committable: Committable | None = None,
        housekeeping: Housekeeping | None = None,
        check: Check | None = None,
    ) -> None:
        self.settings = settings
        self.worker = worker
        self.inputs = {spec.name: spec for spec in inputs}
        self.handler = handler
        self.producer = producer
        self.max_batch = max_batch
        self.poll_timeout_s = poll_timeout_s
        self.group_id = group_id or f"{settings.topic_prefix}streamrec-{worker}"
        self.dead_letters = DeadLetters(producer, worker, self.group_id)
        self._check = check
        self.stats = LoopStats()
        self.metrics = loop_metrics()
        self._lag_at = 0.0
        #: Messages behind the end per owned partition, as of the last fetch.
        self.lags: dict[tuple[str, int], int] = {}
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._assigned: set[tuple[str, int]] = set()
        self._committable = committable
        self._housekeeping = housekeeping
        #: Next offset per partition that was consumed and handled (maybe not committed).
        self._positions: dict[tuple[str, int], int] = {}
        self._conf = consumer_config(
            settings,
            self.group_id,
            latency_sensitive=latency_sensitive,
            logger=logging.getLogger("librdkafka"),
            **(consumer_overrides or {}),
        )
        self._consumer: Consumer | None = None
        #: Topic id per input topic, resolved after each assignment (a recreated topic
        #: comes back through a rebalance with a new id).
        self._topic_ids: dict[str, str | None] = {}
        self._last_topic_ids: dict[str, str | None] = {}

    # ---- rebalance --------------------------------------------------------------------
    def _assign_cb(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        self._assigned |= set(tps)
        for topic, _ in tps:
            self._topic_ids.pop(topic, None)  # resolved again before the next batch
        self._count_assigned()
        log.info("%s assigned %s", self.worker, tps)
        if self._on_assign:
            self._on_assign(tps)

    def _revoke_cb(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        self._assigned -= set(tps)
        for tp in tps:
            self._positions.pop(tp, None)
            self.lags.pop(tp, None)
            self.metrics.lag.labels(self.worker, tp[0], str(tp[1])).set(0)
        self._count_assigned()
        log.info("%s revoked %s", self.worker, tps)
        if self._on_revoke:
            self._on_revoke(tps)

    def _count_assigned(self) -> None:
        for topic in self.inputs:
            n = sum(1 for t, _ in self._assigned if t == topic)
            self.metrics.assigned.labels(self.worker, topic).set(n)

    def _update_lag(self, consumer: Consumer) -> None:
        """Lag per owned partition from the cached high watermark of the last fetch.

        No broker call: librdkafka keeps the watermark of every fetch response. On Tansu
        the watermark is the base offset of the last record batch + 1, so the lag reads
        low by up to one producer batch (:mod:`streams.lag` has the exact figure).
        """
        self._lag_at = time.monotonic()
        for topic, partition in list(self._assigned):
            position = self._positions.get((topic, partition))
            if position is None:
                continue
            try:
                _, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), cached=True
                )
            except KafkaException:
                continue
            if high is None or high < 0:
                continue
            lag = max(0, int(high) - position)
            self.lags[(topic, partition)] = lag
            self.metrics.lag.labels(self.worker, topic, str(partition)).set(lag)

    @property
    def assigned(self) -> set[tuple[str, int]]:
        """Partitions currently owned by this loop."""
        return set(self._assigned)

    # ---- topic incarnations ---------------------------------------------------------
    def topic_id(self, topic: str) -> str | None:
        """The resolved topic id of an input topic (None: unknown or not resolved yet)."""
        return self._topic_ids.get(topic)

    def _resolve_topic_ids(self, topics: set[str]) -> None:
        """Describe the topics whose id is not known since their last assignment."""
        missing = [t for t in topics if t not in self._topic_ids]
        if not missing:
            return
        for attempt in range(5):
            try:
                found = admin.topic_ids(self.settings, missing)
                break
            except BrokerUnavailable as exc:
                if attempt == 4:
                    raise
                log.warning("%s: cannot resolve topic ids yet (%s); retrying", self.worker, exc)
                time.sleep(0.5 * (attempt + 1))
        for topic in missing:
            topic_id = found.get(topic)
            previous = self._last_topic_ids.get(topic)
            if topic_id is None:
                log.warning(
                    "%s: the broker reports no topic id for %s, so a recreated topic cannot "
                    "be told apart from the old one (positions stored outside Kafka assume "
                    "the same incarnation)",
                    self.worker,
                    topic,
                )
            elif topic in self._last_topic_ids and previous != topic_id:
                log.warning(
                    "%s: %s is a new incarnation of the topic (topic id %s, was %s): it "
                    "was deleted and created again, its offsets started again at 0",
                    self.worker,
                    topic,
                    topic_id,
                    previous,
                )
            self._topic_ids[topic] = topic_id
            self._last_topic_ids[topic] = topic_id

    # ---- decoding ---------------------------------------------------------------------
    def _decode(self, msg: Message) -> Inbound[Any] | None:
        """Decode one message, or dead-letter it and return None."""
        topic, partition, offset = where(msg)
        spec = self.inputs[topic]
        raw_key = msg.key()
        headers = headers_of(msg)
        try:
            key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
        except UnicodeDecodeError as exc:
            self._dead_letter(spec, msg, "bad_key", f"key is not UTF-8: {exc}")
            return None
        assert spec.value is not None
        try:
            value = self.producer.serde.decode(msg.value(), spec.value)
        except SerializationError as exc:
            self._dead_letter(spec, msg, exc.reason, str(exc))
            return None
        inbound = Inbound(
            topic=topic,
            partition=partition,
            offset=offset,
            key=key,
            value=value,
            headers=headers,
            timestamp_ms=msg.timestamp()[1],
            raw_value=msg.value(),
            topic_id=self._topic_ids.get(topic),
        )
        if self._check is not None and (failed := self._check(inbound)) is not None:
            self.reject(inbound, *failed)
            return None
        return inbound

    def _dead_letter(self, spec: TopicSpec, msg: Message, reason: str, error: str) -> None:
        _, partition, offset = where(msg)
        self.dead_letters.send(
            spec,
            key=msg.key(),
            value=msg.value(),
            partition=partition,
            offset=offset,
            reason=reason,
            error=error,
            headers=headers_of(msg),
            topic_id=self._topic_ids.get(spec.name),
        )
        self.stats.dead_lettered += 1

    def reject(self, inbound: Inbound[Any], reason: str, error: str) -> None:
        """Dead-letter one decoded message (its original bytes) with ``reason``.

        For handlers that handle each record on its own (serving): the record is parked,
        the rest of the batch goes on, and the batch is committed past it.
        """
        self.dead_letters.send(
            self.inputs[inbound.topic],
            key=inbound.key,
            value=inbound.raw_value,
            partition=inbound.partition,
            offset=inbound.offset,
            reason=reason,
            error=error,
            headers=inbound.headers,
            topic_id=inbound.topic_id,
        )
        self.stats.dead_lettered += 1

    # ---- the loop ---------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> LoopStats:
        """Consume until ``stop`` is set; commit what was handled; close the consumer."""
        consumer = Consumer(self._conf)
        self._consumer = consumer
        consumer.subscribe(list(self.inputs), on_assign=self._assign_cb, on_revoke=self._revoke_cb)
        loop = asyncio.get_running_loop()
        try:
            while not stop.is_set():
                messages: list[Message] = await loop.run_in_executor(
                    None, poll_batch, consumer, self.max_batch, self.poll_timeout_s
                )
                if messages:
                    await self._process(consumer, messages, stop)
                else:
                    if self._housekeeping is not None:
                        await self._housekeep(consumer, final=False)
                    if time.monotonic() - self._lag_at > 1.0:
                        self._update_lag(consumer)
            if self._housekeeping is not None:
                await self._housekeep(consumer, final=True)
        finally:
            await loop.run_in_executor(None, consumer.close)
            self._consumer = None
            log.info("%s stopped: %s", self.worker, self.stats)
        return self.stats

    async def _process(
        self, consumer: Consumer, messages: list[Message], stop: asyncio.Event
    ) -> None:
        batch: list[Inbound[Any]] = []
        offsets: dict[tuple[str, int], int] = {}
        per_topic: dict[str, int] = {}
        topics = {msg.topic() for msg in messages if msg.error() is None}
        if any(t not in self._topic_ids for t in topics):
            await asyncio.get_running_loop().run_in_executor(
                None, self._resolve_topic_ids, {t for t in topics if t is not None}
            )
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                if err.fatal() or not err.retriable():
                    log.error("%s consumer error: %s", self.worker, err.str())
                continue
            self.stats.consumed += 1
            topic, partition, offset = where(msg)
            per_topic[topic] = per_topic.get(topic, 0) + 1
            offsets[(topic, partition)] = offset + 1
            inbound = self._decode(msg)
            if inbound is not None:
                batch.append(inbound)
        for topic, n in per_topic.items():
            self.metrics.consumed.labels(self.worker, topic).inc(n)
        if batch:
            await self._handle_isolating(consumer, batch, stop)
        # effects durable before the commit: outputs and dead letters acknowledged
        await asyncio.get_running_loop().run_in_executor(None, self.producer.flush)
        self._positions.update(offsets)
        # a synchronous commit is a broker round trip: off the loop, so that concurrent
        # handlers (serving) keep running while it is on the wire
        await asyncio.get_running_loop().run_in_executor(
            None, self._commit, consumer, self._due_commits()
        )
        self._update_lag(consumer)

    async def _housekeep(self, consumer: Consumer, *, final: bool) -> None:
        assert self._housekeeping is not None
        await self._housekeeping(final)
        await asyncio.get_running_loop().run_in_executor(None, self.producer.flush)
        await asyncio.get_running_loop().run_in_executor(
            None, self._commit, consumer, self._due_commits()
        )

    def _due_commits(self) -> dict[tuple[str, int], int]:
        """Positions (held back to what is durable) not committed yet."""
        positions = dict(self._positions)
        if self._committable is not None:
            positions = self._committable(positions)
        return {
            tp: off for tp, off in positions.items() if off > self.stats.last_commit.get(tp, -1)
        }

    async def _handle_isolating(
        self, consumer: Consumer, batch: list[Inbound[Any]], stop: asyncio.Event
    ) -> None:
        """Handle ``batch``; a record the store refuses is found by halving and parked."""

        async def handle(part: list[Inbound[Any]]) -> None:
            await self._handle_with_retry(consumer, part, stop)

        def split(size: int, exc: DataRejected) -> None:
            self.stats.splits += 1
            log.warning(
                "%s: the store refused a record in a batch of %d (%s); handling it in halves",
                self.worker,
                size,
                str(exc)[:300],
            )

        await handle_isolating(handle, batch, self.reject, split)

    async def _handle_with_retry(
        self, consumer: Consumer, batch: list[Inbound[Any]], stop: asyncio.Event
    ) -> None:
        delay = 0.2
        paused: list[TopicPartition] = []
        started = time.perf_counter()
        try:
            while True:
                try:
                    await self.handler(batch)
                    self.stats.handled += len(batch)
                    self.stats.batches += 1
                    self._count_handled(batch, time.perf_counter() - started)
                    return
                except Retryable as exc:
                    self.stats.retries += 1
                    self.metrics.retries.labels(self.worker).inc()
                    paused = poll_paused(consumer, paused)
                    log.warning(
                        "%s: retrying a batch of %d in %.1fs: %s",
                        self.worker,
                        len(batch),
                        delay,
                        exc,
                    )
                    deadline = time.monotonic() + delay
                    while time.monotonic() < deadline:
                        # keep group membership alive (max.poll.interval) while paused
                        paused = poll_paused(consumer, paused)
                        await asyncio.sleep(min(0.1, delay))
                    delay = min(delay * 2, 10.0)
                    if stop.is_set():
                        raise
        finally:
            if paused:
                resume_all(consumer, paused)

    def _count_handled(self, batch: list[Inbound[Any]], seconds: float) -> None:
        m = self.metrics
        per_topic: dict[str, int] = {}
        for inbound in batch:
            per_topic[inbound.topic] = per_topic.get(inbound.topic, 0) + 1
        for topic, n in per_topic.items():
            m.handled.labels(self.worker, topic).inc(n)
        m.batches.labels(self.worker).inc()
        m.batch_size.labels(self.worker).observe(len(batch))
        m.handle_seconds.labels(self.worker).observe(seconds)

    def _commit(self, consumer: Consumer, offsets: dict[tuple[str, int], int]) -> None:
        owned = {tp: off for tp, off in offsets.items() if tp in self._assigned}
        if not owned:
            return
        try:
            consumer.commit(
                offsets=[TopicPartition(t, p, off) for (t, p), off in owned.items()],
                asynchronous=False,
            )
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if not isinstance(err, KafkaError) or not commit_may_fail(err):
                raise
            # the group moved on (a session timed out, a rebalance began): the partitions'
            # next owner resumes from the last committed offset and handles this batch
            # again — at least once, as after a crash; the next commit retries the rest
            self.stats.commit_failures += 1
            log.warning(
                "%s: commit of %s failed (%s); their next owner handles them again",
                self.worker,
                sorted(owned),
                err.str(),
            )
            return
        self.stats.commits += 1
        self.metrics.commits.labels(self.worker).inc()
        self.stats.last_commit.update(owned)
