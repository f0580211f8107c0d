"""Worker `users`: user.events → per-user state (Faust table), the Postgres read model,
``user_events`` and nearline co-visitation.

Thin: a Faust agent takes batches (``stream.take_events``), decodes them (bad input →
DLQ via :class:`FaustDecoder`; an event whose key is not its user goes there too, as
it would land in another user's partition), and hands them to :class:`UserStateUpdater`:

1. :func:`recsys.users.nearline.update_batch` — each user's state once per batch;
2. :meth:`PgUserStates.write` — ``user_events`` + co-visitation + read model in one
   transaction (retried with backoff while Postgres is away);
3. the new states into the changelog-backed table, one record per user, to the user's
   partition; the sends are awaited;
4. only then does the agent return for the next batch, which acknowledges this one, and
   Faust commits acknowledged offsets (after flushing its producer).

Exactness without transactions (unavailable on Tansu): Postgres is written before the
changelog, so after a SIGKILL the changelog is never ahead of Postgres. Redelivered
events are recognised by the state (event id, or the offset kept with the state) and by
``user_events`` (a conflicting insert skips co-visitation), and the read model only
moves forward. A second process in the same group takes partitions over with their
table partitions, recovered from the changelog.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from recsys.cf.covisit import CovisitConfig
from recsys.cf.pg_covisit import PgCovisitation
from recsys.exceptions import DatabaseUnavailable
from recsys.records import UserEvent
from recsys.users.nearline import BatchUpdate, update_batch
from recsys.users.state import Position, UserState, UserStateConfig
from recsys.users.store import PgUserStates
from streams.faust_app import FaustDecoder, create_faust_app
from streams.faust_tables import KeyedStateTable, keyed_state_table
from streams.topics import TopicSpec
from workers.bootstrap import Context

__all__ = ["UserStateUpdater", "UsersStats", "run"]

log = logging.getLogger(__name__)

TABLE_NAME = "user-state"


@dataclass
class UsersStats:
    """Counters of one worker process (shown at shutdown, read by tests and benchmarks)."""

    consumed: int = 0
    applied: int = 0
    duplicates: int = 0
    redelivered: int = 0
    dead_lettered: int = 0
    batches: int = 0
    db_retries: int = 0
    #: Busy time by phase, seconds: domain step, Postgres transaction, changelog sends.
    domain_s: float = 0.0
    db_s: float = 0.0
    changelog_s: float = 0.0
    #: Wall time at which the latest batch was durable (state, changelog, Postgres).
    last_durable: float = 0.0
    #: Highest offset per partition whose batch is durable.
    durable_offsets: dict[int, int] = field(default_factory=dict)


class UserStateUpdater:
    """Applies decoded batches: domain step, Postgres, changelog — in that order."""

    def __init__(
        self,
        table: KeyedStateTable,
        store: PgUserStates,
        covisit: PgCovisitation,
        cfg: UserStateConfig,
        covisit_cfg: CovisitConfig,
        stop: asyncio.Event,
    ) -> None:
        self.table = table
        self.store = store
        self.covisit = covisit
        self.cfg = cfg
        self.covisit_cfg = covisit_cfg
        self.stop = stop
        self.stats = UsersStats()
        #: Called with each batch once it is durable (benchmarks measure lag with it).
        self.on_durable: list[Callable[[list[tuple[UserEvent, Position]]], None]] = []

    def state_of(self, user_id: str) -> UserState | None:
        value = self.table.value(user_id.encode())
        return value if isinstance(value, UserState) else None

    async def apply(self, events: list[tuple[UserEvent, Position]]) -> None:
        """Apply one batch of decoded events (with their positions) durably."""
        t0 = time.perf_counter()
        update = update_batch(self.state_of, events, self.cfg, self.covisit_cfg)
        self.stats.duplicates += update.duplicates
        t1 = time.perf_counter()
        self.stats.domain_s += t1 - t0
        if update.states:
            result = await self._write(update)
            self.stats.redelivered += result
            t2 = time.perf_counter()
            self.stats.db_s += t2 - t1
            partition_of = {e.user_id: pos[0] for e, pos in events}
            sends = await asyncio.gather(
                *(
                    self.table.put(user.encode(), state, partition_of[user])
                    for user, state in update.states.items()
                )
            )
            await asyncio.gather(*sends)  # the changelog has every new state
            self.stats.changelog_s += time.perf_counter() - t2
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

    async def _write(self, update: BatchUpdate) -> int:
        delay = 0.2
        while True:
            try:
                result = await self.store.write(
                    update.accepted, update.states.values(), self.covisit
                )
                return result.redelivered
            except DatabaseUnavailable as exc:
                if self.stop.is_set():
                    raise
                self.stats.db_retries += 1
                log.warning("users: Postgres write failed, retrying in %.1fs: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)


def _decode(
    decoder: FaustDecoder, spec: TopicSpec, events: list[Any]
) -> list[tuple[UserEvent, Position]]:
    out: list[tuple[UserEvent, Position]] = []
    for event in events:
        record = decoder.decode(spec, event)
        if record is None:
            continue
        assert isinstance(record, UserEvent)
        message = event.message
        key = message.key.decode(errors="replace") if isinstance(message.key, bytes) else None
        if key != record.user_id:
            decoder.dead_letter(
                spec, event, "key_mismatch",
                f"message key {key!r} is not the event's user_id {record.user_id!r}",
            )  # fmt: skip
            continue
        out.append((record, (message.partition, message.offset)))
    return out


async def run(ctx: Context, stop: asyncio.Event) -> None:
    """Consume user.events until ``stop`` is set (or the Faust app crashes)."""
    s = ctx.settings
    spec = ctx.topics.user_events
    pool = await ctx.async_pool("users")
    app = create_faust_app(
        s,
        "users",
        fetch_wait_ms=s.users_fetch_wait_ms,
        stream_recovery_delay=0.1,
        # one changelog record per user per batch, a few kB each: Faust's 16 kB batches
        # would hold a handful, and each partition has one batch in flight at a time
        producer_max_batch_size=512 * 1024,
        **ctx.extras.get("faust_conf", {}),
    )
    table = keyed_state_table(app, TABLE_NAME, UserState, s.user_partitions)
    updater = UserStateUpdater(
        table,
        PgUserStates(pool),
        PgCovisitation(pool, s.covisit_half_life_h),
        UserStateConfig.from_settings(s),
        CovisitConfig.from_settings(s),
        stop,
    )
    decoder = FaustDecoder(ctx.producer, "users")
    topic = app.topic(
        spec.name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    ctx.extras["users_updater"] = updater

    @app.agent(topic, name="users-state")
    async def consume(stream: Any) -> None:
        async for events in stream.take_events(s.users_batch_size, s.users_batch_wait_ms / 1000):
            updater.stats.consumed += len(events)
            decoded = _decode(decoder, spec, list(events))
            updater.stats.dead_lettered += len(events) - len(decoded)
            if decoded:
                await updater.apply(decoded)

    await app.start()
    try:
        while not stop.is_set() and not app.crashed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
    finally:
        await app.stop()
        log.info("users stopped: %s", updater.stats)
    if app.crashed:
        raise RuntimeError(f"users worker crashed: {app.crash_reason!r}")
