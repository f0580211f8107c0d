"""Percentile-bootstrap confidence intervals for the report's figures.

Requests are the resampling unit: each interval resamples the evaluated requests with
replacement (``resamples`` times, a fixed seed so a report is reproducible) and takes
the central ``confidence`` share of the statistic's resampled values. For a mean of
per-request values (recall, NDCG, LLM involvement) that is the textbook percentile
bootstrap; for a latency percentile and for a ratio (SNIPS) it is the same recipe on
that statistic. With fewer than two requests there is no interval (None).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = [
    "CONFIDENCE",
    "RESAMPLES",
    "mean_ci",
    "percentile_ci",
    "ratio_ci",
]

RESAMPLES = 1000
CONFIDENCE = 0.95

Interval = tuple[float, float] | None


def _picks(n: int, resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _bounds(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def _bootstrap(
    values: Sequence[float],
    stat: Callable[[np.ndarray], np.ndarray],
    resamples: int,
    confidence: float,
    seed: int,
) -> Interval:
    x = np.asarray(values, dtype=np.float64)
    if x.size < 2:
        return None
    return _bounds(stat(x[_picks(x.size, resamples, seed)]), confidence)


def mean_ci(
    values: Sequence[float],
    *,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Interval:
    """Interval of the mean of ``values``."""
    return _bootstrap(values, lambda m: m.mean(axis=1), resamples, confidence, seed)


def percentile_ci(
    values: Sequence[float],
    q: float,
    *,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Interval:
    """Interval of the ``q``-th percentile of ``values`` (linear interpolation)."""
    return _bootstrap(values, lambda m: np.percentile(m, q, axis=1), resamples, confidence, seed)


def ratio_ci(
    numerators: Sequence[float],
    denominators: Sequence[float],
    *,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Interval:
    """Interval of ``Σ numerators / Σ denominators`` over paired requests (resamples
    whose denominators sum to 0 are left out)."""
    num = np.asarray(numerators, dtype=np.float64)
    den = np.asarray(denominators, dtype=np.float64)
    if num.size != den.size:
        raise ValueError(f"paired values differ in length: {num.size} != {den.size}")
    if num.size < 2:
        return None
    picks = _picks(num.size, resamples, seed)
    totals = den[picks].sum(axis=1)
    ok = totals > 0
    if not ok.any():
        return None
    return _bounds(num[picks].sum(axis=1)[ok] / totals[ok], confidence)
