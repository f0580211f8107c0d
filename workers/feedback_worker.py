"""Worker `feedback`: impressions (rec.responses) ⋈ the same user's later events
(user.events) → feedback.examples.

Thin: decode (the consumer loop dead-letters bad input) → store impressions and events
in Postgres (idempotent) → close due windows with :func:`recsys.feedback.join_impression`
→ emit. A window closes when the partition's event time (both inputs past it) reaches
``impression_at + attribution_window_s + feedback_allowed_lateness_s``, or when the
impression has waited that long in wall time (an idle partition).

An ``EXPIRED`` response (a shed request: nothing was shown) is no impression: it moves the
partition's event time like any response but is not stored, so no example comes of it.

Delivery: at least once, with deterministic example ids. Examples are emitted, flushed,
and only then marked emitted; a crash between the two re-emits the same examples
(identical values, same ``example_id``) — readers key by ``example_id`` (the archive
reader and ``streamrec evaluate`` do). Re-delivered inputs change nothing: impressions
and events are stored under their ids, and an emitted impression stays closed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from recsys.exceptions import DatabaseUnavailable
from recsys.feedback import EventClock, is_impression, join_impression
from recsys.feedback_store import OpenImpression, PgFeedbackStore
from recsys.records import RecResponse, UserEvent
from streams.consumer_loop import ConsumerLoop, Inbound, Retryable
from workers.bootstrap import Context

__all__ = ["FeedbackJoiner", "FeedbackWorker", "run"]

log = logging.getLogger(__name__)


class FeedbackJoiner:
    """The worker's state machine: store a batch, close what is due, emit."""

    def __init__(self, ctx: Context, store: PgFeedbackStore) -> None:
        self.ctx = ctx
        self.store = store
        s = ctx.settings
        self.window_s = float(s.attribution_window_s)
        self.span_s = float(s.attribution_window_s + s.feedback_allowed_lateness_s)
        self.retention_s = max(float(s.dedup_window_s), 2 * self.span_s)
        self.clock = EventClock([ctx.topics.rec_responses.name, ctx.topics.user_events.name])
        self.partitions: set[int] = set()
        self.emitted = 0
        #: ``EXPIRED`` responses seen and left out (not impressions).
        self.expired = 0
        #: Sweeps done (tests wait for sweeps instead of sleeping).
        self.sweeps = 0
        self._last_sweep = 0.0
        self._last_prune = time.monotonic()

    async def handle(self, batch: list[Inbound[Any]]) -> None:
        impressions: list[tuple[int, RecResponse]] = []
        events: list[UserEvent] = []
        for msg in batch:
            if isinstance(msg.value, RecResponse):
                if is_impression(msg.value):
                    impressions.append((msg.partition, msg.value))
                else:
                    self.expired += 1
                self.clock.observe(msg.topic, msg.partition, msg.value.produced_at)
            elif isinstance(msg.value, UserEvent):
                events.append(msg.value)
                self.clock.observe(msg.topic, msg.partition, msg.value.occurred_at)
        try:
            await self.store.add(impressions, events)
            if time.monotonic() - self._last_sweep >= self.ctx.settings.feedback_sweep_s:
                await self.sweep()
        except DatabaseUnavailable as exc:
            raise Retryable(str(exc)) from exc

    async def housekeeping(self, final: bool) -> None:
        if final or time.monotonic() - self._last_sweep < self.ctx.settings.feedback_sweep_s:
            return
        try:
            await self.sweep()
        except DatabaseUnavailable as exc:
            log.warning("feedback: closing windows deferred: %s", exc)

    async def sweep(self) -> int:
        """Close due windows of owned partitions; emit their examples; return how many."""
        self._last_sweep = time.monotonic()
        self.sweeps += 1
        total = 0
        for partition in sorted(self.partitions):
            while True:
                due = await self.store.due(partition, self.clock.now(partition), self.span_s)
                if not due:
                    break
                total += await self._emit(due)
        if time.monotonic() - self._last_prune > 60:
            self._last_prune = time.monotonic()
            await self.store.prune(self.retention_s)
        return total

    async def _emit(self, due: list[OpenImpression]) -> int:
        responses = [d.response for d in due]
        since = min(r.produced_at for r in responses)
        until = max(r.produced_at for r in responses) + timedelta(seconds=self.window_s)
        events = await self.store.events_for(sorted({r.user_id for r in responses}), since, until)
        by_user: dict[str, list[UserEvent]] = {}
        for event in events:
            by_user.setdefault(event.user_id, []).append(event)
        spec = self.ctx.topics.feedback_examples
        count = 0
        for response in responses:
            for example in join_impression(
                response, by_user.get(response.user_id, []), self.window_s
            ):
                self.ctx.producer.send(spec, example.user_id, example)
                count += 1
        # delivered first, then closed: a crash in between re-emits identical examples
        await asyncio.get_running_loop().run_in_executor(None, self.ctx.producer.flush)
        await self.store.mark_emitted([r.request_id for r in responses])
        self.emitted += count
        return count

    def assigned(self, tps: list[tuple[str, int]]) -> None:
        self.partitions |= {p for t, p in tps if t == self.ctx.topics.rec_responses.name}

    def revoked(self, tps: list[tuple[str, int]]) -> None:
        for topic, partition in tps:
            if topic == self.ctx.topics.rec_responses.name:
                self.partitions.discard(partition)
                self.clock.forget(partition)


@dataclass(frozen=True)
class FeedbackWorker:
    """What a running feedback worker exposes (tests, benchmarks)."""

    joiner: FeedbackJoiner
    loop: ConsumerLoop


async def run(ctx: Context, stop: asyncio.Event) -> None:
    """Join until ``stop`` is set."""
    pool = await ctx.async_pool("feedback")
    joiner = FeedbackJoiner(ctx, PgFeedbackStore(pool))
    loop = ConsumerLoop(
        ctx.settings,
        worker="feedback",
        inputs=[ctx.topics.rec_responses, ctx.topics.user_events],
        handler=joiner.handle,
        producer=ctx.producer,
        group_id=ctx.overrides.group_id,
        on_assign=joiner.assigned,
        on_revoke=joiner.revoked,
        housekeeping=joiner.housekeeping,
        consumer_overrides={"fetch.wait.max.ms": ctx.settings.background_fetch_wait_ms},
    )
    ctx.handles.put(FeedbackWorker(joiner, loop))
    await loop.run(stop)
    log.info(
        "feedback: %d examples emitted, %d expired answers skipped", joiner.emitted, joiner.expired
    )
