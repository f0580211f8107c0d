"""Bootstrap intervals: known answers on degenerate and simple samples."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.evaluation.intervals import mean_ci, percentile_ci, ratio_ci


def test_a_constant_sample_has_a_point_interval() -> None:
    assert mean_ci([0.3] * 20) == pytest.approx((0.3, 0.3))
    assert percentile_ci([7.0] * 5, 95) == pytest.approx((7.0, 7.0))


def test_fewer_than_two_values_have_no_interval() -> None:
    assert mean_ci([]) is None and mean_ci([1.0]) is None
    assert ratio_ci([1.0], [1.0]) is None


def test_the_mean_interval_matches_the_normal_approximation() -> None:
    rng = np.random.default_rng(5)
    values = rng.normal(10.0, 2.0, size=400)
    low, high = mean_ci(values.tolist(), resamples=4000)
    half = 1.96 * values.std(ddof=1) / np.sqrt(values.size)  # ≈ 0.196
    assert low == pytest.approx(values.mean() - half, abs=0.04)
    assert high == pytest.approx(values.mean() + half, abs=0.04)
    assert mean_ci(values.tolist()) == mean_ci(values.tolist())  # seeded: reproducible


def test_ratio_interval_holds_the_ratio_and_skips_empty_resamples() -> None:
    num, den = [1.0, 0.0, 2.0, 0.0], [1.0, 0.0, 2.0, 1.0]
    low, high = ratio_ci(num, den)
    assert low <= sum(num) / sum(den) <= high and low >= 0.0 and high <= 1.0
    assert ratio_ci([0.0, 0.0], [0.0, 0.0]) is None
    with pytest.raises(ValueError, match="differ in length"):
        ratio_ci([1.0], [1.0, 2.0])
