"""Reading a dead-letter topic back, one entry per source message.

A bad message is dead-lettered once by every consumer group that reads it (three times
for a poisoned ``user.events`` message: users, feedback, archive), and again after a
crash between the dead letter and the commit. :func:`by_source` groups the letters by
:attr:`~streams.dlq.DeadLetter.source_key` — topic, topic id, partition, offset and value
digest, the same in every group's letter — so that tooling (``streamrec dlq``) sees each
source message once, with every group that refused it and why.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from confluent_kafka import Consumer, TopicPartition

from streams.consumer_loop import headers_of, where
from streams.dlq import DeadLetter, parse_dlq_headers
from streams.exceptions import BrokerUnavailable
from streams.kafka import consumer_config
from streams.lag import end_offsets
from streams.settings import Settings

__all__ = ["DeadMessage", "SourceMessage", "by_source", "read_dead_letters"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeadMessage:
    """One record of a ``.dlq`` topic: the original bytes and the letter's headers."""

    letter: DeadLetter
    key: bytes | None
    value: bytes | None
    #: The original message's headers (the ``dlq.*`` ones removed).
    headers: list[tuple[str, bytes]]
    timestamp_ms: int
    #: Where the letter itself sits: ``<topic>.dlq[partition]@offset``.
    position: str


@dataclass
class SourceMessage:
    """One source message and every dead letter of it."""

    first: DeadMessage
    letters: list[DeadMessage] = field(default_factory=list)

    @property
    def groups(self) -> list[str]:
        """The consumer groups that dead-lettered it (each once)."""
        return sorted({m.letter.group or m.letter.worker for m in self.letters})

    @property
    def redeliveries(self) -> int:
        """Letters beyond one per group (sent again after a crash before the commit)."""
        return len(self.letters) - len(self.groups)


def read_dead_letters(
    settings: Settings, dlq_topic: str, idle_timeout_s: float = 30.0
) -> list[DeadMessage]:
    """Every record of ``dlq_topic`` up to its end at the time of the call.

    Raises:
        BrokerUnavailable: the topic does not exist, or no data came for ``idle_timeout_s``.
    """
    consumer = Consumer(
        consumer_config(
            settings,
            f"{settings.topic_prefix}streamrec-dlq-read-{uuid.uuid4().hex[:8]}",
            latency_sensitive=False,
            logger=logging.getLogger("librdkafka"),
        )
    )
    out: list[DeadMessage] = []
    try:
        md = consumer.list_topics(dlq_topic, timeout=settings.admin_timeout_s)
        topic = md.topics.get(dlq_topic)
        if topic is None or topic.error is not None or not topic.partitions:
            raise BrokerUnavailable(f"topic {dlq_topic} does not exist on the broker")
        ends = end_offsets(consumer, dlq_topic, list(topic.partitions), settings.admin_timeout_s)
        pending = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(dlq_topic, p, 0) for p in pending])
        deadline = time.monotonic() + idle_timeout_s
        while pending:
            messages = consumer.consume(500, 0.5)
            if not messages and time.monotonic() > deadline:
                raise BrokerUnavailable(
                    f"reading {dlq_topic}: no data for {idle_timeout_s:.0f}s with partitions "
                    f"{sorted(pending)} unfinished"
                )
            for msg in messages:
                if msg.error() is not None:
                    continue
                deadline = time.monotonic() + idle_timeout_s
                _, partition, offset = where(msg)
                if partition not in pending or offset >= ends[partition]:
                    continue
                if offset == ends[partition] - 1:
                    pending.discard(partition)
                headers = headers_of(msg)
                key = msg.key()
                out.append(
                    DeadMessage(
                        letter=parse_dlq_headers(headers),
                        key=key.encode() if isinstance(key, str) else key,
                        value=msg.value(),
                        headers=[(k, v) for k, v in headers if not k.startswith("dlq.")],
                        timestamp_ms=msg.timestamp()[1],
                        position=f"{dlq_topic}[{partition}]@{offset}",
                    )
                )
    finally:
        consumer.close()
    return out


def by_source(messages: Iterable[DeadMessage]) -> list[SourceMessage]:
    """Letters grouped by source message, in the order the sources were first seen."""
    sources: dict[tuple[str, str, int, int, str], SourceMessage] = {}
    for message in messages:
        entry = sources.setdefault(message.letter.source_key, SourceMessage(message))
        entry.letters.append(message)
    return list(sources.values())
