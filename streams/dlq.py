"""Dead letters: bad input is parked with the reason, never crashes a worker, never vanishes.

A message that does not decode or does not validate, or whose values the store
refuses, is copied byte-for-byte to ``<topic>.dlq`` with the original key and headers,
plus ``dlq.*`` headers naming the reason, the source ``topic[partition]@offset`` (with
the topic's id when the broker reports one), the worker and its consumer group, and a
SHA-256 of the value. The worker then commits past it.

Every consumer group that reads a bad message dead-letters it once (``user.events`` is
read by users, feedback and archive: three dead letters), and a crash between the dead
letter and the commit sends it again. :attr:`DeadLetter.source_key` names the source
message whoever sent the letter, so ``streamrec dlq replay`` re-publishes each source
message once (``jobs/dlq.py``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from recsys.records import utcnow
from streams.metrics import loop_metrics
from streams.producer import RecordProducer
from streams.topics import TopicSpec

__all__ = ["DeadLetter", "DeadLetters", "dlq_headers", "parse_dlq_headers", "value_digest"]

log = logging.getLogger(__name__)

H_REASON = "dlq.reason"
H_ERROR = "dlq.error"
H_TOPIC = "dlq.source.topic"
H_PARTITION = "dlq.source.partition"
H_OFFSET = "dlq.source.offset"
H_WORKER = "dlq.worker"
H_GROUP = "dlq.group"
H_TOPIC_ID = "dlq.source.topic_id"
H_SHA256 = "dlq.source.sha256"
H_AT = "dlq.failed_at"


def value_digest(value: bytes | None) -> str:
    """Hex SHA-256 of a message value (``""`` for a tombstone)."""
    return hashlib.sha256(value).hexdigest() if value is not None else ""


@dataclass(frozen=True)
class DeadLetter:
    """The error headers of one dead letter, parsed back."""

    reason: str
    error: str
    topic: str
    partition: int
    offset: int
    worker: str
    failed_at: str
    group: str = ""
    topic_id: str = ""
    sha256: str = ""

    @property
    def source(self) -> str:
        """``topic[partition]@offset`` of the original message."""
        return f"{self.topic}[{self.partition}]@{self.offset}"

    @property
    def source_key(self) -> tuple[str, str, int, int, str]:
        """The source message's identity, the same in every group's dead letter of it:
        topic, topic id (which incarnation of the topic), partition, offset, value digest
        (which tells incarnations apart where the broker reports no topic id)."""
        return (self.topic, self.topic_id, self.partition, self.offset, self.sha256)


def dlq_headers(
    *,
    reason: str,
    error: str,
    topic: str,
    partition: int,
    offset: int,
    worker: str,
    original: Sequence[tuple[str, bytes | None]] | None = None,
    group: str = "",
    topic_id: str | None = None,
    sha256: str = "",
) -> list[tuple[str, bytes]]:
    """Original headers (minus any earlier ``dlq.*``) plus our error headers."""
    kept = [(k, v or b"") for k, v in (original or []) if not k.startswith("dlq.")]
    return [
        *kept,
        (H_REASON, reason.encode()),
        (H_ERROR, error[:4000].encode()),
        (H_TOPIC, topic.encode()),
        (H_PARTITION, str(partition).encode()),
        (H_OFFSET, str(offset).encode()),
        (H_TOPIC_ID, (topic_id or "").encode()),
        (H_SHA256, sha256.encode()),
        (H_WORKER, worker.encode()),
        (H_GROUP, group.encode()),
        (H_AT, utcnow().isoformat().encode()),
    ]


def parse_dlq_headers(headers: Sequence[tuple[str, bytes | None]] | None) -> DeadLetter:
    """Read the ``dlq.*`` headers of a dead letter."""
    h = {k: (v or b"").decode() for k, v in headers or []}
    return DeadLetter(
        reason=h.get(H_REASON, ""),
        error=h.get(H_ERROR, ""),
        topic=h.get(H_TOPIC, ""),
        partition=int(h.get(H_PARTITION, "-1")),
        offset=int(h.get(H_OFFSET, "-1")),
        worker=h.get(H_WORKER, ""),
        failed_at=h.get(H_AT, ""),
        group=h.get(H_GROUP, ""),
        topic_id=h.get(H_TOPIC_ID, ""),
        sha256=h.get(H_SHA256, ""),
    )


class DeadLetters:
    """Sends dead letters for one worker (and consumer group) through a shared producer."""

    def __init__(self, producer: RecordProducer, worker: str, group: str = "") -> None:
        self.producer = producer
        self.worker = worker
        self.group = group
        self.count = 0

    def send(
        self,
        spec: TopicSpec,
        *,
        key: bytes | str | None,
        value: bytes | None,
        partition: int,
        offset: int,
        reason: str,
        error: str,
        headers: Sequence[tuple[str, bytes | None]] | None = None,
        topic_id: str | None = None,
    ) -> None:
        """Queue the original bytes on ``spec``'s DLQ; the caller flushes before committing."""
        if spec.dlq is None:  # pragma: no cover - every data topic has one
            raise ValueError(f"{spec.name} has no dead-letter topic")
        log.warning(
            "dead letter %s[%d]@%d → %s: %s (%s)",
            spec.name,
            partition,
            offset,
            spec.dlq.name,
            reason,
            error[:300],
        )
        self.producer.send_raw(
            spec.dlq,
            key,
            value,
            dlq_headers(
                reason=reason,
                error=error,
                topic=spec.name,
                partition=partition,
                offset=offset,
                worker=self.worker,
                original=headers,
                group=self.group,
                topic_id=topic_id,
                sha256=value_digest(value),
            ),
        )
        self.count += 1
        loop_metrics().dead_lettered.labels(self.worker, spec.name, reason).inc()
