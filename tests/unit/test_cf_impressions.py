"""What feedback examples add to the training matrix: weak negatives, IPS, LLM weights."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from recsys.cf.impressions import FeedbackSignals, FeedbackWeights, acted_on, confirmed
from recsys.cf.interactions import Interaction, MatrixBuilder
from recsys.records import FeedbackExample

AT = datetime(2026, 12, 1, tzinfo=UTC)


def example(
    user: str,
    item: str,
    *,
    request: str = "r1",
    propensity: float = 1.0,
    llm: bool = False,
    **outcome: object,
) -> FeedbackExample:
    return FeedbackExample(
        example_id=f"{request}:{item}",
        request_id=request,
        user_id=user,
        item_id=item,
        rank=1,
        route="HYBRID",
        warmth_bucket="WARM",
        llm_used=llm,
        propensity=propensity,
        impression_at=AT,
        **outcome,
    )


def test_acted_on_means_a_click_cart_purchase_or_a_good_rating() -> None:
    assert acted_on(example("u", "a", clicked=True))
    assert acted_on(example("u", "a", purchased=True))
    assert acted_on(example("u", "a", rating=4.0))
    assert not acted_on(example("u", "a", rating=3.5))
    assert not acted_on(example("u", "a", dismissed=True))
    assert not acted_on(example("u", "a"))


def test_weak_negatives_add_up_and_positive_cells_win() -> None:
    signals = FeedbackSignals(FeedbackWeights(negative=0.5))
    signals.add_all(
        [
            example("u", "a", request="r1"),
            example("u", "a", request="r2"),  # shown twice, ignored twice
            example("u", "a", request="r2"),  # a redelivery: same example id
            example("u", "b", request="r1", dismissed=True),
            example("u", "c", request="r1", clicked=True),
            example("u", "d", request="r1"),  # ignored here, but the user rated it
        ]
    )
    assert signals.negatives() == {("u", "a"): 1.0, ("u", "b"): 0.5, ("u", "d"): 0.5}
    assert signals.scales() == {}  # no IPS, no LLM weight: positives as they are
    builder = MatrixBuilder()
    builder.add(Interaction("u", "c", "CLICK", None, 1.0))
    builder.add(Interaction("u", "d", "RATING", 5.0, 2.0))
    builder.add(Interaction("v", "a", "VIEW", None, 3.0))
    matrix = builder.build(negatives=signals.negatives(), scales=signals.scales())
    assert dict(matrix.user_row("u")) == {"a": -1.0, "b": -0.5, "c": 2.0, "d": 2.0}
    assert matrix.n_negative == 2
    assert signals.summary()["examples"] == 5
    assert FeedbackSignals(FeedbackWeights()).negatives() == {}


def test_inverse_propensity_weights_are_clipped_and_average_one() -> None:
    signals = FeedbackSignals(FeedbackWeights(negative=1.0, ips_clip=5.0))
    signals.add_all(
        [
            example("u", "a", request="r1", propensity=0.5),  # 1/p = 2
            example("u", "b", request="r2", propensity=0.1),  # 10, clipped to 5
            example("u", "c", request="r3", propensity=1.0, clicked=True),  # 1
            example("u", "d", request="r4", propensity=0.25, rating=5.0),  # 4
        ]
    )
    norm = (2 + 5 + 1 + 4) / 4
    assert signals.negatives() == pytest.approx({("u", "a"): 2 / norm, ("u", "b"): 5 / norm})
    assert signals.scales() == pytest.approx({("u", "c"): 1 / norm, ("u", "d"): 4 / norm})


def test_llm_touched_impressions_weak_outcomes_get_their_own_weight() -> None:
    signals = FeedbackSignals(FeedbackWeights(negative=1.0, llm_weight=0.0))
    signals.add_all(
        [
            example("u", "a", request="r1", llm=True),  # ignored after an LLM rerank
            example("u", "b", request="r1", llm=True, clicked=True),
            example("u", "b", request="r2", clicked=True),  # also from a plain response
            example("u", "c", request="r2"),
            example("u", "e", request="r1", llm=True, clicked=True),  # a click, nothing more
            example("u", "f", request="r1", llm=True, clicked=True, rating=5.0),  # confirmed
            example("u", "g", request="r1", llm=True, purchased=True),  # confirmed
        ]
    )
    assert signals.negatives() == {("u", "c"): 1.0}
    assert signals.scales() == {("u", "b"): 0.5, ("u", "e"): 0.0}
    builder = MatrixBuilder()
    for item in ("b", "e"):
        builder.add(Interaction("u", item, "CLICK", None, 1.0))
    builder.add(Interaction("u", "f", "RATING", 5.0, 1.0))
    builder.add(Interaction("u", "g", "PURCHASE", None, 1.0))
    matrix = builder.build(negatives=signals.negatives(), scales=signals.scales())
    # e: only an LLM-touched click led to it; f, g: confirmed, they stay
    assert dict(matrix.user_row("u")) == {"b": 1.0, "c": -1.0, "f": 2.0, "g": 8.0}
    assert confirmed(example("u", "x", rating=4.0)) and not confirmed(
        example("u", "x", clicked=True)
    )


def test_weights_are_checked() -> None:
    with pytest.raises(ValueError, match="ips_clip"):
        FeedbackWeights(ips_clip=0.5)
    with pytest.raises(ValueError, match="must be >= 0"):
        FeedbackWeights(negative=-1.0)
