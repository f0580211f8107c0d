"""Off-policy estimates of another routing policy from logged propensities.

The logging policy chose, for each request, an *action* — the route and whether the LLM
treated the response — with the probability logged as ``RecResponse.propensity``. For a
target policy π that gives the same action probability ``π(a | x)``, with importance
weight ``w = π(a | x) / propensity``:

* IPS   = (1/n) Σ w·r — unbiased when the assumptions below hold; high variance.
* SNIPS = Σ w·r / Σ w — self-normalised: slightly biased, much lower variance, and
  exactly the logged mean reward when π equals the logging policy.
* ``clip`` caps each weight (``min(w, clip)``): less variance, bias towards 0.
* ESS (effective sample size) = (Σ w)² / Σ w² says how many logged requests the
  estimate really rests on.

Assumptions, to be stated next to any figure:

1. The logged propensity is the true probability with which the logging policy chose
   the logged action in that context (a deterministic router logs 1.0).
2. Positivity: every action π may take in a context had a non-zero logging
   probability there. A deterministic logger supports only targets that agree with it
   where they put mass; elsewhere the estimate is biased towards 0 (IPS) or rests only
   on the agreeing requests (SNIPS) — ESS shows it.
3. The reward of a request depends on its context and action only (no interference
   between requests; the context a target policy sees is what was logged).
4. The context the target policy conditions on (warmth bucket, whether there was a
   query) is all that confounds action and reward.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from recsys.evaluation.intervals import mean_ci, ratio_ci

__all__ = [
    "ROUTING_POLICIES",
    "LoggedDecision",
    "LoggedPolicy",
    "RoutingPolicy",
    "TableRouter",
    "effective_sample_size",
    "estimate",
    "importance_weights",
    "ips",
    "register_routing_policy",
    "snips",
]


@dataclass(frozen=True)
class LoggedDecision:
    """One logged request: context, action, propensity and reward."""

    request_id: str
    warmth_bucket: str
    has_query: bool
    route: str
    llm_used: bool
    propensity: float
    reward: float


class RoutingPolicy(Protocol):
    """A target policy: probability of the logged action in the logged context."""

    @property
    def name(self) -> str:
        """Name under which ``streamrec evaluate --target`` finds it."""
        ...

    def probability(self, decision: LoggedDecision) -> float:
        """π(logged action | logged context)."""
        ...


def importance_weights(
    propensities: Sequence[float], target_probs: Sequence[float], clip: float | None = None
) -> list[float]:
    """``π(a|x) / p`` per request, capped at ``clip`` when given."""
    if len(propensities) != len(target_probs):
        raise ValueError("propensities and target probabilities differ in length")
    out = []
    for p, t in zip(propensities, target_probs, strict=True):
        if not 0.0 < p <= 1.0:
            raise ValueError(f"a logged propensity must be in (0, 1], got {p}")
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"a target probability must be in [0, 1], got {t}")
        w = t / p
        out.append(min(w, clip) if clip is not None else w)
    return out


def ips(
    rewards: Sequence[float],
    propensities: Sequence[float],
    target_probs: Sequence[float],
    clip: float | None = None,
) -> float:
    """Inverse propensity scoring estimate of the target's mean reward."""
    if not rewards:
        raise ValueError("no logged requests")
    w = importance_weights(propensities, target_probs, clip)
    return sum(wi * r for wi, r in zip(w, rewards, strict=True)) / len(rewards)


def snips(
    rewards: Sequence[float],
    propensities: Sequence[float],
    target_probs: Sequence[float],
    clip: float | None = None,
) -> float:
    """Self-normalised IPS; NaN when the target puts no weight on any logged action."""
    if not rewards:
        raise ValueError("no logged requests")
    w = importance_weights(propensities, target_probs, clip)
    total = sum(w)
    if total == 0:
        return math.nan
    return sum(wi * r for wi, r in zip(w, rewards, strict=True)) / total


def effective_sample_size(weights: Sequence[float]) -> float:
    """(Σ w)² / Σ w²; 0 when every weight is 0."""
    sq = sum(w * w for w in weights)
    return (sum(weights) ** 2) / sq if sq else 0.0


def estimate(
    policy: RoutingPolicy, decisions: Sequence[LoggedDecision], clip: float | None = None
) -> dict[str, float | int | list[float] | None]:
    """IPS, SNIPS, ESS and matched share of ``policy`` over ``decisions``, with bootstrap
    intervals of IPS and SNIPS (:mod:`recsys.evaluation.intervals`)."""
    if not decisions:
        return {
            "n": 0,
            "ips": None,
            "snips": None,
            "ess": None,
            "support": None,
            "ips_ci": None,
            "snips_ci": None,
        }
    rewards = [d.reward for d in decisions]
    props = [d.propensity for d in decisions]
    target = [policy.probability(d) for d in decisions]
    weights = importance_weights(props, target, clip)
    value = snips(rewards, props, target, clip)
    weighted = [w * r for w, r in zip(weights, rewards, strict=True)]
    ips_ci, snips_ci = mean_ci(weighted), ratio_ci(weighted, weights)
    return {
        "n": len(decisions),
        "ips": ips(rewards, props, target, clip),
        "snips": None if math.isnan(value) else value,
        "ess": effective_sample_size(weights),
        "support": sum(1 for t in target if t > 0) / len(target),
        "ips_ci": list(ips_ci) if ips_ci is not None else None,
        "snips_ci": list(snips_ci) if snips_ci is not None else None,
    }


class LoggedPolicy:
    """The logging policy itself (weights 1): IPS = SNIPS = the logged mean reward."""

    name = "logged"

    def probability(self, decision: LoggedDecision) -> float:
        return decision.propensity


@dataclass(frozen=True)
class TableRouter:
    """A routing rule: a route per context, and an LLM share where the LLM is eligible.

    ``route_for(warmth_bucket, has_query)`` gives the route (deterministic);
    ``llm_share`` is the probability of LLM treatment for eligible requests (a query, or a
    cold user — the design's eligibility rule); ineligible requests never get it.
    """

    name: str
    route_for: Callable[[str, bool], str]
    llm_share: float = 0.0

    def probability(self, decision: LoggedDecision) -> float:
        if self.route_for(decision.warmth_bucket, decision.has_query) != decision.route:
            return 0.0
        eligible = decision.has_query or decision.warmth_bucket == "COLD"
        p_llm = self.llm_share if eligible else 0.0
        return p_llm if decision.llm_used else 1.0 - p_llm


def design_route(warmth_bucket: str, has_query: bool) -> str:
    """The design's router: a query → CONTENT; else WARM → CF, WARMING → HYBRID,
    COLD → POPULARITY."""
    if has_query:
        return "CONTENT"
    return {"WARM": "CF", "WARMING": "HYBRID"}.get(warmth_bucket, "POPULARITY")


ROUTING_POLICIES: dict[str, RoutingPolicy] = {}


def register_routing_policy(policy: RoutingPolicy) -> None:
    """Make a target policy available to ``streamrec evaluate --target NAME``.

    The serving router registers itself here.
    """
    ROUTING_POLICIES[policy.name] = policy


for _policy in (
    LoggedPolicy(),
    TableRouter("router-no-llm", design_route, 0.0),
    TableRouter("router-llm-half", design_route, 0.5),
    TableRouter("router-llm-eligible", design_route, 1.0),
    TableRouter("cf-only", lambda w, q: "CF"),
    TableRouter("content-only", lambda w, q: "CONTENT"),
    TableRouter("popularity-only", lambda w, q: "POPULARITY"),
):
    register_routing_policy(_policy)
