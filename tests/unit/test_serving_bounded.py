"""The displacement bound: whatever the LLM answers, no item moves further than allowed."""

from __future__ import annotations

import random

import pytest

from recsys.serving.bounded import bounded_order, split_bound


def test_split_bound() -> None:
    assert [split_bound(b) for b in range(5)] == [(0, 0), (1, 0), (1, 1), (2, 1), (2, 2)]
    with pytest.raises(ValueError, match="at least 0"):
        split_bound(-1)


def test_random_answers_never_break_the_bound() -> None:
    rng = random.Random(14)
    for _ in range(2000):
        n = rng.randint(1, 40)
        ranker = [f"i{k}" for k in range(n)]
        answer = ranker[:]
        rng.shuffle(answer)
        answer = [*answer[: rng.randint(0, n)], "ghost"]  # partial, with an unknown id
        up, down = split_bound(rng.randint(0, 14))
        clamped = {i: 0 for i in ranker if rng.random() < 0.2}
        out = bounded_order(
            ranker, answer, up=up, down=down, up_for=clamped, weight=rng.choice([0.0, 0.5, 1.0])
        )
        assert sorted(out.order) == sorted(ranker)
        for k, item in enumerate(out.order):
            r = ranker.index(item)
            assert r - clamped.get(item, up) <= k <= r + down
        assert out.moved_max <= max(up, down) and out.moved_up_max <= up


def test_two_answers_never_differ_by_more_than_the_bound() -> None:
    """The guarantee an attack is held to: against the same request without it."""
    ranker = [f"i{k}" for k in range(30)]
    for bound in (2, 5, 10):
        up, down = split_bound(bound)
        promote_last = bounded_order(ranker, ["i29"], up=up, down=down)
        demote_last = bounded_order(ranker, ranker[:29], up=up, down=down)
        assert promote_last.order.index("i29") == 29 - up
        gap = bounded_order(ranker, list(reversed(ranker)), up=up, down=down)
        assert gap.order.index("i0") <= 0 + down
        assert demote_last.order.index("i29") - promote_last.order.index("i29") <= bound


def test_weight_zero_keeps_the_ranker_and_unbounded_follows_the_llm() -> None:
    ranker = list("abcdef")
    assert bounded_order(ranker, list("fedcba"), up=3, down=3, weight=0.0).order == ranker
    assert bounded_order(ranker, list("fedcba"), up=None, down=None).order == list("fedcba")
    assert bounded_order(ranker, ["f"], up=5, down=5, up_for={"f": 0}).order == ranker
