"""What the consumer loop does when a batch fails in ways other than an outage.

* **A record the store refuses** (:class:`~recsys.exceptions.DataRejected`: SQLSTATE 22,
  23, 54, text Postgres cannot hold): :func:`handle_isolating` handles the batch again in
  halves until the refused record is alone, and rejects that one (the loop dead-letters
  it as ``store_rejected``). A refused call had no effect (one transaction) or repeated
  idempotent writes, so the records around the refused one are handled exactly once;
  the cost is about ``2·log2(len(batch))`` extra handler calls.
* **A commit refused because the group moved on** (:func:`commit_may_fail`: the member
  was dropped after a session timeout or past ``max.poll.interval.ms``, a rebalance is in
  progress, the coordinator moved): the partitions are being reassigned, and their next
  owner handles the batch again from the last committed offset — at least once, as after
  a crash. Not a reason to stop the worker.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from confluent_kafka import KafkaError

from recsys.exceptions import DataRejected

__all__ = ["STORE_REJECTED", "commit_may_fail", "handle_isolating"]

T = TypeVar("T")

#: Dead-letter reason of a record whose values the store refused.
STORE_REJECTED = "store_rejected"

#: Commit errors of a group in motion: the partitions are being reassigned.
_REBALANCING = frozenset(
    {
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError._ASSIGNMENT_LOST,
        KafkaError._MAX_POLL_EXCEEDED,
        KafkaError._WAIT_COORD,
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    }
)


def commit_may_fail(err: KafkaError) -> bool:
    """A commit error to log and live with (the batch is redelivered), not to crash on."""
    return not err.fatal() and (err.code() in _REBALANCING or err.retriable())


async def handle_isolating(
    handle: Callable[[list[T]], Awaitable[None]],
    batch: list[T],
    reject: Callable[[T, str, str], None],
    on_split: Callable[[int, DataRejected], None],
) -> None:
    """``handle(batch)``; on :class:`DataRejected`, the same on each half, down to the
    refused record, which goes to ``reject(record, STORE_REJECTED, reason)``."""
    try:
        await handle(batch)
    except DataRejected as exc:
        if len(batch) == 1:
            reject(batch[0], STORE_REJECTED, str(exc))
            return
        on_split(len(batch), exc)
        middle = len(batch) // 2
        halves: Sequence[list[T]] = (batch[:middle], batch[middle:])
        for half in halves:
            await handle_isolating(handle, half, reject, on_split)
