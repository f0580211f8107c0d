"""The join rules on a scripted session, without Kafka or Postgres."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from recsys.feedback import EventClock, example_id, join_impression
from recsys.records import (
    EventType,
    RecommendedItem,
    RecResponse,
    Route,
    UserEvent,
    WarmthBucket,
)

T0 = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)
WINDOW = 600.0


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


IMPRESSION = RecResponse(
    request_id="req-1",
    user_id="u1",
    route=Route.CONTENT,
    warmth_bucket=WarmthBucket.COLD,
    propensity=0.5,
    llm_used=True,
    prompt_version="p3",
    llm_model="m1",
    model_version="cf7",
    latency_ms=42.0,
    produced_at=T0,
    items=[
        RecommendedItem(item_id=i, rank=n, score=1.0, source="t")
        for n, i in enumerate(["A", "B", "C"], start=1)
    ],
)


def ev(
    eid: str,
    kind: EventType,
    item: str,
    seconds: float,
    *,
    user: str = "u1",
    rating: float | None = None,
    rec_request_id: str | None = None,
    query: str | None = None,
) -> UserEvent:
    return UserEvent(
        event_id=eid,
        user_id=user,
        event_type=kind,
        item_id=item,
        occurred_at=at(seconds),
        rating=rating,
        rec_request_id=rec_request_id,
        query=query,
    )


SESSION = [
    ev("e0", EventType.CLICK, "A", -10),  # before the impression
    ev("e1", EventType.VIEW, "A", 5),  # → A clicked (a view counts, by the schema)
    ev("e1", EventType.VIEW, "A", 5),  # duplicate
    ev("e2", EventType.CART, "B", 20, rec_request_id="req-1"),  # explicit attribution
    ev("e3", EventType.PURCHASE, "C", 30, rec_request_id="req-other"),  # another request's
    ev("e4", EventType.RATING, "B", 40, rating=4.5),
    ev("e5", EventType.RATING, "B", 50, rating=3.0),  # latest rating wins
    ev("e6", EventType.DISMISS, "C", WINDOW + 1),  # after the window
    ev("e7", EventType.CLICK, "D", 10),  # not shown
    ev("e8", EventType.CLICK, "A", 7, user="u2"),  # another user
    ev("e9", EventType.SEARCH, "A", 8, query="q"),  # not an outcome (search)
]


def test_scripted_session_is_labelled_exactly() -> None:
    examples = join_impression(IMPRESSION, SESSION, WINDOW)
    assert [e.item_id for e in examples] == ["A", "B", "C"]
    a, b, c = examples
    assert (a.example_id, a.rank, a.clicked, a.carted, a.rating, a.attributed_by) == (
        "req-1:A",
        1,
        True,
        False,
        None,
        "item",
    )
    assert a.outcome_at == at(5)
    assert (b.clicked, b.carted, b.purchased, b.rating, b.attributed_by) == (
        False,
        True,
        False,
        3.0,
        "request_id",
    )
    assert b.outcome_at == at(20)
    assert (c.clicked, c.purchased, c.dismissed, c.attributed_by, c.outcome_at) == (
        False,
        False,
        False,
        "none",
        None,
    )
    for e in examples:  # treatment flags and versions copied from the impression
        assert (e.route, e.warmth_bucket, e.llm_used, e.propensity) == (
            "CONTENT",
            "COLD",
            True,
            0.5,
        )
        assert (e.prompt_version, e.llm_model, e.model_version) == ("p3", "m1", "cf7")
        assert e.impression_at == T0 and e.serve_latency_ms == 42.0 and e.request_id == "req-1"


def test_labels_do_not_depend_on_event_order_or_duplicates() -> None:
    once = join_impression(IMPRESSION, SESSION, WINDOW)
    twice = join_impression(IMPRESSION, list(reversed(SESSION)) * 2, WINDOW)
    assert once == twice


def test_window_edges() -> None:
    edge = [ev("x1", EventType.CLICK, "A", 0), ev("x2", EventType.CART, "A", WINDOW)]
    (a, _, _) = join_impression(IMPRESSION, edge, WINDOW)
    assert a.clicked and a.carted  # both ends are inside
    assert example_id("r", "i") == "r:i"


def test_event_clock_waits_for_both_inputs() -> None:
    clock = EventClock(["responses", "events"])
    clock.observe("responses", 0, at(100))
    assert clock.now(0) is None  # events not seen on partition 0 yet
    clock.observe("events", 0, at(50))
    assert clock.now(0) == at(50)  # the slower input decides
    clock.observe("events", 0, at(40))  # time never goes back
    clock.observe("events", 0, at(200))
    assert clock.now(0) == at(100)
    assert clock.now(1) is None
    clock.forget(0)
    assert clock.now(0) is None


def test_an_expired_answer_is_no_impression() -> None:
    from recsys.feedback import is_impression
    from recsys.records import ResponseStatus

    # what a stray EXPIRED answer would look like if it carried items: still nothing shown
    expired = IMPRESSION.model_copy(update={"status": ResponseStatus.EXPIRED})
    events = [
        ev("e1", EventType.CLICK, "A", 5, rec_request_id="req-1"),
        ev("e2", EventType.PURCHASE, "B", 10),
    ]
    assert not is_impression(expired) and is_impression(IMPRESSION)
    assert join_impression(expired, events, WINDOW) == []
    assert len(join_impression(IMPRESSION, events, WINDOW)) == 3
