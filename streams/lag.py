"""Consumer-group lag and topic sizes, for the demo summary, `doctor` and benchmarks.

Tansu 0.6 reports a partition's high watermark as *the base offset of its last record
batch + 1*, not the offset after its last record: after one producer batch of ten
messages it says 1, not 10. :func:`end_offsets` corrects this by reading the last batch
(one short fetch per partition); on Apache Kafka the correction changes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, TopicPartition

from streams.kafka import consumer_config
from streams.settings import Settings

__all__ = ["GroupLag", "end_offsets", "group_lag", "topic_sizes"]


@dataclass(frozen=True)
class GroupLag:
    """Committed position versus end offset, summed over a topic's partitions."""

    group: str
    topic: str
    end: int
    committed: int

    @property
    def lag(self) -> int:
        return max(0, self.end - self.committed)


def _probe_consumer(settings: Settings, group: str) -> Consumer:
    return Consumer(
        consumer_config(
            settings, group, latency_sensitive=True, logger=logging.getLogger("librdkafka")
        )
    )


def end_offsets(
    consumer: Consumer, topic: str, partitions: Iterable[int], timeout_s: float = 10.0
) -> dict[int, int]:
    """The offset after the last record of each partition (corrected for Tansu)."""
    out: dict[int, int] = {}
    for p in partitions:
        _, high = consumer.get_watermark_offsets(
            TopicPartition(topic, p), timeout=timeout_s, cached=False
        )
        out[p] = int(high or 0)
    probe = {p: h for p, h in out.items() if h > 0}
    if not probe:
        return out
    # A record batch is fetched whole: once one record of the last batch is here, the
    # rest of it is in the local queue too.
    consumer.assign([TopicPartition(topic, p, h - 1) for p, h in probe.items()])
    pending = set(probe)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        messages = consumer.consume(1000, 0.1 if pending else 0)
        for msg in messages:
            part, off = msg.partition(), msg.offset()
            if msg.error() is None and part is not None and off is not None:
                out[part] = max(out[part], off + 1)
                pending.discard(part)
        if not pending and not messages:
            break
    consumer.unassign()
    return out


def topic_sizes(settings: Settings, topics: Iterable[str]) -> dict[str, int]:
    """Messages ever written per topic (the memory broker never trims)."""
    consumer = _probe_consumer(settings, "streamrec-probe")
    out: dict[str, int] = {}
    try:
        md = consumer.list_topics(timeout=settings.admin_timeout_s)
        for name in topics:
            topic = md.topics.get(name)
            if topic is None or topic.error is not None:
                out[name] = 0
                continue
            ends = end_offsets(consumer, name, list(topic.partitions), settings.admin_timeout_s)
            out[name] = sum(ends.values())
    finally:
        consumer.close()
    return out


def group_lag(settings: Settings, group: str, topics: Iterable[str]) -> list[GroupLag]:
    """Lag of ``group`` on each topic (committed offsets read without joining the group)."""
    consumer = _probe_consumer(settings, group)
    out = []
    try:
        md = consumer.list_topics(timeout=settings.admin_timeout_s)
        for name in topics:
            topic = md.topics.get(name)
            if topic is None or topic.error is not None:
                continue
            tps = [TopicPartition(name, p) for p in topic.partitions]
            try:
                committed = consumer.committed(tps, timeout=settings.admin_timeout_s)
            except KafkaException:
                committed = tps
            ends = end_offsets(consumer, name, list(topic.partitions), settings.admin_timeout_s)
            position = sum(tp.offset for tp in committed if tp.offset >= 0)
            out.append(GroupLag(group, name, sum(ends.values()), position))
    finally:
        consumer.close()
    return out
