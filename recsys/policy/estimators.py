"""Off-policy value of a target policy from logged requests: IPS, SNIPS, doubly robust,
with bootstrap confidence intervals.

For logged requests ``(x_i, a_i, p_i, r_i)`` — context, action taken, its logged
probability, reward — and a target policy π, the importance weight is
``w_i = π(a_i | x_i) / p_i`` and:

* IPS   = (1/n) Σ w_i r_i — unbiased when the logged propensities are exact and every
  action π takes had a non-zero logging probability; high variance.
* SNIPS = Σ w_i r_i / Σ w_i — self-normalised: slightly biased, lower variance, exactly
  the logged mean reward when π is the logging policy (undefined when Σ w = 0: the
  target agrees with no logged action).
* DR    = (1/n) Σ [ Σ_a π(a | x_i) q̂(x_i, a) + w_i (r_i - q̂(x_i, a_i)) ] — a reward
  model q̂ predicts every action's reward and the weighted residual corrects its bias:
  unbiased when either the propensities or q̂ are right, and lower variance than IPS
  when q̂ is good. q̂ must be fitted on other data than it is applied to (cross-fitting)
  or its errors leak into the estimate.

Intervals are percentile bootstrap intervals over requests (Poisson resampling, the
reward model held fixed): they cover the sampling noise of the logs,
not a biased reward model's error or a wrong propensity.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from recsys.policy.logged import LoggedRequest
from recsys.policy.model import Action, Context

__all__ = [
    "Estimate",
    "Terms",
    "bootstrap_intervals",
    "dr",
    "effective_sample_size",
    "estimate",
    "ips",
    "snips",
    "terms",
]

#: π(action | context) of a target policy.
Target = Callable[[Context, Action], float]
#: q̂(context, action): a reward model's prediction.
RewardModel = Callable[[Context, Action], float]


@dataclass(frozen=True)
class Terms:
    """Per-request pieces every estimator is a function of."""

    weights: np.ndarray  # π(a_i|x_i) / p_i
    rewards: np.ndarray  # r_i
    dr_terms: np.ndarray | None  # Σ_a π(a|x_i) q̂(x_i, a) + w_i (r_i - q̂(x_i, a_i))


def terms(
    requests: Sequence[LoggedRequest],
    target: Target,
    reward_model: RewardModel | None = None,
    actions_of: Callable[[Context], Sequence[Action]] | None = None,
) -> Terms:
    """The weights, rewards and (with a reward model) DR terms of ``requests``.

    ``actions_of(x)`` lists the actions the target may take in ``x`` (needed for DR's
    direct part: every action with π(a|x) > 0 must be among them).
    """
    w = np.empty(len(requests))
    r = np.empty(len(requests))
    d = np.empty(len(requests)) if reward_model is not None else None
    prob: dict[tuple[Context, Action], float] = {}
    direct: dict[Context, float] = {}
    for i, req in enumerate(requests):
        if not 0.0 < req.propensity <= 1.0:
            raise ValueError(f"a logged propensity must be in (0, 1], got {req.propensity}")
        key = (req.context, req.action)
        p = prob.get(key)
        if p is None:
            p = prob[key] = target(req.context, req.action)
        w[i] = p / req.propensity
        r[i] = req.reward
        if d is not None:
            assert reward_model is not None and actions_of is not None
            base = direct.get(req.context)
            if base is None:
                base = direct[req.context] = sum(
                    target(req.context, a) * reward_model(req.context, a)
                    for a in actions_of(req.context)
                )
            d[i] = base + w[i] * (r[i] - reward_model(req.context, req.action))
    return Terms(w, r, d)


def ips(t: Terms) -> float:
    """Inverse propensity scoring; NaN without requests."""
    return float(np.mean(t.weights * t.rewards)) if len(t.rewards) else math.nan


def snips(t: Terms) -> float:
    """Self-normalised IPS; NaN when no weight is positive."""
    total = float(np.sum(t.weights))
    return float(np.sum(t.weights * t.rewards)) / total if total > 0 else math.nan


def dr(t: Terms) -> float:
    """Doubly robust; NaN without a reward model or requests."""
    if t.dr_terms is None or not len(t.dr_terms):
        return math.nan
    return float(np.mean(t.dr_terms))


def effective_sample_size(weights: np.ndarray) -> float:
    """(Σ w)² / Σ w²: how many logged requests the estimate really rests on."""
    sq = float(np.sum(weights * weights))
    return float(np.sum(weights)) ** 2 / sq if sq > 0 else 0.0


def bootstrap_intervals(
    t: Terms, resamples: int, confidence: float, rng: np.random.Generator
) -> dict[str, tuple[float, float] | None]:
    """Percentile intervals of IPS, SNIPS and DR over ``resamples`` request resamples."""
    n = len(t.rewards)
    if n == 0 or resamples <= 0:
        return {"ips": None, "snips": None, "dr": None}
    wr = t.weights * t.rewards
    stats: dict[str, list[np.ndarray]] = {"ips": [], "snips": [], "dr": []}
    chunk = max(1, min(resamples, 2_000_000 // n))
    done = 0
    while done < resamples:
        size = min(chunk, resamples - done)
        # Poisson(1) counts: each request's multiplicity in a resample (the bootstrap of
        # large samples, vectorised; the resample's size varies and divides the sums)
        counts = rng.poisson(1.0, size=(size, n)).astype(float)
        total = np.maximum(counts.sum(axis=1), 1.0)
        den = counts @ t.weights
        num = counts @ wr
        stats["ips"].append(num / total)
        with np.errstate(invalid="ignore", divide="ignore"):
            stats["snips"].append(np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan))
        if t.dr_terms is not None:
            stats["dr"].append(counts @ t.dr_terms / total)
        done += size
    alpha = (1.0 - confidence) / 2.0
    out: dict[str, tuple[float, float] | None] = {}
    for name, parts in stats.items():
        if not parts:
            out[name] = None
            continue
        values = np.concatenate(parts)
        values = values[np.isfinite(values)]
        if len(values) < max(10, resamples // 2):  # mostly undefined resamples
            out[name] = None
            continue
        lo, hi = np.quantile(values, [alpha, 1.0 - alpha])
        out[name] = (float(lo), float(hi))
    return out


@dataclass(frozen=True)
class Estimate:
    """A target's estimated value over some logged requests."""

    n: int
    matched: int  # requests whose logged action the target may take
    ess: float
    ips: float | None
    snips: float | None
    dr: float | None
    ci: dict[str, tuple[float, float] | None]

    def value(self, estimator: str) -> float | None:
        """The point estimate of ``estimator`` (``ips``, ``snips`` or ``dr``)."""
        return {"ips": self.ips, "snips": self.snips, "dr": self.dr}[estimator]

    def lower(self, estimator: str) -> float | None:
        """The lower confidence bound of ``estimator``."""
        ci = self.ci.get(estimator)
        return ci[0] if ci else None

    def as_json(self) -> dict[str, object]:
        return {
            "n": self.n,
            "matched": self.matched,
            "ess": self.ess,
            "ips": self.ips,
            "snips": self.snips,
            "dr": self.dr,
            "ci": {k: list(v) if v else None for k, v in self.ci.items()},
        }


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def estimate(
    t: Terms,
    *,
    resamples: int = 0,
    confidence: float = 0.95,
    rng: np.random.Generator | None = None,
) -> Estimate:
    """Point estimates (and bootstrap intervals when ``resamples`` > 0) from ``t``."""
    cis = bootstrap_intervals(t, resamples, confidence, rng or np.random.default_rng(0))
    return Estimate(
        n=len(t.rewards),
        matched=int(np.count_nonzero(t.weights > 0)),
        ess=effective_sample_size(t.weights),
        ips=_finite(ips(t)),
        snips=_finite(snips(t)),
        dr=_finite(dr(t)),
        ci=cis,
    )
