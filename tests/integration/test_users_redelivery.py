"""Worker `users` on the real broker and Postgres, with users who have more events than
the dedup window: events re-sent by their producers (same event id, a new offset) are
recognised after every batch's state has been stored in jsonb and read back, so each
user's state — the dedup window and its order included — equals the offline fold."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import timedelta

from recsys.records import EventType, UserEvent
from recsys.users.state import UserState, fold
from streams import admin
from streams.settings import Settings
from tests.helpers import await_until
from tests.integration.users_harness import (
    T0,
    USERS_OVERRIDES,
    publish,
    read_model,
    stored_events,
    user_config,
)
from workers.bootstrap import bootstrap
from workers.runtime import serve_forever
from workers.users_worker import UsersWorker


def resent_log(n_users: int, per_user: int, seed: int = 13) -> tuple[list[UserEvent], int]:
    """Each user's events in time order with random (uuid) ids, interleaved; every
    fourth event is sent again 3 to 15 messages later. Returns the log and the resends."""
    rng = random.Random(seed)
    queue = [
        UserEvent(
            event_id=str(uuid.UUID(int=rng.getrandbits(128))),
            user_id=f"u{u}",
            event_type=rng.choice([EventType.VIEW, EventType.VIEW, EventType.CLICK]),
            item_id=f"i{rng.randrange(40)}",
            occurred_at=T0 + timedelta(seconds=10 * n),
        )
        for n in range(per_user)
        for u in range(n_users)
    ]
    log: list[UserEvent] = []
    pending: list[tuple[int, UserEvent]] = []
    resent = 0
    for n, event in enumerate(queue):
        log.append(event)
        if n % 4 == 0:
            pending.append((n + rng.randrange(3, 16), event))
        for due in [p for p in pending if p[0] <= n]:
            pending.remove(due)
            log.append(due[1])
            resent += 1
    log.extend(e for _, e in pending)
    return log, resent + len(pending)


def _offline_view(state: UserState) -> tuple[UserState, list[str]]:
    """The state without its Kafka position (the offline fold has none) and the window's
    order (dict equality ignores order)."""
    return state.model_copy(update={"last_position": None}), list(state.seen)


async def test_resent_events_are_never_counted_twice_past_the_window_size(
    settings: Settings,
) -> None:
    s = settings.with_overrides(
        **USERS_OVERRIDES | {"users_batch_size": 25},
        dedup_max_events=20,
        dedup_window_s=10**7,
    )
    admin.ensure_topics(s)
    log, resent = resent_log(n_users=4, per_user=90)
    publish(s, log)
    ctx = bootstrap(s)
    stop = asyncio.Event()
    task = asyncio.create_task(serve_forever("users", ctx, stop))
    assert s.database_url is not None
    dsn = s.database_url.get_secret_value()
    try:

        def consumed_all() -> bool:
            handle = ctx.handles.get(UsersWorker)
            if task.done() or handle is None:
                return task.done()
            durable = handle.updater.stats.durable_offsets
            return sum(o + 1 for o in durable.values()) >= len(log)

        await await_until(consumed_all, 120, 0.2, what="the whole log durable")
        assert not task.done()
        updater = ctx.handles.require(UsersWorker).updater
        assert updater.stats.batches > 10  # the states went through jsonb many times
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    expected = fold(log, user_config(s))
    got = read_model(dsn)
    assert {u: st.events for u, st in got.items()} == {u: st.events for u, st in expected.items()}
    for user, state in expected.items():
        assert len(state.seen) == 20 and got[user].last_position is not None
        assert _offline_view(got[user]) == _offline_view(state), f"{user} differs"
    assert updater.stats.duplicates == resent
    assert len(stored_events(dsn)) == len({e.event_id for e in log})
