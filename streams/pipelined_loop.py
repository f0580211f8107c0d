"""A pipelined consume → handle → produce → commit loop for request/response workers.

:class:`~streams.consumer_loop.ConsumerLoop` handles one batch at a time: the next fetch
waits until the whole batch is handled, flushed and committed, so one slow request holds
every request behind it, and each batch pays a flush and a commit round trip before the
next fetch. :class:`PipelinedLoop` keeps the same contract with the inputs in flight
independently:

* each input is handled as soon as it is consumed, in its own task, with at most
  ``max_in_flight`` inputs consumed and not yet settled; at the bound the loop stops
  fetching until one settles (back-pressure, no unbounded queue);
* what a handler produces goes out with the producer's linger (no flush per batch); an
  input is *settled* when its handler returned and the broker acknowledged every message
  produced for it (:mod:`streams.delivery` counts them — the response, LLM-log records,
  dead letters);
* every ``commit_interval_s`` the loop commits, per partition, up to the lowest offset
  not settled yet (:class:`~streams.offsets.OffsetTracker`) — an offset is never
  committed before its response is delivered, so a crash replays what was not
  answered (at least once; handlers keep effects idempotent);
* a handler raising :class:`~streams.consumer_loop.Retryable` has that input retried
  with backoff (the bound stops new fetches while many wait); any other exception is a
  bug and stops the worker loudly, the failed input uncommitted;
* on revocation, the partitions' inputs in flight get a short grace to settle and their
  done prefix is committed, so the next owner repeats as little as possible.

Decoding, dead letters, rebalance bookkeeping, lag and metrics are the base loop's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from streams.consumer_loop import ConsumerLoop, Handler, Inbound, Retryable, where
from streams.delivery import DeliveryGroup, current_group
from streams.exceptions import DeliveryError
from streams.kafka import poll_batch, poll_paused, resume_all
from streams.offsets import OffsetTracker
from streams.producer import RecordProducer
from streams.settings import Settings
from streams.topics import TopicSpec

__all__ = ["PipelinedLoop"]

log = logging.getLogger(__name__)

#: How long a revocation waits for the revoked partitions' inputs to settle.
REVOKE_GRACE_S = 2.0
#: How long a stop waits for inputs in flight to be answered and acknowledged.
STOP_GRACE_S = 10.0


class PipelinedLoop(ConsumerLoop):
    """Handle inputs concurrently as they arrive; commit in order what is settled."""

    def __init__(
        self,
        settings: Settings,
        *,
        worker: str,
        inputs: Sequence[TopicSpec],
        handler: Handler,
        producer: RecordProducer,
        max_in_flight: int = 32,
        commit_interval_s: float = 0.2,
        latency_sensitive: bool = True,
        poll_timeout_s: float = 0.1,
        group_id: str | None = None,
        consumer_overrides: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            settings,
            worker=worker,
            inputs=inputs,
            handler=handler,
            producer=producer,
            latency_sensitive=latency_sensitive,
            max_batch=max_in_flight,
            poll_timeout_s=poll_timeout_s,
            group_id=group_id,
            consumer_overrides=consumer_overrides,
        )
        self.max_in_flight = max_in_flight
        self.commit_interval_s = commit_interval_s
        self.tracker = OffsetTracker()
        self._tasks: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None
        self._room = asyncio.Event()
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._stopping = False

    # ---- settlement -------------------------------------------------------------------
    def _settled(self, group: DeliveryGroup) -> None:
        """Called from the thread that served the last delivery report (or the loop)."""
        assert self._aloop is not None
        self._aloop.call_soon_threadsafe(self._on_settled, group)

    def _on_settled(self, group: DeliveryGroup) -> None:
        if group.errors:
            errors = group.errors
            self._fail(DeliveryError(f"{len(errors)} message(s) not delivered: {errors[:3]}"))
            return
        tp, offset, epoch = group.key
        self.tracker.finish(tp, offset, epoch)
        self._room.set()

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
        self._room.set()

    # ---- one input ----------------------------------------------------------------------
    async def _handle_one(self, inbound: Inbound[Any], group: DeliveryGroup) -> None:
        current_group.set(group)  # this task's context only
        started = time.perf_counter()
        delay = 0.2
        while True:
            try:
                await self.handler([inbound])
                break
            except Retryable as exc:
                self.stats.retries += 1
                self.metrics.retries.labels(self.worker).inc()
                if self._stopping:
                    return  # unsettled: not committed, handled again after the restart
                log.warning("%s: retrying %s in %.1fs: %s", self.worker, inbound.source, delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug: stop loudly, this input uncommitted
                log.exception("%s: handler failed on %s", self.worker, inbound.source)
                self._fail(exc)
                return
        self.stats.handled += 1
        self.stats.batches += 1
        self._count_handled([inbound], time.perf_counter() - started)
        group.seal()

    def _start(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF and (err.fatal() or not err.retriable()):
                log.error("%s consumer error: %s", self.worker, err.str())
            return
        self.stats.consumed += 1
        topic, partition, offset = where(msg)
        self.metrics.consumed.labels(self.worker, topic).inc()
        tp = (topic, partition)
        self._positions[tp] = offset + 1
        epoch = self.tracker.start(tp, offset)
        group = DeliveryGroup((tp, offset, epoch), self._settled)
        token = current_group.set(group)  # a dead letter sent while decoding counts too
        try:
            inbound = self._decode(msg)
        finally:
            current_group.reset(token)
        if inbound is None:
            group.seal()
            return
        task = asyncio.create_task(self._handle_one(inbound, group))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- commits ------------------------------------------------------------------------
    def _commit_settled(self, consumer: Consumer, tps: set[tuple[str, int]] | None = None) -> None:
        due = {
            tp: off
            for tp, off in self.tracker.committable().items()
            if off > self.stats.last_commit.get(tp, -1) and (tps is None or tp in tps)
        }
        if not due:
            return
        try:
            self._commit(consumer, due)
        except KafkaException as exc:  # e.g. a rebalance under way: the next round retries
            log.warning("%s: commit of %s failed: %s", self.worker, due, exc)

    async def _commit_every(self, consumer: Consumer) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.commit_interval_s)
            await loop.run_in_executor(None, self._commit_settled, consumer, None)

    def _revoke_cb(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = {(p.topic, p.partition) for p in partitions}
        deadline = time.monotonic() + REVOKE_GRACE_S
        while any(self.tracker.in_flight(tp) for tp in tps) and time.monotonic() < deadline:
            time.sleep(0.01)  # the event loop settles them meanwhile (another thread)
        self._commit_settled(consumer, tps)
        self.tracker.drop(list(tps))
        super()._revoke_cb(consumer, partitions)

    # ---- the loop -----------------------------------------------------------------------
    def _poll_deliveries(self, stop: threading.Event) -> None:
        """Serve the producer's delivery reports as they come (settles inputs)."""
        producer = self.producer.producer
        while not stop.is_set():
            producer.poll(0.05)

    def _idle_poll(self, consumer: Consumer) -> None:
        """Full for a while (inputs retrying): keep the group membership without fetching.

        What was paused is resumed even when a rebalance revoked it during the poll: a
        pause kept by librdkafka would outlive the revoke, and the same partitions
        assigned again would never be fetched (the serve group stopped answering that
        way in a soak, its lag reading 0).
        """
        paused: list[TopicPartition] = []
        try:
            paused = poll_paused(consumer, paused)
        finally:
            resume_all(consumer, paused or consumer.assignment())

    async def run(self, stop: asyncio.Event) -> Any:
        """Consume until ``stop`` is set or a handler fails; settle, commit, close."""
        consumer = Consumer(self._conf)
        self._consumer = consumer
        self._aloop = loop = asyncio.get_running_loop()
        consumer.subscribe(list(self.inputs), on_assign=self._assign_cb, on_revoke=self._revoke_cb)
        poller_stop = threading.Event()
        poller = threading.Thread(
            target=self._poll_deliveries, args=(poller_stop,), name=f"{self.worker}-deliveries"
        )
        poller.start()
        committer = asyncio.create_task(self._commit_every(consumer))
        try:
            while not stop.is_set() and self._failure is None:
                room = self.max_in_flight - self.tracker.in_flight()
                if room <= 0:
                    self._room.clear()
                    try:
                        await asyncio.wait_for(self._room.wait(), 1.0)
                    except TimeoutError:
                        await loop.run_in_executor(None, self._idle_poll, consumer)
                    continue
                messages: list[Message] = await loop.run_in_executor(
                    None, poll_batch, consumer, room, self.poll_timeout_s
                )
                topics = {t for m in messages if m.error() is None and (t := m.topic())}
                if any(t not in self._topic_ids for t in topics):  # after an assignment
                    await loop.run_in_executor(None, self._resolve_topic_ids, topics)
                for msg in messages:
                    self._start(msg)
                if not messages and time.monotonic() - self._lag_at > 1.0:
                    self._update_lag(consumer)
            await self._drain()
        finally:
            self._stopping = True
            committer.cancel()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(committer, *self._tasks, return_exceptions=True)
            await loop.run_in_executor(None, self._commit_settled, consumer, None)
            poller_stop.set()
            await loop.run_in_executor(None, poller.join)
            await loop.run_in_executor(None, consumer.close)
            self._consumer = None
            log.info("%s stopped: %s", self.worker, self.stats)
        if self._failure is not None:
            raise self._failure
        return self.stats

    async def _drain(self) -> None:
        """Let the inputs in flight be answered and acknowledged (bounded)."""
        self._stopping = True  # inputs waiting to retry give up (they stay uncommitted)
        deadline = time.monotonic() + STOP_GRACE_S
        while self.tracker.in_flight() and self._failure is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning(
                    "%s: %d input(s) still in flight at stop; they will be handled again",
                    self.worker,
                    self.tracker.in_flight(),
                )
                return
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait(), min(remaining, 0.5))
