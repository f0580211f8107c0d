"""A user's CF profile is their row of the training matrix, newest items first."""

from __future__ import annotations

import random

from recsys.cf.interactions import Interaction, build_matrix
from recsys.cf.profile import user_profile
from recsys.cf.weights import InteractionWeights


def ev(item: str, kind: str, rating: float | None = None, at: float = 0.0) -> Interaction:
    return Interaction("u", item, kind, rating, at)


def test_known_answer_weights_latest_rating_cap_and_order() -> None:
    events = [
        ev("a", "RATING", 5.0, at=1),  # re-rated later: the 4-star rating counts
        ev("a", "RATING", 4.0, at=9),
        ev("a", "CLICK", at=2),  # adds 2
        ev("b", "RATING", 2.0, at=5),  # negative rating: weight 0, left out
        ev("c", "PURCHASE", at=3),
        ev("c", "PURCHASE", at=4),
        ev("c", "PURCHASE", at=6),  # 24, capped at 20
        ev("d", "DISMISS", at=10),  # not an interaction
        ev("e", "VIEW", at=7),
    ]
    assert user_profile(events) == [("a", 3.0), ("e", 1.0), ("c", 20.0)]


def test_equals_the_users_row_of_the_training_matrix() -> None:
    rng = random.Random(3)
    kinds = ["VIEW", "CLICK", "CART", "PURCHASE", "RATING", "DISMISS", "SEARCH"]
    weights = InteractionWeights(negative_rating=0.5, cap=9.0)
    for _ in range(50):
        events = []
        for _ in range(rng.randint(1, 40)):
            kind = rng.choice(kinds)
            rating = rng.choice([1.0, 3.5, 4.0, 5.0]) if kind == "RATING" else None
            item = "" if kind == "SEARCH" else f"i{rng.randint(0, 8)}"
            events.append(ev(item, kind, rating, at=float(rng.randint(0, 30))))
        profile = user_profile(events, weights)
        matrix = build_matrix(events, weights)
        row = matrix.user_row("u") if "u" in matrix.users else []
        assert sorted(profile) == sorted(row)
        last = {e.item_id: max(x.at for x in events if x.item_id == e.item_id) for e in events}
        assert [last[i] for i, _ in profile] == sorted((last[i] for i, _ in profile), reverse=True)
