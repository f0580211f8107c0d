"""A fixed user-event log with duplicates, and the exactness check of the users worker:
states, read model, ``user_events`` and co-visitation against the offline computation."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import psycopg

from recsys.cf.covisit import Covisitation, CovisitConfig
from recsys.records import EventType, UserEvent
from recsys.users.state import Position, UserState, UserStateConfig, apply_events, fold
from streams.producer import RecordProducer
from streams.settings import Settings
from streams.topics import Topics
from tests.helpers import committed_offsets, read_topic, wait_until

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
#: Settings that make sessions split and buckets change within a short log.
USERS_OVERRIDES: dict[str, object] = {
    "session_gap_s": 120,
    "cold_max_interactions": 2,
    "warm_min_interactions": 8,
    "recent_items_max": 6,
    "covisit_window_items": 3,
    "covisit_window_s": 600,
    "users_batch_size": 50,
    "users_fetch_wait_ms": 20,
}
_KINDS = (
    [EventType.VIEW] * 5
    + [EventType.CLICK] * 2
    + [
        EventType.CART,
        EventType.PURCHASE,
        EventType.RATING,
        EventType.SEARCH,
        EventType.DISMISS,
    ]
)


def make_log(n_users: int, n_events: int, seed: int = 7, dup_every: int = 9) -> list[UserEvent]:
    """``n_events`` events of ``n_users`` users over 30 items, in time order per user,
    every ``dup_every``-th followed later by a duplicate (same event id and content)."""
    rng = random.Random(seed)
    clock = {f"u{i}": T0 for i in range(n_users)}
    log: list[UserEvent] = []
    pending: list[tuple[int, UserEvent]] = []
    for n in range(n_events):
        user = f"u{rng.randrange(n_users)}"
        clock[user] += timedelta(seconds=rng.choice([5, 20, 40, 90, 200]))
        kind = rng.choice(_KINDS)
        item = None if kind is EventType.SEARCH else f"i{rng.randrange(30)}"
        event = UserEvent(
            event_id=f"e{n}",
            user_id=user,
            event_type=kind,
            item_id=item,
            rating=float(rng.choice([2, 3.5, 4, 4.5, 5])) if kind is EventType.RATING else None,
            query=f"something like {item or 'heist films'}" if kind is EventType.SEARCH else None,
            occurred_at=clock[user],
        )
        log.append(event)
        if n % dup_every == 0:
            pending.append((n + rng.randrange(1, 15), event))
        for due in [p for p in pending if p[0] <= n]:
            pending.remove(due)
            log.append(due[1])
    log.extend(e for _, e in pending)
    return log


def publish(settings: Settings, events: list[UserEvent], flush_every: int = 100) -> None:
    with RecordProducer(settings) as producer:
        for i, event in enumerate(events, start=1):
            producer.publish_user_event(event)
            if i % flush_every == 0:
                producer.flush()


def user_config(settings: Settings) -> UserStateConfig:
    return UserStateConfig.from_settings(settings.users)


def offline_covisitation(log: list[UserEvent], settings: Settings) -> Covisitation:
    """Co-visitation computed offline: every visit the state accepts, in log order."""
    cfg = user_config(settings)
    accepted: set[int] = set()  # log indexes (a duplicate is the same object as its original)
    by_user: dict[str, list[tuple[UserEvent, Position]]] = {}
    for i, e in enumerate(log):
        by_user.setdefault(e.user_id, []).append((e, Position("offline", 0, i)))
    for events in by_user.values():
        _, done = apply_events(None, events, cfg)
        accepted |= {a.position.offset for a in done if a.position is not None}
    model = Covisitation(CovisitConfig.from_settings(settings.users))
    for i, e in enumerate(log):
        if (
            i in accepted
            and e.item_id is not None
            and e.event_type
            not in (
                EventType.SEARCH,
                EventType.DISMISS,
            )
        ):
            model.update(e.user_id, e.item_id, e.occurred_at)
    return model


def read_model(dsn: str) -> dict[str, UserState]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT user_id, state::text FROM user_state").fetchall()
    return {r[0]: UserState.model_validate_json(r[1]) for r in rows}


def stored_events(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT event_id FROM user_events").fetchall()]


def stored_covisit(dsn: str) -> dict[tuple[str, str], float]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT item_id, other_id, log2_weight FROM covisit").fetchall()
    return {(r[0], r[1]): float(r[2]) for r in rows}


def caught_up(dsn: str, log: list[UserEvent], settings: Settings) -> bool:
    """The read model holds every user's final version."""
    expected = fold(log, user_config(settings))
    with psycopg.connect(dsn) as conn:
        rows = dict(conn.execute("SELECT user_id, version FROM user_state").fetchall())
    return all(rows.get(u) == s.events for u, s in expected.items())


def wait_caught_up(dsn: str, log: list[UserEvent], settings: Settings, timeout_s: float) -> None:
    """Wait until the read model has every user's final version; on timeout, fail with
    what differs (missing or double-counted users) rather than only "timed out"."""
    try:
        wait_until(lambda: caught_up(dsn, log, settings), timeout_s, 0.5, what="users caught up")
    except AssertionError:
        expected = fold(log, user_config(settings))
        with psycopg.connect(dsn) as conn:
            rows = dict(conn.execute("SELECT user_id, version FROM user_state").fetchall())
        diff = {u: (rows.get(u), s.events) for u, s in expected.items() if rows.get(u) != s.events}
        topic = Topics(settings).user_events.name
        group = f"{settings.topic_prefix}streamrec-users"
        ends = {m.partition(): m.offset() + 1 for m in read_topic(settings, topic, 10**9, 5)}
        raise AssertionError(
            f"not caught up after {timeout_s}s: (stored, expected) versions "
            f"{dict(list(diff.items())[:8])}, {len(diff)} users differ, "
            f"{len(stored_events(dsn))} events stored; committed "
            f"{committed_offsets(settings, group, topic)}, ends {ends}"
        ) from None


def assert_exact(dsn: str, log: list[UserEvent], settings: Settings) -> dict[str, UserState]:
    """Read model, ``user_events`` and co-visitation equal the offline computation."""
    expected = fold(log, user_config(settings))
    got = read_model(dsn)
    assert set(got) == set(expected)
    for user, state in expected.items():
        assert got[user].without_dedup() == state.without_dedup(), f"{user} differs"
    ids = stored_events(dsn)
    assert len(ids) == len(set(ids)) == len({e.event_id for e in log})
    assert sum(s.events for s in expected.values()) == len(ids)
    pg = stored_covisit(dsn)
    mem = offline_covisitation(log, settings).log2_weights()
    assert pg.keys() == mem.keys() and pg
    bad = [k for k in pg if not math.isclose(pg[k], mem[k], rel_tol=1e-12, abs_tol=1e-9)]
    assert not bad, f"co-visitation differs for {[(k, pg[k], mem[k]) for k in bad[:5]]}"
    return expected
