"""The users read model, event store and co-visitation on the real Postgres: a batch
written twice counts once, a stale batch never moves a row backwards, and Postgres
co-visitation equals the offline model on the same log."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from recsys import db
from recsys.cf.covisit import Covisitation, CovisitConfig
from recsys.cf.pg_covisit import PgCovisitation
from recsys.records import EventType, UserEvent, WarmthBucket
from recsys.users.nearline import update_batch
from recsys.users.state import Position, UserState, UserStateConfig, fold
from recsys.users.store import PgUserStates

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
CFG = UserStateConfig(cold_max_interactions=1, warm_min_interactions=3, session_gap_s=600)
CCFG = CovisitConfig(covisit_half_life_h=24.0, covisit_window_items=3, covisit_window_s=3600)


def ev(user: str, kind: str, item: str | None, s: float, eid: str) -> UserEvent:
    return UserEvent(
        event_id=eid,
        user_id=user,
        event_type=EventType(kind),
        item_id=item,
        query="films" if kind == "SEARCH" else None,
        occurred_at=T0 + timedelta(seconds=s),
    )


LOG = [
    ev("u1", "VIEW", "a", 0, "e1"),
    ev("u1", "CLICK", "b", 10, "e2"),
    ev("u2", "VIEW", "a", 20, "e3"),
    ev("u2", "PURCHASE", "b", 30, "e4"),
    ev("u2", "SEARCH", None, 35, "e5"),
    ev("u1", "CART", "c", 40, "e6"),
    ev("u2", "DISMISS", "d", 50, "e7"),
    ev("u1", "CLICK", "b", 60, "e2"),  # duplicate id
    ev("u3", "VIEW", "gone-item", 70, "e8"),
]


@pytest.fixture
async def pool(database: str) -> AsyncIterator[object]:
    apool = db.async_pool(database, min_size=1, max_size=2)
    await apool.open(wait=True)
    yield apool
    await apool.close()


async def test_batches_write_once_and_never_go_backwards(pool: object) -> None:
    store, covisit = PgUserStates(pool), PgCovisitation(pool, CCFG.covisit_half_life_h)  # type: ignore[arg-type]
    states: dict[str, UserState] = {}
    positions = [(e, Position("t", 0, i)) for i, e in enumerate(LOG)]
    first = update_batch(states.get, positions[:5], CFG, CCFG)
    result = await store.write(first.accepted, first.states.values(), covisit)
    assert (result.inserted, result.redelivered) == (5, 0)
    states.update(first.states)
    second = update_batch(states.get, positions[5:], CFG, CCFG)
    assert second.duplicates == 1
    await store.write(second.accepted, second.states.values(), covisit)
    states.update(second.states)

    expected = fold(LOG, CFG)
    got = await store.get_many(["u1", "u2", "u3", "nobody"])
    assert set(got) == {"u1", "u2", "u3"}
    for user, state in expected.items():
        assert got[user] == states[user]  # the whole state: dedup window and position too
        assert got[user].without_dedup() == state.without_dedup()
    assert got["u1"].warmth is WarmthBucket.WARMING and got["u2"].warmth is WarmthBucket.COLD
    assert await store.get("nobody") is None
    assert await store.consumed("u2") == {"a", "b"}  # not the dismissed item
    assert await store.consumed("u1", limit=1) == {"c"}
    # the serving path's single read returns the same as the two reads
    assert await store.state_and_consumed("u2") == (got["u2"], {"a", "b"})
    assert await store.state_and_consumed("u1", limit=1) == (got["u1"], {"c"})
    assert await store.state_and_consumed("nobody") == (None, set())

    # the same batch again (a redelivery after a crash): nothing counts twice
    pairs_before = await covisit.log2_weights()
    again = update_batch({}.get, positions[:5], CFG, CCFG)
    result = await store.write(again.accepted, again.states.values(), covisit)
    assert (result.inserted, result.redelivered, result.pairs) == (0, 5, 0)
    assert await covisit.log2_weights() == pairs_before
    assert await store.version("u1") == expected["u1"].events  # not moved back to 2

    offline = Covisitation(CCFG)
    for state_event in [e for e in fold_order(LOG)]:
        assert state_event.item_id is not None
        offline.update(state_event.user_id, state_event.item_id, state_event.occurred_at)
    pg, mem = await covisit.log2_weights(), offline.log2_weights()
    assert pg.keys() == mem.keys() and len(pg) > 0
    assert all(math.isclose(pg[k], mem[k], rel_tol=1e-12) for k in pg)
    at = T0 + timedelta(hours=1)
    got_n = await covisit.neighbors(["a"], 5, at=at)
    want_n = offline.neighbors(["a"], 5, at=at)
    assert [(i, v) for i, _, v in got_n] == [(i, v) for i, _, v in want_n]
    assert all(math.isclose(g[1], w[1], rel_tol=1e-9) for g, w in zip(got_n, want_n, strict=True))
    assert [i for i, _, _ in await covisit.neighbors(["a"], 5, exclude={"b"}, at=at)] == ["c"]
    # by shares (the covisit CF list): the same ranking from Postgres as in memory, every
    # seed's pairs read in one statement
    got_s = await covisit.neighbors(["a", "b"], 5, shares=True)
    want_s = offline.neighbors(["a", "b"], 5, shares=True)
    assert got_s and [(i, v) for i, _, v in got_s] == [(i, v) for i, _, v in want_s]
    assert all(math.isclose(g[1], w[1], rel_tol=1e-9) for g, w in zip(got_s, want_s, strict=True))


def fold_order(log: list[UserEvent]) -> list[UserEvent]:
    """Visits the state accepted, in log order (what co-visitation is fed)."""
    seen: set[str] = set()
    out = []
    for e in log:
        if e.event_id in seen or e.event_type in (EventType.SEARCH, EventType.DISMISS):
            seen.add(e.event_id)
            continue
        seen.add(e.event_id)
        out.append(e)
    return out


async def test_a_batch_with_some_events_already_stored_adds_only_the_new_co_visits(
    pool: object,
) -> None:
    """A state that lost track of events (re-sent past the dedup window, or read before
    another owner's write landed) accepts them again: the insert finds them stored, and
    the batch's co-visits are summed again without them, in the same transaction."""
    store, covisit = PgUserStates(pool), PgCovisitation(pool, CCFG.covisit_half_life_h)  # type: ignore[arg-type]
    log = [
        ev("u1", "VIEW", "a", 0, "r1"),
        ev("u2", "VIEW", "a", 5, "r2"),
        ev("u1", "CLICK", "b", 10, "r3"),
        ev("u2", "VIEW", "c", 15, "r4"),
        ev("u1", "VIEW", "c", 20, "r5"),
        ev("u2", "CART", "b", 25, "r6"),
        ev("u1", "VIEW", "d", 30, "r7"),
    ]
    positions = [(e, Position("t", 0, i)) for i, e in enumerate(log)]
    first = update_batch({}.get, positions[:3], CFG, CCFG)
    await store.write(first.accepted, first.states.values(), covisit)
    # the whole log from no state: r1..r3 are accepted again but are already stored
    whole = update_batch({}.get, positions, CFG, CCFG)
    assert whole.duplicates == 0
    result = await store.write(whole.accepted, whole.states.values(), covisit)
    assert (result.inserted, result.redelivered) == (4, 3)

    offline = Covisitation(CCFG)
    for e in log:
        assert e.item_id is not None
        offline.update(e.user_id, e.item_id, e.occurred_at)
    pg, mem = await covisit.log2_weights(), offline.log2_weights()
    assert pg.keys() == mem.keys() and len(pg) > 4
    assert all(math.isclose(pg[k], mem[k], rel_tol=1e-12) for k in pg), (pg, mem)
    assert sorted(await store.consumed("u1")) == ["a", "b", "c", "d"]
