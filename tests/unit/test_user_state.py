"""User state rules by hand: counts, positives, warmth, engagement decay, recent items,
sessions, queries, dedup (by event id and by offset), out-of-order events, and fold."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from recsys.recent import push_recent
from recsys.records import EventType, UserEvent, WarmthBucket
from recsys.users.state import (
    Position,
    UserState,
    UserStateConfig,
    apply,
    apply_events,
    event_weight,
    fold,
    is_positive,
    warmth_of,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CFG = UserStateConfig(
    cold_max_interactions=2,
    warm_min_interactions=4,
    engagement_half_life_h=1.0,
    session_gap_s=600,
    recent_items_max=3,
    dedup_window_s=3600,
    dedup_max_events=100,
)


def P(partition: int, offset: int, topic_id: str = "topic-a") -> Position:
    return Position(topic_id, partition, offset)


def ev(
    kind: str,
    item: str | None = None,
    *,
    s: float = 0,
    user: str = "u1",
    eid: str | None = None,
    rating: float | None = None,
    query: str | None = None,
) -> UserEvent:
    extra = {"event_id": eid} if eid else {}
    return UserEvent(
        user_id=user,
        event_type=EventType(kind),
        item_id=item,
        rating=rating,
        query=query,
        occurred_at=T0 + timedelta(seconds=s),
        **extra,  # type: ignore[arg-type]
    )


def run(*events: UserEvent, cfg: UserStateConfig = CFG) -> UserState:
    state, _ = apply_events(None, events, cfg)
    assert state is not None
    return state


def test_positive_events_and_weights() -> None:
    assert [is_positive(ev(k, "a")) for k in ("VIEW", "CLICK", "CART", "PURCHASE", "DISMISS")] == [
        False,
        True,
        True,
        True,
        False,
    ]
    assert is_positive(ev("RATING", "a", rating=4.0))
    assert not is_positive(ev("RATING", "a", rating=3.5))
    assert not is_positive(ev("SEARCH", query="films"))
    assert event_weight(ev("RATING", "a", rating=5.0)) == 2.0
    assert event_weight(ev("RATING", "a", rating=2.0)) == 0.0  # as batch CF weighs it
    assert event_weight(ev("PURCHASE", "a")) == 8.0


def test_counts_positives_and_warmth_buckets() -> None:
    state = run(ev("VIEW", "a"), ev("CLICK", "a", s=1), ev("CART", "b", s=2))
    assert state.count(EventType.VIEW) == 1 and state.count(EventType.CLICK) == 1
    assert state.positives == 2 and state.warmth is WarmthBucket.COLD
    state = apply(state, ev("RATING", "c", s=3, rating=4.5), CFG)
    assert state.positives == 3 and state.warmth is WarmthBucket.WARMING
    state = apply(state, ev("PURCHASE", "b", s=4), CFG)
    assert state.warmth is WarmthBucket.WARM
    assert state.events == 5
    assert [warmth_of(n, UserStateConfig()) for n in (0, 5, 6, 50, 51)] == [
        WarmthBucket.COLD,
        WarmthBucket.COLD,
        WarmthBucket.WARMING,
        WarmthBucket.WARMING,
        WarmthBucket.WARM,
    ]


def test_engagement_decays_with_the_half_life() -> None:
    state = run(ev("CLICK", "a"), ev("VIEW", "b", s=3600))  # 2 halves to 1, plus 1
    assert state.engagement == pytest.approx(2.0)
    assert state.engagement_at == T0 + timedelta(hours=1)
    assert state.engagement_now(T0 + timedelta(hours=2), 1.0) == pytest.approx(1.0)
    # an out-of-order event adds its decayed weight without moving the reference time
    late = apply(state, ev("CLICK", "c", s=0), CFG)
    assert late.engagement == pytest.approx(3.0)
    assert late.engagement_at == state.engagement_at


def test_recent_items_distinct_newest_first_bounded() -> None:
    state = run(
        ev("VIEW", "a"),
        ev("VIEW", "b", s=1),
        ev("CLICK", "a", s=2),
        ev("VIEW", "c", s=3),
        ev("VIEW", "d", s=4),
        ev("DISMISS", "e", s=5),
        ev("SEARCH", s=6, query="x"),
    )
    assert [i for i, _ in state.recent_items] == ["d", "c", "a"]
    # an out-of-order visit lands by its time; an older visit of a kept item changes nothing
    assert [i for i, _ in apply(state, ev("VIEW", "z", s=3.5), CFG).recent_items] == [
        "d",
        "z",
        "c",
    ]
    assert apply(state, ev("VIEW", "c", s=0.5), CFG).recent_items == state.recent_items


def test_push_recent_does_not_mutate_its_input() -> None:
    items = [("a", T0 + timedelta(seconds=2)), ("b", T0)]
    copy = list(items)
    assert push_recent(items, "b", T0 + timedelta(seconds=5), 5)[0][0] == "b"
    assert push_recent(items, "c", T0 - timedelta(seconds=5), 2) == copy
    assert items == copy


def test_sessions_split_on_the_inactivity_gap_and_keep_the_last_query() -> None:
    state = run(
        ev("SEARCH", s=0, query="  heist films "),
        ev("VIEW", "a", s=60),
        ev("VIEW", "b", s=120),
    )
    assert state.session is not None
    first = state.session.session_id
    assert first == f"u1:{int(T0.timestamp() * 1000)}"
    assert [i for i, _ in state.session.items] == ["b", "a"]
    assert state.session.query == "heist films" and state.session.events == 3
    state = apply(state, ev("VIEW", "c", s=120 + 601), CFG)  # past the gap: a new session
    assert state.session is not None and state.session.session_id != first
    assert [i for i, _ in state.session.items] == ["c"] and state.session.query is None
    # a query on any event counts; an out-of-order one does not replace a newer query
    state = apply(state, ev("CLICK", "d", s=800, query="cheaper"), CFG)
    state = apply(state, ev("VIEW", "e", s=760, query="older"), CFG)
    assert state.session is not None and state.session.query == "cheaper"
    # a straggler from the earlier session is counted but leaves the session alone
    before = state.session
    state = apply(state, ev("VIEW", "f", s=30), CFG)
    assert state.session == before and state.count(EventType.VIEW) == 5


def test_duplicates_by_event_id_within_the_window() -> None:
    state = run(ev("CLICK", "a", eid="e1"), ev("CLICK", "a", eid="e1", s=10))
    assert state.events == 1 and state.positives == 1
    # beyond the dedup window (event time), the id is forgotten
    later = run(
        ev("CLICK", "a", eid="e1"),
        ev("VIEW", "b", eid="e2", s=3601),
        ev("CLICK", "a", eid="e1"),
    )
    assert later.events == 3 and "e1" in later.seen
    small = UserStateConfig(dedup_max_events=2)
    capped = run(*(ev("VIEW", "a", eid=f"e{i}", s=i) for i in range(5)), cfg=small)
    assert list(capped.seen) == ["e3", "e4"]


def test_redelivery_is_recognised_by_offset() -> None:
    e1, e2 = ev("CLICK", "a", eid="x1"), ev("CLICK", "b", eid="x2", s=1)
    state, accepted = apply_events(None, [(e1, P(0, 10)), (e2, P(0, 11))], CFG)
    assert state is not None and len(accepted) == 2 and state.last_position == P(0, 11)
    # an event at or before the stored offset of the same partition is a redelivery,
    # even when its id has left the dedup window
    forgotten = state.model_copy(update={"seen": {}})
    again, accepted = apply_events(forgotten, [(e1, P(0, 10)), (e2, P(0, 11))], CFG)
    assert accepted == [] and again is not None and again.events == 2
    # the input state is never changed
    assert state.events == 2 and len(state.seen) == 2


def test_accepted_events_carry_the_recent_items_before_them() -> None:
    _, accepted = apply_events(None, [ev("VIEW", "a"), ev("VIEW", "b", s=1)], CFG)
    assert [[i for i, _ in a.recent_before] for a in accepted] == [[], ["a"]]
    assert accepted[0].session_id == accepted[1].session_id == f"u1:{int(T0.timestamp() * 1000)}"


def test_unknown_items_and_events_of_another_user() -> None:
    state = run(ev("PURCHASE", "no-such-item"))
    assert state.recent_items[0][0] == "no-such-item"
    with pytest.raises(ValueError, match="applied to"):
        apply(state, ev("VIEW", "a", user="u2"), CFG)


def test_fold_equals_applying_in_order_and_round_trips_as_json() -> None:
    log = [
        ev("VIEW", "a", user="u1", eid="1"),
        ev("CLICK", "b", user="u2", eid="2", s=1),
        ev("CLICK", "b", user="u2", eid="2", s=1),
        ev("RATING", "c", user="u1", eid="3", s=2, rating=5),
        ev("SEARCH", user="u2", eid="4", s=3, query="q"),
    ]
    states = fold(log, CFG)
    assert states["u2"].events == 2 and states["u1"].positives == 1
    manual = None
    for e in [x for x in log if x.user_id == "u1"]:
        manual = apply(manual, e, CFG)
    assert manual == states["u1"]
    for state in states.values():
        assert UserState.model_validate_json(state.model_dump_json()) == state
        assert state.without_dedup().seen == {}


def test_a_position_of_another_incarnation_of_the_topic_is_not_a_redelivery() -> None:
    e1, e2 = ev("CLICK", "a", eid="x1"), ev("CLICK", "b", eid="x2", s=1)
    state, _ = apply_events(None, [(e1, P(0, 10)), (e2, P(0, 11))], CFG)
    assert state is not None
    # the topic was recreated (or the in-memory broker restarted): offsets begin at 0 again
    e3, e4 = ev("VIEW", "c", eid="x3", s=2), ev("VIEW", "d", eid="x4", s=3)
    new, accepted = apply_events(state, [(e3, P(0, 0, "topic-b")), (e4, P(0, 1, "topic-b"))], CFG)
    assert new is not None and [a.event.event_id for a in accepted] == ["x3", "x4"]
    assert new.events == 4 and new.last_position == P(0, 1, "topic-b")
    # ... but an event id already counted is still a duplicate, whatever its position
    again, accepted = apply_events(new, [(e2, P(0, 2, "topic-b"))], CFG)
    assert accepted == [] and again is not None and again.events == 4


def test_the_dedup_window_keeps_its_order_through_json() -> None:
    """Stored as an array (jsonb sorts object keys): the oldest id is pruned first even
    after a round trip, so a user with more events than the window never double counts."""
    small = UserStateConfig(dedup_max_events=3, dedup_window_s=10**6)
    # ids whose sorted order (length, then bytes: what jsonb does) differs from log order
    ids = ["zz-9", "a", "m-long-id", "b2", "0", "yy"]
    state: UserState | None = None
    for i, eid in enumerate(ids):
        if state is not None:
            state = UserState.model_validate_json(state.model_dump_json())  # stored and read
        state = apply(state, ev("VIEW", f"i{i}", eid=eid, s=i), small)
    assert state is not None and list(state.seen) == ["b2", "0", "yy"]
    assert state == fold([ev("VIEW", f"i{i}", eid=e, s=i) for i, e in enumerate(ids)], small)["u1"]
    assert '"seen":[["b2",' in state.model_dump_json()
    # a JSON object (the old stored shape) is refused rather than read in the wrong order
    stored = json.loads(state.model_dump_json())
    stored["seen"] = dict(stored["seen"])
    legacy = json.dumps(stored)
    with pytest.raises(ValueError, match="ordered array"):
        UserState.model_validate_json(legacy)


def test_applying_a_batch_never_changes_the_input_state() -> None:
    """Sessions are copied once per batch and then changed in place: the state given in
    must stay as it was, whatever order stragglers and session events come in."""
    first = [ev("VIEW", "a", s=1000), ev("SEARCH", s=1010, query="jazz")]
    state = run(*first)
    frozen = state.model_dump_json()
    batch = [ev("VIEW", "old", s=10), ev("VIEW", "b", s=1020), ev("CLICK", "c", s=1030)]
    new, accepted = apply_events(state, batch, CFG)
    assert state.model_dump_json() == frozen
    assert new is not None and new.session is not None and new.session.events == 4
    assert [a.session_id is not None for a in accepted] == [False, True, True]
    assert new == fold([*first, *batch], CFG)["u1"]
