"""The serving path's user read in one statement (state, consumed items, the CF
profile's events) returns exactly what the separate reads return."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from recsys import db
from recsys.cf.covisit import CovisitConfig
from recsys.cf.pg_covisit import PgCovisitation
from recsys.cf.profile import PgProfiles
from recsys.records import EventType, UserEvent
from recsys.serving.pg_ports import PgUsers
from recsys.serving.user_view import view_of
from recsys.users.nearline import update_batch
from recsys.users.state import Position, UserState, UserStateConfig
from recsys.users.store import PgUserStates

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
CFG = UserStateConfig(cold_max_interactions=1, warm_min_interactions=3, session_gap_s=600)
CCFG = CovisitConfig(covisit_half_life_h=24.0, covisit_window_items=3, covisit_window_s=3600)


def ev(user: str, kind: str, item: str | None, s: float, rating: float | None = None) -> UserEvent:
    return UserEvent(
        event_id=f"{user}-{s}",
        user_id=user,
        event_type=EventType(kind),
        item_id=item,
        rating=rating,
        query="films" if kind == "SEARCH" else None,
        occurred_at=T0 + timedelta(seconds=s, microseconds=123),
    )


LOG = [
    ev("u1", "VIEW", "a", 0),
    ev("u1", "CLICK", "b", 10),
    ev("u1", "RATING", "b", 12, 4.5),
    ev("u1", "RATING", "b", 13, 2.0),  # only the latest rating counts
    ev("u2", "VIEW", "a", 20),
    ev("u2", "PURCHASE", "b", 30),
    ev("u2", "SEARCH", None, 35),
    ev("u1", "CART", "c", 40),
    ev("u2", "DISMISS", "d", 50),
    ev("u3", "RATING", "e", 60, 1.0),
]


@pytest.fixture
async def pool(database: str) -> AsyncIterator[Any]:
    apool = db.async_pool(database, min_size=1, max_size=2, autocommit=True)
    await apool.open(wait=True)
    yield apool
    await apool.close()


async def test_one_statement_reads_what_the_separate_reads_do(pool: Any) -> None:
    states = PgUserStates(pool)
    found: dict[str, UserState] = {}
    update = update_batch(
        found.get, [(e, Position("t", 0, i)) for i, e in enumerate(LOG)], CFG, CCFG
    )
    await states.write(update.accepted, update.states.values(), PgCovisitation(pool, 24.0))
    for limit in (1000, 2):
        profiles = PgProfiles(pool, limit=limit)
        users = PgUsers(states, consumed_limit=2, profiles=profiles)
        for user in ("u1", "u2", "u3", "nobody"):
            state, consumed = await states.state_and_consumed(user, 2)
            expected = view_of(user, state, consumed)
            if state is not None:
                expected = replace(expected, cf_profile=tuple(await profiles.profile(user)))
            got = await users.view(user)
            assert got == expected, user
    u1 = await PgUsers(states, profiles=PgProfiles(pool)).view("u1")
    assert u1.cf_profile is not None and u1.cf_profile[0][0] == "c"
    assert (await PgUsers(states, profiles=PgProfiles(pool)).view("nobody")).cf_profile is None
