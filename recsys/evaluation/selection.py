"""Picking among configurations on a validation split without being fooled by noise.

The rule every tuned default of this project goes through (routes per warmth bucket in
:mod:`recsys.evaluation.route_selection`, ``train-cf --feedback``'s weights):

1. The *incumbent* is the best of the simple baselines by mean metric.
2. The *challenger* is the best of the variants by mean metric.
3. The challenger replaces the incumbent only when the paired bootstrap interval of
   ``challenger - incumbent`` over users lies above 0 at the Bonferroni level
   ``1 - alpha / m`` (``m`` variants compared): a winner picked out of many is flattered
   by noise, and the correction pays for the picking. Otherwise the simpler candidate
   stays. With fewer than ``min_users`` users, no variant is adopted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from recsys.evaluation.bootstrap import Interval, paired_difference

__all__ = ["ALPHA", "MIN_USERS", "Pick", "pick"]

ALPHA = 0.05
MIN_USERS = 30


@dataclass(frozen=True)
class Pick:
    """The outcome of :func:`pick`."""

    chosen: str
    incumbent: str
    challenger: str | None
    #: ``challenger - incumbent`` at the corrected level (None without variants).
    difference: Interval | None
    adopted: bool
    reason: str


def pick(
    metric: Mapping[str, Sequence[float] | np.ndarray],
    baselines: Sequence[str],
    variants: Sequence[str],
    *,
    alpha: float = ALPHA,
    min_users: int = MIN_USERS,
    seed: int = 0,
) -> Pick:
    """Apply the rule to per-user values of one metric (same users, same order, for all).

    Ties go to the first declared candidate.
    """
    if not baselines:
        raise ValueError("at least one baseline is needed")
    names = [*baselines, *variants]
    missing = [n for n in names if n not in metric]
    if missing:
        raise ValueError(f"no validation figures for {', '.join(missing)}")
    arrays = {n: np.asarray(metric[n], dtype=np.float64) for n in names}
    if len({len(a) for a in arrays.values()}) != 1:
        raise ValueError("every candidate must be scored on the same users (paired)")
    n = len(arrays[names[0]])
    means = {k: float(a.mean()) if n else 0.0 for k, a in arrays.items()}
    incumbent = max(baselines, key=lambda k: (means[k], -names.index(k)))
    if not variants:
        return Pick(incumbent, incumbent, None, None, False, "no variants")
    challenger = max(variants, key=lambda k: (means[k], -names.index(k)))
    level = 1.0 - alpha / len(variants)
    diff = paired_difference(arrays[challenger], arrays[incumbent], confidence=level, seed=seed)
    gain = f"{challenger} - {incumbent} = {diff.mean:+.4f}"
    interval = f"[{diff.lo:+.4f}, {diff.hi:+.4f}] at {level:.4f}" if diff.lo is not None else "-"
    if n < min_users:
        reason = f"{n} users < {min_users}: no variant adopted ({gain})"
        return Pick(incumbent, incumbent, challenger, diff, False, reason)
    if diff.lo is not None and diff.lo > 0:
        reason = f"{gain}, interval {interval} above 0: the variant is adopted"
        return Pick(challenger, incumbent, challenger, diff, True, reason)
    reason = f"{gain}, interval {interval} includes 0: the simpler candidate stays"
    return Pick(incumbent, incumbent, challenger, diff, False, reason)
