"""Worker `users`: user.events → per-user state, the Postgres read model, ``user_events``
and nearline co-visitation.

Thin: the at-least-once consumer loop (confluent-kafka) decodes batches (bad input →
DLQ; an event whose key is not its user goes there too, as it would sit in another
user's partition) and hands them to :class:`UserStateUpdater` (an event whose values
Postgres refuses is isolated by the loop and dead-lettered; the rest of its batch is
applied once):

1. the batch's users' states are read from Postgres (``user_state``);
2. :func:`recsys.users.nearline.update_batch` — each user's state once per batch;
3. :meth:`PgUserStates.write` — ``user_events`` + co-visitation + the new states in
   one transaction (retried with backoff while Postgres is away);
4. only then are the batch's offsets committed.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from recsys.cf.covisit import CovisitConfig
from recsys.cf.pg_covisit import PgCovisitation
from recsys.exceptions import DatabaseUnavailable
from recsys.records import UserEvent
from recsys.users.nearline import update_batch
from recsys.users.state import Position, UserStateConfig
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
    #: Busy time by phase, seconds: reading states, domain step, Postgres transaction.
    read_s: float = 0.0
    domain_s: float = 0.0
    db_s: float = 0.0
    #: Wall time at which the latest batch was durable.
    last_durable: float = 0.0
    #: Highest offset per partition whose batch is durable.
    durable_offsets: dict[int, int] = field(default_factory=dict)


class UserStateUpdater:
    """Applies decoded batches: read states, domain step, one Postgres transaction."""

    def __init__(
        self,
        store: PgUserStates,
        covisit: PgCovisitation,
        cfg: UserStateConfig,
        covisit_cfg: CovisitConfig,
    ) -> None:
        self.store = store
        self.covisit = covisit
        self.cfg = cfg
        self.covisit_cfg = covisit_cfg
        self.stats = UsersStats()
        #: Called with each batch once it is durable (benchmarks measure lag with it).
        self.on_durable: list[Callable[[list[tuple[UserEvent, Position]]], None]] = []

    async def apply(self, events: list[tuple[UserEvent, Position]]) -> None:
        """Apply one batch of decoded events (with their positions) durably.

        Raises:
            Retryable: Postgres is away (the loop retries the same batch).
            DataRejected: Postgres refused some event's values; nothing was written
                (the loop isolates the event and dead-letters it).
        """
        try:
            t0 = time.perf_counter()
            states = await self.store.get_many({e.user_id for e, _ in events})
            t1 = time.perf_counter()
            update = update_batch(states.get, events, self.cfg, self.covisit_cfg)
            t2 = time.perf_counter()
            if update.states:
                result = await self.store.write(
                    update.accepted, update.states.values(), self.covisit
                )
                self.stats.redelivered += result.redelivered
            t3 = time.perf_counter()
        except DatabaseUnavailable as exc:
            raise Retryable(str(exc)) from exc
        self.stats.read_s += t1 - t0
        self.stats.domain_s += t2 - t1
        self.stats.db_s += t3 - t2
        self.stats.duplicates += update.duplicates
        self.stats.applied += len(update.accepted)
        self.stats.batches += 1
        for _, (partition, offset) in events:
            if partition not in self.stats.durable_offsets:
                log.info("users: now applying partition %d", partition)
            if offset > self.stats.durable_offsets.get(partition, -1):
                self.stats.durable_offsets[partition] = offset
        self.stats.last_durable = time.time()
        for listener in self.on_durable:
            listener(events)


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
        PgCovisitation(pool, s.covisit_half_life_h),
        UserStateConfig.from_settings(s.users),
        CovisitConfig.from_settings(s.users),
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
        await updater.apply([(msg.value, (msg.partition, msg.offset)) for msg in batch])

    loop = ConsumerLoop(
        s,
        worker="users",
        inputs=[spec],
        handler=handle,
        producer=ctx.producer,
        max_batch=s.users_batch_size,
        consumer_overrides={"fetch.wait.max.ms": s.users_fetch_wait_ms},
        group_id=ctx.overrides.group_id,
        check=check,
    )
    ctx.handles.put(UsersWorker(updater, loop))
    try:
        await loop.run(stop)
    finally:
        log.info("users stopped: %s", updater.stats)
