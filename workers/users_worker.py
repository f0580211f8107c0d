"""Worker `users`: user.events → per-user state, the Postgres read model, ``user_events``
and nearline co-visitation.

Thin: the at-least-once consumer loop (confluent-kafka) decodes batches (bad input →
DLQ; an event whose key is not its user goes there too, as it would sit in another
user's partition) and hands them to :class:`UserStateUpdater` (an event whose values
Postgres refuses is isolated by the loop and dead-lettered; the rest of its batch is
applied once):

1. the batch is cut in chunks of ``users_write_chunk`` events; for each chunk, the
   users' states: from the batch's earlier chunks, else from the process's cache of the
   states it made durable itself, else read from Postgres (``user_state``);
2. :func:`recsys.users.nearline.update_batch` — each user's state once per chunk — and
   :func:`recsys.users.batch_write.prepare` (the rows, co-visits summed per pair);
3. a writer thread stores the chunk — ``user_events`` + co-visitation + the new states
   in one transaction, one statement — while the event loop does step 2 for the next
   chunk (libpq waits for Postgres without the GIL, so the two overlap); chunks are
   written in order, one at a time; a chunk's states enter the cache once durable;
4. once every chunk is durable (Postgres away: the batch is retried with backoff), the
   batch's offsets are committed.

The cache (``users_state_cache`` states, least recently used evicted) is dropped whenever
the process's partitions are assigned or revoked: a user's events live in one partition,
so while the process owns it no other process writes that user's state.

Exactness without Kafka transactions (unavailable on Tansu): the state and the events
that made it commit together, each state carries the ``(partition, offset)`` of its last
event and its recent event ids, so a redelivered event is recognised and changes
nothing; ``user_events`` skips co-visitation for an event it already holds; the read
model only moves forward. Postgres is the state store shared by every process, so a
worker taking partitions over (a rebalance, a crash) continues from exactly what was
committed — no changelog to restore (docs/decisions/0001-no-faust.md says why this is
not a changelog-backed table).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from recsys.cf.covisit import CovisitConfig
from recsys.exceptions import DatabaseUnavailable
from recsys.records import UserEvent
from recsys.users.batch_write import BatchWriter, PreparedBatch, WriteResult, prepare
from recsys.users.nearline import BatchUpdate, update_batch
from recsys.users.state import UNKNOWN_INCARNATION, Position, UserState, UserStateConfig
from recsys.users.store import PgUserStates
from streams.consumer_loop import ConsumerLoop, Inbound, Retryable
from workers.bootstrap import Context

__all__ = ["UserStateUpdater", "UsersStats", "UsersWorker", "run"]

log = logging.getLogger(__name__)


@dataclass
class UsersStats:
    """Counters of one worker process (shown at shutdown, read by tests and benchmarks)."""

    consumed: int = 0
    applied: int = 0
    duplicates: int = 0
    redelivered: int = 0
    batches: int = 0
    #: Postgres transactions (a batch is written in chunks of ``users_write_chunk``).
    writes: int = 0
    #: Users whose stored position belonged to another incarnation of user.events.
    incarnation_changes: int = 0
    #: States read from Postgres (the others came from the cache).
    state_reads: int = 0
    #: Busy time by phase, seconds. On the event loop: reading states, the domain step,
    #: building the rows, and waiting for the writer; on the writer thread: writing.
    read_s: float = 0.0
    domain_s: float = 0.0
    prepare_s: float = 0.0
    wait_s: float = 0.0
    db_s: float = 0.0
    #: Wall time at which the latest chunk was durable.
    last_durable: float = 0.0
    #: Highest offset per partition whose chunk is durable.
    durable_offsets: dict[int, int] = field(default_factory=dict)


Events = list[tuple[UserEvent, Position]]


@dataclass
class _Write:
    """A chunk on its way to Postgres."""

    events: Events
    update: BatchUpdate
    future: asyncio.Future[WriteResult] | None


class UserStateUpdater:
    """Applies decoded batches: read states, domain step, Postgres — in chunks, the
    next chunk's domain step running while the writer thread stores the previous one."""

    def __init__(
        self,
        store: PgUserStates,
        writer: BatchWriter,
        cfg: UserStateConfig,
        covisit_cfg: CovisitConfig,
        cache_size: int = 0,
        chunk: int = 500,
    ) -> None:
        self.store = store
        self.writer = writer
        #: States as last made durable by this process, for the partitions it owns.
        self.cache: OrderedDict[str, UserState] = OrderedDict()
        self.cache_size = cache_size
        self.chunk = max(1, chunk)
        self.cfg = cfg
        self.covisit_cfg = covisit_cfg
        self.stats = UsersStats()
        #: Called with each chunk once it is durable (benchmarks measure lag with it).
        self.on_durable: list[Callable[[Events], None]] = []
        self._warned: set[tuple[str, str]] = set()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="users-writer")

    def close(self) -> None:
        """Stop the writer thread (after the last batch)."""
        self._executor.shutdown(wait=True)

    def _notice_incarnations(self, states: dict[str, UserState], events: Events) -> None:
        """Count (and say once, at WARNING) stored positions of another incarnation."""
        checked: set[str] = set()
        for event, position in events:
            state = states.get(event.user_id)
            if state is None or state.last_position is None or event.user_id in checked:
                continue
            checked.add(event.user_id)
            old = state.last_position.topic_id
            if old == position.topic_id:
                continue
            self.stats.incarnation_changes += 1
            if (old, position.topic_id) not in self._warned:
                self._warned.add((old, position.topic_id))
                log.warning(
                    "users: user.events is a new incarnation (topic id %s) — stored positions "
                    "of %s were written for another one (the topic was recreated, or the "
                    "embedded broker started again with an empty log); they are ignored and "
                    "events are deduplicated by event id only",
                    position.topic_id or "unknown",
                    f"topic id {old}" if old else "an unrecorded incarnation",
                )

    def forget(self, *_: object) -> None:
        """Drop the cached states (partitions assigned or revoked: another process may
        have written them meanwhile). Called between batches: no write is in flight."""
        self.cache.clear()

    async def _states(self, user_ids: set[str]) -> dict[str, UserState]:
        """The users' current states: cached when this process wrote them last, else
        read from Postgres."""
        found = {u: s for u in user_ids if (s := self.cache.get(u)) is not None}
        missing = user_ids - found.keys()
        if missing:
            found.update(await self.store.get_many(missing))
            self.stats.state_reads += len(missing)
        return found

    def _remember(self, states: Iterable[UserState]) -> None:
        if not self.cache_size:
            return
        cache = self.cache
        for state in states:
            cache[state.user_id] = state
            cache.move_to_end(state.user_id)
        while len(cache) > self.cache_size:
            cache.popitem(last=False)

    def _timed_write(self, batch: PreparedBatch) -> WriteResult:
        """On the writer thread."""
        started = time.perf_counter()
        try:
            return self.writer.write(batch)
        finally:
            self.stats.db_s += time.perf_counter() - started

    async def apply(self, events: Events) -> None:
        """Apply one batch of decoded events (with their positions) durably: every chunk
        is durable when this returns.

        Chunks are written in order, one at a time; a chunk's users who were in an
        earlier chunk of the batch continue from that chunk's new states (being written,
        durable before this chunk's write starts). A chunk's states enter the cache once
        it is durable.

        Raises:
            Retryable: Postgres is away (the loop retries the same batch; the chunks
                already durable are then recognised as redeliveries).
            DataRejected: Postgres refused some event's values; nothing of that chunk
                was written (the loop handles the batch in halves to isolate the event
                and dead-letters it; chunks already durable are redeliveries then).
        """
        loop = asyncio.get_running_loop()
        ahead: dict[str, UserState] = {}  # states of this batch's earlier chunks
        inflight: _Write | None = None
        try:
            for start in range(0, len(events), self.chunk):
                part = events[start : start + self.chunk]
                t0 = time.perf_counter()
                states = await self._states({e.user_id for e, _ in part} - ahead.keys())
                states.update(ahead)
                self._notice_incarnations(states, part)
                t1 = time.perf_counter()
                update = update_batch(states.get, part, self.cfg, self.covisit_cfg)
                t2 = time.perf_counter()
                prepared = prepare(update.accepted, update.states.values())
                t3 = time.perf_counter()
                self.stats.read_s += t1 - t0
                self.stats.domain_s += t2 - t1
                self.stats.prepare_s += t3 - t2
                if inflight is not None:
                    done, inflight = inflight, None
                    await self._settle(done)
                future = (
                    loop.run_in_executor(self._executor, self._timed_write, prepared)
                    if update.states
                    else None
                )
                inflight = _Write(part, update, future)
                ahead.update(update.states)
            if inflight is not None:
                done, inflight = inflight, None
                await self._settle(done)
        except DatabaseUnavailable as exc:
            raise Retryable(str(exc)) from exc
        finally:
            if inflight is not None and inflight.future is not None:
                # an error while a chunk was on its way: let it land (or fail) before
                # the batch is retried or the worker stops
                await asyncio.wait([inflight.future])
                if not inflight.future.cancelled() and inflight.future.exception() is None:
                    self._durable(inflight, inflight.future.result())
        self.stats.batches += 1

    async def _settle(self, write: _Write) -> None:
        """Wait until ``write`` is durable, then account for it."""
        result = None
        if write.future is not None:
            started = time.perf_counter()
            try:
                result = await write.future
            finally:
                self.stats.wait_s += time.perf_counter() - started
        self._durable(write, result)

    def _durable(self, write: _Write, result: WriteResult | None) -> None:
        update = write.update
        self._remember(update.states.values())
        if result is not None:
            self.stats.redelivered += result.redelivered
            self.stats.writes += 1
        self.stats.duplicates += update.duplicates
        self.stats.applied += len(update.accepted)
        offsets = self.stats.durable_offsets
        for _, (_, partition, offset) in write.events:
            if partition not in offsets:
                log.info("users: now applying partition %d", partition)
            if offset > offsets.get(partition, -1):
                offsets[partition] = offset
        self.stats.last_durable = time.time()
        for listener in self.on_durable:
            listener(write.events)


@dataclass(frozen=True)
class UsersWorker:
    """What a running users worker exposes (tests, benchmarks)."""

    updater: UserStateUpdater
    loop: ConsumerLoop


async def run(ctx: Context, stop: asyncio.Event) -> None:
    """Consume user.events until ``stop`` is set."""
    s = ctx.settings
    spec = ctx.topics.user_events
    pool = await ctx.async_pool("users")
    updater = UserStateUpdater(
        PgUserStates(pool),
        BatchWriter(ctx.pool()),
        UserStateConfig.from_settings(s.users),
        CovisitConfig.from_settings(s.users),
        cache_size=s.users_state_cache,
        chunk=s.users_write_chunk,
    )

    def check(msg: Inbound[Any]) -> tuple[str, str] | None:
        event: UserEvent = msg.value
        if msg.key != event.user_id:
            return (
                "key_mismatch",
                f"message key {msg.key!r} is not the event's user_id {event.user_id!r}",
            )
        return None

    async def handle(batch: list[Inbound[Any]]) -> None:
        updater.stats.consumed += len(batch)
        await updater.apply(
            [
                (
                    msg.value,
                    Position(msg.topic_id or UNKNOWN_INCARNATION, msg.partition, msg.offset),
                )
                for msg in batch
            ]
        )

    loop = ConsumerLoop(
        s,
        worker="users",
        inputs=[spec],
        handler=handle,
        producer=ctx.producer,
        max_batch=s.users_batch_size,
        consumer_overrides={"fetch.wait.max.ms": s.users_fetch_wait_ms},
        on_assign=updater.forget,
        on_revoke=updater.forget,
        group_id=ctx.overrides.group_id,
        check=check,
    )
    ctx.handles.put(UsersWorker(updater, loop))
    try:
        await loop.run(stop)
    finally:
        updater.close()
        log.info("users stopped: %s", updater.stats)
