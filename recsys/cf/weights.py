"""How much one user event says about liking an item: the implicit-feedback weights.

One definition for every CF consumer (ALS training from Postgres or the archive, the
fold-in weights of recent items, popularity), so the models agree on what an event is
worth:

==========  ==========================================================================
event       weight
==========  ==========================================================================
VIEW        1
CLICK       2
CART        4
PURCHASE    8
RATING      ``rating ≥ 4`` (positive): ``1 + (rating - 4)`` — 4★ → 1, 4.5★ → 1.5, 5★ → 2
            (higher ratings on the 0-10 scale keep growing: 10 → 7);
            ``rating < 4``: :attr:`InteractionWeights.negative_rating`, 0 by default:
            left out (on MovieLens, giving them 0.5 lost on the validation split)
DISMISS     0 (left out of the matrix)
SEARCH      no item, not an interaction
==========  ==========================================================================

Per (user, item) the weights of the events add up, except ratings: only the user's
latest rating of an item counts (a re-rating replaces the earlier one). The sum is
capped at :attr:`InteractionWeights.cap` so that one user clicking the same item
hundreds of times does not dominate. ALS turns a weight ``w`` into the confidence
``c = 1 + alpha·w`` of Hu, Koren & Volinsky (2008); see :mod:`recsys.cf.als`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from recsys.records import EventType

__all__ = ["DEFAULT_WEIGHTS", "POSITIVE_RATING", "InteractionWeights", "is_positive"]

#: A rating at or above this is a positive interaction (matches ``user_events.positive``).
POSITIVE_RATING = 4.0


def is_positive(event_type: str, rating: float | None) -> bool:
    """CLICK, CART, PURCHASE, or a RATING of at least 4 (``user_events.positive``)."""
    if event_type in (EventType.CLICK, EventType.CART, EventType.PURCHASE):
        return True
    return event_type == EventType.RATING and rating is not None and rating >= POSITIVE_RATING


@dataclass(frozen=True)
class InteractionWeights:
    """The weight of each event type; see the module docstring for the table."""

    by_type: dict[str, float] = field(
        default_factory=lambda: {
            EventType.VIEW.value: 1.0,
            EventType.CLICK.value: 2.0,
            EventType.CART.value: 4.0,
            EventType.PURCHASE.value: 8.0,
        }
    )
    negative_rating: float = 0.0
    cap: float = 20.0

    def rating_weight(self, rating: float) -> float:
        """Weight of a RATING event with this rating."""
        if rating >= POSITIVE_RATING:
            return 1.0 + (rating - POSITIVE_RATING)
        return self.negative_rating

    def event_weight(self, event_type: str, rating: float | None = None) -> float:
        """Weight of one event (0 for events that are not interactions)."""
        if event_type == EventType.RATING:
            return self.rating_weight(rating) if rating is not None else 0.0
        return self.by_type.get(str(event_type), 0.0)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready, for the model's recorded parameters."""
        return {
            "by_type": dict(self.by_type),
            "negative_rating": self.negative_rating,
            "cap": self.cap,
        }


DEFAULT_WEIGHTS = InteractionWeights()
