"""The user x item weight matrix: weights per event type, ratings, caps, exclusions."""

from __future__ import annotations

import pytest

from recsys.cf.interactions import Interaction, build_matrix
from recsys.cf.weights import DEFAULT_WEIGHTS, InteractionWeights, is_positive


def ev(user: str, item: str | None, kind: str, rating: float | None = None, at: float = 0.0):
    return Interaction(user, item or "", kind, rating, at)


def cells(matrix) -> dict[tuple[str, str], float]:
    out = {}
    for user in matrix.users:
        for item, w in matrix.user_row(user):
            out[(user, item)] = w
    return out


def test_weights_by_event_type_add_up_per_user_and_item() -> None:
    m = build_matrix(
        [
            ev("u1", "a", "VIEW"),
            ev("u1", "a", "CLICK"),
            ev("u1", "b", "PURCHASE"),
            ev("u2", "a", "CART"),
        ]
    )
    assert cells(m) == {("u1", "a"): 3.0, ("u1", "b"): 8.0, ("u2", "a"): 4.0}
    assert m.n_events == 4 and m.n_interactions == 3
    assert m.weights.shape == (2, 2)


def test_latest_rating_replaces_earlier_ones_and_adds_to_other_events() -> None:
    m = build_matrix(
        [
            ev("u", "a", "RATING", 5.0, at=10),
            ev("u", "a", "RATING", 4.0, at=20),  # re-rated later: 4 stars count
            ev("u", "a", "CLICK", at=5),
            ev("u", "b", "RATING", 4.5, at=30),
            ev("u", "b", "RATING", 2.0, at=1),  # older, ignored
        ]
    )
    assert cells(m) == {("u", "a"): 1.0 + 2.0, ("u", "b"): 1.5}


def test_negative_ratings_weigh_little_or_nothing_and_dismiss_search_are_left_out() -> None:
    events = [
        ev("u", "a", "RATING", 2.0),
        ev("u", "b", "DISMISS"),
        ev("u", None, "SEARCH"),
        ev("v", "c", "VIEW"),
    ]
    m = build_matrix(events, InteractionWeights(negative_rating=0.5))
    assert cells(m) == {("u", "a"): 0.5, ("v", "c"): 1.0}
    none = build_matrix(events, DEFAULT_WEIGHTS)  # ratings < 4 weigh 0 by default
    # u has no cell left: neither a row for u nor a column for a or b
    assert cells(none) == {("v", "c"): 1.0}
    assert none.users == ["v"] and none.items == ["c"]


def test_weights_are_capped() -> None:
    m = build_matrix([ev("u", "a", "PURCHASE") for _ in range(10)])
    assert cells(m) == {("u", "a"): DEFAULT_WEIGHTS.cap}


def test_time_span_is_recorded_and_empty_input_gives_an_empty_matrix() -> None:
    m = build_matrix([ev("u", "a", "VIEW", at=7), ev("u", "b", "VIEW", at=3)])
    assert (m.first_at, m.last_at) == (3, 7)
    empty = build_matrix([])
    assert empty.n_interactions == 0 and empty.weights.shape == (0, 0)


@pytest.mark.parametrize(
    ("kind", "rating", "positive"),
    [
        ("CLICK", None, True),
        ("CART", None, True),
        ("PURCHASE", None, True),
        ("VIEW", None, False),
        ("DISMISS", None, False),
        ("RATING", 4.0, True),
        ("RATING", 3.5, False),
    ],
)
def test_positive_matches_the_user_events_column(
    kind: str, rating: float | None, positive: bool
) -> None:
    assert is_positive(kind, rating) is positive
