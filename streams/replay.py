"""Reading a range of a topic from Kafka, and publishing messages to another topic
with the same keys, values and headers.

A range is a set of partitions plus half-open offset and timestamp bounds
(:class:`ReplayRange`). Reading from Kafka uses a throw-away consumer that commits
nothing: each partition is read from its start (``offsets_for_times`` narrows it when a
timestamp bound is given; Tansu answers 0, which is still a correct lower bound) up to
its end offset at the moment the read starts (corrected for Tansu's watermarks), and
timestamps are filtered message by message (Kafka timestamps need not be monotonic).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from confluent_kafka import Consumer, Message, TopicPartition

from recsys.archive import ArchivedMessage
from recsys.exceptions import InvalidRange
from streams import admin
from streams.consumer_loop import headers_of, where
from streams.exceptions import BrokerUnavailable, SerializationError
from streams.kafka import consumer_config
from streams.lag import end_offsets
from streams.producer import RecordProducer
from streams.serde import AvroSerde
from streams.settings import Settings
from streams.topics import TopicSpec
from streams.wire import archived_from_raw, wire_bytes

__all__ = ["REPLAY_SOURCE_HEADER", "KafkaRangeReader", "ReplayRange", "publish", "target_spec"]

log = logging.getLogger(__name__)

REPLAY_SOURCE_HEADER = "replay.source"


@dataclass(frozen=True)
class ReplayRange:
    """Which messages: partitions (None = all), ``[from_offset, to_offset)`` per
    partition, ``[since_ms, until_ms)`` by Kafka timestamp."""

    partitions: frozenset[int] | None = None
    from_offset: int | None = None
    to_offset: int | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def __post_init__(self) -> None:
        if self.from_offset is not None and self.from_offset < 0:
            raise InvalidRange(f"--from-offset must be 0 or more, got {self.from_offset}")
        if self.to_offset is not None and self.to_offset < 0:
            raise InvalidRange(f"--to-offset must be 0 or more, got {self.to_offset}")
        if (
            self.from_offset is not None
            and self.to_offset is not None
            and self.from_offset >= self.to_offset
        ):
            raise InvalidRange(
                f"empty offset range [{self.from_offset}, {self.to_offset}): --from-offset "
                "must be below --to-offset"
            )
        if (
            self.since_ms is not None
            and self.until_ms is not None
            and self.since_ms >= self.until_ms
        ):
            raise InvalidRange("empty time range: --since must be before --until")

    def keeps(self, message: ArchivedMessage) -> bool:
        """True when ``message`` is inside the range."""
        if self.partitions is not None and message.partition not in self.partitions:
            return False
        if self.from_offset is not None and message.offset < self.from_offset:
            return False
        if self.to_offset is not None and message.offset >= self.to_offset:
            return False
        if self.since_ms is not None and message.timestamp_ms < self.since_ms:
            return False
        return self.until_ms is None or message.timestamp_ms < self.until_ms


class KafkaRangeReader:
    """Reads a :class:`ReplayRange` of one topic from the broker."""

    def __init__(self, settings: Settings, spec: TopicSpec, serde: AvroSerde) -> None:
        self.settings = settings
        self.spec = spec
        self.serde = serde
        self.undecodable = 0
        self._plan: dict[int, tuple[int, int]] | None = None

    def _consumer(self) -> Consumer:
        return Consumer(
            consumer_config(
                self.settings,
                f"{self.settings.topic_prefix}streamrec-replay-{uuid.uuid4().hex[:8]}",
                latency_sensitive=False,
                logger=logging.getLogger("librdkafka"),
            )
        )

    def plan(self, rng: ReplayRange) -> dict[int, tuple[int, int]]:
        """``{partition: (start, end)}`` offsets to read.

        Raises:
            InvalidRange: the topic or a requested partition does not exist.
        """
        consumer = self._consumer()
        try:
            timeout = self.settings.admin_timeout_s
            md = consumer.list_topics(self.spec.name, timeout=timeout)
            topic = md.topics.get(self.spec.name)
            if topic is None or topic.error is not None or not topic.partitions:
                raise InvalidRange(f"topic {self.spec.name} does not exist on the broker")
            existing = sorted(topic.partitions)
            wanted = existing if rng.partitions is None else sorted(rng.partitions)
            missing = [p for p in wanted if p not in topic.partitions]
            if missing:
                raise InvalidRange(
                    f"{self.spec.name} has partitions {existing}; no partition {missing}"
                )
            ends = end_offsets(consumer, self.spec.name, wanted, timeout)
            starts = {p: 0 for p in wanted}
            if rng.since_ms is not None:
                found = consumer.offsets_for_times(
                    [TopicPartition(self.spec.name, p, rng.since_ms) for p in wanted],
                    timeout=timeout,
                )
                for tp in found:
                    starts[tp.partition] = ends[tp.partition] if tp.offset < 0 else tp.offset
            plan = {}
            for p in wanted:
                start = max(starts[p], rng.from_offset or 0)
                end = min(ends[p], rng.to_offset) if rng.to_offset is not None else ends[p]
                if start < end:
                    plan[p] = (start, end)
            self._plan = plan
            return plan
        finally:
            consumer.close()

    def read(
        self, rng: ReplayRange, on_message: Callable[[int], None] | None = None
    ) -> Iterator[ArchivedMessage]:
        """Messages of the range, each partition in offset order; ``on_message(1)`` is
        called per message read (progress)."""
        plan = self._plan if self._plan is not None else self.plan(rng)
        if not plan:
            return
        consumer = self._consumer()
        try:
            consumer.assign([TopicPartition(self.spec.name, p, s) for p, (s, _) in plan.items()])
            pending = set(plan)
            idle_deadline = time.monotonic() + 30.0
            while pending:
                messages = consumer.consume(500, 0.5)
                if not messages:
                    # past the end without seeing its last offset (a gap, a marker)
                    positions = consumer.position(
                        [TopicPartition(self.spec.name, p) for p in pending]
                    )
                    pending -= {
                        tp.partition for tp in positions if tp.offset >= plan[tp.partition][1]
                    }
                    if pending and time.monotonic() > idle_deadline:
                        raise BrokerUnavailable(
                            f"replay of {self.spec.name}: no data for 30 s with partitions "
                            f"{sorted(pending)} unfinished"
                        )
                for msg in messages:
                    if msg.error() is not None:
                        continue
                    idle_deadline = time.monotonic() + 30.0
                    _, partition, offset = where(msg)
                    end = plan[partition][1]
                    if offset >= end or partition not in pending:
                        continue
                    if offset == end - 1:
                        pending.discard(partition)
                    if on_message:
                        on_message(1)
                    message = self._convert(msg, partition, offset)
                    if message is not None and rng.keeps(message):
                        yield message
        finally:
            consumer.close()

    def _convert(self, msg: Message, partition: int, offset: int) -> ArchivedMessage | None:
        key = msg.key()
        try:
            return archived_from_raw(
                topic=self.spec.name,
                partition=partition,
                offset=offset,
                timestamp_ms=msg.timestamp()[1],
                key=key.encode() if isinstance(key, str) else key,
                headers=headers_of(msg),
                value=msg.value() or b"",
                spec=self.spec,
                serde=self.serde,
            )
        except (SerializationError, UnicodeDecodeError) as exc:
            self.undecodable += 1
            log.warning("replay: skipping %s[%d]@%d: %s", self.spec.name, partition, offset, exc)
            return None


def target_spec(name: str, partitions: int) -> TopicSpec:
    """A topic outside the catalogue to publish replayed messages to."""
    return TopicSpec(
        base=name,
        name=name,
        key="as replayed",
        value=None,
        partitions=partitions,
        description="Target of a replay.",
    )


def publish(
    settings: Settings,
    messages: Iterable[ArchivedMessage],
    target: TopicSpec,
    producer: RecordProducer,
    on_message: Callable[[int], None] | None = None,
) -> int:
    """Publish messages byte for byte (same key, value, headers and timestamp, plus a
    ``replay.source`` header naming the original ``topic[partition]@offset``).

    The target topic is created (with ``target.partitions``) when missing, so that keys
    land on the same partition numbers as in a source with that many partitions.
    """
    admin.ensure_topics(settings, [target])
    count = 0
    for message in messages:
        headers = [*message.headers, (REPLAY_SOURCE_HEADER, message.source.encode())]
        producer.send_raw(
            target, message.key, wire_bytes(message), headers, timestamp_ms=message.timestamp_ms
        )
        count += 1
        if on_message:
            on_message(1)
    producer.flush()
    return count
