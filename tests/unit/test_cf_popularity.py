"""Time-decayed popularity (the pure model)."""

from __future__ import annotations

import itertools

import pytest

from recsys.cf.popularity import DecayedPopularity

H = 100.0


def test_scores_halve_every_half_life() -> None:
    p = DecayedPopularity(H)
    p.update("a", 0.0)
    p.update("a", 0.0, weight=3.0)
    assert p.score("a", at=0.0) == pytest.approx(4.0)
    assert p.score("a", at=H) == pytest.approx(2.0)
    assert p.score("a", at=3 * H) == pytest.approx(0.5)
    assert p.score("unknown", at=0.0) == 0.0


def test_recent_events_beat_more_but_older_ones() -> None:
    p = DecayedPopularity(H)
    for _ in range(3):
        p.update("old", 0.0)  # 3 events two half-lives ago → 0.75 now
    p.update("new", 2 * H)  # 1 event now → 1.0
    assert p.top(2) == [("new", pytest.approx(1.0)), ("old", pytest.approx(0.75))]
    assert p.top(1, exclude=["new"]) == [("old", pytest.approx(0.75))]
    assert p.top(0) == []


def test_order_of_updates_does_not_matter() -> None:
    events = [("a", 0.0, 1.0), ("b", 50.0, 2.0), ("a", 120.0, 1.0), ("b", 10.0, 1.0)]
    results = []
    for perm in itertools.permutations(events):
        p = DecayedPopularity(H)
        for item, at, w in perm:
            p.update(item, at, w)
        results.append([(i, round(s, 9)) for i, s in p.top(2, at=200.0)])
    assert all(r == results[0] for r in results)
    expected_a = 2 ** (-200 / H) + 2 ** (-80 / H)
    assert dict(results[0])["a"] == pytest.approx(expected_a)


def test_ties_break_by_item_id() -> None:
    p = DecayedPopularity(H)
    for item in ("c", "a", "b"):
        p.update(item, 0.0)
    assert [i for i, _ in p.top(3)] == ["a", "b", "c"]


def test_half_life_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        DecayedPopularity(0)
