"""Co-visitation by hand: window by items and time, symmetric pairs, forward decay equal
to plain exponential decay, log-space sums, neighbours with via and exclusions."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from recsys.cf.covisit import (
    Covisitation,
    CovisitConfig,
    aggregate,
    log2_add,
    log2_time,
    pairs_for,
)

T0 = datetime(2026, 3, 1, tzinfo=UTC)
CFG = CovisitConfig(
    covisit_half_life_h=1.0, covisit_window_items=2, covisit_window_s=600, recent_items_max=5
)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def test_pairs_within_the_item_and_time_window_both_ways() -> None:
    recent = [("c", at(100)), ("b", at(50)), ("a", at(0))]
    pairs = pairs_for(recent, "d", at(200), CFG)
    assert {(a, b) for a, b, _ in pairs} == {("d", "c"), ("c", "d"), ("d", "b"), ("b", "d")}
    assert pairs_for(recent, "d", at(100 + 601), CFG) == []  # all too long ago
    assert {(a, b) for a, b, _ in pairs_for(recent, "c", at(200), CFG)} == {("c", "b"), ("b", "c")}


def test_forward_decay_equals_exponential_decay() -> None:
    model = Covisitation(CFG)
    model.update("u1", "a", at(0))
    model.update("u1", "b", at(60))  # pair at t=60
    model.update("u2", "a", at(3600))
    model.update("u2", "b", at(3600 + 60))  # pair an hour later
    # at the last update: one fresh co-visit plus one a half-life old
    assert model.score("a", "b") == pytest.approx(1.5)
    assert model.score("b", "a") == pytest.approx(1.5)
    assert model.score("a", "b", at=at(60 + 2 * 3600)) == pytest.approx(0.75)
    assert model.score("a", "zzz") == 0.0


def test_log_space_sums_and_far_times() -> None:
    assert log2_add(3.0, 3.0) == pytest.approx(4.0)
    assert log2_add(0.0, -100.0) == 0.0
    old = log2_time(datetime(1996, 1, 1, tzinfo=UTC), 72)
    far = log2_time(datetime(2095, 1, 1, tzinfo=UTC), 72)
    assert math.isfinite(log2_add(old, far)) and log2_add(old, far) == pytest.approx(far)
    agg = aggregate([("a", "b", 1.0), ("a", "b", 1.0), ("b", "a", 0.0)])
    assert agg == {("a", "b"): pytest.approx(2.0), ("b", "a"): 0.0}


def test_neighbors_rank_with_via_and_exclusions() -> None:
    model = Covisitation(CFG)
    for user, items in {"u1": "xy", "u2": "xy", "u3": "xz", "u4": "wz"}.items():
        for i, item in enumerate(items):
            model.update(user, item, at(i))
    out = model.neighbors(["x"], 5)
    assert [i for i, _, _ in out] == ["y", "z"] and all(v == "x" for _, _, v in out)
    assert out[0][1] == pytest.approx(2 * out[1][1])
    both = model.neighbors(["x", "w", "x"], 5)
    # a tie goes by item id; z's two equal contributions name the smaller seed as via
    assert [(i, v) for i, _, v in both] == [("y", "x"), ("z", "w")]
    z = next(s for i, s, _ in both if i == "z")
    assert z == pytest.approx(model.score("x", "z") + model.score("w", "z"))
    assert model.neighbors(["x"], 5, exclude={"y"}) == [("z", out[1][1], "x")]
    assert model.neighbors(["x"], 1)[0][0] == "y"
    assert model.neighbors(["nothing"], 5) == []


def test_update_returns_what_it_added_and_windows_are_per_user() -> None:
    model = Covisitation(CFG)
    assert model.update("u1", "a", at(0)) == []
    assert model.update("u2", "b", at(1)) == []  # another user's visit does not pair
    assert [(a, b) for a, b, _ in model.update("u1", "c", at(2))] == [("c", "a"), ("a", "c")]
    assert set(model.log2_weights()) == {("c", "a"), ("a", "c")}
    assert model.latest == at(2)
    model.update("u1", "d", 1772323500.0)  # epoch seconds work too
    assert model.latest == datetime.fromtimestamp(1772323500.0, tz=UTC)
