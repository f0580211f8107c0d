"""One batch of the users worker, without Kafka or Postgres: grouped per user in log
order, one new state per user, duplicates counted, co-visits only for visits and only
with the user's own recent items."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from recsys.cf.covisit import CovisitConfig
from recsys.records import EventType, UserEvent
from recsys.users.nearline import update_batch
from recsys.users.state import Position, UserState, UserStateConfig, fold

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def ev(user: str, kind: str, item: str | None, s: int, eid: str) -> UserEvent:
    return UserEvent(
        event_id=eid,
        user_id=user,
        event_type=EventType(kind),
        item_id=item,
        query="q" if kind == "SEARCH" else None,
        occurred_at=T0 + timedelta(seconds=s),
    )


def test_batch_groups_per_user_and_pairs_visits_only() -> None:
    log = [
        ev("a", "VIEW", "x", 0, "1"),
        ev("b", "VIEW", "y", 1, "2"),
        ev("a", "CLICK", "z", 2, "3"),
        ev("a", "DISMISS", "w", 3, "4"),
        ev("b", "SEARCH", None, 4, "5"),
        ev("a", "CLICK", "z", 2, "3"),  # duplicate
    ]
    cfg, ccfg = UserStateConfig(), CovisitConfig()
    out = update_batch({}.get, [(e, Position("t", 0, i)) for i, e in enumerate(log)], cfg, ccfg)
    assert out.duplicates == 1
    assert set(out.states) == {"a", "b"}
    offline = fold(log, cfg)
    assert {u: st.without_dedup() for u, st in out.states.items()} == {
        u: st.without_dedup() for u, st in offline.items()
    }
    assert out.states["a"].seen == offline["a"].seen
    assert out.states["a"].last_position == ("t", 0, 3)
    pairs = {a.event.event_id: p for a, p in out.accepted}
    assert [(x, y) for x, y, _ in pairs["3"]] == [("z", "x"), ("x", "z")]
    assert pairs["1"] == pairs["2"] == pairs["4"] == pairs["5"] == []
    # a second batch continues from the states of the first
    states: dict[str, UserState] = dict(out.states)
    later = ev("b", "VIEW", "x", 9, "6")
    more = update_batch(states.get, [(later, Position("t", 1, 0))], cfg, ccfg)
    assert more.states["b"].events == 3
    assert [(x, y) for x, y, _ in more.accepted[0][1]] == [("x", "y"), ("y", "x")]
