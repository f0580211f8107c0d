"""Which offsets a pipelined consumer may commit: in order, up to the first unfinished one.

Inputs of a partition finish out of order when they are handled concurrently; Kafka
keeps one committed position per partition, and committing past an unfinished input
would lose it on a crash. :class:`OffsetTracker` keeps, per partition, the offsets
started and not finished, and the highest offset started; the committable position is
the lowest unfinished offset, or one past the highest started when none is unfinished.
Each start is stamped with the partition's *epoch*, which :meth:`~OffsetTracker.drop`
advances: an input of a revoked partition that finishes after the partition was assigned
again (and the same offset consumed again) cannot mark the new input done.

Thread-safe: inputs finish on the event loop while a rebalance callback (librdkafka's
poll thread) may drop partitions.
"""

from __future__ import annotations

import heapq
import threading

__all__ = ["OffsetTracker"]

TopicPartitionKey = tuple[str, int]


class OffsetTracker:
    """Started/finished offsets per partition and the contiguous prefix that is done."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: per partition: a min-heap of unfinished offsets (lazily cleaned) and the set
        self._heap: dict[TopicPartitionKey, list[int]] = {}
        self._open: dict[TopicPartitionKey, set[int]] = {}
        self._next: dict[TopicPartitionKey, int] = {}
        self._epoch: dict[TopicPartitionKey, int] = {}

    def start(self, tp: TopicPartitionKey, offset: int) -> int:
        """``offset`` of ``tp`` was consumed and is being handled; returns the epoch
        that :meth:`finish` must name."""
        with self._lock:
            heapq.heappush(self._heap.setdefault(tp, []), offset)
            self._open.setdefault(tp, set()).add(offset)
            self._next[tp] = max(self._next.get(tp, 0), offset + 1)
            return self._epoch.get(tp, 0)

    def finish(self, tp: TopicPartitionKey, offset: int, epoch: int = 0) -> bool:
        """``offset`` is done (effects durable); False if ``tp`` is no longer tracked or
        was dropped since ``epoch`` (the input of an earlier assignment)."""
        with self._lock:
            pending = self._open.get(tp)
            if pending is None or offset not in pending or self._epoch.get(tp, 0) != epoch:
                return False
            pending.discard(offset)
            heap = self._heap[tp]
            while heap and heap[0] not in pending:
                heapq.heappop(heap)
            return True

    def committable(self) -> dict[TopicPartitionKey, int]:
        """Per partition, the next offset to commit (everything below it is done)."""
        with self._lock:
            return {
                tp: (self._heap[tp][0] if self._heap.get(tp) else nxt)
                for tp, nxt in self._next.items()
            }

    def in_flight(self, tp: TopicPartitionKey | None = None) -> int:
        """Inputs started and not finished (of ``tp``, or of every partition)."""
        with self._lock:
            if tp is not None:
                return len(self._open.get(tp, ()))
            return sum(len(s) for s in self._open.values())

    def drop(self, tps: list[TopicPartitionKey]) -> None:
        """Forget partitions (revoked): what finishes for them later is ignored."""
        with self._lock:
            for tp in tps:
                self._epoch[tp] = self._epoch.get(tp, 0) + 1
                self._heap.pop(tp, None)
                self._open.pop(tp, None)
                self._next.pop(tp, None)
