"""Percentile bootstrap intervals over users: of a mean, and of a paired difference.

Users are the resampling unit (a user's metric is one draw); the same ``seed`` gives the
same interval, so reports are reproducible. A paired difference resamples the *pairs*
(both policies' values of one user together), which is what makes two policies served
to the same users comparable with far narrower intervals than two separate means.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Interval", "mean_interval", "paired_difference"]

RESAMPLES = 2000


@dataclass(frozen=True)
class Interval:
    """A mean and its percentile bootstrap interval (``lo``/``hi`` None for n < 2)."""

    mean: float
    lo: float | None
    hi: float | None
    n: int
    confidence: float

    def excludes_zero(self) -> bool:
        """Whether the interval lies entirely above or below 0."""
        return self.lo is not None and self.hi is not None and (self.lo > 0 or self.hi < 0)

    def rounded(self, digits: int = 4) -> list[float | None]:
        """``[lo, hi]`` rounded, JSON-ready."""
        return [None if v is None else round(v, digits) for v in (self.lo, self.hi)]


def _interval(
    values: np.ndarray, confidence: float, resamples: int, seed: int
) -> tuple[float | None, float | None]:
    n = len(values)
    if n < 2:
        return None, None
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    step = max(1, 2_000_000 // n)  # bound memory: resample in chunks
    for start in range(0, resamples, step):
        stop = min(resamples, start + step)
        picks = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[picks].mean(axis=1)
    tail = (1.0 - confidence) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


def mean_interval(
    values: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Interval:
    """The mean of ``values`` with its bootstrap interval."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        raise ValueError("no values")
    lo, hi = _interval(x, confidence, resamples, seed)
    return Interval(float(x.mean()), lo, hi, len(x), confidence)


def paired_difference(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Interval:
    """Mean of ``a - b`` over paired values (the same users) and its bootstrap interval."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"paired samples differ in length: {len(x)} != {len(y)}")
    return mean_interval(x - y, confidence=confidence, resamples=resamples, seed=seed)
